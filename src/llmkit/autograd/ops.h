// Differentiable ops over Vars: each computes its value with llmkit::ops (so the active backend runs it)
// and records the matching ops::*_backward on the current tape when an input requires a gradient.
// Shapes are those of llmkit/ops/ops.h. Non-differentiable inputs (token ids, targets, positions) are
// plain Tensors.
#pragma once

#include <vector>

#include "llmkit/autograd/tape.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ag {

// Mixed precision. Inside a ScopedCompute(kBF16 or kF16) scope, matmul rounds its input and its
// weight to that type (the weight kept at 2 bytes for the backward), multiplies them exactly in
// F32 and sums in F32; its backward rounds the incoming gradient to that type as well, so dx and
// dw are products of half-precision values accumulated in F32. Vars stay F32: the master weights
// and their gradients. F16's narrow range makes large values inf: run it under a loss scaler.
DType compute_dtype();
class ScopedCompute {
 public:
  explicit ScopedCompute(DType t);
  ~ScopedCompute();
  ScopedCompute(const ScopedCompute&) = delete;
  ScopedCompute& operator=(const ScopedCompute&) = delete;

 private:
  DType prev_;
};

// y[..., N] = x[..., K] . w[N, K]^T ; w may be a frozen half/quantized weight (then only dx flows).
Var matmul(const Var& x, const Var& w);
Var add(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var scale(const Var& a, float s);
Var add_bias(const Var& x, const Var& bias);  // x [..., d] + bias [d]
Var activation(ops::Act act, const Var& x);
Var glu(ops::Act act, const Var& gate, const Var& up);  // SwiGLU (kSilu), GeGLU (kGelu*)
Var rmsnorm(const Var& x, const Var& w, float eps, float w_offset = 0.0f);
Var layernorm(const Var& x, const Var& w, const Var& b, float eps);  // w, b may be undefined Vars
Var softmax(const Var& x, const ops::SoftmaxOptions& opt = {});
Var rope(const Var& x, const Tensor& pos, const ops::RopeConfig& cfg);
Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionOptions& opt = {});
Var embedding(const Var& table, const Tensor& ids);  // rows table[ids]; also a differentiable gather
// y [n_rows, d] = 0, then y[ids[i]] += x[i] for every row i of x [m, d] (the combine step of
// mixture-of-experts routing); the gradient gathers dy's rows back.
Var scatter_rows(const Var& x, const Tensor& ids, int64_t n_rows);
// Mean cross-entropy over non-ignored rows: a [1] Var.
Var cross_entropy(const Var& logits, const Tensor& targets, int32_t ignore_index = ops::kIgnoreIndex);
// Shape changes (contiguous copies where needed) and reductions.
Var view(const Var& x, const Shape& shape);
Var sum(const Var& x);  // [1]
// Pieces of `sizes` along dim (fused q/k/v or gate/up projections); their gradients concatenate.
std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int dim);

}  // namespace llmkit::ag
