// The differentiable transformer: the forward of models::Transformer (same config flags, same
// GGUF-layout weights) written on autograd Vars, so that every parameter gets a gradient of the
// causal-LM loss. Parameters live in one ParamStore (flat F32 buffers: what optimizers, clipping
// and later all-reduce work on), under their GGUF names; gradients are reported under Hugging
// Face names and in HF layout (the architecture table's transforms undone: LLaMA q/k rows
// un-permuted, fused q/k/v back to HF's order, GPT-2 transposed back; a norm stored as 1 + w has
// the same gradient as w).
//
// Covers the dense decoder families (LLaMA 1/2/3, SmolLM, Mistral, Qwen2, Gemma, Phi-3, GPT-2,
// OPT, BLOOM, GPT-NeoX) and Mixtral's mixture of experts (top-k routing).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "llmkit/autograd/ops.h"
#include "llmkit/autograd/param_store.h"
#include "llmkit/models/transformer.h"

namespace llmkit::train {

// A batch of B rows of T tokens with explicit labels: what packed SFT batches need. targets[i] is
// the token to predict after ids[i] (ops::kIgnoreIndex: no loss there, e.g. prompt tokens and a
// document's last token); pos[i] its position (restarting at 0 in each packed document); doc_start[i]
// the row index where its document starts (empty: every row is one document).
struct TokenBatch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids, targets, pos, doc_start;
};

class TrainModel {
 public:
  // Every tensor of the model becomes a trainable F32 parameter (quantized ones dequantized).
  static std::unique_ptr<TrainModel> from_weights(const models::Weights& w);
  ag::ParamStore& params() { return params_; }
  // Activation recomputation per layer: the tape keeps each layer's input only and runs the layer
  // again in the backward (about one more forward of compute for activation memory of one layer).
  void set_recompute(bool on) { recompute_ = on; }
  const models::ModelConfig& config() const { return cfg_; }

  // Mean cross-entropy of predicting token t + 1 from tokens <= t over every row of `batch`
  // (B rows of equal length T >= 2): transformers' loss with labels = input_ids. A [1] Var; call
  // ag::backward on it for the gradients.
  ag::Var loss(const std::vector<std::vector<int32_t>>& batch);
  // Mean cross-entropy over the batch's non-ignored targets; attention stays inside each document.
  ag::Var loss(const TokenBatch& batch);

  // (HF name, gradient in HF layout) for every parameter that received one, after backward.
  std::vector<std::pair<std::string, Tensor>> hf_gradients() const;

 private:
  explicit TrainModel(const models::Weights& w);
  ag::Var p(const std::string& name) const;  // the parameter, or an undefined Var when absent
  ag::Var norm(const ag::Var& x, const std::string& base) const;
  ag::Var linear(const ag::Var& x, const std::string& base) const;
  ag::Var moe(const ag::Var& h, const std::string& pre, ops::Act act) const;

  models::ModelConfig cfg_;
  models::ArchFamily family_;
  ops::RopeConfig rope_;
  bool use_rope_ = false;
  bool recompute_ = false;
  ag::ParamStore params_;
};

}  // namespace llmkit::train
