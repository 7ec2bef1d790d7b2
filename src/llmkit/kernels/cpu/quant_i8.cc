// int8 matmul for Q4_0 / Q4_1 / Q8_0 weights (see quant_i8.h), AVX2 intrinsics inside the Highway
// per-target compilation (other targets fall back to quant_matmul.cc's int16 kernel).
//
// Activations: each row x[m, :] is quantized per 32-value block exactly as quant_matmul.cc does
// (d = amax / 127 rounded to f16, levels round(x / d) as int8; Q4_1 also keeps d * sum(levels),
// Q4_0 the sum of levels), once per call, rows split over the pool.
//
// Weights are taken 8 rows at a time (one output vector y[m, n0 .. n0+7]), from the file's rows
// (RowSrc) or from one group of the rows-interleaved-by-8 layout made at load (R8Src, dtype.h's
// *_R8 types: same vectors, one memory stream, 8 scales in one load). Per block of 32:
//   dot    vpmaddubsw(u8 weight levels, i8 activation levels) -> 16 x i16, vpmaddwd with ones ->
//          8 x i32 partial sums; Q8_0's signed levels go through |w| and sign(x, w) (as ggml).
//   reduce the 8 rows' partial-sum vectors become one vector of 8 exact block sums (hadd tree).
//   scale  acc = fma(float(sum), d_w * d_x, acc)  [Q4_0: sum - 8 sum(x levels) first;
//          Q4_1: then acc = fma(m_w, d_x sum(x levels), acc)], lane n owning output row n.
// Every float operation of y[m, n] is the same whatever M is; M only decides where the 8 rows'
// decoded levels come from: decoded in registers per block for a few rows (decode), or decoded
// once per tile into an L1 scratch and reused by every activation row (prompt batches; on
// AVX512-VNNI the scratch holds the levels transposed, one row per lane: TileRowLanes).
//
// Integer ranges: a u8 x i8 pair sum is at most 2 * 15 * 127 (Q4) or 2 * 128 * 127 = 32512 (Q8_0)
// < 2^15, so vpmaddubsw never saturates; a block sum is at most 32 * 128 * 127 < 2^31.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "llmkit/kernels/cpu/quant_i8.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/quant_i8.h"
#include "llmkit/tensor/half.h"

#ifndef LLMKIT_QUANT_I8_ONCE
#define LLMKIT_QUANT_I8_ONCE
namespace llmkit::cpu::i8 {

// Up to this many activation rows decode the weights in registers per block; more rows share an
// L1 scratch of decoded levels (measured on SmolLM2 shapes: the scratch's extra store + load per
// block costs more than it saves until the levels are reused by several rows).
constexpr int64_t kDirectMaxM = 4;
// Batches of up to kMaxPassesM * kDirectMaxM rows run as register passes of <= 4 rows per tile.
constexpr int64_t kMaxPassesM = 4;
// Activation rows per pass over a weight tile: 64 rows of K <= 4096 int8 levels stay in L2 while
// every tile of the thread's range reuses them.
constexpr int64_t kRowsPerPass = 64;
// Up to this many rows (decode and serving batches) a thread's tiles are one contiguous range, so the
// weights' prefetch stream runs through it unbroken (parallel_for's 4 shares per thread restart it).
constexpr int64_t kServeMaxM = 16;

template <typename T>
struct Buf {
  hwy::AlignedFreeUniquePtr<T[]> p;
  size_t cap = 0;
  T* get(size_t n) {
    if (n > cap) {
      p = hwy::AllocateAligned<T>(n);
      cap = n;
    }
    return p.get();
  }
};

}  // namespace llmkit::cpu::i8
#endif

HWY_BEFORE_NAMESPACE();
namespace llmkit::cpu::i8::HWY_NAMESPACE {

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2

// From this many rows on, AVX512-VNNI runs serving batches through the transposed L1 scratch
// (TileRowLanes) rather than register passes: bench_quant batch, 1536 x 576, one Zen 4 thread,
// after the scratch's transpose became 16 shuffles: M = 8 Q4_0 87-90 -> 74-75 us, Q8_0 110-113 ->
// 80-81; M = 5 Q4_0 65 -> 61 (register passes -> scratch). Up to 4 rows decode in registers
// (M = 2, 4 through the scratch: 29-32 -> 40-41 us, 45-47 -> 50-52).
// On AVX2 the nibble types (Q4_0, Q4_1) take the same scratch from 5 rows on: a block's 8 vpmaddubsw
// pair sums of one row fit int16 (8 x 2 x 15 x 127 = 30480), so its row sums take one vpmaddwd and
// no reduction. Q8_0's do not fit (|w| <= 128): it keeps register passes of <= 4 rows up to
// kMaxPassesM * kDirectMaxM rows, and the untransposed scratch beyond.
template <DType T>
constexpr bool kRowLanes = HWY_TARGET <= HWY_AVX3_DL || T != DType::kQ8_0;
template <DType T>
constexpr int64_t kRowLanesMinM = kRowLanes<T> ? kDirectMaxM + 1 : kMaxPassesM * kDirectMaxM + 1;

// Quantized activations of one call.
struct Acts {
  int8_t* q;     // [M, K] levels
  float* d;      // [M, nb] block scales (f16-rounded)
  float* dsum;   // [M, nb] d * sum(levels)            (Q4_1)
  int32_t* s8;   // [M, nb] 8 * sum(levels)            (Q4_0)
  int64_t K, nb;
  // The same values of rows [0, M / 8 * 8) regrouped by 8 rows (AVX512-VNNI batches only, else
  // null): group g, block b holds the 8 rows' levels at qg + (g * nb + b) * 256 + r * 32 and their
  // d, dsum, s8 at [(g * nb + b) * 8 + r], so an 8-row pass addresses all of them from one pointer.
  int8_t* qg = nullptr;
  float *dg = nullptr, *dsumg = nullptr;
  int32_t* s8g = nullptr;
};

thread_local Buf<int8_t> t_q, t_qg;
thread_local Buf<float> t_d, t_dsum, t_dg, t_dsumg;
thread_local Buf<int32_t> t_s8, t_s8g;

thread_local Buf<uint8_t> t_w;     // scratch tile: [nb][8 rows][32 levels]
thread_local Buf<float> t_wd, t_wm;  // [nb][8] weight scales and minimums

// Rows [m0, m1) of x: levels and scales (quant_matmul.cc's quantize_activations, legacy branch),
// into a's row-major arrays and, for rows below m_grouped (a.qg set), its 8-row groups too.
void QuantizeRows(const float* x, int64_t K, int64_t m0, int64_t m1, const Acts& a, int64_t m_grouped) {
  int8_t* q = a.q;
  float *dd = a.d, *dsum = a.dsum;
  int32_t* s8 = a.s8;
  const int64_t nb = K / 32;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i hi = _mm256_set1_epi32(127);
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + m * K + b * 32;
      __m256 v[4];
      __m256 amax = _mm256_setzero_ps();
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_loadu_ps(xb + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
      }
      __m128 a4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
      a4 = _mm_max_ps(a4, _mm_movehl_ps(a4, a4));
      a4 = _mm_max_ss(a4, _mm_movehdup_ps(a4));
      const float d = _mm_cvtss_f32(a4) / 127;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      const float dq = f16_to_f32(f32_to_f16(d));
      const __m256 vid = _mm256_set1_ps(id);
      __m256i l[4];
      __m256i sum = _mm256_setzero_si256();
      for (int i = 0; i < 4; ++i) {
        l[i] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid)), hi);  // round to nearest even
        sum = _mm256_add_epi32(sum, l[i]);
      }
      // int32 -> int8 keeping order: packs interleave 128-bit lanes, a dword permute undoes it.
      const __m256i p16a = _mm256_packs_epi32(l[0], l[1]), p16b = _mm256_packs_epi32(l[2], l[3]);
      const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
      const __m256i ordered = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + m * K + b * 32), ordered);
      const int64_t gi = ((m / 8) * nb + b) * 8 + m % 8;  // this row's slot in its group's block b
      if (m < m_grouped) _mm256_store_si256(reinterpret_cast<__m256i*>(a.qg + gi * 32), ordered);
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
      const int32_t s = _mm_cvtsi128_si32(s4);
      dd[m * nb + b] = dq;
      dsum[m * nb + b] = dq * static_cast<float>(s);
      s8[m * nb + b] = 8 * s;
      if (m < m_grouped) {
        a.dg[gi] = dq;
        a.dsumg[gi] = dq * static_cast<float>(s);
        a.s8g[gi] = 8 * s;
      }
    }
  }
}

template <DType T>
constexpr size_t kBlockBytes = T == DType::kQ8_0 ? 34 : (T == DType::kQ4_1 ? 20 : 18);

// The levels of block b of the 8 rows as 8 vectors of bytes, rows i and i + 4 paired in one
// vector: w[2i] = levels 0..15 of row i | of row i + 4, w[2i + 1] = their levels 16..31 (Q4_0/Q4_1:
// the low and high nibbles of one 16-byte load per row; Q8_0: the two halves of the 32 bytes).
template <DType T>
HWY_INLINE void Levels8(const uint8_t* const* rows, int64_t block_off, __m256i* w) {
  if constexpr (T == DType::kQ8_0) {
    for (int i = 0; i < 4; ++i) {
      const uint8_t* a = rows[i] + block_off + 2;
      const uint8_t* b = rows[i + 4] + block_off + 2;
      w[2 * i] = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b), reinterpret_cast<const __m128i*>(a));
      w[2 * i + 1] =
          _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b + 16), reinterpret_cast<const __m128i*>(a + 16));
    }
  } else {
    constexpr int64_t kQs = T == DType::kQ4_1 ? 4 : 2;
    const __m256i mask = _mm256_set1_epi8(15);
    for (int i = 0; i < 4; ++i) {
      const __m256i raw = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(rows[i + 4] + block_off + kQs),
                                              reinterpret_cast<const __m128i*>(rows[i] + block_off + kQs));
      w[2 * i] = _mm256_and_si256(raw, mask);
      w[2 * i + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
    }
  }
}

// Lane i = the sum of the 4 lanes of row i in p[], where p[i] holds row i in its low 128-bit half
// and row i + 4 in its high half. Unpacks and adds: vphaddd (2 cycles per instruction on Zen 3)
// bounded the Q8_0 prompt kernel when the 8 rows were reduced with 6 of them.
HWY_INLINE __m256i Reduce4x2(const __m256i* p) {
  const __m256i s01 = _mm256_add_epi32(_mm256_unpacklo_epi32(p[0], p[1]), _mm256_unpackhi_epi32(p[0], p[1]));
  const __m256i s23 = _mm256_add_epi32(_mm256_unpacklo_epi32(p[2], p[3]), _mm256_unpackhi_epi32(p[2], p[3]));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

#if HWY_TARGET <= HWY_AVX3_DL
// acc + per-lane sums of 4 u8 x i8 products, EVEX-encoded (AVX512-VNNI + VL). Not the intrinsic:
// Highway's AVX3_DL target also enables AVX-VNNI, for which GCC emits the VEX form of the same
// instruction, which Zen 4 (AVX512-VNNI without AVX-VNNI) rejects as illegal.
HWY_INLINE __m256i DpBusd(__m256i acc, __m256i u8, __m256i i8) {
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u8), "v"(i8));
  return acc;
}
// acc + per-lane sums of 4 u8 x i8 products of u8 with the 4 bytes at p broadcast to every lane
// (EVEX embedded broadcast: one load-op instead of a broadcast and the product).
HWY_INLINE __m256i DpBusdBcast(__m256i acc, __m256i u8, const int8_t* p) {
  asm("vpdpbusd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*reinterpret_cast<const int32_t*>(p)));
  return acc;
}
#endif

// The exact integer dot products of one block of the 8 rows (levels w from Levels8) with the 32
// activation levels at xp: lane i = row i. Q8_0 may pass wabs[i] = |w[i]| (the L1 scratch keeps
// it, so prompt rows skip one op per vector).
template <DType T>
HWY_INLINE __m256i BlockSums(const __m256i* w, const int8_t* xp, const __m256i* wabs = nullptr) {
  const __m256i ones = _mm256_set1_epi16(1);
  // Both 128-bit halves see the same 16 activation levels.
  const __m256i xl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xp)));
  const __m256i xh = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + 16)));
  __m256i p[4];  // p[i]: lanes 0..3 partial sums of row i, lanes 4..7 of row i + 4
#if HWY_TARGET <= HWY_AVX3_DL
  // AVX-512 VNNI (Ice Lake, Zen 4 and later): vpdpbusd sums four u8 x i8 products straight into
  // each int32 lane, one instruction for vpmaddubsw + vpmaddwd. The sums are the same integers, so
  // results are bitwise those of the AVX2 path.
  for (int i = 0; i < 4; ++i) {
    const __m256i lo = w[2 * i], hi = w[2 * i + 1];
    if constexpr (T == DType::kQ8_0) {
      const __m256i al = wabs ? wabs[2 * i] : _mm256_abs_epi8(lo), ah = wabs ? wabs[2 * i + 1] : _mm256_abs_epi8(hi);
      p[i] = DpBusd(DpBusd(_mm256_setzero_si256(), al, _mm256_sign_epi8(xl, lo)), ah, _mm256_sign_epi8(xh, hi));
    } else {
      p[i] = DpBusd(DpBusd(_mm256_setzero_si256(), lo, xl), hi, xh);
    }
  }
  (void)ones;
  return Reduce4x2(p);
#endif
  for (int i = 0; i < 4; ++i) {
    const __m256i lo = w[2 * i], hi = w[2 * i + 1];
    if constexpr (T == DType::kQ8_0) {
      // Signed x signed through |w| and sign(x, w) (as ggml); a pair sum reaches 2 * 128 * 127, so
      // the two halves are widened by vpmaddwd before they are added.
      const __m256i al = wabs ? wabs[2 * i] : _mm256_abs_epi8(lo), ah = wabs ? wabs[2 * i + 1] : _mm256_abs_epi8(hi);
      p[i] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(al, _mm256_sign_epi8(xl, lo)), ones),
                              _mm256_madd_epi16(_mm256_maddubs_epi16(ah, _mm256_sign_epi8(xh, hi)), ones));
    } else {
      // Nibble pair sums stay below 2 * 2 * 15 * 127: adding before vpmaddwd cannot overflow.
      p[i] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xl), _mm256_maddubs_epi16(hi, xh)), ones);
    }
  }
  return Reduce4x2(p);
}

// One block of 8 weight rows (levels w, scales wd, minimums wm) against activation row m: the
// float steps every path shares.
template <DType T>
HWY_INLINE __m256 Step(const __m256i* w, __m256 wd, __m256 wm, const Acts& a, int64_t m, int64_t b, __m256 acc,
                       const __m256i* wabs = nullptr) {
  __m256i s = BlockSums<T>(w, a.q + m * a.K + b * 32, wabs);
  const int64_t ab = m * a.nb + b;
  if constexpr (T == DType::kQ4_0) s = _mm256_sub_epi32(s, _mm256_set1_epi32(a.s8[ab]));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(wd, _mm256_set1_ps(a.d[ab])), acc);
  if constexpr (T == DType::kQ4_1) acc = _mm256_fmadd_ps(wm, _mm256_set1_ps(a.dsum[ab]), acc);
  return acc;
}

// The scale d (and Q4_1's minimum m) of block b of the 8 rows, from the block's first 4 bytes
// (d, m as f16; for Q4_0/Q8_0 the upper half is level bytes, and m is garbage nobody reads).
HWY_INLINE void Scales(const uint8_t* const* rows, int64_t block_off, __m256* d, __m256* m) {
  // Eight scalar loads: vpgatherdd stalled the decode loop (~25% of its samples on Zen 3).
  int32_t h[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&h[i], rows[i] + block_off, 4);
  const __m256i v = _mm256_setr_epi32(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
  // [d0..d3 m0..m3 | d4..d7 m4..m7] as 16-bit values, then 64-bit lanes reordered to d0..7, m0..7.
  const __m256i lo16 = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), hi16 = _mm256_srli_epi32(v, 16);
  const __m256i dm = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo16, hi16), 0xD8);
  *d = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
  *m = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
}

// Output row m of the tile's nr (<= 8) columns y[m, n0 .. n0 + nr).
HWY_INLINE void StoreTileRow(float* y, int64_t N, int64_t n0, int nr, int64_t m, __m256 acc) {
  if (nr == 8) {
    _mm256_storeu_ps(y + m * N + n0, acc);
  } else {
#if HWY_TARGET <= HWY_AVX3
    // A masked store: through a stack copy, GCC kept the 8-row passes' accumulators in memory.
    _mm256_mask_storeu_ps(y + m * N + n0, static_cast<__mmask8>((1u << nr) - 1), acc);
#else
    alignas(32) float t[8];
    _mm256_store_ps(t, acc);
    for (int i = 0; i < nr; ++i) y[m * N + n0 + i] = t[i];
#endif
  }
}

// Where a tile's 8 weight rows come from: 8 row pointers into the base layout (a GGUF file's rows;
// the last ones repeated when the tile has fewer than 8) ...
template <DType T>
struct RowSrc {
  const uint8_t* rows[8];
  HWY_INLINE void levels(int64_t b, __m256i* w) const { Levels8<T>(rows, b * static_cast<int64_t>(kBlockBytes<T>), w); }
  HWY_INLINE void scales(int64_t b, __m256* d, __m256* m) const {
    Scales(rows, b * static_cast<int64_t>(kBlockBytes<T>), d, m);
  }
};

// ... or one group of the rows-interleaved-by-8 layout (dtype.h, *_R8): the same vectors as
// Levels8 and Scales from 4 (Q8_0: 8) 32-byte loads and one 16-byte load per scale vector, all
// from one memory stream.
template <DType T>
struct R8Src {
  const uint8_t* group;
  HWY_INLINE void levels(int64_t b, __m256i* w) const {
    const uint8_t* p = group + b * 8 * static_cast<int64_t>(kBlockBytes<T>) + (T == DType::kQ4_1 ? 32 : 16);
    if constexpr (T == DType::kQ8_0) {
      for (int i = 0; i < 8; ++i) w[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * i));
    } else {
      const __m256i mask = _mm256_set1_epi8(15);
      for (int i = 0; i < 4; ++i) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * i));
        w[2 * i] = _mm256_and_si256(raw, mask);
        w[2 * i + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
      }
    }
  }
  HWY_INLINE void scales(int64_t b, __m256* d, __m256* m) const {
    const uint8_t* p = group + b * 8 * static_cast<int64_t>(kBlockBytes<T>);
    *d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    if constexpr (T == DType::kQ4_1) {
      *m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    } else {
      *m = *d;  // unused: only Q4_1 has minimums
    }
  }
};

// Lines of a later tile to prefetch per block so that all its 8 rows are covered by the last block,
// and the prefetch of block b's share of them (into L2: see Tile).
template <DType T>
HWY_INLINE int64_t PrefetchLinesPerBlock(int64_t nb) {
  return (8 * nb * static_cast<int64_t>(kBlockBytes<T>) / 64 + nb) / nb;
}
HWY_INLINE void PrefetchBlockShare(const uint8_t* next, int64_t b, int64_t lines_per_block) {
  for (int64_t l = 0; l < lines_per_block; ++l)
    _mm_prefetch(reinterpret_cast<const char*>(next + (b * lines_per_block + l) * 64), _MM_HINT_T2);
}

// Batches of 5+ rows on AVX512-VNNI (every type) and on AVX2 (Q4_0 and Q4_1: kRowLanes). The
// tile's levels go to the L1 scratch transposed: vector j of block b holds, in lane r, levels
// 4j..4j+3 of row r (Q8_0's signed levels offset by +128 to unsigned). On VNNI one vpdpbusd of
// vector j with activation bytes 4j..4j+3 broadcast to every lane adds 4 products to each row's
// own lane: a block's 8 row sums come out of 8 vpdpbusd with no reduction, and each weight vector
// loaded serves up to 8 activation rows. Q8_0's offset is taken back with 128 sum(x levels) =
// 16 s8. On AVX2 vpmaddubsw does the same into int16 pairs (see the pass). The integers are the
// exact block sums of BlockSums and the float steps those of Step, so results are bitwise those of
// every other path. Measured: see docs/BENCHMARKS.md "Quantized matrix x vector" (Zen 4) and
// "Serving" (Zen 3, AVX2).
// `next` as for Tile: the next tile's bytes are prefetched (to L2) while this one is transposed
// (VNNI) or over the first pass (AVX2).
template <DType T, typename Src>
void TileRowLanes(const Src& src, int nr, const Acts& a, int64_t m0, int64_t m1, float* y, int64_t N,
                  int64_t n0, const uint8_t* next) {
  const int64_t nb = a.nb;
  const int64_t lines_per_block = PrefetchLinesPerBlock<T>(nb);
  uint8_t* ws = t_w.get(static_cast<size_t>(nb * 256));
  float* wds = t_wd.get(static_cast<size_t>(nb * 8));
  float* wms = t_wm.get(static_cast<size_t>(nb * 8));
  // AVX2: the next tile's prefetch is spread over the first pass (below), not issued in a burst
  // while the short transpose runs (B = 8 decode steps, Zen 3: min 22.7 -> 20.9 ms).
  const bool prefetch_in_pass = HWY_TARGET > HWY_AVX3_DL;
  for (int64_t b = 0; b < nb; ++b) {
    if (next && !prefetch_in_pass) PrefetchBlockShare(next, b, lines_per_block);
    __m256i w[8];
    src.levels(b, w);
    // w[2i] = dwords 0..3 of row i | of row i + 4; w[2i + 1] = dwords 4..7 of the same rows. Vector
    // j of the scratch wants dword j of rows 0..3 | of rows 4..7: a 4 x 4 dword transpose inside
    // each 128-bit half, of w[0, 2, 4, 6] for j = 0..3 and of w[1, 3, 5, 7] for j = 4..7
    // (unpacks work per half). 16 shuffles; the 64 scalar moves they replaced bounded serving
    // batches (M = 8: ~half of this kernel's time).
    if constexpr (T == DType::kQ8_0) {
      const __m256i off = _mm256_set1_epi8(static_cast<char>(0x80));
      for (int i = 0; i < 8; ++i) w[i] = _mm256_xor_si256(w[i], off);
    }
    __m256i* o = reinterpret_cast<__m256i*>(ws + b * 256);
    for (int h = 0; h < 2; ++h) {
      const __m256i t0 = _mm256_unpacklo_epi32(w[h], w[2 + h]), t1 = _mm256_unpacklo_epi32(w[4 + h], w[6 + h]);
      const __m256i t2 = _mm256_unpackhi_epi32(w[h], w[2 + h]), t3 = _mm256_unpackhi_epi32(w[4 + h], w[6 + h]);
      _mm256_store_si256(o + 4 * h + 0, _mm256_unpacklo_epi64(t0, t1));
      _mm256_store_si256(o + 4 * h + 1, _mm256_unpackhi_epi64(t0, t1));
      _mm256_store_si256(o + 4 * h + 2, _mm256_unpacklo_epi64(t2, t3));
      _mm256_store_si256(o + 4 * h + 3, _mm256_unpackhi_epi64(t2, t3));
    }
    __m256 wd, wm;
    src.scales(b, &wd, &wm);
    _mm256_store_ps(wds + b * 8, wd);
    _mm256_store_ps(wms + b * 8, wm);
  }
  auto pass = [&](int64_t m, auto rc) {
    constexpr int R = decltype(rc)::value;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      if (prefetch_in_pass && next && m == m0) PrefetchBlockShare(next, b, lines_per_block);
      const __m256i* wb = reinterpret_cast<const __m256i*>(ws + b * 256);
      __m256i s[R];
#if HWY_TARGET <= HWY_AVX3_DL
      for (int r = 0; r < R; ++r) s[r] = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i wj = _mm256_load_si256(wb + j);
        for (int r = 0; r < R; ++r) s[r] = DpBusdBcast(s[r], wj, a.q + (m + r) * a.K + b * 32 + 4 * j);
      }
#else
      // AVX2, nibble levels (kRowLanes): vpmaddubsw of vector j with activation bytes 4j..4j+3
      // broadcast gives row r's two pair sums in int16 lanes 2r, 2r + 1; the block's 8 are summed
      // in int16 (at most 30480) and widened once by vpmaddwd.
      // The 4 rows' chains interleaved, each add kept in order (an empty asm pins it): GCC's
      // reassociation otherwise computed all 32 products first and spilled them.
      for (int j = 0; j < 8; ++j) {
        const __m256i wj = _mm256_load_si256(wb + j);
        for (int r = 0; r < R; ++r) {
          int32_t x4;
          std::memcpy(&x4, a.q + (m + r) * a.K + b * 32 + 4 * j, 4);
          const __m256i p = _mm256_maddubs_epi16(wj, _mm256_set1_epi32(x4));
          s[r] = j == 0 ? p : _mm256_add_epi16(s[r], p);
          asm("" : "+x"(s[r]));
        }
      }
      for (int r = 0; r < R; ++r) s[r] = _mm256_madd_epi16(s[r], _mm256_set1_epi16(1));
#endif
      const __m256 wd = _mm256_load_ps(wds + b * 8);
      for (int r = 0; r < R; ++r) {
        const int64_t ab = (m + r) * a.nb + b;
        __m256i sr = s[r];
        if constexpr (T == DType::kQ4_0) sr = _mm256_sub_epi32(sr, _mm256_set1_epi32(a.s8[ab]));
        if constexpr (T == DType::kQ8_0) sr = _mm256_sub_epi32(sr, _mm256_set1_epi32(16 * a.s8[ab]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sr), _mm256_mul_ps(wd, _mm256_set1_ps(a.d[ab])), acc[r]);
        if constexpr (T == DType::kQ4_1) acc[r] = _mm256_fmadd_ps(_mm256_load_ps(wms + b * 8), _mm256_set1_ps(a.dsum[ab]), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) StoreTileRow(y, N, n0, nr, m + r, acc[r]);
  };
  // 8 rows of one group (m % 8 == 0, a.qg set): pass's operations, every activation operand at a
  // constant offset from one pointer per block (8 row pointers had pushed the accumulators partly
  // into memory).
#if HWY_TARGET <= HWY_AVX3_DL
  auto pass8 = [&](int64_t m) {
    __m256 acc[8];
    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
    const int64_t g = m / 8;
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i* wb = reinterpret_cast<const __m256i*>(ws + b * 256);
      const int64_t gb = g * nb + b;
      const int8_t* xq = a.qg + gb * 256;
      __m256i sv[8];
      for (int r = 0; r < 8; ++r) sv[r] = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i wj = _mm256_load_si256(wb + j);
        for (int r = 0; r < 8; ++r) sv[r] = DpBusdBcast(sv[r], wj, xq + r * 32 + 4 * j);
      }
      const __m256 wd = _mm256_load_ps(wds + b * 8);
      const float* xd = a.dg + gb * 8;
      for (int r = 0; r < 8; ++r) {
        __m256i sr = sv[r];
        if constexpr (T == DType::kQ4_0) sr = _mm256_sub_epi32(sr, _mm256_set1_epi32(a.s8g[gb * 8 + r]));
        if constexpr (T == DType::kQ8_0) sr = _mm256_sub_epi32(sr, _mm256_set1_epi32(16 * a.s8g[gb * 8 + r]));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sr), _mm256_mul_ps(wd, _mm256_set1_ps(xd[r])), acc[r]);
        if constexpr (T == DType::kQ4_1)
          acc[r] = _mm256_fmadd_ps(_mm256_load_ps(wms + b * 8), _mm256_set1_ps(a.dsumg[gb * 8 + r]), acc[r]);
      }
    }
    for (int r = 0; r < 8; ++r) StoreTileRow(y, N, n0, nr, m + r, acc[r]);
  };
  int64_t m = m0;
  // Matmul groups the rows whenever this kernel runs on 8+ rows, and m0 is a multiple of
  // kRowsPerPass, so every full 8 rows here are one group.
  LLMKIT_ASSERT(m1 - m0 < 8 || (a.qg && m0 % 8 == 0));
  for (; m + 8 <= m1; m += 8) pass8(m);
  if (m + 4 <= m1) {
    pass(m, std::integral_constant<int, 4>());
    m += 4;
  }
#else
  // AVX2 has 16 vector registers: passes of 4 rows keep 4 int16 sums and 4 accumulators in them.
  int64_t m = m0;
  for (; m + 4 <= m1; m += 4) pass(m, std::integral_constant<int, 4>());
#endif
  switch (m1 - m) {
    case 3: pass(m, std::integral_constant<int, 3>()); break;
    case 2: pass(m, std::integral_constant<int, 2>()); break;
    case 1: pass(m, std::integral_constant<int, 1>()); break;
    default: break;
  }
}

// y[m0..m1, n0..n0+nr) for the 8 rows `rows` (the last ones repeated when nr < 8).
// `next` (may be null): the first byte of a tile this thread runs later (Run picks the one >= 16 KB
// ahead); while a few rows decode this tile in registers, its bytes are prefetched a few lines per
// block. The 8 rows are read interleaved (8 streams 1 row apart), which the hardware prefetcher
// followed poorly: measured on SmolLM2 decode (Zen 3, 1 thread) the weight loads stalled until
// this prefetch was added.
// The prefetch goes to L2, not L1: a tile of a d_ff = 8192 row group is 36 KB, more than L1, and
// L1's few miss buffers capped the stream. bench_quant's cold case (weights beyond L3, Zen 4, one
// thread): Q4_0 2048 x 8192 12.8 -> 20.4 GB/s, 8192 x 2048 10.6 -> 18.8, Q8_0 14.7 / 11.0 -> 22.5.
template <DType T, typename Src>
void Tile(const Src& src, int nr, const Acts& a, int64_t m0, int64_t m1, float* y, int64_t N, int64_t n0,
          const uint8_t* next) {
  const int64_t nb = a.nb;
  const int64_t lines_per_block = PrefetchLinesPerBlock<T>(nb);
  auto store = [&](int64_t m, __m256 acc) { StoreTileRow(y, N, n0, nr, m, acc); };
  if (m1 - m0 <= kDirectMaxM) {
    auto direct = [&](auto mr) {
      constexpr int64_t R = decltype(mr)::value;
      __m256 acc[R];
      for (int64_t r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        if (next) PrefetchBlockShare(next, b, lines_per_block);
        __m256i w[8];
        src.levels(b, w);
        __m256 wd, wm;
        src.scales(b, &wd, &wm);
        for (int64_t r = 0; r < R; ++r) acc[r] = Step<T>(w, wd, wm, a, m0 + r, b, acc[r]);
      }
      for (int64_t r = 0; r < R; ++r) store(m0 + r, acc[r]);
    };
    switch (m1 - m0) {
      case 1: direct(std::integral_constant<int64_t, 1>()); break;
      case 2: direct(std::integral_constant<int64_t, 2>()); break;
      case 3: direct(std::integral_constant<int64_t, 3>()); break;
      default: direct(std::integral_constant<int64_t, 4>()); break;
    }
    return;
  }
  static_assert(kDirectMaxM == 4, "the switch above covers 1..4 rows");
  if constexpr (kRowLanes<T>) {
    TileRowLanes<T>(src, nr, a, m0, m1, y, N, n0, next);
    return;
  }
  constexpr int64_t kVecs = T == DType::kQ8_0 ? 16 : 8;  // per block: levels (and Q8_0's |levels|)
  uint8_t* ws = t_w.get(static_cast<size_t>(nb * kVecs * 32));
  float* wds = t_wd.get(static_cast<size_t>(nb * 8));
  float* wms = t_wm.get(static_cast<size_t>(nb * 8));
  for (int64_t b = 0; b < nb; ++b) {
    __m256i w[8];
    src.levels(b, w);
    for (int i = 0; i < 8; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(ws + (b * kVecs + i) * 32), w[i]);
    if constexpr (T == DType::kQ8_0) {
      for (int i = 0; i < 8; ++i)
        _mm256_store_si256(reinterpret_cast<__m256i*>(ws + (b * kVecs + 8 + i) * 32), _mm256_abs_epi8(w[i]));
    }
    __m256 wd, wm;
    src.scales(b, &wd, &wm);
    _mm256_store_ps(wds + b * 8, wd);
    _mm256_store_ps(wms + b * 8, wm);
  }
  for (int64_t m = m0; m < m1; ++m) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      // The next tile's bytes, fetched while the first row runs over this one (a serving batch of
      // 5-16 decoding sequences streams every weight from memory once per step, as decode does).
      if (next && m == m0) PrefetchBlockShare(next, b, lines_per_block);
      const __m256i* wb = reinterpret_cast<const __m256i*>(ws + b * kVecs * 32);
      acc = Step<T>(wb, _mm256_load_ps(wds + b * 8), _mm256_load_ps(wms + b * 8), a, m, b, acc,
                    T == DType::kQ8_0 ? wb + 8 : nullptr);
    }
    store(m, acc);
  }
}

// kR8: w is in the rows-interleaved-by-8 layout (N % 8 == 0), tile t being group t.
template <DType T, bool kR8>
void Run(const Acts& a, const uint8_t* w, float* y, int64_t M, int64_t N) {
  const size_t row_bytes = static_cast<size_t>(a.nb) * kBlockBytes<T>;
  const int64_t tiles = (N + 7) / 8;
  // At least ~64k multiply-adds per task: below that, waking a worker costs more than it saves.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 8 * a.K * M));
  // The tile prefetched is the one at least 16 KB ahead: one tile is only 8 x 324 bytes at K = 576
  // (SmolLM2's Q4_0), less than a DRAM latency of streaming ahead. bench_quant's cold 1536 x 576
  // (one Zen 4 thread, medians of 3): Q4_0 8.9 -> 15.6 GB/s, Q8_0 15.0 -> 20.8; 8192 x 2048 unchanged.
  const int64_t tile_bytes = 8 * static_cast<int64_t>(row_bytes);
  const int64_t ahead = std::max<int64_t>(1, (16384 + tile_bytes - 1) / tile_bytes);
  // Within a thread's share [t0, t1): the tile `ahead` on, else the share's last one (a share of
  // a small matrix on 2 threads is only a few tiles: without the fallback most of them went
  // unprefetched and SmolLM2 decode on 2 threads lost ~15%).
  auto prefetch_target = [&](int64_t t, int64_t t1) -> const uint8_t* {
    // Serving batches run in pieces (parallel_for_balanced) whose successor is usually this
    // thread's next: their prefetch looks past the piece, to the matrix's end.
    const int64_t p = std::min(t + ahead, (M <= kServeMaxM ? tiles : t1) - 1);
    return p > t ? w + static_cast<size_t>(p * 8) * row_bytes : nullptr;
  };
  auto tile_src = [&](int64_t n0, int nr) {
    if constexpr (kR8) {
      return R8Src<T>{w + static_cast<size_t>(n0) * row_bytes};
    } else {
      RowSrc<T> s;
      for (int i = 0; i < 8; ++i) s.rows[i] = w + static_cast<size_t>(n0 + std::min(i, nr - 1)) * row_bytes;
      return s;
    }
  };
  auto body = [&](int64_t t0, int64_t t1) {
    if (M > kDirectMaxM && M <= kMaxPassesM * kDirectMaxM && M < kRowLanesMinM<T>) {
      // A serving batch of 5-16 decoding rows of Q8_0 on AVX2 (kRowLanesMinM): register
      // passes of at most 4 rows over each tile (its bytes still in L1 after the first), the first
      // prefetching a tile ahead, rather than the L1 scratch. Measured on 1536 x 576 (one thread,
      // Zen 4, VNNI), 16 rows, before TileRowLanes: Q4_1 187 us in 4 passes vs 202 us through the
      // scratch, Q8_0 214 vs 336 us.
      const int64_t passes = (M + kDirectMaxM - 1) / kDirectMaxM;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * 8;
        const int nr = static_cast<int>(std::min<int64_t>(8, N - n0));
        const auto src = tile_src(n0, nr);
        for (int64_t p = 0; p < passes; ++p) {
          const int64_t m0 = M * p / passes, m1 = M * (p + 1) / passes;
          Tile<T>(src, nr, a, m0, m1, y, N, n0, p == 0 ? prefetch_target(t, t1) : nullptr);
        }
      }
      return;
    }
    for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass) {
      const int64_t m1 = std::min(M, m0 + kRowsPerPass);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * 8;
        const int nr = static_cast<int>(std::min<int64_t>(8, N - n0));
        Tile<T>(tile_src(n0, nr), nr, a, m0, m1, y, N, n0, prefetch_target(t, t1));
      }
    }
  };
  if (M <= kServeMaxM) {
    // Pieces of 4 prefetch distances (~64 KB of weights): a thread's stream runs on across them
    // (prefetch_target looks past the piece), and the last ones balance the threads.
    ThreadPool::global().parallel_for_balanced(tiles, grain, 4 * ahead, body);
  } else {
    ThreadPool::global().parallel_for(tiles, grain, body);
  }
}

bool Available() { return true; }

void Matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  const int64_t nb = K / 32;
  Acts a{.q = t_q.get(static_cast<size_t>(M * K)), .d = t_d.get(static_cast<size_t>(M * nb)),
         .dsum = t_dsum.get(static_cast<size_t>(M * nb)), .s8 = t_s8.get(static_cast<size_t>(M * nb)), .K = K, .nb = nb};
  int64_t m_grouped = 0;
#if HWY_TARGET <= HWY_AVX3_DL
  if (M >= 8 && M > kDirectMaxM) {
    const int64_t groups = M / 8;
    m_grouped = groups * 8;
    a.qg = t_qg.get(static_cast<size_t>(groups * nb * 256));
    a.dg = t_dg.get(static_cast<size_t>(groups * nb * 8));
    a.dsumg = t_dsumg.get(static_cast<size_t>(groups * nb * 8));
    a.s8g = t_s8g.get(static_cast<size_t>(groups * nb * 8));
  }
#endif
  // Serving batches of 8+ rows split too: the quantization is ~2% of a B = 8 step, which the other thread
  // otherwise waits out.
  ThreadPool::global().parallel_for(M, 4, [&](int64_t m0, int64_t m1) { QuantizeRows(x, K, m0, m1, a, m_grouped); });
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  switch (wt) {
    case DType::kQ4_0: Run<DType::kQ4_0, false>(a, wb, y, M, N); break;
    case DType::kQ4_1: Run<DType::kQ4_1, false>(a, wb, y, M, N); break;
    case DType::kQ8_0: Run<DType::kQ8_0, false>(a, wb, y, M, N); break;
    case DType::kQ4_0_R8: Run<DType::kQ4_0, true>(a, wb, y, M, N); break;
    case DType::kQ4_1_R8: Run<DType::kQ4_1, true>(a, wb, y, M, N); break;
    case DType::kQ8_0_R8: Run<DType::kQ8_0, true>(a, wb, y, M, N); break;
    default: break;
  }
}

#else  // no int8 kernel on this target: cpu::quant_matmul keeps its int16 kernel

bool Available() { return false; }
void Matmul(const float*, const void*, DType, float*, int64_t, int64_t, int64_t) {}

#endif

}  // namespace llmkit::cpu::i8::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmkit::cpu {
namespace i8 {
HWY_EXPORT(Available);
HWY_EXPORT(Matmul);
}  // namespace i8

bool i8_matmul_supported(DType wt) {
  const DType b = r8_base(wt);
  return b == DType::kQ4_0 || b == DType::kQ4_1 || b == DType::kQ8_0;
}
bool i8_matmul_available() { return HWY_DYNAMIC_DISPATCH(i8::Available)(); }

void i8_matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  HWY_DYNAMIC_DISPATCH(i8::Matmul)(x, w, wt, y, M, N, K);
}

}  // namespace llmkit::cpu
#endif  // HWY_ONCE
