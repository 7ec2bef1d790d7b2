// Public API: training. The training loop (`llmkit train`) and the gradient parity tool
// (`llmkit grads`), both over the differentiable transformer of src/llmkit/train/.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>

namespace llmkit {

// `llmkit train`: continues training a model (GGUF file or Hugging Face folder) on a prepared data
// folder (`llmkit data prepare`) with AdamW, linear warmup then cosine or linear decay, gradient
// accumulation and clipping by global norm; evaluates on the validation split; appends metrics to
// out/metrics.jsonl and redraws out/loss.svg; saves atomic checkpoints in out/checkpoints/ and
// resumes from the newest with bit-identical steps; exports out/export/hf/ and
// out/export/model.gguf (loaded by `llmkit run` / `chat`). Config keys are these field names.
struct TrainConfig {
  std::string model;  // GGUF file or Hugging Face folder to start from
  std::string data;   // lm: prepared data folder; sft: chat/instruction JSONL file
  // lm: next-token prediction on every token of prepared data (`llmkit data prepare`); sft: chats
  // ({"messages": [...]}) or Alpaca records rendered with the model's chat template, loss on the
  // assistant's tokens only, examples packed into rows with attention kept inside each example.
  std::string task = "lm";
  double val_fraction = 0.0;  // sft: share of examples held out for the validation loss
  std::string out;    // run folder
  int64_t seq_len = 256, batch = 4, grad_accum = 1, steps = 100, warmup = 10;
  double lr = 3e-4, min_lr_ratio = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double clip = 1.0;                   // max global gradient norm; 0 = off
  std::string optimizer = "adamw";     // adamw | sgd (momentum as PyTorch's, weight_decay coupled)
  double momentum = 0.9;               // sgd
  // Matmul compute precision with F32 master weights: f32 | bf16 | f16 (f16 under dynamic loss
  // scaling: starts at loss_scale, halves and skips the step on inf/NaN gradients, doubles after
  // scale_window good steps).
  std::string precision = "f32";
  double loss_scale = 65536.0;
  int64_t scale_window = 2000;
  bool recompute = false;              // activation recomputation per layer (less memory, ~1/3 more compute)
  std::string schedule = "cosine";     // cosine | linear | constant (after the warmup)
  int64_t eval_every = 50, eval_batches = 4, save_every = 100;
  int keep = 3;                        // checkpoints kept; 0 = all
  uint64_t seed = 1234;                // data order
  bool resume = true;                  // continue from the newest checkpoint in out/checkpoints
  bool export_model = true;            // write out/export/{hf,model.gguf} at the end
};

struct TrainProgress {
  int64_t step = 0, steps = 0;  // step just taken (1-based), total
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, eta_s = 0;
  double val_loss = std::numeric_limits<double>::quiet_NaN();  // when this step evaluated
  double loss_scale = 1.0;  // f16: the dynamic loss scale after this step
  bool skipped = false;     // f16: an overflow skipped this step's update
  bool saved = false;
};

struct TrainSummary {
  int64_t start_step = 0, steps = 0;
  double first_loss = 0, last_loss = 0, last_val_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t n_params = 0, skipped_steps = 0;
  double seconds = 0;
  std::string last_checkpoint, export_gguf;
  std::string data_note;  // what the data loader made of the input (sft: examples, rows, trained tokens)
};

// A JSON object of TrainConfig fields -> the config; an unknown key or a mistyped value throws
// Error(kInvalidArgument) naming it.
TrainConfig train_config_from_json(const std::string& json_text);
// A config file as the JSON text train_config_from_json reads: .json, .yaml / .yml or .toml (by
// extension; the same keys in each). Throws Error(kNotFound) for a missing file and
// Error(kInvalidArgument) with the position of a syntax error.
std::string train_config_file_json(const std::string& path);

// Memory of full training, estimated before the first step: F32 weights, gradients and AdamW's
// two moments (16 bytes per parameter) plus the activations the tape keeps for one micro-batch.
struct TrainPlan {
  int64_t n_params = 0, tokens_per_step = 0;
  double weight_bytes = 0, grad_bytes = 0, optimizer_bytes = 0, activation_bytes = 0, total_bytes = 0;
};
TrainPlan plan_training(const TrainConfig& c);

// Throws Error(kInvalidArgument) naming a bad option, or naming the step when the loss or the
// gradients become NaN or Inf (the run stops; its last checkpoint is intact).
TrainSummary run_training(const TrainConfig& c, const std::function<void(const TrainProgress&)>& on_step = {});

// `llmkit grads`: reads int64 (or int32) `input_ids` [B, T] from a safetensors file, computes the
// mean causal-LM cross-entropy with labels = input_ids (shifted by one inside, as transformers
// does: position t predicts token t + 1, averaged over B x (T - 1) predictions) with every
// parameter of the model (GGUF file or Hugging Face folder; quantized weights dequantized to F32)
// trainable, and writes every parameter's gradient under its Hugging Face name and layout, plus
// `loss` [1], to a safetensors file. Dense decoder families; others throw Error(kUnsupported).
struct GradsFileResult {
  double loss = 0;
  int64_t batch = 0, tokens = 0, n_gradients = 0;
  double seconds = 0;
};
GradsFileResult grads_file(const std::string& model_path, const std::string& input_path, const std::string& output_path);

}  // namespace llmkit
