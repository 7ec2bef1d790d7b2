// ParamStore: flat parameter / gradient / optimizer-state buffers with per-parameter views, and the
// AdamW and SGD-momentum updates over them.
#include "llmkit/autograd/param_store.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ag {
namespace {
constexpr int64_t kAlignFloats = 16;  // 64 bytes
int64_t round_up(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

Tensor view_of(const Tensor& flat, int64_t offset, const Shape& shape) {
  return Tensor::from_external(flat.data<float>() + offset, shape, DType::kF32, flat.storage());
}
}  // namespace

Var ParamStore::add(const std::string& name, const Shape& shape, bool trainable, bool decay) {
  LLMKIT_CHECK(!allocated(), kInvalidArgument, "ParamStore::add('", name,
               "'): the store is already allocated; declare every parameter before allocate()");
  for (const Entry& e : entries_)
    LLMKIT_CHECK(e.name != name, kInvalidArgument, "ParamStore::add: duplicate parameter name '", name, "'");
  Entry e;
  e.name = name;
  e.var = Var(Tensor(), trainable, name);
  e.numel = shape.numel();
  e.trainable = trainable;
  e.decay = decay;
  // Remember the shape until allocate() binds the value.
  e.var.impl()->value = Tensor::from_external(nullptr, shape, DType::kF32, nullptr);
  entries_.push_back(std::move(e));
  return entries_.back().var;
}

void ParamStore::allocate() {
  LLMKIT_CHECK(!allocated(), kInvalidArgument, "ParamStore::allocate: already allocated");
  int64_t off = 0;
  for (bool pass_trainable : {true, false}) {
    for (Entry& e : entries_) {
      if (e.trainable != pass_trainable) continue;
      e.offset = off;
      off += round_up(e.numel);
    }
    if (pass_trainable) n_trainable_ = off;
  }
  params_ = Tensor::zeros({off}, DType::kF32);
  grads_ = Tensor::zeros({n_trainable_}, DType::kF32);
  m_ = Tensor::zeros({n_trainable_}, DType::kF32);
  v_ = Tensor::zeros({n_trainable_}, DType::kF32);
  for (Entry& e : entries_) {
    const Shape shape = e.var.impl()->value.shape();
    e.var.impl()->value = view_of(params_, e.offset, shape);
    if (e.trainable) e.var.impl()->grad = view_of(grads_, e.offset, shape);
  }
}

const Var& ParamStore::get(const std::string& name) const {
  for (const Entry& e : entries_)
    if (e.name == name) return e.var;
  throw Error(ErrorCode::kNotFound, str_cat("ParamStore: no parameter named '", name, "'"));
}

void ParamStore::zero_grad() {
  if (grads_.defined() && grads_.numel()) std::memset(grads_.raw(), 0, grads_.nbytes());
}

// Sums of squares per fixed chunk of kNormChunk values, added in chunk order: the same result for
// any thread count (resume and reruns stay bitwise).
constexpr int64_t kNormChunk = int64_t{1} << 16;

double ParamStore::grad_norm() const {
  const float* g = grads_.data<float>();
  const int64_t n_chunks = (n_trainable_ + kNormChunk - 1) / kNormChunk;
  std::vector<double> part(static_cast<size_t>(n_chunks), 0.0);
  ThreadPool::global().parallel_for(n_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e = std::min(n_trainable_, (c + 1) * kNormChunk);
      // Doubles keep the norm exact enough for clipping thresholds near 1 over 1e9 values; eight
      // independent partial sums (a fixed order, so the same bits on every run) instead of one
      // chain of dependent adds.
      double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = c * kNormChunk;
      for (; i + 8 <= e; i += 8)
        for (int u = 0; u < 8; ++u) acc[u] += static_cast<double>(g[i + u]) * g[i + u];
      for (; i < e; ++i) acc[0] += static_cast<double>(g[i]) * g[i];
      part[static_cast<size_t>(c)] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
  });
  double s = 0;
  for (double p : part) s += p;
  return std::sqrt(s);
}

double ParamStore::clip_grad_norm(double max_norm) {
  const double norm = grad_norm();
  if (norm > max_norm && norm > 0) {
    const float c = clip_factor(norm, max_norm);
    float* g = grads_.data<float>();
    ThreadPool::global().parallel_for(n_trainable_, kNormChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) g[i] *= c;
    });
  }
  return norm;
}

void ParamStore::scale_grads(float s) {
  float* g = grads_.data<float>();
  ThreadPool::global().parallel_for(n_trainable_, kNormChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) g[i] *= s;
  });
}

// Per-parameter loops over the flat buffers: the decay flag and a later freeze (set_requires_grad(false)
// on a trainable Var) are per parameter; the memory traffic is still one sweep of each buffer. Float
// arithmetic in torch.optim.AdamW's order (decay, moments, bias-corrected step), element-wise, so the
// split over threads does not change a bit.
void ParamStore::step_adamw(const AdamWConfig& cfg) {
  LLMKIT_CHECK(allocated(), kInvalidArgument, "ParamStore::step_adamw: allocate() first");
  ++step_;
  const double bc1 = 1.0 - std::pow(static_cast<double>(cfg.beta1), static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(cfg.beta2), static_cast<double>(step_));
  ref::AdamWStep a;
  a.step_size = static_cast<float>(cfg.lr / bc1);
  a.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  a.b1 = cfg.beta1, a.b2 = cfg.beta2, a.eps = cfg.eps, a.grad_scale = cfg.grad_scale;
  float* p = params_.data<float>();
  const float* g = grads_.data<float>();
  float* m = m_.data<float>();
  float* v = v_.data<float>();
  const auto update = ops::active_table().adamw;  // SIMD on kCpu, the same bits as the reference
  for (const Entry& e : entries_) {
    if (!e.trainable || !e.var.requires_grad()) continue;
    a.keep = static_cast<float>(1.0 - cfg.lr * (e.decay ? cfg.weight_decay : 0.0f));
    ThreadPool::global().parallel_for(e.numel, kNormChunk, [&](int64_t i0, int64_t i1) {
      update(a, p + e.offset + i0, g + e.offset + i0, m + e.offset + i0, v + e.offset + i0, i1 - i0);
    });
  }
}

void ParamStore::step_sgd(const SgdConfig& cfg) {
  LLMKIT_CHECK(allocated(), kInvalidArgument, "ParamStore::step_sgd: allocate() first");
  ++step_;
  float* p = params_.data<float>();
  const float* g = grads_.data<float>();
  float* buf = m_.data<float>();
  for (const Entry& e : entries_) {
    if (!e.trainable || !e.var.requires_grad()) continue;
    const float wd = e.decay ? cfg.weight_decay : 0.0f;
    for (int64_t i = e.offset; i < e.offset + e.numel; ++i) {
      const float gi = g[i] + wd * p[i];
      buf[i] = step_ == 1 ? gi : cfg.momentum * buf[i] + gi;  // PyTorch: the first step sets buf = g
      p[i] -= cfg.lr * buf[i];
    }
  }
}

}  // namespace llmkit::ag
