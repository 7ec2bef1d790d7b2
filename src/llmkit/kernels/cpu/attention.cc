// SIMD attention forward behind cpu_table().attention: the flash-attention recurrence of
// ref/attention.cc (keys in blocks, online softmax: running max m, sum l and unnormalised output
// acc rescaled by e^(m - m') per block), with every inner loop over vectors:
//
//   scores  s_j = (scale q) . k_j for a block of keys. The kv head's visible keys are first
//           transposed into kt[head_dim][keys] (once per work item, shared by the group's query
//           heads), so a vector holds L consecutive keys and one broadcast q_c times one load of
//           kt[c] feeds L scores: no horizontal sums, and 4 vectors of keys per pass so 4 FMAs
//           share each broadcast.
//   softmax Highway's Exp over the block, vector max and sum.
//   output  acc[head_dim] += p_j v_j with acc held in registers, 4 vectors at a time.
//
// Measured on the SmolLM2-135M prefill (pp512, 9 heads / 3 kv heads, head_dim 64, Zen 3 AVX2, one
// thread, 2026-11-28): the scalar reference took ~55% of the pass; see docs/BENCHMARKS.md
// "Inference speed vs llama.cpp" for the pass after this kernel.
//
// Summation order differs from the reference (vector lanes, blocks of kBlock keys), so results
// agree with it to float rounding (the op harness bounds the NMSE), not bitwise. They are batch
// invariant, though: a query row's arithmetic (each score a sequential FMA chain over head_dim in
// its own lane, blocks starting at the row's first visible key) does not depend on how many rows
// are computed with it, so a prompt's last row equals the same token decoded alone, bit for bit.
// (Decode once used dot products along head_dim instead of the transpose; the different rounding
// was enough to flip 8-bit activation levels downstream: |dlogit| up to 0.7 on SmolLM2.)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/ref/ops.h"
#include "llmkit/tensor/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "llmkit/kernels/cpu/attention.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#ifndef LLMKIT_CPU_ATTENTION_ONCE
#define LLMKIT_CPU_ATTENTION_ONCE
namespace llmkit::cpu::attn {

// Keys per online-softmax step: the reference's blocks (the same keys share a running max), which
// measured as fast as 128 on the SmolLM2 prefill.
constexpr int64_t kBlock = ref::kAttnBlock;

// Thread-local float buffer that only grows (kernels never allocate per call once warm).
struct Buf {
  hwy::AlignedFreeUniquePtr<float[]> p;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      p = hwy::AllocateAligned<float>(n);
      cap = n;
    }
    return p.get();
  }
};
inline thread_local Buf t_kt, t_q, t_sc, t_acc, t_vt, t_dk, t_dv, t_p, t_ds;

// Visible keys [lo, hi) of query row i of sequence s and its absolute position (ref's row_view).
struct Range {
  int64_t lo, hi, pos;
};
inline Range visible(const ref::AttentionParams& p, int64_t s, int64_t i) {
  Range r;
  r.pos = i + p.n_kv - p.n_q;
  r.hi = p.n_kv;
  if (p.causal && r.pos + 1 < r.hi) r.hi = r.pos + 1;
  if (p.kv_len && p.kv_len[s] < r.hi) r.hi = p.kv_len[s];
  r.lo = 0;
  if (p.window > 0 && r.pos - p.window + 1 > r.lo) r.lo = r.pos - p.window + 1;
  if (p.first_key && p.first_key[s * p.n_q + i] > r.lo) r.lo = p.first_key[s * p.n_q + i];
  return r;
}

}  // namespace llmkit::cpu::attn
#endif

HWY_BEFORE_NAMESPACE();
namespace llmkit::cpu::attn {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Lanes(d) KV values at p as floats: F32 pages load as they are, F16 pages widen (vcvtph2ps).
template <class D, typename T>
HWY_INLINE hn::Vec<D> LoadKV(D d, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<hwy::float16_t, D>(), p));
  }
}
HWY_INLINE float KVScalar(float x) { return x; }
HWY_INLINE float KVScalar(hwy::float16_t x) {
  uint16_t bits;
  std::memcpy(&bits, &x, 2);
  return f16_to_f32(bits);
}

// R query rows at once (R <= 4 heads of a GQA group at the same position, so they see the same
// keys): each load of keys or values feeds R FMAs. Every row's arithmetic is exactly that of R = 1
// (its own FMA chain per lane, in the same order), so grouping never changes a result.

// sc[r][t] = q_r . kt[:, off + t] for t < n (n rounded up to whole vectors; kt is zero-padded).
template <int R>
HWY_INLINE void ScoresTransposed(const float* const* qs, const float* kt, int64_t ld, int64_t off, int64_t hd,
                                 int64_t n, float* const* sc) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t nv = (n + L - 1) / L * L;
  constexpr int kV = R <= 2 ? 4 : 2;  // vectors of keys per pass: R * kV accumulators in registers
  int64_t t = 0;
  for (; t + kV * L <= nv; t += kV * L) {
    VF a[R][kV];
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < kV; ++u) a[r][u] = hn::Zero(d);
    const float* col = kt + off + t;
    for (int64_t c = 0; c < hd; ++c, col += ld) {
      VF kv[kV];
      for (int u = 0; u < kV; ++u) kv[u] = hn::LoadU(d, col + u * L);
      for (int r = 0; r < R; ++r) {
        const VF qc = hn::Set(d, qs[r][c]);
        for (int u = 0; u < kV; ++u) a[r][u] = hn::MulAdd(qc, kv[u], a[r][u]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < kV; ++u) hn::StoreU(a[r][u], d, sc[r] + t + u * L);
  }
  for (; t < nv; t += L) {
    VF a[R];
    for (int r = 0; r < R; ++r) a[r] = hn::Zero(d);
    const float* col = kt + off + t;
    for (int64_t c = 0; c < hd; ++c, col += ld) {
      const VF kc = hn::LoadU(d, col);
      for (int r = 0; r < R; ++r) a[r] = hn::MulAdd(hn::Set(d, qs[r][c]), kc, a[r]);
    }
    for (int r = 0; r < R; ++r) hn::StoreU(a[r], d, sc[r] + t);
  }
}

// acc_r[0:hd) = acc_r * corr_r + sum_{t<n} p_r[t] v[t * stride + :], acc kept in registers.
template <int R, typename T = float>
HWY_INLINE void AccumulateV(const float* const* pr, const T* v, int64_t stride, int64_t hd, int64_t n,
                            const float* corr, float* const* acc) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  constexpr int kV = R <= 2 ? 4 : 2;
  int64_t c = 0;
  for (; c + kV * L <= hd; c += kV * L) {
    VF a[R][kV];
    for (int r = 0; r < R; ++r) {
      const VF vc = hn::Set(d, corr[r]);
      for (int u = 0; u < kV; ++u) a[r][u] = hn::Mul(hn::LoadU(d, acc[r] + c + u * L), vc);
    }
    const T* vj = v + c;
    for (int64_t t = 0; t < n; ++t, vj += stride) {
      VF vv[kV];
      for (int u = 0; u < kV; ++u) vv[u] = LoadKV(d, vj + u * L);
      for (int r = 0; r < R; ++r) {
        const VF pt = hn::Set(d, pr[r][t]);
        for (int u = 0; u < kV; ++u) a[r][u] = hn::MulAdd(pt, vv[u], a[r][u]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int u = 0; u < kV; ++u) hn::StoreU(a[r][u], d, acc[r] + c + u * L);
  }
  for (; c + L <= hd; c += L) {
    VF a[R];
    for (int r = 0; r < R; ++r) a[r] = hn::Mul(hn::LoadU(d, acc[r] + c), hn::Set(d, corr[r]));
    const T* vj = v + c;
    for (int64_t t = 0; t < n; ++t, vj += stride) {
      const VF vv = LoadKV(d, vj);
      for (int r = 0; r < R; ++r) a[r] = hn::MulAdd(hn::Set(d, pr[r][t]), vv, a[r]);
    }
    for (int r = 0; r < R; ++r) hn::StoreU(a[r], d, acc[r] + c);
  }
  for (; c < hd; ++c) {
    for (int r = 0; r < R; ++r) {
      float a = acc[r][c] * corr[r];
      // An explicit FMA: left to the compiler, the contraction of a += p * v differed between the
      // F32 and F16 instantiations, and paged F16 attention lost bitwise equality with contiguous
      // attention on the same (rounded) values in the last columns of a head_dim of 24.
      for (int64_t t = 0; t < n; ++t) a = std::fma(pr[r][t], KVScalar(v[t * stride + c]), a);
      acc[r][c] = a;
    }
  }
}

// Output rows of heads h .. h+R-1 at query position i (all see the keys of Range rg).
template <int R>
void Rows(const ref::AttentionParams& p, const float* q, const float* kt, int64_t ld, int64_t k_lo, const float* vs,
          int64_t kv_stride, int64_t s, int64_t h, int64_t i, const Range& rg, float* o, float* lse) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t hd = p.head_dim;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* qs[R];
  float* sc[R];
  float* acc[R];
  float m[R], l[R], corr[R], slope[R];
  for (int r = 0; r < R; ++r) {
    qs[r] = t_q.get(static_cast<size_t>(R * hd)) + r * hd;
    sc[r] = t_sc.get(static_cast<size_t>(R * (kBlock + 4 * L))) + r * (kBlock + 4 * L);
    acc[r] = t_acc.get(static_cast<size_t>(R * hd)) + r * hd;
    const int64_t qo = ((s * p.n_q + i) * p.n_heads + h + r) * hd;
    for (int64_t c = 0; c < hd; ++c) qs[r][c] = q[qo + c] * p.scale;
    for (int64_t c = 0; c < hd; ++c) acc[r][c] = 0.0f;
    m[r] = neg_inf;
    l[r] = 0.0f;
    slope[r] = p.alibi ? p.alibi[h + r] : 0.0f;
  }
  for (int64_t j0 = rg.lo; j0 < rg.hi; j0 += kBlock) {
    const int64_t n = rg.hi - j0 < kBlock ? rg.hi - j0 : kBlock;
    const int64_t nv = (n + L - 1) / L * L;
    ScoresTransposed<R>(qs, kt, ld, j0 - k_lo, hd, n, sc);
    for (int r = 0; r < R; ++r) {
      float* x = sc[r];
      if (slope[r] != 0.0f) {
        for (int64_t t = 0; t < n; ++t) x[t] += slope[r] * static_cast<float>(j0 + t - rg.pos);
      }
      for (int64_t t = n; t < nv; ++t) x[t] = neg_inf;
      VF vmax = hn::Set(d, neg_inf);
      for (int64_t t = 0; t < nv; t += L) vmax = hn::Max(vmax, hn::LoadU(d, x + t));
      const float bmax = hn::GetLane(hn::MaxOfLanes(d, vmax));
      const float m_new = bmax > m[r] ? bmax : m[r];
      corr[r] = std::exp(m[r] - m_new);  // m = -inf on the first block: 0
      const VF vm = hn::Set(d, m_new);
      VF vsum = hn::Zero(d);
      for (int64_t t = 0; t < nv; t += L) {
        // Padding lanes hold -inf; Exp's result there is masked to exactly 0.
        const VF xv = hn::LoadU(d, x + t);
        const VF e = hn::IfThenElseZero(hn::Gt(xv, hn::Set(d, neg_inf)), hn::Exp(d, hn::Sub(xv, vm)));
        hn::StoreU(e, d, x + t);
        vsum = hn::Add(vsum, e);
      }
      l[r] = l[r] * corr[r] + hn::GetLane(hn::SumOfLanes(d, vsum));
      m[r] = m_new;
    }
    AccumulateV<R>(sc, vs + j0 * kv_stride, kv_stride, hd, n, corr, acc);
  }
  for (int r = 0; r < R; ++r) {
    const int64_t qo = ((s * p.n_q + i) * p.n_heads + h + r) * hd;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t c = 0; c < hd; ++c) o[qo + c] = acc[r][c] * inv;
    if (lse) lse[(s * p.n_heads + h + r) * p.n_q + i] = l[r] > 0.0f ? m[r] + std::log(l[r]) : neg_inf;
  }
}

void Attention(const ref::AttentionParams& p, const float* q, const float* k, const float* v, float* o, float* lse) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t hd = p.head_dim, group = p.n_heads / p.n_kv_heads, kv_stride = p.n_kv_heads * hd;
  const int64_t h_begin = p.head_begin, h_end = p.head_end ? p.head_end : p.n_heads;
  const int64_t i_begin = p.q_begin, i_end = p.q_end ? p.q_end : p.n_q;
  if (h_end <= h_begin || i_end <= i_begin) return;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    // Keys any row of [i_begin, i_end) can see: lo and hi never decrease with the row.
    const Range first = visible(p, s, i_begin), last = visible(p, s, i_end - 1);
    const int64_t k_lo = first.lo, k_hi = last.hi > first.hi ? last.hi : first.hi;
    for (int64_t kvh = h_begin / group; kvh <= (h_end - 1) / group; ++kvh) {
      const float* ks = k + (s * p.n_kv * p.n_kv_heads + kvh) * hd;  // key j at ks + j * kv_stride
      const float* vs = v + (s * p.n_kv * p.n_kv_heads + kvh) * hd;
      // kt[c * ld + (j - k_lo)] = k_j[c], zero-padded to whole vectors (plus one block of slack).
      float* kt = nullptr;
      int64_t ld = 0;
      if (k_hi > k_lo) {
        ld = ((k_hi - k_lo + L - 1) / L) * L + 4 * L;
        kt = t_kt.get(static_cast<size_t>(ld * hd));
        for (int64_t j = k_lo; j < k_hi; ++j) {
          const float* kj = ks + j * kv_stride;
          for (int64_t c = 0; c < hd; ++c) kt[c * ld + (j - k_lo)] = kj[c];
        }
        for (int64_t c = 0; c < hd; ++c)
          for (int64_t j = k_hi - k_lo; j < ld; ++j) kt[c * ld + j] = 0.0f;
      }
      const int64_t hb = kvh * group > h_begin ? kvh * group : h_begin;
      const int64_t he = (kvh + 1) * group < h_end ? (kvh + 1) * group : h_end;
      for (int64_t i = i_begin; i < i_end; ++i) {
        const Range rg = visible(p, s, i);
        int64_t h = hb;
        for (; h + 4 <= he; h += 4) Rows<4>(p, q, kt, ld, k_lo, vs, kv_stride, s, h, i, rg, o, lse);
        switch (he - h) {
          case 3: Rows<3>(p, q, kt, ld, k_lo, vs, kv_stride, s, h, i, rg, o, lse); break;
          case 2: Rows<2>(p, q, kt, ld, k_lo, vs, kv_stride, s, h, i, rg, o, lse); break;
          case 1: Rows<1>(p, q, kt, ld, k_lo, vs, kv_stride, s, h, i, rg, o, lse); break;
          default: break;
        }
      }
    }
  }
}

// ---- backward ------------------------------------------------------------------------------------
// ref::attention_backward's contract with the saved log-sum-exp (lse required): per kv head its
// visible keys and values are transposed once into kt/vt [head_dim][keys], shared by the group's
// query heads. Query rows go R = 4 at a time (one head), so every key and value vector loaded serves
// 4 rows. Per block of rows, over vectors of L keys (2 vectors per pass: 4 rows x 2 x (s, dp) = 16
// FMA chains):
//   s = (scale q_i).k_j (+ ALiBi),  p = e^(s - lse_i),  dp = dout_i.v_j,  ds = scale p (dp - D_i)
// with D_i = dout_i.o_i, masked to 0 outside each row's visible keys (a row that sees no key gets
// p = ds = 0); then
//   dq_i += sum_j ds_ij k_j                  (4 rows' accumulators per vector of head_dim)
//   dk_j += sum_i ds_ij q_i, dv_j += sum_i p_ij dout_i   (into per-item [keys][head_dim]
//                                          accumulators, loaded and stored once per key for 4 rows,
//                                          added to dk/dv once at the end)
// Summation order differs from the reference; results agree to float rounding (op harness).
template <int R>
void BackwardBlock(const ref::AttentionParams& p, const float* q, const float* ks, const float* kt, const float* vt,
                   int64_t ld, int64_t k_lo, int64_t kv_stride, const float* o, const float* lse, const float* dout,
                   float* dq, float* dkl, float* dvl, int64_t s, int64_t h, int64_t i0, float* pb, float* dsb,
                   float* qsc) {
  const DF d;
  const hn::RebindToSigned<DF> di;
  using VI = hn::Vec<decltype(di)>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t hd = p.head_dim, hdv = hd / L * L;
  const float slope = p.alibi ? p.alibi[h] : 0.0f;
  Range rg[R];
  const float* qi[R];
  const float* doi[R];
  float* pr[R];
  float* dsr[R];
  float* qs[R];
  float row_lse[R], D[R];
  int64_t jlo = std::numeric_limits<int64_t>::max(), jhi = std::numeric_limits<int64_t>::min();
  for (int r = 0; r < R; ++r) {
    rg[r] = visible(p, s, i0 + r);
    const int64_t qo = ((s * p.n_q + i0 + r) * p.n_heads + h) * hd;
    qi[r] = q + qo;
    doi[r] = dout + qo;
    pr[r] = pb + r * ld;
    dsr[r] = dsb + r * ld;
    qs[r] = qsc + r * hd;
    row_lse[r] = lse[(s * p.n_heads + h) * p.n_q + i0 + r];
    D[r] = 0.0f;
    for (int64_t c = 0; c < hd; ++c) D[r] += doi[r][c] * o[qo + c];
    for (int64_t c = 0; c < hd; ++c) qs[r][c] = qi[r][c] * p.scale;
    if (rg[r].hi > rg[r].lo) {
      jlo = std::min(jlo, rg[r].lo);
      jhi = std::max(jhi, rg[r].hi);
    }
  }
  if (jhi <= jlo) return;  // no row sees a key: every output was a constant 0
  // Vectors of keys start on the item's grid (k_lo + multiples of L) so loads stay in kt.
  const int64_t a0 = jlo - (jlo - k_lo) % L;
  const VF vscale = hn::Set(d, p.scale);
  auto finish = [&](int r, int64_t jv, VF sv, VF dpv) {
    const VI jl = hn::Iota(di, static_cast<int32_t>(jv));
    if (slope != 0.0f)
      sv = hn::MulAdd(hn::Set(d, slope), hn::ConvertTo(d, hn::Sub(jl, hn::Set(di, static_cast<int32_t>(rg[r].pos)))), sv);
    const auto in = hn::RebindMask(d, hn::And(hn::Lt(hn::Set(di, static_cast<int32_t>(rg[r].lo - 1)), jl),
                                              hn::Lt(jl, hn::Set(di, static_cast<int32_t>(rg[r].hi)))));
    const VF pv = hn::IfThenElseZero(in, hn::Exp(d, hn::Sub(sv, hn::Set(d, row_lse[r]))));
    hn::Store(pv, d, pr[r] + (jv - k_lo));
    hn::Store(hn::IfThenElseZero(in, hn::Mul(hn::Mul(pv, hn::Sub(dpv, hn::Set(d, D[r]))), vscale)), d,
              dsr[r] + (jv - k_lo));
  };
  // p and ds for keys [a0, jhi), two vectors of keys per pass (kt/vt are zero-padded by 4 vectors).
  for (int64_t jv = a0; jv < jhi; jv += 2 * L) {
    VF s0[R], s1[R], p0[R], p1[R];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = p0[r] = p1[r] = hn::Zero(d);
    const float* kc = kt + (jv - k_lo);
    const float* vc = vt + (jv - k_lo);
    for (int64_t c = 0; c < hd; ++c, kc += ld, vc += ld) {
      const VF k0 = hn::Load(d, kc), k1 = hn::Load(d, kc + L), v0 = hn::Load(d, vc), v1 = hn::Load(d, vc + L);
      for (int r = 0; r < R; ++r) {
        const VF qv = hn::Set(d, qs[r][c]), dv_ = hn::Set(d, doi[r][c]);
        s0[r] = hn::MulAdd(qv, k0, s0[r]);
        s1[r] = hn::MulAdd(qv, k1, s1[r]);
        p0[r] = hn::MulAdd(dv_, v0, p0[r]);
        p1[r] = hn::MulAdd(dv_, v1, p1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      finish(r, jv, s0[r], p0[r]);
      finish(r, jv + L, s1[r], p1[r]);
    }
  }
  // dq: 4 vectors of head_dim at a time, R rows' accumulators each.
  if (dq) {
    for (int64_t c0 = 0; c0 < hdv; c0 += 4 * L) {
      const int64_t nv = std::min<int64_t>(4, (hdv - c0) / L);
      VF acc[R][4];
      for (int r = 0; r < R; ++r)
        for (int u = 0; u < 4; ++u) acc[r][u] = hn::Zero(d);
      for (int64_t j = jlo; j < jhi; ++j) {
        const float* kj = ks + j * kv_stride + c0;
        VF kv[4];
        for (int u = 0; u < 4; ++u) kv[u] = u < nv ? hn::LoadU(d, kj + u * L) : hn::Zero(d);
        for (int r = 0; r < R; ++r) {
          const VF w = hn::Set(d, dsr[r][j - k_lo]);
          for (int u = 0; u < 4; ++u) acc[r][u] = hn::MulAdd(w, kv[u], acc[r][u]);
        }
      }
      for (int r = 0; r < R; ++r) {
        float* dqi = dq + ((s * p.n_q + i0 + r) * p.n_heads + h) * hd + c0;
        for (int u = 0; u < nv; ++u) hn::StoreU(hn::Add(hn::LoadU(d, dqi + u * L), acc[r][u]), d, dqi + u * L);
      }
    }
    for (int r = 0; r < R; ++r) {
      float* dqi = dq + ((s * p.n_q + i0 + r) * p.n_heads + h) * hd;
      for (int64_t c = hdv; c < hd; ++c) {
        float a = 0.0f;
        for (int64_t j = jlo; j < jhi; ++j) a += dsr[r][j - k_lo] * ks[j * kv_stride + c];
        dqi[c] += a;
      }
    }
  }
  // dk, dv: per vector of head_dim, the R rows' q and dout stay in registers over the keys.
  for (int64_t c = 0; c < hdv; c += L) {
    VF qv[R], dov[R];
    for (int r = 0; r < R; ++r) {
      qv[r] = hn::LoadU(d, qi[r] + c);
      dov[r] = hn::LoadU(d, doi[r] + c);
    }
    for (int64_t j = jlo; j < jhi; ++j) {
      float* dkr = dkl + (j - k_lo) * hd + c;
      float* dvr = dvl + (j - k_lo) * hd + c;
      VF ak = hn::LoadU(d, dkr), av = hn::LoadU(d, dvr);
      for (int r = 0; r < R; ++r) {
        av = hn::MulAdd(hn::Set(d, pr[r][j - k_lo]), dov[r], av);
        ak = hn::MulAdd(hn::Set(d, dsr[r][j - k_lo]), qv[r], ak);
      }
      hn::StoreU(ak, d, dkr);
      hn::StoreU(av, d, dvr);
    }
  }
  for (int64_t j = jlo; j < jhi; ++j) {
    for (int64_t c = hdv; c < hd; ++c) {
      float ak = 0.0f, av = 0.0f;
      for (int r = 0; r < R; ++r) {
        av += pr[r][j - k_lo] * doi[r][c];
        ak += dsr[r][j - k_lo] * qi[r][c];
      }
      dvl[(j - k_lo) * hd + c] += av;
      dkl[(j - k_lo) * hd + c] += ak;
    }
  }
}

void AttentionBackward(const ref::AttentionParams& p, const float* q, const float* k, const float* v, const float* o,
                       const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t hd = p.head_dim, group = p.n_heads / p.n_kv_heads, kv_stride = p.n_kv_heads * hd;
  const int64_t h_begin = p.head_begin, h_end = p.head_end ? p.head_end : p.n_heads;
  if (h_end <= h_begin || p.n_q <= 0) return;
  constexpr int kR = 4;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    const Range first = visible(p, s, 0), last = visible(p, s, p.n_q - 1);
    const int64_t k_lo = first.lo, k_hi = last.hi > first.hi ? last.hi : first.hi;
    if (k_hi <= k_lo) continue;
    const int64_t nk = k_hi - k_lo, ld = (nk + L - 1) / L * L + 4 * L;
    for (int64_t kvh = h_begin / group; kvh <= (h_end - 1) / group; ++kvh) {
      const int64_t kv_off = (s * p.n_kv * p.n_kv_heads + kvh) * hd;
      const float* ks = k + kv_off;  // key j at ks + j * kv_stride
      const float* vs = v + kv_off;
      float* kt = t_kt.get(static_cast<size_t>(ld * hd));
      float* vt = t_vt.get(static_cast<size_t>(ld * hd));
      for (int64_t c = 0; c < hd; ++c) {
        for (int64_t j = 0; j < nk; ++j) {
          kt[c * ld + j] = ks[(k_lo + j) * kv_stride + c];
          vt[c * ld + j] = vs[(k_lo + j) * kv_stride + c];
        }
        for (int64_t j = nk; j < ld; ++j) kt[c * ld + j] = vt[c * ld + j] = 0.0f;
      }
      float* dkl = t_dk.get(static_cast<size_t>(nk * hd));
      float* dvl = t_dv.get(static_cast<size_t>(nk * hd));
      for (int64_t x = 0; x < nk * hd; ++x) dkl[x] = dvl[x] = 0.0f;
      float* pb = t_p.get(static_cast<size_t>(kR * ld));
      float* dsb = t_ds.get(static_cast<size_t>(kR * ld));
      float* qsc = t_q.get(static_cast<size_t>(kR * hd));
      const int64_t hb = kvh * group > h_begin ? kvh * group : h_begin;
      const int64_t he = (kvh + 1) * group < h_end ? (kvh + 1) * group : h_end;
      for (int64_t h = hb; h < he; ++h) {
        int64_t i = 0;
        for (; i + kR <= p.n_q; i += kR)
          BackwardBlock<kR>(p, q, ks, kt, vt, ld, k_lo, kv_stride, o, lse, dout, dq, dkl, dvl, s, h, i, pb, dsb, qsc);
        switch (p.n_q - i) {
          case 3: BackwardBlock<3>(p, q, ks, kt, vt, ld, k_lo, kv_stride, o, lse, dout, dq, dkl, dvl, s, h, i, pb, dsb, qsc); break;
          case 2: BackwardBlock<2>(p, q, ks, kt, vt, ld, k_lo, kv_stride, o, lse, dout, dq, dkl, dvl, s, h, i, pb, dsb, qsc); break;
          case 1: BackwardBlock<1>(p, q, ks, kt, vt, ld, k_lo, kv_stride, o, lse, dout, dq, dkl, dvl, s, h, i, pb, dsb, qsc); break;
          default: break;
        }
      }
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t jo = kv_off + (k_lo + j) * kv_stride;
        for (int64_t c = 0; c < hd; ++c) {
          if (dk) dk[jo + c] += dkl[j * hd + c];
          if (dv) dv[jo + c] += dvl[j * hd + c];
        }
      }
    }
  }
}

// ---- paged KV cache ----------------------------------------------------------------------------
// The same per-row arithmetic as Rows/Attention, reading keys from the transposed pages in place:
// a page row k[c][0 .. kKVPage) holds whole vectors of consecutive keys, so score vectors load
// straight from the pages (no per-step transpose of the history). Online-softmax blocks are
// aligned to absolute positions (multiples of kBlock, itself a multiple of kKVPage), and keys
// before a sliding window's first visible one are masked like padding; with no window (lo = 0)
// the blocks, and so every result, are bitwise those of Attention on the same keys.
using DP = hn::CappedTag<float, ref::kKVPage>;  // lanes must divide the page
using VP = hn::Vec<DP>;

// The K and V pages of one head that the thread reads next (the item's next block, or the first
// block of its next item), prefetched (into L2) a few lines at a time from inside the score loop:
// spread over the block's arithmetic, the requests keep the memory busy without stalling on full
// miss buffers, as a burst of them at the block's start did.
struct PagePrefetch {
  static_assert(kBlock % ref::kKVPage == 0, "blocks are whole pages");
  const char* page[2 * (kBlock / ref::kKVPage)];  // K pages, then V pages
  int64_t n_pages = 0, lines_per_page = 0, per_step = 0;
  int64_t pg = 0, line = 0;  // the next line to ask for (no division per line: prompts run this per row)
  HWY_INLINE void step() {
    for (int64_t i = 0; i < per_step && pg < n_pages; ++i) {
      __builtin_prefetch(page[pg] + line * 64, 0, 2);
      if (++line == lines_per_page) {
        line = 0;
        ++pg;
      }
    }
  }
  void finish() {
    per_step = n_pages * lines_per_page;
    step();
  }
};

// sc[r][u * LP + lane] = q_r . key (u * LP + lane) for vectors u < nvec; ptr[u] points at the
// vector's keys in column 0 of its page (column c at + c * kKVPage).
// Each iteration also asks pf for its share of the next block's lines.
template <int R, typename T>
HWY_INLINE void ScoresPaged(const float* const* qs, const T* const* ptr, int64_t nvec, int64_t hd,
                            float* const* sc, PagePrefetch& pf) {
  const DP d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  constexpr int kV = R <= 2 ? 4 : 2;
  const int64_t steps = (nvec / kV + nvec % kV) * hd;  // iterations of the loops below
  pf.per_step = steps > 0 ? (pf.n_pages * pf.lines_per_page + steps - 1) / steps : 0;
  int64_t u = 0;
  for (; u + kV <= nvec; u += kV) {
    VP a[R][kV];
    for (int r = 0; r < R; ++r)
      for (int w = 0; w < kV; ++w) a[r][w] = hn::Zero(d);
    for (int64_t c = 0; c < hd; ++c) {
      pf.step();
      VP kv[kV];
      for (int w = 0; w < kV; ++w) kv[w] = LoadKV(d, ptr[u + w] + c * ref::kKVPage);
      for (int r = 0; r < R; ++r) {
        const VP qc = hn::Set(d, qs[r][c]);
        for (int w = 0; w < kV; ++w) a[r][w] = hn::MulAdd(qc, kv[w], a[r][w]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int w = 0; w < kV; ++w) hn::StoreU(a[r][w], d, sc[r] + (u + w) * L);
  }
  for (; u < nvec; ++u) {
    VP a[R];
    for (int r = 0; r < R; ++r) a[r] = hn::Zero(d);
    for (int64_t c = 0; c < hd; ++c) {
      pf.step();
      const VP kc = LoadKV(d, ptr[u] + c * ref::kKVPage);
      for (int r = 0; r < R; ++r) a[r] = hn::MulAdd(hn::Set(d, qs[r][c]), kc, a[r]);
    }
    for (int r = 0; r < R; ++r) hn::StoreU(a[r], d, sc[r] + u * L);
  }
}

// Output rows of heads h .. h+R-1 of global query row `row` (absolute position pos, keys [lo, hi)).
template <int R, typename T>
void PagedRows(const ref::PagedAttentionParams& p, const float* q, const T* k_pages, const T* v_pages,
               const int32_t* blocks, int64_t kvh, int64_t row, int64_t h, int64_t lo, int64_t hi, int64_t pos,
               float* o, bool last) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t LP = static_cast<int64_t>(hn::Lanes(DP()));
  const int64_t hd = p.head_dim, page_floats = p.n_kv_heads * hd * ref::kKVPage;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* qs[R];
  float* sc[R];
  float* acc[R];
  float m[R], l[R], corr[R], slope[R];
  float one[R];
  for (int r = 0; r < R; ++r) {
    qs[r] = t_q.get(static_cast<size_t>(R * hd)) + r * hd;
    sc[r] = t_sc.get(static_cast<size_t>(R * (kBlock + 4 * L))) + r * (kBlock + 4 * L);
    acc[r] = t_acc.get(static_cast<size_t>(R * hd)) + r * hd;
    const int64_t qo = (row * p.n_heads + h + r) * hd;
    for (int64_t c = 0; c < hd; ++c) qs[r][c] = q[qo + c] * p.scale;
    for (int64_t c = 0; c < hd; ++c) acc[r][c] = 0.0f;
    m[r] = neg_inf;
    l[r] = 0.0f;
    slope[r] = p.alibi ? p.alibi[h + r] : 0.0f;
    one[r] = 1.0f;
  }
  const T* kptr[kBlock];
  for (int64_t j0 = lo / kBlock * kBlock; j0 < hi; j0 += kBlock) {
    const int64_t n = hi - j0 < kBlock ? hi - j0 : kBlock;  // keys [j0, j0 + n); those < lo are masked
    const int64_t nv = (n + L - 1) / L * L;
    const int64_t nvec = (n + LP - 1) / LP;
    for (int64_t u = 0; u < nvec; ++u) {
      const int64_t j = j0 + u * LP;
      kptr[u] = k_pages + blocks[j / ref::kKVPage] * page_floats + kvh * hd * ref::kKVPage + j % ref::kKVPage;
    }
    // The next block's pages lie anywhere in the pool, out of the hardware prefetchers' reach:
    // ask for this head's keys and values of them while this block's scores run.
    PagePrefetch pf;
    {
      int64_t nk = 0;
      for (int64_t j = j0 + kBlock; j < hi && j < j0 + 2 * kBlock; j += ref::kKVPage, ++nk) {
        const int64_t page = blocks[j / ref::kKVPage] * page_floats;
        pf.page[nk] = reinterpret_cast<const char*>(k_pages + page + kvh * hd * ref::kKVPage);
        pf.page[kBlock / ref::kKVPage + nk] = reinterpret_cast<const char*>(v_pages + page + kvh * ref::kKVPage * hd);
      }
      // The last block of the item's last rows: the thread's next item's first block instead.
      if (nk == 0 && last && p.next_blocks) {
        const int64_t b0 = p.next_lo / kBlock * kBlock;
        for (int64_t j = b0; j < p.next_hi && j < b0 + kBlock; j += ref::kKVPage, ++nk) {
          const int64_t page = p.next_blocks[j / ref::kKVPage] * page_floats;
          pf.page[nk] = reinterpret_cast<const char*>(k_pages + page + p.next_kvh * hd * ref::kKVPage);
          pf.page[kBlock / ref::kKVPage + nk] =
              reinterpret_cast<const char*>(v_pages + page + p.next_kvh * ref::kKVPage * hd);
        }
      }
      if (nk < kBlock / ref::kKVPage)  // close the gap: V pages follow the K pages
        for (int64_t i = 0; i < nk; ++i) pf.page[nk + i] = pf.page[kBlock / ref::kKVPage + i];
      pf.n_pages = 2 * nk;
      pf.lines_per_page = (hd * ref::kKVPage * static_cast<int64_t>(sizeof(T)) + 63) / 64;
    }
    ScoresPaged<R>(qs, kptr, nvec, hd, sc, pf);
    pf.finish();
    const int64_t t_lo = lo > j0 ? lo - j0 : 0;
    for (int r = 0; r < R; ++r) {
      float* x = sc[r];
      if (slope[r] != 0.0f) {
        for (int64_t t = 0; t < n; ++t) x[t] += slope[r] * static_cast<float>(j0 + t - pos);
      }
      for (int64_t t = 0; t < t_lo; ++t) x[t] = neg_inf;
      for (int64_t t = n; t < nv; ++t) x[t] = neg_inf;
      VF vmax = hn::Set(d, neg_inf);
      for (int64_t t = 0; t < nv; t += L) vmax = hn::Max(vmax, hn::LoadU(d, x + t));
      const float bmax = hn::GetLane(hn::MaxOfLanes(d, vmax));
      const float m_new = bmax > m[r] ? bmax : m[r];
      corr[r] = std::exp(m[r] - m_new);
      const VF vm = hn::Set(d, m_new);
      VF vsum = hn::Zero(d);
      for (int64_t t = 0; t < nv; t += L) {
        const VF xv = hn::LoadU(d, x + t);
        const VF e = hn::IfThenElseZero(hn::Gt(xv, hn::Set(d, neg_inf)), hn::Exp(d, hn::Sub(xv, vm)));
        hn::StoreU(e, d, x + t);
        vsum = hn::Add(vsum, e);
      }
      l[r] = l[r] * corr[r] + hn::GetLane(hn::SumOfLanes(d, vsum));
      m[r] = m_new;
    }
    // acc = acc * corr + sum p_t v_t, one page segment at a time (the first applies corr, the rest
    // multiply by 1: the same FMA chain per output lane as one pass over the block).
    bool first = true;
    for (int64_t t = t_lo; t < n;) {
      const int64_t j = j0 + t, slot = j % ref::kKVPage;
      const int64_t seg = n - t < ref::kKVPage - slot ? n - t : ref::kKVPage - slot;
      const T* vseg = v_pages + blocks[j / ref::kKVPage] * page_floats + (kvh * ref::kKVPage + slot) * hd;
      const float* pr[R];
      for (int r = 0; r < R; ++r) pr[r] = sc[r] + t;
      AccumulateV<R>(pr, vseg, hd, hd, seg, first ? corr : one, acc);
      first = false;
      t += seg;
    }
  }
  for (int r = 0; r < R; ++r) {
    const int64_t qo = (row * p.n_heads + h + r) * hd;
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t c = 0; c < hd; ++c) o[qo + c] = acc[r][c] * inv;
  }
}

// F16 pages: 8 values per conversion (vcvtps2ph, round to nearest even: tensor/half.h's f32_to_f16,
// NaN and overflow included); keys scattered to their page columns, values stored whole.
void PagedKvWrite(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim, int64_t pos0,
                  const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  if (kv_dtype == DType::kF16 && head_dim % 8 == 0) {
    const hn::FixedTag<float, 8> d8;
    const hn::Rebind<hwy::float16_t, decltype(d8)> dh;
    const int64_t page_floats = n_kv_heads * head_dim * ref::kKVPage;
    auto* kb = static_cast<hwy::float16_t*>(k_pages);
    auto* vb = static_cast<hwy::float16_t*>(v_pages);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = pos0 + i, page = blocks[j / ref::kKVPage], slot = j % ref::kKVPage;
      for (int64_t h = 0; h < n_kv_heads; ++h) {
        const float* ki = k + (i * n_kv_heads + h) * head_dim;
        const float* vi = v + (i * n_kv_heads + h) * head_dim;
        hwy::float16_t* kp = kb + page * page_floats + h * head_dim * ref::kKVPage + slot;
        hwy::float16_t* vp = vb + page * page_floats + (h * ref::kKVPage + slot) * head_dim;
        for (int64_t c = 0; c < head_dim; c += 8) {
          hn::StoreU(hn::DemoteTo(dh, hn::LoadU(d8, vi + c)), dh, vp + c);
          HWY_ALIGN hwy::float16_t t[8];
          hn::Store(hn::DemoteTo(dh, hn::LoadU(d8, ki + c)), dh, t);
          for (int64_t u = 0; u < 8; ++u) kp[(c + u) * ref::kKVPage] = t[u];
        }
      }
    }
    return;
  }
#endif
  ref::paged_kv_write(k, v, n, n_kv_heads, head_dim, pos0, blocks, k_pages, v_pages, kv_dtype);
}

template <typename T>
void PagedAttentionT(const ref::PagedAttentionParams& p, const float* q, const T* k_pages, const T* v_pages, float* o) {
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t h_begin = p.head_begin, h_end = p.head_end ? p.head_end : p.n_heads;
  const int64_t s_end = p.seq_end ? p.seq_end : p.n_seqs;
  if (h_end <= h_begin) return;
  for (int64_t s = p.seq_begin; s < s_end; ++s) {
    const int64_t n_q = p.q_off[s + 1] - p.q_off[s], n_kv = p.n_kv[s];
    const int64_t i_end = p.q_end && p.q_end < n_q ? p.q_end : n_q;
    for (int64_t kvh = h_begin / group; kvh <= (h_end - 1) / group; ++kvh) {
      const int64_t hb = kvh * group > h_begin ? kvh * group : h_begin;
      const int64_t he = (kvh + 1) * group < h_end ? (kvh + 1) * group : h_end;
      for (int64_t i = p.q_begin; i < i_end; ++i) {
        const int64_t pos = n_kv - n_q + i, hi = pos + 1;
        const int64_t lo = p.window > 0 && pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
        const int64_t row = p.q_off[s] + i;
        const bool last_row = s + 1 == s_end && kvh == (h_end - 1) / group && i + 1 == i_end;
        int64_t h = hb;
        for (; h + 4 <= he; h += 4)
          PagedRows<4, T>(p, q, k_pages, v_pages, p.blocks[s], kvh, row, h, lo, hi, pos, o, last_row && h + 4 == he);
        switch (he - h) {
          case 3: PagedRows<3, T>(p, q, k_pages, v_pages, p.blocks[s], kvh, row, h, lo, hi, pos, o, last_row); break;
          case 2: PagedRows<2, T>(p, q, k_pages, v_pages, p.blocks[s], kvh, row, h, lo, hi, pos, o, last_row); break;
          case 1: PagedRows<1, T>(p, q, k_pages, v_pages, p.blocks[s], kvh, row, h, lo, hi, pos, o, last_row); break;
          default: break;
        }
      }
    }
  }
}

void PagedAttention(const ref::PagedAttentionParams& p, const float* q, const void* k_pages, const void* v_pages,
                    float* o) {
  if (p.kv_dtype == DType::kF16) {
    PagedAttentionT(p, q, static_cast<const hwy::float16_t*>(k_pages), static_cast<const hwy::float16_t*>(v_pages), o);
  } else {
    PagedAttentionT(p, q, static_cast<const float*>(k_pages), static_cast<const float*>(v_pages), o);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace llmkit::cpu::attn
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmkit::cpu {
namespace attn {
HWY_EXPORT(Attention);
HWY_EXPORT(PagedAttention);
HWY_EXPORT(PagedKvWrite);
HWY_EXPORT(AttentionBackward);
}  // namespace attn

void attention(const ref::AttentionParams& p, const float* q, const float* k, const float* v, float* o, float* lse) {
  HWY_DYNAMIC_DISPATCH(attn::Attention)(p, q, k, v, o, lse);
}

void paged_attention(const ref::PagedAttentionParams& p, const float* q, const void* k_pages, const void* v_pages,
                     float* o) {
  HWY_DYNAMIC_DISPATCH(attn::PagedAttention)(p, q, k_pages, v_pages, o);
}

void paged_kv_write(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim, int64_t pos0,
                    const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype) {
  HWY_DYNAMIC_DISPATCH(attn::PagedKvWrite)(k, v, n, n_kv_heads, head_dim, pos0, blocks, k_pages, v_pages, kv_dtype);
}

void attention_backward(const ref::AttentionParams& p, const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  if (!lse) {  // the SIMD path needs the forward's log-sum-exp; without it the reference recomputes it
    ref::attention_backward(p, q, k, v, o, lse, dout, dq, dk, dv);
    return;
  }
  HWY_DYNAMIC_DISPATCH(attn::AttentionBackward)(p, q, k, v, o, lse, dout, dq, dk, dv);
}

}  // namespace llmkit::cpu
#endif  // HWY_ONCE
