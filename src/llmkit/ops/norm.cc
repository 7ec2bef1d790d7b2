// Ops for RMSNorm, LayerNorm and (masked) softmax, forward and backward. x [..., d] is treated as
// [rows, d]; norm weights are [d].
#include <algorithm>
#include <vector>

#include "llmkit/base/thread_pool.h"
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ops {
using detail::f32_in;
using detail::grad_out;

namespace {
void check_eps(float eps, const char* op) {
  LLMKIT_CHECK(eps >= 0.0f, kInvalidArgument, op, ": eps must be >= 0, got ", eps,
               " (HF config `rms_norm_eps` / `layer_norm_eps`)");
}
void check_param(const Tensor& p, int64_t d, const char* op, const char* arg) {
  LLMKIT_CHECK(p.rank() == 1 && p.dim(0) == d, kInvalidArgument, op, ": '", arg, "' must be [d_model] = [", d,
               "], got ", p.shape().str());
}

// Row ranges of a norm's backward on the pool (kCpu, large enough): a fixed split into `parts` ranges,
// each accumulating its weight gradients into its own zeroed partial, the partials then added to
// dw/db in range order - so the result does not depend on which thread ran which range. fn(r0, r1,
// dw, db) is the reference kernel on rows [r0, r1). The reference backend runs it in one piece.
template <typename F>
void rows_in_parts(int64_t rows, int64_t d, float* dw, float* db, const F& fn) {
  ThreadPool& pool = ThreadPool::global();
  const int64_t parts = current_backend() == Backend::kCpu && rows * d >= (int64_t{1} << 16)
                            ? std::min<int64_t>(rows, 2 * pool.size())
                            : 1;
  if (parts <= 1) {
    fn(int64_t{0}, rows, dw, db);
    return;
  }
  std::vector<float> pw(dw ? static_cast<size_t>(parts * d) : 0, 0.0f), pb(db ? static_cast<size_t>(parts * d) : 0, 0.0f);
  pool.parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      fn(rows * p / parts, rows * (p + 1) / parts, dw ? pw.data() + p * d : nullptr, db ? pb.data() + p * d : nullptr);
  });
  for (int64_t p = 0; p < parts; ++p) {
    for (int64_t j = 0; j < d; ++j) {
      if (dw) dw[j] += pw[static_cast<size_t>(p * d + j)];
      if (db) db[j] += pb[static_cast<size_t>(p * d + j)];
    }
  }
}
}  // namespace

Tensor rmsnorm(const Tensor& x_, const Tensor& w_, float eps, float w_offset) {
  check_eps(eps, "rmsnorm");
  Tensor x = f32_in(x_, "rmsnorm", "x"), w = f32_in(w_, "rmsnorm", "w");
  LLMKIT_CHECK(x.rank() >= 1, kInvalidArgument, "rmsnorm: x must have a last dim, got ", x.str());
  check_param(w, x.dim(-1), "rmsnorm", "w");
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel())
    active_table().rmsnorm(x.data<float>(), w.data<float>(), y.data<float>(), x.rows(), x.dim(-1), eps, w_offset);
  return y;
}

void rmsnorm_backward(const Tensor& x_, const Tensor& w_, const Tensor& dy_, float eps, float w_offset, Tensor* dx,
                      Tensor* dw) {
  Tensor x = f32_in(x_, "rmsnorm_backward", "x"), w = f32_in(w_, "rmsnorm_backward", "w");
  Tensor dy = f32_in(dy_, "rmsnorm_backward", "dy");
  detail::same_shape(x, dy, "rmsnorm_backward", "x", "dy");
  check_param(w, x.dim(-1), "rmsnorm_backward", "w");
  float* gx = grad_out(dx, x.shape(), "rmsnorm_backward", "dx");
  float* gw = grad_out(dw, w.shape(), "rmsnorm_backward", "dw");
  const int64_t d = x.dim(-1);
  if (x.numel())
    rows_in_parts(x.rows(), d, gw, nullptr, [&](int64_t r0, int64_t r1, float* pw, float*) {
      active_table().rmsnorm_backward(x.data<float>() + r0 * d, w.data<float>(), dy.data<float>() + r0 * d,
                            gx ? gx + r0 * d : nullptr, pw, r1 - r0, d, eps, w_offset);
    });
}

Tensor layernorm(const Tensor& x_, const Tensor& w_, const Tensor& b_, float eps) {
  check_eps(eps, "layernorm");
  Tensor x = f32_in(x_, "layernorm", "x");
  LLMKIT_CHECK(x.rank() >= 1, kInvalidArgument, "layernorm: x must have a last dim, got ", x.str());
  const int64_t d = x.dim(-1);
  Tensor w, b;
  if (w_.defined()) { w = f32_in(w_, "layernorm", "w"); check_param(w, d, "layernorm", "w"); }
  if (b_.defined()) { b = f32_in(b_, "layernorm", "b"); check_param(b, d, "layernorm", "b"); }
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel())
    rows_in_parts(x.rows(), d, nullptr, nullptr, [&](int64_t r0, int64_t r1, float*, float*) {
      active_table().layernorm(x.data<float>() + r0 * d, w.defined() ? w.data<float>() : nullptr,
                     b.defined() ? b.data<float>() : nullptr, y.data<float>() + r0 * d, r1 - r0, d, eps);
    });
  return y;
}

void layernorm_backward(const Tensor& x_, const Tensor& w_, const Tensor& dy_, float eps, Tensor* dx, Tensor* dw,
                        Tensor* db) {
  Tensor x = f32_in(x_, "layernorm_backward", "x"), dy = f32_in(dy_, "layernorm_backward", "dy");
  detail::same_shape(x, dy, "layernorm_backward", "x", "dy");
  const int64_t d = x.dim(-1);
  Tensor w;
  if (w_.defined()) { w = f32_in(w_, "layernorm_backward", "w"); check_param(w, d, "layernorm_backward", "w"); }
  float* gx = grad_out(dx, x.shape(), "layernorm_backward", "dx");
  float* gw = grad_out(dw, Shape{d}, "layernorm_backward", "dw");
  float* gb = grad_out(db, Shape{d}, "layernorm_backward", "db");
  if (x.numel())
    rows_in_parts(x.rows(), d, gw, gb, [&](int64_t r0, int64_t r1, float* pw, float* pb) {
      active_table().layernorm_backward(x.data<float>() + r0 * d, w.defined() ? w.data<float>() : nullptr,
                              dy.data<float>() + r0 * d, gx ? gx + r0 * d : nullptr, pw, pb, r1 - r0, d, eps);
    });
}

Tensor softmax(const Tensor& x_, const SoftmaxOptions& opt) {
  Tensor x = f32_in(x_, "softmax", "x");
  LLMKIT_CHECK(x.rank() >= 1, kInvalidArgument, "softmax: x must have a last dim, got ", x.str());
  Tensor y = x.clone();
  const int64_t rows = x.rows(), d = x.dim(-1);
  if (!y.numel()) return y;
  const bool masked = opt.causal || !opt.key_len.empty();
  if (!masked) {
    active_table().softmax(y.data<float>(), rows, d);
    return y;
  }
  const int64_t n_q = opt.n_q > 0 ? opt.n_q : rows;
  LLMKIT_CHECK(rows % n_q == 0, kInvalidArgument, "softmax: ", rows, " rows do not split into groups of n_q = ", n_q);
  LLMKIT_CHECK(!opt.causal || n_q <= d, kInvalidArgument, "softmax: causal mask needs n_q (", n_q,
               ") <= n_keys (", d, "): queries are the last n_q key positions");
  LLMKIT_CHECK(opt.key_len.empty() || static_cast<int64_t>(opt.key_len.size()) == rows / n_q, kInvalidArgument,
               "softmax: key_len has ", opt.key_len.size(), " entries, need one per group of rows (", rows / n_q, ")");
  ref::softmax_masked(y.data<float>(), rows, d,
                      ref::SoftmaxMask{.n_q = n_q, .causal = opt.causal,
                                       .key_len = opt.key_len.empty() ? nullptr : opt.key_len.data()});
  return y;
}

void softmax_backward(const Tensor& y_, const Tensor& dy_, Tensor* dx) {
  Tensor y = f32_in(y_, "softmax_backward", "y"), dy = f32_in(dy_, "softmax_backward", "dy");
  detail::same_shape(y, dy, "softmax_backward", "y", "dy");
  float* g = grad_out(dx, y.shape(), "softmax_backward", "dx");
  if (g && y.numel()) ref::softmax_backward(y.data<float>(), dy.data<float>(), g, y.rows(), y.dim(-1));
}

}  // namespace llmkit::ops
