// Ops for cross-entropy (with ignore_index) and its gradient, argmax and top-k.
#include <algorithm>
#include <vector>

#include "llmkit/base/thread_pool.h"
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
// Rows split over the pool on kCpu when the work is large (~64k values); each row is one task's.
template <class F>
void rows_split(int64_t n, int64_t d, F&& fn) {
  if (current_backend() == Backend::kCpu && n * d >= (int64_t{1} << 16))
    ThreadPool::global().parallel_for(n, std::max<int64_t>(1, (int64_t{1} << 15) / d), fn);
  else
    fn(int64_t{0}, n);
}

std::vector<double> row_lse(const Tensor& logits) {
  const int64_t n = logits.rows(), V = logits.dim(-1);
  std::vector<double> lse(static_cast<size_t>(n));
  const KernelTable& kt = active_table();
  rows_split(n, V, [&](int64_t r0, int64_t r1) { kt.logsumexp_rows(logits.data<float>() + r0 * V, r1 - r0, V, lse.data() + r0); });
  return lse;
}
}  // namespace

float cross_entropy(const Tensor& logits_, const Tensor& targets_, int32_t ignore_index) {
  Tensor logits = f32_in(logits_, "cross_entropy", "logits");
  Tensor targets = detail::i32_in(targets_, "cross_entropy", "targets");
  check_targets(logits, targets, ignore_index, "cross_entropy");
  if (!logits.rows()) return 0.0f;
  const int64_t n = logits.rows(), V = logits.dim(-1);
  const std::vector<double> lse = row_lse(logits);
  const int32_t* t = targets.data<int32_t>();
  double total = 0.0;
  int64_t valid = 0;
  for (int64_t r = 0; r < n; ++r) {  // in row order: the same sum for any thread count
    if (t[r] == ignore_index) continue;
    total += lse[static_cast<size_t>(r)] - logits.data<float>()[r * V + t[r]];
    ++valid;
  }
  return valid ? static_cast<float>(total / static_cast<double>(valid)) : 0.0f;
}

void cross_entropy_backward(const Tensor& logits_, const Tensor& targets_, float dloss, Tensor* dlogits,
                            int32_t ignore_index) {
  Tensor logits = f32_in(logits_, "cross_entropy_backward", "logits");
  Tensor targets = detail::i32_in(targets_, "cross_entropy_backward", "targets");
  check_targets(logits, targets, ignore_index, "cross_entropy_backward");
  float* g = detail::grad_out(dlogits, logits.shape(), "cross_entropy_backward", "dlogits");
  if (!g || !logits.rows()) return;
  const int64_t n = logits.rows(), V = logits.dim(-1);
  const int32_t* t = targets.data<int32_t>();
  int64_t valid = 0;
  for (int64_t r = 0; r < n; ++r) valid += t[r] != ignore_index;
  if (!valid) return;
  const std::vector<double> lse = row_lse(logits);
  const double scale = static_cast<double>(dloss) / static_cast<double>(valid);
  const KernelTable& kt = active_table();
  rows_split(n, V, [&](int64_t r0, int64_t r1) {
    kt.xent_grad_rows(logits.data<float>() + r0 * V, t + r0, lse.data() + r0, r1 - r0, V, ignore_index, scale,
                      g + r0 * V);
  });
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
