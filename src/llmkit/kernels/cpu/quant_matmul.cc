// SIMD matmul with block-quantized weights (Highway, runtime dispatch; see quant_matmul.h).
//
// Scheme (as in ggml): each activation row x[m, K] is quantized once, in SIMD on the calling
// thread, to Q8_0 (legacy weight types) or Q8_K (k-quants) levels, stored widened to int16 in a
// thread-local buffer (scales as ggml's reference quantizers; see quantize_activations), so the
// inner loop is: decode a chunk of weight levels to int16 (sub-block scale folded
// in for k-quants), then one int16 x int16 -> int32 pairwise multiply-add (ReorderWidenMulAccumulate,
// vpmaddwd on AVX2) per chunk and activation row. Each block's int32 sum is scaled once by
// d_w * d_x in float; weight minimums (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) are folded in with the
// activation block sums. Up to 4 activation rows share each decoded weight chunk (prompt batches).
// Parallel over output rows n on ThreadPool::global().
//
// Integer ranges (why int16/int32 never overflow): activations |q| <= 127; weight levels times
// sub-block scale stay within int16 (largest: Q6_K 32 * 128 = 4096); a 256-value super-block sum
// is at most 256 * 4096 * 127 < 2^31.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "llmkit/kernels/cpu/quant_matmul.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cmath>
#include <cstring>
#include <utility>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/quant_i8.h"
#include "llmkit/kernels/cpu/quant_matmul.h"
#include "llmkit/tensor/half.h"

#ifndef LLMKIT_QUANT_MATMUL_ARGS
#define LLMKIT_QUANT_MATMUL_ARGS
namespace llmkit::cpu::qmm {
// Everything one call needs; activations already quantized and widened.
struct Args {
  const float* x;            // [M, K] float activations, quantized into a/a_d/a_s/a_bsums first
  const uint8_t* w;          // [N, row_bytes] weight rows of type wt
  size_t w_row_bytes;
  DType wt;
  int64_t M, N, K;
  int16_t* a;                // [M, K] activation levels
  float* a_d;                // [M, K / block] activation block scales
  float* a_s;                // [M, K / 32] legacy only: d * sum(levels) of each block
  int16_t* a_bsums;          // [M, K / 16] k-quants only: sums of 16 levels
  float* y;                  // [M, N]
};
}  // namespace llmkit::cpu::qmm
#endif

HWY_BEFORE_NAMESPACE();
namespace llmkit::cpu::qmm::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using D16 = hn::CappedTag<int16_t, 16>;  // 16 lanes on AVX2/AVX3, 8 on 128-bit targets
using DU16 = hn::RebindToUnsigned<D16>;
using DU8 = hn::Rebind<uint8_t, D16>;
using DI8 = hn::Rebind<int8_t, D16>;
using D32 = hn::Repartition<int32_t, D16>;
using DF = hn::Repartition<float, D16>;
using V16 = hn::Vec<D16>;
using VU16 = hn::Vec<DU16>;

// f16 -> f32 with the target's conversion instruction (F16C vcvtph2ps on AVX2), not the branchy
// scalar half.h routine: one conversion per 32-value block is a visible share of the inner loop.
HWY_INLINE float hf(const uint16_t& h) {
  const hn::CappedTag<float, 1> d1;
  const hn::Rebind<hwy::float16_t, decltype(d1)> dh;
  return hn::GetLane(hn::PromoteTo(d1, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(&h))));
}

HWY_INLINE VU16 load_u8(const uint8_t* p) { return hn::PromoteTo(DU16(), hn::LoadU(DU8(), p)); }
HWY_INLINE V16 as_i16(VU16 v) { return hn::BitCast(D16(), v); }

// Lane k holds 1 << k: tests bit (k + offset) of a packed bit field.
HWY_INLINE VU16 lane_bits() {
  alignas(64) static constexpr uint16_t kBits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  return hn::Load(DU16(), kBits);
}

// ---- Decoders: one weight block; chunk(i) = levels i .. i + Lanes(D16) - 1 as int16 (k-quants:
// times the sub-block scale); d = weight scale; correction(...) = float term added per block.

struct Q4_0Blk {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  const BlockQ4_0* b;
  float d;
  explicit Q4_0Blk(const uint8_t* p) : b(reinterpret_cast<const BlockQ4_0*>(p)), d(hf(b->d)) {}
  HWY_INLINE V16 chunk(size_t i) const {
    const VU16 v = load_u8(b->qs + (i & 15));
    const VU16 q = i < 16 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v);
    return hn::Sub(as_i16(q), hn::Set(D16(), 8));
  }
  float correction(const Args&, int64_t, int64_t, float) const { return 0.0f; }
};

struct Q4_1Blk {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  const BlockQ4_1* b;
  float d;
  explicit Q4_1Blk(const uint8_t* p) : b(reinterpret_cast<const BlockQ4_1*>(p)), d(hf(b->d)) {}
  HWY_INLINE V16 chunk(size_t i) const {
    const VU16 v = load_u8(b->qs + (i & 15));
    return as_i16(i < 16 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v));
  }
  float correction(const Args& A, int64_t m, int64_t blk, float) const {
    return hf(b->m) * A.a_s[m * (A.K / 32) + blk];
  }
};

// The 5th bit of level i sits in bit i of the 32-bit qh.
HWY_INLINE VU16 q5_high(uint32_t qh, size_t i) {
  const VU16 bits = lane_bits();
  const VU16 v = hn::Set(DU16(), static_cast<uint16_t>(qh >> i));
  return hn::And(hn::VecFromMask(DU16(), hn::TestBit(v, bits)), hn::Set(DU16(), 16));
}

struct Q5_0Blk {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = sizeof(BlockQ5_0);
  const BlockQ5_0* b;
  float d;
  uint32_t qh;
  explicit Q5_0Blk(const uint8_t* p) : b(reinterpret_cast<const BlockQ5_0*>(p)), d(hf(b->d)) {
    std::memcpy(&qh, b->qh, 4);
  }
  HWY_INLINE V16 chunk(size_t i) const {
    const VU16 v = load_u8(b->qs + (i & 15));
    const VU16 lo = i < 16 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v);
    return hn::Sub(as_i16(hn::Or(lo, q5_high(qh, i))), hn::Set(D16(), 16));
  }
  float correction(const Args&, int64_t, int64_t, float) const { return 0.0f; }
};

struct Q5_1Blk {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = sizeof(BlockQ5_1);
  const BlockQ5_1* b;
  float d;
  uint32_t qh;
  explicit Q5_1Blk(const uint8_t* p) : b(reinterpret_cast<const BlockQ5_1*>(p)), d(hf(b->d)) {
    std::memcpy(&qh, b->qh, 4);
  }
  HWY_INLINE V16 chunk(size_t i) const {
    const VU16 v = load_u8(b->qs + (i & 15));
    const VU16 lo = i < 16 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v);
    return as_i16(hn::Or(lo, q5_high(qh, i)));
  }
  float correction(const Args& A, int64_t m, int64_t blk, float) const {
    return hf(b->m) * A.a_s[m * (A.K / 32) + blk];
  }
};

struct Q8_0Blk {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  const BlockQ8_0* b;
  float d;
  explicit Q8_0Blk(const uint8_t* p) : b(reinterpret_cast<const BlockQ8_0*>(p)), d(hf(b->d)) {}
  HWY_INLINE V16 chunk(size_t i) const { return hn::PromoteTo(D16(), hn::LoadU(DI8(), b->qs + i)); }
  float correction(const Args&, int64_t, int64_t, float) const { return 0.0f; }
};

// k-quant levels: element e of a Q2_K/Q3_K super-block is bits 2*((e%128)/32) of qs[32*(e/128) + e%32].
HWY_INLINE VU16 two_bits(const uint8_t* qs, size_t i) {
  const VU16 v = load_u8(qs + 32 * (i / 128) + (i % 32));
  return hn::And(hn::ShiftRightSame(v, static_cast<int>(2 * ((i % 128) / 32))), hn::Set(DU16(), 3));
}

// Sum over sub-blocks of (6-bit or 4-bit min) x (activation sums): the min term of Q2_K/Q4_K/Q5_K.
HWY_INLINE float min_dot_16(const uint8_t* mins16, const int16_t* bsums) {  // Q2_K: 16 sub-blocks
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += (mins16[j] >> 4) * bsums[j];
  return static_cast<float>(s);
}

struct Q2_KBlk {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = sizeof(BlockQ2_K);
  const BlockQ2_K* b;
  float d;
  explicit Q2_KBlk(const uint8_t* p) : b(reinterpret_cast<const BlockQ2_K*>(p)), d(hf(b->d)) {}
  HWY_INLINE V16 chunk(size_t i) const {
    return hn::Mul(as_i16(two_bits(b->qs, i)), hn::Set(D16(), static_cast<int16_t>(b->scales[i / 16] & 0xF)));
  }
  float correction(const Args& A, int64_t m, int64_t blk, float da) const {
    return -hf(b->dmin) * da * min_dot_16(b->scales, A.a_bsums + (m * (A.K / 16) + blk * 16));
  }
};

struct Q3_KBlk {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = sizeof(BlockQ3_K);
  const BlockQ3_K* b;
  float d;
  int8_t sc[16];
  explicit Q3_KBlk(const uint8_t* p) : b(reinterpret_cast<const BlockQ3_K*>(p)), d(hf(b->d)) {
    for (int j = 0; j < 16; ++j) {  // 4 low bits from scales[0..7], 2 high bits from scales[8..11]
      const int lo = j < 8 ? (b->scales[j] & 0xF) : (b->scales[j - 8] >> 4);
      const int hi = (b->scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      sc[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
    }
  }
  HWY_INLINE V16 chunk(size_t i) const {
    const VU16 q = two_bits(b->qs, i);
    const VU16 hm = load_u8(b->hmask + (i % 32));
    const VU16 bit = hn::Set(DU16(), static_cast<uint16_t>(1u << (i / 32)));
    // level = q - 4 unless the high bit is set
    const VU16 sub = hn::AndNot(hn::VecFromMask(DU16(), hn::TestBit(hm, bit)), hn::Set(DU16(), 4));
    return hn::Mul(hn::Sub(as_i16(q), as_i16(sub)), hn::Set(D16(), sc[i / 16]));
  }
  float correction(const Args&, int64_t, int64_t, float) const { return 0.0f; }
};

// Q4_K/Q5_K: 8 sub-blocks of 32 with 6-bit (scale, min); element e is the low (e%64 < 32) or high
// nibble of qs[32*(e/64) + e%32].
struct K4Scales {
  uint8_t sc[8], mn[8];
  explicit K4Scales(const uint8_t* s) {
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
      } else {
        sc[j] = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        mn[j] = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
      }
    }
  }
  float min_dot(const int16_t* bsums) const {
    int32_t s = 0;
    for (int j = 0; j < 8; ++j) s += mn[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    return static_cast<float>(s);
  }
};

HWY_INLINE VU16 nibble_k(const uint8_t* qs, size_t i) {
  const VU16 v = load_u8(qs + 32 * (i / 64) + (i % 32));
  return (i % 64) < 32 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v);
}

struct Q4_KBlk {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = sizeof(BlockQ4_K);
  const BlockQ4_K* b;
  float d;
  K4Scales s;
  explicit Q4_KBlk(const uint8_t* p) : b(reinterpret_cast<const BlockQ4_K*>(p)), d(hf(b->d)), s(b->scales) {}
  HWY_INLINE V16 chunk(size_t i) const {
    return hn::Mul(as_i16(nibble_k(b->qs, i)), hn::Set(D16(), static_cast<int16_t>(s.sc[i / 32])));
  }
  float correction(const Args& A, int64_t m, int64_t blk, float da) const {
    return -hf(b->dmin) * da * s.min_dot(A.a_bsums + (m * (A.K / 16) + blk * 16));
  }
};

struct Q5_KBlk {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = sizeof(BlockQ5_K);
  const BlockQ5_K* b;
  float d;
  K4Scales s;
  explicit Q5_KBlk(const uint8_t* p) : b(reinterpret_cast<const BlockQ5_K*>(p)), d(hf(b->d)), s(b->scales) {}
  HWY_INLINE V16 chunk(size_t i) const {
    // 5th bit: bit 2*(e/64) + (e%64 >= 32) of qh[e%32]
    const VU16 h = load_u8(b->qh + (i % 32));
    const int shift = static_cast<int>(2 * (i / 64) + ((i % 64) >= 32 ? 1 : 0));
    const VU16 hb = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, shift), hn::Set(DU16(), 1)));
    return hn::Mul(as_i16(hn::Or(nibble_k(b->qs, i), hb)), hn::Set(D16(), static_cast<int16_t>(s.sc[i / 32])));
  }
  float correction(const Args& A, int64_t m, int64_t blk, float da) const {
    return -hf(b->dmin) * da * s.min_dot(A.a_bsums + (m * (A.K / 16) + blk * 16));
  }
};

struct Q6_KBlk {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = sizeof(BlockQ6_K);
  const BlockQ6_K* b;
  float d;
  explicit Q6_KBlk(const uint8_t* p) : b(reinterpret_cast<const BlockQ6_K*>(p)), d(hf(b->d)) {}
  HWY_INLINE V16 chunk(size_t i) const {
    // e: half n = e/128, quarter q = (e%128)/32, l = e%32. Low 4 bits: ql[64n + l + 32*(q&1)],
    // low nibble for q < 2; high 2 bits: bits 2q of qh[32n + l]; level - 32.
    const size_t n = i / 128, q = (i % 128) / 32, l = i % 32;
    const VU16 v = load_u8(b->ql + 64 * n + l + 32 * (q & 1));
    const VU16 lo = q < 2 ? hn::And(v, hn::Set(DU16(), 15)) : hn::ShiftRight<4>(v);
    const VU16 h = load_u8(b->qh + 32 * n + l);
    const VU16 hi = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, static_cast<int>(2 * q)), hn::Set(DU16(), 3)));
    const V16 lv = hn::Sub(as_i16(hn::Or(lo, hi)), hn::Set(D16(), 32));
    return hn::Mul(lv, hn::Set(D16(), static_cast<int16_t>(b->scales[i / 16])));
  }
  float correction(const Args&, int64_t, int64_t, float) const { return 0.0f; }
};

template <class Blk, int R>
HWY_INLINE void chunk_step(const Blk& w, size_t i, const int16_t* const* ap, hn::Vec<D32>* s0, hn::Vec<D32>* s1) {
  const D16 d16;
  const D32 d32;
  const V16 wv = w.chunk(i);
  for (int r = 0; r < R; ++r) s0[r] = hn::ReorderWidenMulAccumulate(d32, wv, hn::LoadU(d16, ap[r] + i), s0[r], s1[r]);
}

template <class Blk, int R, size_t... I>
HWY_INLINE void chunks_unrolled(const Blk& w, const int16_t* const* ap, hn::Vec<D32>* s0, hn::Vec<D32>* s1,
                                std::index_sequence<I...>) {
  constexpr size_t kLanes = hn::MaxLanes(D16());
  (chunk_step<Blk, R>(w, I * kLanes, ap, s0, s1), ...);
}

// One weight block against R activation rows: int32 block sums, scaled by d_w * d_x into acc[r].
template <class Blk, int R>
HWY_INLINE void block_step(const Args& A, const uint8_t* wb, int64_t blk, int64_t m0, hn::Vec<DF>* acc, float* corr) {
  const D16 d16;
  const D32 d32;
  const DF df;
  const size_t lanes = hn::Lanes(d16);
  const int64_t nb = A.K / Blk::kBlock;
  const Blk w(wb);
  hn::Vec<D32> s0[R], s1[R];
  const int16_t* ap[R];
  for (int r = 0; r < R; ++r) {
    s0[r] = hn::Zero(d32);
    s1[r] = hn::Zero(d32);
    ap[r] = A.a + (m0 + r) * A.K + blk * Blk::kBlock;
  }
  constexpr size_t kLanes = hn::MaxLanes(D16());
  if constexpr (kLanes >= 8) {
    // Unrolled at compile time so every index computation and nibble/shift choice in chunk(i)
    // folds to a constant (measured on Q6_K: the runtime loop spent its time on index arithmetic).
    chunks_unrolled<Blk, R>(w, ap, s0, s1, std::make_index_sequence<Blk::kBlock / kLanes>());
  } else {
    for (size_t i = 0; i < static_cast<size_t>(Blk::kBlock); i += lanes) chunk_step<Blk, R>(w, i, ap, s0, s1);
  }
  for (int r = 0; r < R; ++r) {
    const float da = A.a_d[(m0 + r) * nb + blk];
    acc[r] = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0[r], s1[r])), hn::Set(df, w.d * da), acc[r]);
    corr[r] += w.correction(A, m0 + r, blk, da);
  }
}

// y[m0 .. m0+R-1, n] for one weight row n: the decoded chunk is shared by the R activation rows.
// Even and odd blocks go to separate float accumulators: with one, the FMA latency chain (4-5
// cycles per block) bounded the R = 1 decode loop.
template <class Blk, int R>
HWY_INLINE void row_dot(const Args& A, int64_t n, int64_t m0) {
  const DF df;
  const int64_t nb = A.K / Blk::kBlock;
  const uint8_t* wb = A.w + static_cast<size_t>(n) * A.w_row_bytes;
  hn::Vec<DF> acc0[R], acc1[R];
  float corr[R];
  for (int r = 0; r < R; ++r) {
    acc0[r] = hn::Zero(df);
    acc1[r] = hn::Zero(df);
    corr[r] = 0.0f;
  }
  int64_t blk = 0;
  for (; blk + 2 <= nb; blk += 2, wb += 2 * Blk::kBytes) {
    block_step<Blk, R>(A, wb, blk, m0, acc0, corr);
    block_step<Blk, R>(A, wb + Blk::kBytes, blk + 1, m0, acc1, corr);
  }
  if (blk < nb) block_step<Blk, R>(A, wb, blk, m0, acc0, corr);
  for (int r = 0; r < R; ++r) {
    A.y[(m0 + r) * A.N + n] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0[r], acc1[r]))) + corr[r];
  }
}

template <class Blk>
void rows(const Args& A, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= A.M; m += 4) row_dot<Blk, 4>(A, n, m);
    switch (A.M - m) {
      case 3: row_dot<Blk, 3>(A, n, m); break;
      case 2: row_dot<Blk, 2>(A, n, m); break;
      case 1: row_dot<Blk, 1>(A, n, m); break;
      default: break;
    }
  }
}

// ---- Activation quantization (once per call, on the calling thread). Same scales as ggml's
// reference quantize_row_q8_0 (d stored as f16) and quantize_row_q8_K (d = max / -127, f32); the
// rounding is the SIMD Round (ties to even; the reference q8_0 rounds ties away from zero), a
// difference covered by the error bound and never seen by the weights.
using DF8 = hn::CappedTag<float, 8>;
using DI32_8 = hn::RebindToSigned<DF8>;
using DI16_8 = hn::Rebind<int16_t, DF8>;

HWY_INLINE float abs_max(const float* x, int64_t n) {
  const DF8 df;
  auto m = hn::Zero(df);
  for (int64_t i = 0; i < n; i += static_cast<int64_t>(hn::Lanes(df))) m = hn::Max(m, hn::Abs(hn::LoadU(df, x + i)));
  return hn::GetLane(hn::MaxOfLanes(df, m));
}

// q = round(x * scale) as int16 into a[0..n); returns sum(q) over every 16 values into sums16 when given.
HWY_INLINE int32_t levels(const float* x, int64_t n, float scale, int32_t clamp_hi, int16_t* a, int16_t* sums16) {
  const DF8 df;
  const DI32_8 di;
  const DI16_8 d16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto vs = hn::Set(df, scale);
  const auto hi = hn::Set(di, clamp_hi);
  auto total = hn::Zero(di);
  auto part = hn::Zero(di);
  for (int64_t i = 0; i < n; i += lanes) {
    const auto q = hn::Min(hn::NearestInt(hn::Mul(hn::LoadU(df, x + i), vs)), hi);
    hn::StoreU(hn::DemoteTo(d16, q), d16, a + i);
    part = hn::Add(part, q);
    if (sums16 && (i + lanes) % 16 == 0) {
      sums16[i / 16] = static_cast<int16_t>(hn::GetLane(hn::SumOfLanes(di, part)));
      total = hn::Add(total, part);
      part = hn::Zero(di);
    }
  }
  total = hn::Add(total, part);
  return hn::GetLane(hn::SumOfLanes(di, total));
}

void quantize_activations(const Args& A) {
  const bool kq = A.a_bsums != nullptr;
  const int64_t bs = kq ? kQK_K : kQK, nb = A.K / bs;
  for (int64_t m = 0; m < A.M; ++m) {
    const float* x = A.x + m * A.K;
    int16_t* a = A.a + m * A.K;
    for (int64_t b = 0; b < nb; ++b, x += bs, a += bs) {
      const float amax = abs_max(x, bs);
      if (kq) {
        int16_t* bsums = A.a_bsums + m * (A.K / 16) + b * 16;
        if (amax == 0.0f) {
          std::memset(a, 0, bs * sizeof(int16_t));
          std::memset(bsums, 0, 16 * sizeof(int16_t));
          A.a_d[m * nb + b] = 0.0f;
          continue;
        }
        float max = 0.0f;  // the first value of largest magnitude, with its sign
        for (int64_t j = 0; j < bs; ++j) {
          if (std::fabs(x[j]) == amax) { max = x[j]; break; }
        }
        const float iscale = -127.f / max;
        levels(x, bs, iscale, 127, a, bsums);
        A.a_d[m * nb + b] = 1 / iscale;
      } else {
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const float dq = f16_to_f32(f32_to_f16(d));
        const int32_t sum = levels(x, bs, id, 127, a, nullptr);
        A.a_d[m * nb + b] = dq;
        A.a_s[m * nb + b] = dq * static_cast<float>(sum);
      }
    }
  }
}

// Splits the N output rows over the global pool. Grain 16: 576 rows split 288/288 on 2 threads,
// and a chunk (>= 16 rows x K) is long enough that dispatch overhead (< 1 us) stays negligible.
void QuantMatmulRows(const Args& A) {  // NOLINT(readability-identifier-naming): Highway export
  void (*fn)(const Args&, int64_t, int64_t) = nullptr;
  switch (A.wt) {
    case DType::kQ4_0: fn = rows<Q4_0Blk>; break;
    case DType::kQ4_1: fn = rows<Q4_1Blk>; break;
    case DType::kQ5_0: fn = rows<Q5_0Blk>; break;
    case DType::kQ5_1: fn = rows<Q5_1Blk>; break;
    case DType::kQ8_0: fn = rows<Q8_0Blk>; break;
    case DType::kQ2_K: fn = rows<Q2_KBlk>; break;
    case DType::kQ3_K: fn = rows<Q3_KBlk>; break;
    case DType::kQ4_K: fn = rows<Q4_KBlk>; break;
    case DType::kQ5_K: fn = rows<Q5_KBlk>; break;
    case DType::kQ6_K: fn = rows<Q6_KBlk>; break;
    default: return;
  }
  quantize_activations(A);
  ThreadPool::global().parallel_for(A.N, 16, [&](int64_t b, int64_t e) { fn(A, b, e); });
}

}  // namespace llmkit::cpu::qmm::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/kernels/ref/quant.h"

namespace llmkit::cpu {
namespace qmm {
HWY_EXPORT(QuantMatmulRows);

// Thread-local activation buffers, grown on demand and then reused (no allocation per call once
// warm).
struct ActBuffers {
  std::vector<int16_t> a, bsums;
  std::vector<float> d, s;
};

bool is_k_quant(DType t) {
  return t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ6_K;
}

// Dispatch from inside namespace qmm: when only one target is compiled (an Arm build with NEON
// alone), HWY_DYNAMIC_DISPATCH becomes static dispatch, which names N_NEON relative to here.
void run_rows(const Args& args) { HWY_DYNAMIC_DISPATCH(QuantMatmulRows)(args); }
}  // namespace qmm

bool quant_matmul_supported(DType wt) {
  switch (wt) {
    case DType::kQ4_0: case DType::kQ4_1: case DType::kQ5_0: case DType::kQ5_1: case DType::kQ8_0:
    case DType::kQ2_K: case DType::kQ3_K: case DType::kQ4_K: case DType::kQ5_K: case DType::kQ6_K:
    case DType::kQ4_0_R8: case DType::kQ4_1_R8: case DType::kQ8_0_R8:
      return true;
    default:
      return false;
  }
}

void quant_matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  LLMKIT_ASSERT(quant_matmul_supported(wt), "quant_matmul: ", dtype_name(wt), " has no SIMD kernel; check quant_matmul_supported first");
  LLMKIT_DASSERT(K % block_size(wt) == 0);
  if (M <= 0 || N <= 0) return;
  if (i8_matmul_supported(wt) && i8_matmul_available()) {  // vpmaddubsw kernel (quant_i8.h)
    i8_matmul(x, w, wt, y, M, N, K);
    return;
  }
  if (is_r8(wt)) {
    // The interleaved layouts are made only where the int8 kernel runs (ops::repack_r8); a target
    // without it (a test restricting the SIMD targets) gets the base layout back, once per call.
    thread_local std::vector<uint8_t> rows;
    const DType base = r8_base(wt);
    const size_t rb = row_bytes(base, K);
    rows.resize(rb * static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) ref::unpack_r8_row(base, w, n, K, rows.data() + static_cast<size_t>(n) * rb);
    quant_matmul(x, rows.data(), base, y, M, N, K);
    return;
  }
  thread_local qmm::ActBuffers buf;
  const bool kq = qmm::is_k_quant(wt);
  const int64_t nb = K / (kq ? kQK_K : kQK);
  if (buf.a.size() < static_cast<size_t>(M * K)) buf.a.resize(static_cast<size_t>(M * K));
  if (buf.d.size() < static_cast<size_t>(M * nb)) buf.d.resize(static_cast<size_t>(M * nb));
  if (kq && buf.bsums.size() < static_cast<size_t>(M * K / 16)) buf.bsums.resize(static_cast<size_t>(M * K / 16));
  if (!kq && buf.s.size() < static_cast<size_t>(M * nb)) buf.s.resize(static_cast<size_t>(M * nb));
  const qmm::Args args{.x = x, .w = static_cast<const uint8_t*>(w), .w_row_bytes = row_bytes(wt, K), .wt = wt,
                       .M = M, .N = N, .K = K, .a = buf.a.data(), .a_d = buf.d.data(),
                       .a_s = kq ? nullptr : buf.s.data(), .a_bsums = kq ? buf.bsums.data() : nullptr, .y = y};
  qmm::run_rows(args);
}

}  // namespace llmkit::cpu
#endif  // HWY_ONCE
