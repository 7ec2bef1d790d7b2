// The training loop (`llmkit train`, `llmkit finetune`): trains a model (GGUF file or Hugging Face
// folder; from scratch = a random-init file) on a prepared data folder (`llmkit data prepare`) or,
// task sft, on chat/instruction JSONL (sft.h), with AdamW or SGD, linear warmup then cosine or
// linear decay, gradient accumulation and clipping by global norm, F32 or BF16/F16 compute (F16
// under dynamic loss scaling), optional activation recomputation; evaluates on the validation
// split; appends metrics to a JSONL file and redraws an SVG loss curve; saves atomic checkpoints
// (checkpoint.h) and resumes from the newest one with bit-identical steps; exports the result as a
// Hugging Face folder and a GGUF file that `llmkit run` loads.
//
// Run folder (`out`): checkpoints/step-*/ (each with its own loss.svg), metrics.jsonl, loss.svg,
// and at the end export/hf/ and export/model.gguf.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "llmkit/train.h"

namespace llmkit::train {

using TrainOptions = ::llmkit::TrainConfig;
using StepInfo = ::llmkit::TrainProgress;
using TrainResult = ::llmkit::TrainSummary;

// The learning rate of 0-based step `step`: linear warmup from lr / warmup to lr over `warmup`
// steps, then cosine (or linear) decay to lr x min_lr_ratio at the last step, or constant.
double lr_at(const TrainOptions& o, int64_t step);

// Throws Error(kInvalidArgument) naming a bad option, and Error(kInvalidArgument) naming the step
// when the loss or the gradients become NaN or Inf (the run stops; its last checkpoint is intact).
TrainResult train_model(const TrainOptions& o, const std::function<void(const StepInfo&)>& on_step = {});

}  // namespace llmkit::train
