// Ops for cross-entropy (with ignore_index) and its gradient, argmax and top-k.
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ops {
using detail::f32_in;

namespace {
void check_targets(const Tensor& logits, const Tensor& targets, int32_t ignore_index, const char* op) {
  LLMKIT_CHECK(logits.rank() >= 1 && logits.dim(-1) > 0, kInvalidArgument, op, ": logits must be [..., n_vocab], got ",
               logits.shape().str());
  LLMKIT_CHECK(targets.numel() == logits.rows(), kInvalidArgument, op, ": ", targets.numel(), " targets for ",
               logits.rows(), " rows of logits ", logits.shape().str(), "; need one target per row");
  const int32_t* t = targets.data<int32_t>();
  const int64_t V = logits.dim(-1);
  for (int64_t r = 0; r < targets.numel(); ++r)
    LLMKIT_CHECK(t[r] == ignore_index || (t[r] >= 0 && t[r] < V), kInvalidArgument, op, ": target ", t[r], " at row ",
                 r, " is outside [0, n_vocab = ", V, ") and is not the ignore index ", ignore_index);
}
}  // namespace

float cross_entropy(const Tensor& logits_, const Tensor& targets_, int32_t ignore_index) {
  Tensor logits = f32_in(logits_, "cross_entropy", "logits");
  Tensor targets = detail::i32_in(targets_, "cross_entropy", "targets");
  check_targets(logits, targets, ignore_index, "cross_entropy");
  if (!logits.rows()) return 0.0f;
  return ref::cross_entropy(logits.data<float>(), targets.data<int32_t>(), logits.rows(), logits.dim(-1), ignore_index,
                            nullptr);
}

void cross_entropy_backward(const Tensor& logits_, const Tensor& targets_, float dloss, Tensor* dlogits,
                            int32_t ignore_index) {
  Tensor logits = f32_in(logits_, "cross_entropy_backward", "logits");
  Tensor targets = detail::i32_in(targets_, "cross_entropy_backward", "targets");
  check_targets(logits, targets, ignore_index, "cross_entropy_backward");
  float* g = detail::grad_out(dlogits, logits.shape(), "cross_entropy_backward", "dlogits");
  if (g && logits.rows())
    ref::cross_entropy_backward(logits.data<float>(), targets.data<int32_t>(), logits.rows(), logits.dim(-1),
                                ignore_index, dloss, g);
}

Tensor argmax(const Tensor& x_) {
  Tensor x = f32_in(x_, "argmax", "x");
  LLMKIT_CHECK(x.rank() >= 1 && x.dim(-1) > 0, kInvalidArgument, "argmax: x must be [..., d] with d > 0, got ",
               x.shape().str());
  std::vector<int64_t> s = x.shape().vec();
  s.pop_back();
  Tensor out = Tensor::empty(Shape(s), DType::kI32);
  if (x.numel()) ref::argmax(x.data<float>(), out.data<int32_t>(), x.rows(), x.dim(-1));
  return out;
}

std::pair<Tensor, Tensor> topk(const Tensor& x_, int64_t k) {
  Tensor x = f32_in(x_, "topk", "x");
  LLMKIT_CHECK(x.rank() >= 1 && k >= 1 && k <= x.dim(-1), kInvalidArgument, "topk: k = ", k,
               " must be in [1, d] for x ", x.shape().str());
  std::vector<int64_t> s = x.shape().vec();
  s.back() = k;
  Tensor vals = Tensor::empty(Shape(s), DType::kF32), idx = Tensor::empty(Shape(s), DType::kI32);
  if (x.numel()) ref::topk(x.data<float>(), vals.data<float>(), idx.data<int32_t>(), x.rows(), x.dim(-1), k);
  return {vals, idx};
}

}  // namespace llmkit::ops
