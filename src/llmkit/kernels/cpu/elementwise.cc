// Element-wise and row-wise SIMD kernels behind cpu_table(): add, mul, scale, silu, swiglu,
// rmsnorm and softmax, compiled once per Highway target and dispatched at run time. Tails shorter
// than a vector are copied into a padded one-vector buffer and run through the same vector code,
// so every element gets the same arithmetic (no scalar std::exp next to the SIMD Exp). exp is
// Highway's contrib Exp (<= 1 ULP on [-FLT_MAX, 104]; it returns 0 below ~-87.3); sigmoid is
// written with exp(-|x|) so its argument is never positive and never overflows.
// Large arrays are split over ThreadPool::global(); small ones stay on the calling thread.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/ref/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "llmkit/kernels/cpu/elementwise.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace llmkit::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Element-wise work below this many floats runs on one thread: a memory-bound add of 32k floats
// takes ~5 us on one core, already more than dispatch to the pool (~1-2 us) would save.
constexpr int64_t kParallelMinElems = int64_t{1} << 15;

// Applies op(vectors...) -> vector over n elements of up to two inputs, tail padded.
template <class Op>
HWY_INLINE void Map2(const float* a, const float* b, float* y, int64_t n, const Op& op) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(op(d, hn::LoadU(d, a + i), hn::LoadU(d, b + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN float ta[HWY_MAX_BYTES / sizeof(float)] = {};
    HWY_ALIGN float tb[HWY_MAX_BYTES / sizeof(float)] = {};
    const int64_t r = n - i;
    for (int64_t j = 0; j < r; ++j) { ta[j] = a[i + j]; tb[j] = b[i + j]; }
    hn::Store(op(d, hn::Load(d, ta), hn::Load(d, tb)), d, ta);
    for (int64_t j = 0; j < r; ++j) y[i + j] = ta[j];
  }
}

template <class Op>
void ParallelMap2(const float* a, const float* b, float* y, int64_t n, const Op& op) {
  ThreadPool::global().parallel_for(n, kParallelMinElems, [&](int64_t s, int64_t e) {
    Map2(a + s, b + s, y + s, e - s, op);
  });
}

HWY_INLINE VF Sigmoid(DF d, VF x) {
  const VF e = hn::Exp(d, hn::Neg(hn::Abs(x)));  // in (0, 1]
  const VF r = hn::Div(hn::Set(d, 1.0f), hn::Add(hn::Set(d, 1.0f), e));
  return hn::IfThenElse(hn::Lt(x, hn::Zero(d)), hn::Mul(e, r), r);
}

void Add(const float* a, const float* b, float* y, int64_t n) {
  ParallelMap2(a, b, y, n, [](DF, VF u, VF v) { return hn::Add(u, v); });
}
void Mul(const float* a, const float* b, float* y, int64_t n) {
  ParallelMap2(a, b, y, n, [](DF, VF u, VF v) { return hn::Mul(u, v); });
}
void Scale(const float* a, float s, float* y, int64_t n) {
  ParallelMap2(a, a, y, n, [s](DF d, VF u, VF) { return hn::Mul(u, hn::Set(d, s)); });
}
void Silu(const float* x, float* y, int64_t n) {
  ParallelMap2(x, x, y, n, [](DF d, VF u, VF) { return hn::Mul(u, Sigmoid(d, u)); });
}
void Swiglu(const float* gate, const float* up, float* y, int64_t n) {
  ParallelMap2(gate, up, y, n, [](DF d, VF g, VF u) { return hn::Mul(hn::Mul(g, Sigmoid(d, g)), u); });
}

// fp-contract=off: GCC would otherwise fuse the multiplies and adds of these intrinsics into FMAs,
// and the update would no longer be the reference's (and PyTorch's) arithmetic.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void AdamW(const ref::AdamWStep& a, float* HWY_RESTRICT p, const float* HWY_RESTRICT g, float* HWY_RESTRICT m,
           float* HWY_RESTRICT v, int64_t n) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const VF one_b1 = hn::Set(d, 1.0f - a.b1), b2 = hn::Set(d, a.b2), one_b2 = hn::Set(d, 1.0f - a.b2);
  const VF bc2 = hn::Set(d, a.bc2_sqrt), eps = hn::Set(d, a.eps), keep = hn::Set(d, a.keep);
  const VF neg_step = hn::Set(d, -a.step_size), gscale = hn::Set(d, a.grad_scale);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const VF gi = hn::Mul(hn::LoadU(d, g + i), gscale);
    VF mi = hn::LoadU(d, m + i), vi = hn::LoadU(d, v + i);
    mi = hn::Add(mi, hn::Mul(one_b1, hn::Sub(gi, mi)));
    vi = hn::Add(hn::Mul(vi, b2), hn::Mul(hn::Mul(one_b2, gi), gi));
    const VF denom = hn::Add(hn::Div(hn::Sqrt(vi), bc2), eps);
    hn::StoreU(mi, d, m + i);
    hn::StoreU(vi, d, v + i);
    hn::StoreU(hn::Add(hn::Mul(hn::LoadU(d, p + i), keep), hn::Mul(neg_step, hn::Div(mi, denom))), d, p + i);
  }
  if (i < n) ref::adamw(a, p + i, g + i, m + i, v + i, n - i);
}

// RoPE on adjacent pairs (2i, 2i + 1): GPT-J's layout, and that of llama-family GGUF files, whose
// q/k weights are permuted for it. Per token, cos is spread to both lanes of a pair and sin to
// (-s, +s); then y = x c2 + swap(x) s2 per vector: lane 2i is x0 c + x1 (-s) = x0 c - x1 s and lane
// 2i + 1 is x1 c + x0 s, bitwise the reference's (negation is exact, addition commutes).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void RopeApplyPairs(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                    int64_t head_dim, int64_t rot_dims, bool accumulate) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t half = rot_dims / 2;
  if (rot_dims % L != 0 || L < 2) {
    ref::rope_apply(x, y, c, s, n_tokens, n_heads, head_dim, rot_dims, false, accumulate);
    return;
  }
  thread_local std::vector<float> cs2;
  cs2.resize(static_cast<size_t>(2 * rot_dims));
  float* c2 = cs2.data();
  float* s2 = c2 + rot_dims;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      c2[2 * i] = c2[2 * i + 1] = c[t * half + i];
      s2[2 * i] = -s[t * half + i];
      s2[2 * i + 1] = s[t * half + i];
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t o = (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < rot_dims; i += L) {
        const VF xv = hn::LoadU(d, x + o + i);
        VF yv = hn::Add(hn::Mul(xv, hn::LoadU(d, c2 + i)), hn::Mul(hn::Reverse2(d, xv), hn::LoadU(d, s2 + i)));
        if (accumulate) yv = hn::Add(hn::LoadU(d, y + o + i), yv);
        hn::StoreU(yv, d, y + o + i);
      }
      for (int64_t j = rot_dims; j < head_dim; ++j) y[o + j] = accumulate ? y[o + j] + x[o + j] : x[o + j];
    }
  }
}

// RoPE with precomputed cos/sin (NeoX pairs (i, i + half)): the reference's unfused x0 c - x1 s and
// x0 s + x1 c, so fp-contract is off here too. Tails shorter than a vector go through padded
// vectors, the same arithmetic.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
void RopeApply(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
               int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate) {
  if (!neox) {
    RopeApplyPairs(x, y, c, s, n_tokens, n_heads, head_dim, rot_dims, accumulate);
    return;
  }
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t half = rot_dims / 2;
  // (y0, y1) of one vector of pairs, the reference's x0 c - x1 s and x0 s + x1 c.
  auto rot = [](VF x0, VF x1, VF cv, VF sv, VF* y0, VF* y1) {
    *y0 = hn::Sub(hn::Mul(x0, cv), hn::Mul(x1, sv));
    *y1 = hn::Add(hn::Mul(x0, sv), hn::Mul(x1, cv));
  };
  auto pair = [&](const float* xh, float* yh, const float* ct, const float* st, int64_t i) {
    VF y0, y1;
    rot(hn::LoadU(d, xh + i), hn::LoadU(d, xh + half + i), hn::LoadU(d, ct + i), hn::LoadU(d, st + i), &y0, &y1);
    if (accumulate) y0 = hn::Add(hn::LoadU(d, yh + i), y0), y1 = hn::Add(hn::LoadU(d, yh + half + i), y1);
    hn::StoreU(y0, d, yh + i);
    hn::StoreU(y1, d, yh + half + i);
  };
  // The last n < L pairs, through padded vectors.
  auto tail = [&](const float* xh, float* yh, const float* ct, const float* st, int64_t i, int64_t n) {
    HWY_ALIGN float t0[HWY_MAX_BYTES / sizeof(float)] = {}, t1[HWY_MAX_BYTES / sizeof(float)] = {};
    HWY_ALIGN float tc[HWY_MAX_BYTES / sizeof(float)] = {}, ts[HWY_MAX_BYTES / sizeof(float)] = {};
    for (int64_t j = 0; j < n; ++j) t0[j] = xh[i + j], t1[j] = xh[half + i + j], tc[j] = ct[i + j], ts[j] = st[i + j];
    VF y0, y1;
    rot(hn::Load(d, t0), hn::Load(d, t1), hn::Load(d, tc), hn::Load(d, ts), &y0, &y1);
    hn::Store(y0, d, t0);
    hn::Store(y1, d, t1);
    for (int64_t j = 0; j < n; ++j) {
      yh[i + j] = accumulate ? yh[i + j] + t0[j] : t0[j];
      yh[half + i + j] = accumulate ? yh[half + i + j] + t1[j] : t1[j];
    }
  };
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* ct = c + t * half;
    const float* st = s + t * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t o = (t * n_heads + h) * head_dim;
      int64_t i = 0;
      for (; i + L <= half; i += L) pair(x + o, y + o, ct, st, i);
      if (i < half) tail(x + o, y + o, ct, st, i, half - i);
      for (int64_t j = rot_dims; j < head_dim; ++j) y[o + j] = accumulate ? y[o + j] + x[o + j] : x[o + j];
    }
  }
}

// GELU, tanh form: u = sqrt(2/pi) (x + 0.044715 x^3), 0.5 (1 + tanh u) = sigmoid(2u) = s;
// y = x s, dy/dx = s + 2 x s (1 - s) du/dx with du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
void GeluTanh(const float* x, float* y, int64_t n) {
  ParallelMap2(x, x, y, n, [](DF d, VF v, VF) {
    const VF u = hn::Mul(hn::Set(d, kSqrt2OverPi), hn::MulAdd(hn::Mul(hn::Set(d, kGeluC), v), hn::Mul(v, v), v));
    return hn::Mul(v, Sigmoid(d, hn::Add(u, u)));
  });
}
void GeluTanhBackward(const float* x, const float* dy, float* dx, int64_t n) {
  ThreadPool::global().parallel_for(n, kParallelMinElems, [&](int64_t b, int64_t e) {
    const DF d;
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    auto grad = [&](VF v, VF g) {
      const VF c = hn::Set(d, kSqrt2OverPi), k = hn::Set(d, kGeluC), one = hn::Set(d, 1.0f);
      const VF x2 = hn::Mul(v, v);
      const VF u = hn::Mul(c, hn::MulAdd(hn::Mul(k, v), x2, v));
      const VF du = hn::Mul(c, hn::MulAdd(hn::Mul(hn::Set(d, 3.0f), k), x2, one));
      const VF s = Sigmoid(d, hn::Add(u, u));
      const VF two_x = hn::Add(v, v);
      return hn::Mul(g, hn::MulAdd(hn::Mul(hn::Mul(two_x, s), hn::Sub(one, s)), du, s));
    };
    int64_t i = b;
    for (; i + L <= e; i += L)
      hn::StoreU(hn::Add(hn::LoadU(d, dx + i), grad(hn::LoadU(d, x + i), hn::LoadU(d, dy + i))), d, dx + i);
    if (i < e) {
      HWY_ALIGN float tx[HWY_MAX_BYTES / sizeof(float)] = {}, tg[HWY_MAX_BYTES / sizeof(float)] = {};
      const int64_t r = e - i;
      for (int64_t j = 0; j < r; ++j) tx[j] = x[i + j], tg[j] = dy[i + j];
      hn::Store(grad(hn::Load(d, tx), hn::Load(d, tg)), d, tx);
      for (int64_t j = 0; j < r; ++j) dx[i + j] += tx[j];
    }
  });
}

// Rows per task so that each task touches at least kParallelMinElems floats.
int64_t RowGrain(int64_t d) { return std::max<int64_t>(1, kParallelMinElems / std::max<int64_t>(1, d)); }

void RmsNorm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps, float w_offset) {
  ThreadPool::global().parallel_for(rows, RowGrain(dim), [&](int64_t rb, int64_t re) {
    const DF d;
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    for (int64_t r = rb; r < re; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      VF s0 = hn::Zero(d), s1 = hn::Zero(d);
      int64_t i = 0;
      for (; i + 2 * L <= dim; i += 2 * L) {
        const VF a = hn::LoadU(d, xr + i), b = hn::LoadU(d, xr + i + L);
        s0 = hn::MulAdd(a, a, s0);
        s1 = hn::MulAdd(b, b, s1);
      }
      float ss = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
      for (; i < dim; ++i) ss += xr[i] * xr[i];
      const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
      const VF vinv = hn::Set(d, inv), voff = hn::Set(d, w_offset);
      Map2(xr, w, yr, dim, [&](DF, VF xv, VF wv) { return hn::Mul(hn::Mul(xv, vinv), hn::Add(wv, voff)); });
    }
  });
}

// ---- norm backward and LayerNorm (single-threaded over the rows given; the ops layer splits rows) ----
// Row sums in float vectors (the reference sums in double: the op harness bounds the difference).
HWY_INLINE float SumLanes(DF d, VF v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

// With g = w + off, r = 1/sqrt(mean(x^2) + eps): dx += r g dy - (r^3 / d) sum(dy g x) x; dw += r dy x.
void RmsNormBackward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                     int64_t dim, float eps, float w_offset) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const VF voff = hn::Set(d, w_offset);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    VF ss_v = hn::Zero(d), dot_v = hn::Zero(d);
    int64_t i = 0;
    for (; i + L <= dim; i += L) {
      const VF xv = hn::LoadU(d, xr + i);
      const VF g = hn::Mul(hn::LoadU(d, dyr + i), hn::Add(hn::LoadU(d, w + i), voff));
      ss_v = hn::MulAdd(xv, xv, ss_v);
      dot_v = hn::MulAdd(g, xv, dot_v);
    }
    float ss = SumLanes(d, ss_v), dot = SumLanes(d, dot_v);
    for (; i < dim; ++i) {
      ss += xr[i] * xr[i];
      dot += dyr[i] * (w[i] + w_offset) * xr[i];
    }
    const float rs = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    const float c = rs * rs * rs * dot / static_cast<float>(dim);
    const VF vrs = hn::Set(d, rs), vc = hn::Set(d, c);
    float* dxr = dx ? dx + r * dim : nullptr;
    for (i = 0; i + L <= dim; i += L) {
      const VF xv = hn::LoadU(d, xr + i), dyv = hn::LoadU(d, dyr + i);
      if (dxr) {
        const VF g = hn::Mul(dyv, hn::Add(hn::LoadU(d, w + i), voff));
        hn::StoreU(hn::Add(hn::LoadU(d, dxr + i), hn::NegMulAdd(vc, xv, hn::Mul(vrs, g))), d, dxr + i);
      }
      if (dw) hn::StoreU(hn::MulAdd(hn::Mul(dyv, xv), vrs, hn::LoadU(d, dw + i)), d, dw + i);
    }
    for (; i < dim; ++i) {
      if (dxr) dxr[i] += rs * dyr[i] * (w[i] + w_offset) - c * xr[i];
      if (dw) dw[i] += dyr[i] * xr[i] * rs;
    }
  }
}

// Mean and 1/sqrt(var + eps) of a row (two passes: the sum of squared deviations, not E[x^2] - mu^2).
HWY_INLINE void RowMoments(const float* xr, int64_t dim, float eps, float* mu, float* rstd) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  VF s = hn::Zero(d);
  int64_t i = 0;
  for (; i + L <= dim; i += L) s = hn::Add(s, hn::LoadU(d, xr + i));
  float sum = SumLanes(d, s);
  for (; i < dim; ++i) sum += xr[i];
  const float m = sum / static_cast<float>(dim);
  const VF vm = hn::Set(d, m);
  VF v = hn::Zero(d);
  for (i = 0; i + L <= dim; i += L) {
    const VF c = hn::Sub(hn::LoadU(d, xr + i), vm);
    v = hn::MulAdd(c, c, v);
  }
  float var = SumLanes(d, v);
  for (; i < dim; ++i) var += (xr[i] - m) * (xr[i] - m);
  *mu = m;
  *rstd = 1.0f / std::sqrt(var / static_cast<float>(dim) + eps);
}

// y = (x - mu) rstd w + b (w, b optional).
void LayerNorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t dim, float eps) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float mu, rstd;
    RowMoments(xr, dim, eps, &mu, &rstd);
    const VF vm = hn::Set(d, mu), vr = hn::Set(d, rstd);
    int64_t i = 0;
    for (; i + L <= dim; i += L) {
      VF h = hn::Mul(hn::Sub(hn::LoadU(d, xr + i), vm), vr);
      if (w) h = hn::Mul(h, hn::LoadU(d, w + i));
      if (b) h = hn::Add(h, hn::LoadU(d, b + i));
      hn::StoreU(h, d, yr + i);
    }
    for (; i < dim; ++i) yr[i] = (xr[i] - mu) * rstd * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
  }
}

// xh = (x - mu) rstd, g = dy w: dx += rstd (g - mean(g) - xh mean(g xh)); dw += dy xh; db += dy.
void LayerNormBackward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int64_t rows,
                       int64_t dim, float eps) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float mu, rstd;
    RowMoments(xr, dim, eps, &mu, &rstd);
    const VF vm = hn::Set(d, mu), vr = hn::Set(d, rstd);
    VF sg = hn::Zero(d), sgx = hn::Zero(d);
    int64_t i = 0;
    for (; i + L <= dim; i += L) {
      VF g = hn::LoadU(d, dyr + i);
      if (w) g = hn::Mul(g, hn::LoadU(d, w + i));
      sg = hn::Add(sg, g);
      sgx = hn::MulAdd(g, hn::Mul(hn::Sub(hn::LoadU(d, xr + i), vm), vr), sgx);
    }
    float mg = SumLanes(d, sg), mgx = SumLanes(d, sgx);
    for (; i < dim; ++i) {
      const float g = dyr[i] * (w ? w[i] : 1.0f);
      mg += g;
      mgx += g * (xr[i] - mu) * rstd;
    }
    mg /= static_cast<float>(dim);
    mgx /= static_cast<float>(dim);
    const VF vmg = hn::Set(d, mg), vmgx = hn::Set(d, mgx);
    float* dxr = dx ? dx + r * dim : nullptr;
    for (i = 0; i + L <= dim; i += L) {
      const VF dyv = hn::LoadU(d, dyr + i);
      const VF xh = hn::Mul(hn::Sub(hn::LoadU(d, xr + i), vm), vr);
      if (dxr) {
        const VF g = w ? hn::Mul(dyv, hn::LoadU(d, w + i)) : dyv;
        const VF t = hn::NegMulAdd(xh, vmgx, hn::Sub(g, vmg));
        hn::StoreU(hn::MulAdd(vr, t, hn::LoadU(d, dxr + i)), d, dxr + i);
      }
      if (dw) hn::StoreU(hn::MulAdd(dyv, xh, hn::LoadU(d, dw + i)), d, dw + i);
      if (db) hn::StoreU(hn::Add(hn::LoadU(d, db + i), dyv), d, db + i);
    }
    for (; i < dim; ++i) {
      const float xh = (xr[i] - mu) * rstd;
      const float g = dyr[i] * (w ? w[i] : 1.0f);
      if (dxr) dxr[i] += rstd * (g - mg - xh * mgx);
      if (dw) dw[i] += dyr[i] * xh;
      if (db) db[i] += dyr[i];
    }
  }
}

void Softmax(float* x, int64_t rows, int64_t dim) {
  ThreadPool::global().parallel_for(rows, RowGrain(dim), [&](int64_t rb, int64_t re) {
    const DF d;
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    for (int64_t r = rb; r < re; ++r) {
      float* xr = x + r * dim;
      VF vmax = hn::Set(d, -std::numeric_limits<float>::infinity());
      int64_t i = 0;
      for (; i + L <= dim; i += L) vmax = hn::Max(vmax, hn::LoadU(d, xr + i));
      float mx = hn::GetLane(hn::MaxOfLanes(d, vmax));
      for (; i < dim; ++i) mx = std::max(mx, xr[i]);
      // exp(x - max) in place; a padded tail lane is -inf -> exp 0, so it adds nothing to the sum.
      const VF vm = hn::Set(d, mx);
      VF vsum = hn::Zero(d);
      auto expm = [&](DF dd, VF v, VF) {
        const VF e = hn::Exp(dd, hn::Sub(v, vm));
        vsum = hn::Add(vsum, e);
        return e;
      };
      const int64_t full = dim - dim % L;
      Map2(xr, xr, xr, full, expm);
      if (full < dim) {
        HWY_ALIGN float t[HWY_MAX_BYTES / sizeof(float)];
        for (int64_t j = 0; j < L; ++j) t[j] = full + j < dim ? xr[full + j] : -std::numeric_limits<float>::infinity();
        hn::Store(expm(d, hn::Load(d, t), hn::Zero(d)), d, t);
        for (int64_t j = 0; full + j < dim; ++j) xr[full + j] = t[j];
      }
      const float inv = 1.0f / hn::GetLane(hn::SumOfLanes(d, vsum));
      const VF vinv = hn::Set(d, inv);
      Map2(xr, xr, xr, dim, [&](DF, VF v, VF) { return hn::Mul(v, vinv); });
    }
  });
}

// dgate += dy * up * s * (1 + g * (1 - s)), dup += dy * g * s with s = sigmoid(g).
void SwigluBackward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n) {
  ThreadPool::global().parallel_for(n, kParallelMinElems, [&](int64_t b, int64_t e) {
    const DF d;
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    auto one = [&](VF g, VF u, VF dyv, VF* dg, VF* du) {
      const VF sg = Sigmoid(d, g);
      const VF one_v = hn::Set(d, 1.0f);
      *dg = hn::Mul(hn::Mul(dyv, u), hn::Mul(sg, hn::MulAdd(g, hn::Sub(one_v, sg), one_v)));
      *du = hn::Mul(dyv, hn::Mul(g, sg));
    };
    int64_t i = b;
    for (; i + L <= e; i += L) {
      VF dg, du;
      one(hn::LoadU(d, gate + i), hn::LoadU(d, up + i), hn::LoadU(d, dy + i), &dg, &du);
      if (dgate) hn::StoreU(hn::Add(hn::LoadU(d, dgate + i), dg), d, dgate + i);
      if (dup) hn::StoreU(hn::Add(hn::LoadU(d, dup + i), du), d, dup + i);
    }
    if (i < e) {
      HWY_ALIGN float tg[HWY_MAX_BYTES / sizeof(float)] = {}, tu[HWY_MAX_BYTES / sizeof(float)] = {},
                      td[HWY_MAX_BYTES / sizeof(float)] = {};
      const int64_t r = e - i;
      for (int64_t j = 0; j < r; ++j) tg[j] = gate[i + j], tu[j] = up[i + j], td[j] = dy[i + j];
      VF dg, du;
      one(hn::Load(d, tg), hn::Load(d, tu), hn::Load(d, td), &dg, &du);
      hn::Store(dg, d, tg);
      hn::Store(du, d, tu);
      for (int64_t j = 0; j < r; ++j) {
        if (dgate) dgate[i + j] += tg[j];
        if (dup) dup[i + j] += tu[j];
      }
    }
  });
}

// Row max, then sum of exp(x - max) in four float vector accumulators, reduced in double.
void LogSumExpRows(const float* x, int64_t rows, int64_t dim, double* lse) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    VF vm = hn::Set(d, -std::numeric_limits<float>::infinity());
    int64_t j = 0;
    for (; j + L <= dim; j += L) vm = hn::Max(vm, hn::LoadU(d, xr + j));
    float m = hn::GetLane(hn::MaxOfLanes(d, vm));
    for (; j < dim; ++j) m = xr[j] > m ? xr[j] : m;
    const VF mv = hn::Set(d, m);
    VF s0 = hn::Zero(d), s1 = s0, s2 = s0, s3 = s0;
    j = 0;
    for (; j + 4 * L <= dim; j += 4 * L) {
      s0 = hn::Add(s0, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j), mv)));
      s1 = hn::Add(s1, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j + L), mv)));
      s2 = hn::Add(s2, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j + 2 * L), mv)));
      s3 = hn::Add(s3, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j + 3 * L), mv)));
    }
    for (; j + L <= dim; j += L) s0 = hn::Add(s0, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j), mv)));
    HWY_ALIGN float lanes[4 * HWY_MAX_BYTES / sizeof(float)];
    hn::Store(s0, d, lanes);
    hn::Store(s1, d, lanes + L);
    hn::Store(s2, d, lanes + 2 * L);
    hn::Store(s3, d, lanes + 3 * L);
    double s = 0.0;
    for (int64_t t = 0; t < 4 * L; ++t) s += lanes[t];
    for (; j < dim; ++j) s += std::exp(static_cast<double>(xr[j]) - m);
    lse[r] = m + std::log(s);
  }
}

void XentGradRows(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t dim,
                  int32_t ignore_index, double g, float* dx) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const VF gv = hn::Set(d, static_cast<float>(g));
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) continue;
    const float* xr = x + r * dim;
    float* dr = dx + r * dim;
    const float l = static_cast<float>(lse[r]);
    const VF lv = hn::Set(d, l);
    int64_t j = 0;
    for (; j + L <= dim; j += L)
      hn::StoreU(hn::MulAdd(gv, hn::Exp(d, hn::Sub(hn::LoadU(d, xr + j), lv)), hn::LoadU(d, dr + j)), d, dr + j);
    for (; j < dim; ++j) dr[j] += static_cast<float>(g * std::exp(static_cast<double>(xr[j]) - lse[r]));
    dr[targets[r]] -= static_cast<float>(g);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace llmkit::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmkit::cpu {

HWY_EXPORT(Add);
HWY_EXPORT(Mul);
HWY_EXPORT(Scale);
HWY_EXPORT(Silu);
HWY_EXPORT(Swiglu);
HWY_EXPORT(SwigluBackward);
HWY_EXPORT(LogSumExpRows);
HWY_EXPORT(XentGradRows);
HWY_EXPORT(RmsNorm);
HWY_EXPORT(RmsNormBackward);
HWY_EXPORT(LayerNorm);
HWY_EXPORT(LayerNormBackward);
HWY_EXPORT(Softmax);
HWY_EXPORT(AdamW);
HWY_EXPORT(GeluTanh);
HWY_EXPORT(GeluTanhBackward);
HWY_EXPORT(RopeApply);

void add(const float* a, const float* b, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Add)(a, b, y, n); }
void mul(const float* a, const float* b, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Mul)(a, b, y, n); }
void scale(const float* a, float s, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Scale)(a, s, y, n); }
void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  if (!tanh_approx) {
    ref::gelu(x, y, n, false);
    return;
  }
  HWY_DYNAMIC_DISPATCH(GeluTanh)(x, y, n);
}
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx) {
  if (!tanh_approx) {
    ref::gelu_backward(x, dy, dx, n, false);
    return;
  }
  HWY_DYNAMIC_DISPATCH(GeluTanhBackward)(x, dy, dx, n);
}
void adamw(const ref::AdamWStep& a, float* p, const float* g, float* m, float* v, int64_t n) {
  HWY_DYNAMIC_DISPATCH(AdamW)(a, p, g, m, v, n);
}
void silu(const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Silu)(x, y, n); }
void swiglu(const float* gate, const float* up, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Swiglu)(gate, up, y, n); }
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SwigluBackward)(gate, up, dy, dgate, dup, n);
}
void logsumexp_rows(const float* x, int64_t rows, int64_t d, double* lse) {
  HWY_DYNAMIC_DISPATCH(LogSumExpRows)(x, rows, d, lse);
}
void xent_grad_rows(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t d,
                    int32_t ignore_index, double g, float* dx) {
  HWY_DYNAMIC_DISPATCH(XentGradRows)(x, targets, lse, rows, d, ignore_index, g, dx);
}
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset) {
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, w, y, rows, d, eps, w_offset);
}
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows, int64_t d,
                      float eps, float w_offset) {
  HWY_DYNAMIC_DISPATCH(RmsNormBackward)(x, w, dy, dx, dw, rows, d, eps, w_offset);
}
void layernorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t d, float eps) {
  HWY_DYNAMIC_DISPATCH(LayerNorm)(x, w, b, y, rows, d, eps);
}
void layernorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int64_t rows,
                        int64_t d, float eps) {
  HWY_DYNAMIC_DISPATCH(LayerNormBackward)(x, w, dy, dx, dw, db, rows, d, eps);
}
void rope_apply(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate) {
  HWY_DYNAMIC_DISPATCH(RopeApply)(x, y, c, s, n_tokens, n_heads, head_dim, rot_dims, neox, accumulate);
}
void softmax(float* x, int64_t rows, int64_t d) { HWY_DYNAMIC_DISPATCH(Softmax)(x, rows, d); }

}  // namespace llmkit::cpu
#endif  // HWY_ONCE
