// ParamStore: every trainable and frozen float32 parameter of a model, with all parameters, all
// gradients and the optimizer state (AdamW m and v, or SGD momentum in m) each held as ONE flat
// contiguous float buffer and per-parameter Tensor views into it (llm.c's layout). Zeroing, clipping,
// all-reduce and ZeRO sharding then act on a buffer, not on a list of tensors.
//
// Layout: trainable parameters first, in declaration order, then frozen ones, each starting on a
// 64-byte boundary (padding floats stay 0 in every buffer, so optimizers may sweep them harmlessly).
// grads/m/v cover the trainable prefix only: element i of grads() is the gradient of element i of
// params(). Frozen parameters have no gradient view at all (PEFT: a frozen base costs no grad memory).
//
// Usage: declare with add() (returns the Var, valueless until allocate()), allocate() once, initialise
// the values, then train: forward, ag::backward, step_adamw / step_sgd, zero_grad.
#pragma once

#include <string>
#include <vector>

#include "llmkit/autograd/tape.h"

namespace llmkit::ag {

// AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", alg. 2) with Adam's bias
// correction (Kingma & Ba 2015): p -= lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p).
struct AdamWConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
  // Multiplies each gradient as it is read (g * grad_scale, one float rounding: the bits of scaling
  // the gradients first, as clip_grad_norm does, without that extra pass over them). 1 = none.
  float grad_scale = 1.0f;
};
// SGD with momentum as in PyTorch (dampening 0): g += weight_decay p ; buf = momentum buf + g ;
// p -= lr buf.
struct SgdConfig {
  float lr = 1e-2f;
  float momentum = 0.9f;
  float weight_decay = 0.0f;
};

class ParamStore {
 public:
  struct Entry {
    std::string name;
    Var var;
    int64_t offset = 0;  // into params() (and grads()/m()/v() when trainable)
    int64_t numel = 0;
    bool trainable = true;
    bool decay = true;   // weight decay applies (off for norms and biases by convention)
  };

  // Declares a parameter [shape]. Names must be unique. Only before allocate().
  Var add(const std::string& name, const Shape& shape, bool trainable = true, bool decay = true);
  // Allocates the four flat buffers (zeros) and binds every Var's value (and grad if trainable).
  void allocate();
  bool allocated() const { return params_.defined(); }

  const std::vector<Entry>& entries() const { return entries_; }
  const Var& get(const std::string& name) const;  // throws kNotFound

  Tensor& params() { return params_; }  // [n_total] f32
  Tensor& grads() { return grads_; }    // [n_trainable] f32
  Tensor& m() { return m_; }            // [n_trainable] f32 (AdamW first moment / SGD momentum)
  Tensor& v() { return v_; }            // [n_trainable] f32 (AdamW second moment)
  int64_t n_trainable() const { return n_trainable_; }  // elements, padding included
  int64_t step_count() const { return step_; }
  // Optimizer steps taken (AdamW's bias correction depends on it): set when resuming a checkpoint.
  void set_step_count(int64_t steps) { step_ = steps; }

  void zero_grad();
  // sqrt(sum g^2) over all trainable gradients (double accumulation).
  double grad_norm() const;
  // Scales gradients so their global norm is at most max_norm; returns the norm before clipping.
  double clip_grad_norm(double max_norm);
  // The factor clip_grad_norm would apply for a norm (1 when none): for AdamWConfig::grad_scale.
  static float clip_factor(double norm, double max_norm) {
    return norm > max_norm && norm > 0 ? static_cast<float>(max_norm / norm) : 1.0f;
  }
  void step_adamw(const AdamWConfig& cfg);
  void step_sgd(const SgdConfig& cfg);
  // grads *= s (unscaling after a loss-scaled backward).
  void scale_grads(float s);

 private:
  std::vector<Entry> entries_;
  Tensor params_, grads_, m_, v_;
  int64_t n_trainable_ = 0;
  int64_t step_ = 0;
};

}  // namespace llmkit::ag
