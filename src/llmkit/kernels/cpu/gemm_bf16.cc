// BF16 mixed-precision GEMM (ref::GemmArgs with bf16 = true) on AVX512_BF16: VDPBF16PS multiplies
// 32 pairs of BF16 values and adds each pair's two products into one of 16 F32 lanes, twice the
// multiply-adds per instruction of an F32 FMA (measured on Zen 4: 233 vs 117 GFLOP/s per core in a
// register-only loop). Products of two BF16 values are exact in F32, so the result is ref::gemm's
// with bf16 = true up to the order of the F32 sums (pairs of k, then the depth blocks) - and the
// instruction treats BF16 denormals (|x| < 1.2e-38) as zero, as does the F32 -> BF16 rounding
// (VCVTNEPS2BF16, round to nearest even) used when packing.
//
// Layout (BLIS-style, as gemm.cc's F32 GEMM): per depth block of kKC elements (kKP pairs),
//  * A rows are packed as u32 pairs (k, k+1) of BF16: row-major rows of stride kKP for a row-major
//    A, or k-major tiles of kMR rows ([pair][kMR]) for a transposed A (stored [K, M]: the dw = dy^T x
//    product), which is what interleaving two stored rows gives without a transpose; a row-major
//    BF16 A of whole pairs is read in place;
//  * B is packed into panels of kNR = 48 columns ([pair][48] u32), from [N, K] rows (the weight
//    layout, 8 x 8 u32 transposes) or from [K, N] rows (two rows interleaved with one VPERMW);
//  * the micro-kernel keeps a kMR x 48 F32 tile in 24 ZMM registers: per pair, 3 loads of B and kMR
//    broadcasts of A (embedded in the VDPBF16PS) feed 3 x kMR VDPBF16PS.
// Threads split the longer of M and N into one contiguous range each; a range packs its share of
// that operand and all of the other one.
//
// Everything that runs AVX-512 code sits between the target pragmas below and uses no inline
// function or template shared with other files (a copy compiled for AVX-512 could be the one the
// linker keeps); the dispatch and the scratch buffers are outside.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/ref/ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <hwy/targets.h>
#include <immintrin.h>
#define LLMKIT_BF16_GEMM 1
#else
#define LLMKIT_BF16_GEMM 0
#endif

namespace llmkit::cpu {
namespace {

constexpr int64_t kMR = 8;     // rows of the register tile
constexpr int64_t kNR = 48;    // columns of the register tile (3 ZMM of F32)
constexpr int64_t kKC = 256;   // depth block in elements (a multiple of 32)
constexpr int64_t kKP = kKC / 2;
constexpr int64_t kMC = 2048;  // rows of A packed per depth block: 2048 x kKP x 4 B = 1 MiB (L2/L3)
constexpr int64_t kNC = 768;   // columns of B packed per block: 768 x kKP x 4 B = 384 KiB (L2: 1 MiB)
static_assert(kKC % 32 == 0 && kMC % kMR == 0 && kNC % kNR == 0, "block sizes");

#if LLMKIT_BF16_GEMM
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")
#pragma GCC diagnostic push
// GCC 12's _mm512_inserti64x4 starts from _mm512_undefined_epi32(), which it then warns about.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

inline __mmask16 Mask16(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// n (<= 16) consecutive values of p (F32 or BF16) as 16 BF16 (zero past n).
inline __m256i Load16(const void* p, bool f32, int64_t n) {
  if (f32) {
    const __m512 v = _mm512_maskz_loadu_ps(Mask16(n), p);
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
  }
  return _mm256_maskz_loadu_epi16(Mask16(n), p);
}
inline const char* At(const void* base, bool f32, int64_t i) {
  return static_cast<const char*>(base) + i * (f32 ? 4 : 2);
}

// Row-major A: rows [m0, m1) x depth [kb, kb + kc) into out[(m - m0) * kKP + pair].
void PackARows(const ref::GemmArgs& g, int64_t m0, int64_t m1, int64_t kb, int64_t kc, uint32_t* out) {
  const bool f32 = g.at == DType::kF32;
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t row = m * g.lda + kb;
    uint32_t* dst = out + (m - m0) * kKP;
    for (int64_t e = 0; e < kc; e += 32) {
      const __m256i lo = Load16(At(g.a, f32, row + e), f32, kc - e);
      const __m256i hi = Load16(At(g.a, f32, row + e + 16), f32, kc - e - 16);
      _mm512_storeu_si512(dst + e / 2, _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1));
    }
  }
}

// Transposed A (stored [K, M]): tiles of kMR rows from m0, each [pair][kMR] u32 (kpn pairs), tile t at
// out + t * kpn * kMR; rows past m1 are zero. Each pass covers 64 columns (8 tiles, 4 cache lines of
// an F32 row): per pair, 16 columns of stored rows k and k + 1 are rounded, interleaved and split
// into two tiles.
void PackATransposed(const ref::GemmArgs& g, int64_t m0, int64_t m1, int64_t kb, int64_t kc, uint32_t* out) {
  const bool f32 = g.at == DType::kF32;
  const int64_t kpn = (kc + 1) / 2, n_tiles = (m1 - m0 + kMR - 1) / kMR;
  for (int64_t t0 = 0; t0 < n_tiles; t0 += 8) {
    for (int64_t p = 0; p < kpn; ++p) {
      const int64_t k0 = kb + 2 * p;
      const bool has1 = 2 * p + 1 < kc;
      for (int64_t t = t0; t < t0 + 8 && t < n_tiles; t += 2) {
        const int64_t mt = m0 + t * kMR, cnt = m1 - mt;
        const __m256i r0 = Load16(At(g.a, f32, k0 * g.lda + mt), f32, cnt);
        const __m256i r1 = has1 ? Load16(At(g.a, f32, (k0 + 1) * g.lda + mt), f32, cnt) : _mm256_setzero_si256();
        const __m256i lo = _mm256_unpacklo_epi16(r0, r1), hi = _mm256_unpackhi_epi16(r0, r1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + t * kpn * kMR + p * kMR),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        if (t + 1 < n_tiles)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + (t + 1) * kpn * kMR + p * kMR),
                              _mm256_permute2x128_si256(lo, hi, 0x31));
      }
    }
  }
}

// In-register transpose of 8 rows of 8 u32.
inline void Transpose8(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
    u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
  }
}

// B columns [nb, nb + nn) x depth [kb, kb + kc) into panels of kNR columns, panel q at
// out + q * kpn * kNR laid out [pair][kNR]; columns past nn are zero.
void PackB(const ref::GemmArgs& g, int64_t nb, int64_t nn, int64_t kb, int64_t kc, uint32_t* out) {
  const bool f32 = g.bt == DType::kF32;
  const int64_t kpn = (kc + 1) / 2;
  if (g.b_kn) {  // stored [K, N]: a pair row interleaves stored rows k and k + 1
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t q = 0; q * kNR < nn; ++q) {
      uint32_t* panel = out + q * kpn * kNR;
      for (int64_t p = 0; p < kpn; ++p) {
        const int64_t k0 = kb + 2 * p;
        const bool has1 = 2 * p + 1 < kc;
        for (int64_t v = 0; v < 3; ++v) {
          const int64_t n = nb + q * kNR + v * 16, cnt = nn - (q * kNR + v * 16);
          __m512i z = _mm512_setzero_si512();
          if (cnt > 0) {
            const __m256i r0 = Load16(At(g.b, f32, k0 * g.ldb + n), f32, cnt);
            const __m256i r1 = has1 ? Load16(At(g.b, f32, (k0 + 1) * g.ldb + n), f32, cnt) : _mm256_setzero_si256();
            z = _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_zextsi256_si512(r0), r1, 1));
          }
          _mm512_storeu_si512(panel + p * kNR + v * 16, z);
        }
      }
    }
    return;
  }
  // Stored [N, K]: each column of the panel is a stored row; 8 rows x 8 pairs per transpose.
  for (int64_t q = 0; q * kNR < nn; ++q) {
    uint32_t* panel = out + q * kpn * kNR;
    for (int64_t jb = 0; jb < kNR; jb += 8) {
      for (int64_t p0 = 0; p0 < kpn; p0 += 8) {
        __m256i r[8];
        for (int64_t i = 0; i < 8; ++i) {
          const int64_t j = q * kNR + jb + i;
          r[i] = j < nn ? Load16(At(g.b, f32, (nb + j) * g.ldb + kb + 2 * p0), f32, kc - 2 * p0)
                        : _mm256_setzero_si256();
        }
        Transpose8(r);
        for (int64_t i = 0; i < 8 && p0 + i < kpn; ++i)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + (p0 + i) * kNR + jb), r[i]);
      }
    }
  }
}

// C[MR rows, nvalid cols] (+)= A tile . B panel over kpn pairs. KMajor: a[pair * kMR + m], else
// a[m * as + pair] (as = kKP for packed rows, the row stride in pairs for a BF16 A read in place).
template <int MR, bool KMajor>
void Micro(const uint32_t* __restrict a, int64_t as, const uint32_t* __restrict b, int64_t kpn, float* c, int64_t ldc,
           int64_t nvalid, bool accumulate) {
  __m512 c0[MR], c1[MR], c2[MR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) c0[m] = c1[m] = c2[m] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kpn; ++p) {
    const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kNR));
    const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kNR + 16));
    const __m512bh b2 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * kNR + 32));
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const uint32_t av = KMajor ? a[p * kMR + m] : a[m * as + p];
      const __m512bh x = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(av)));
      c0[m] = _mm512_dpbf16_ps(c0[m], x, b0);
      c1[m] = _mm512_dpbf16_ps(c1[m], x, b1);
      c2[m] = _mm512_dpbf16_ps(c2[m], x, b2);
    }
  }
  const __mmask16 k0 = Mask16(nvalid), k1 = Mask16(nvalid - 16), k2 = Mask16(nvalid - 32);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
    float* row = c + m * ldc;
    if (accumulate) {
      c0[m] = _mm512_add_ps(c0[m], _mm512_maskz_loadu_ps(k0, row));
      c1[m] = _mm512_add_ps(c1[m], _mm512_maskz_loadu_ps(k1, row + 16));
      c2[m] = _mm512_add_ps(c2[m], _mm512_maskz_loadu_ps(k2, row + 32));
    }
    _mm512_mask_storeu_ps(row, k0, c0[m]);
    _mm512_mask_storeu_ps(row + 16, k1, c1[m]);
    _mm512_mask_storeu_ps(row + 32, k2, c2[m]);
  }
}

template <bool KMajor>
void MicroDispatch(int64_t mr, const uint32_t* a, int64_t as, const uint32_t* b, int64_t kpn, float* c, int64_t ldc,
                   int64_t nvalid, bool acc) {
  switch (mr) {
    case 8: Micro<8, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 7: Micro<7, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 6: Micro<6, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 5: Micro<5, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 4: Micro<4, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 3: Micro<3, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    case 2: Micro<2, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
    default: Micro<1, KMajor>(a, as, b, kpn, c, ldc, nvalid, acc); break;
  }
}
static_assert(kMR == 8, "MicroDispatch handles 1..8 rows");

// Rows [m0, m1) x columns [n0, n1) of C on the calling thread; apack holds kMC x kKP and bpack
// kNC x kKP u32.
void Block(const ref::GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint32_t* apack,
           uint32_t* bpack) {
  for (int64_t kb = 0; kb < g.K; kb += kKC) {
    const int64_t kc = g.K - kb < kKC ? g.K - kb : kKC, kpn = (kc + 1) / 2;
    const bool acc = g.accumulate || kb > 0;
    for (int64_t mc0 = m0; mc0 < m1; mc0 += kMC) {
      const int64_t mc1 = m1 - mc0 < kMC ? m1 : mc0 + kMC;
      // A BF16 row-major A with whole pairs is read in place (a pair is one aligned u32 of its row).
      const bool a_direct = !g.a_t && g.at == DType::kBF16 && g.lda % 2 == 0 && kc % 2 == 0;
      const uint32_t* arows = a_direct
                                  ? reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(g.a) + mc0 * g.lda + kb)
                                  : apack;
      const int64_t as = a_direct ? g.lda / 2 : kKP;
      if (g.a_t) {
        PackATransposed(g, mc0, mc1, kb, kc, apack);
      } else if (!a_direct) {
        PackARows(g, mc0, mc1, kb, kc, apack);
      }
      for (int64_t nb = n0; nb < n1; nb += kNC) {
        const int64_t nn = n1 - nb < kNC ? n1 - nb : kNC;
        PackB(g, nb, nn, kb, kc, bpack);
        for (int64_t mt = mc0, t = 0; mt < mc1; mt += kMR, ++t) {
          const int64_t mr = mc1 - mt < kMR ? mc1 - mt : kMR;
          for (int64_t q = 0; q * kNR < nn; ++q) {
            float* c = g.c + mt * g.ldc + nb + q * kNR;
            const uint32_t* bp = bpack + q * kpn * kNR;
            const int64_t nv = nn - q * kNR;
            if (g.a_t) {
              MicroDispatch<true>(mr, apack + t * kpn * kMR, kMR, bp, kpn, c, g.ldc, nv, acc);
            } else {
              MicroDispatch<false>(mr, arows + (mt - mc0) * as, as, bp, kpn, c, g.ldc, nv, acc);
            }
          }
        }
      }
    }
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif  // LLMKIT_BF16_GEMM

// Thread-local packing buffers, allocated once per thread and 4 KiB aligned, so that the panels'
// 64-byte loads never straddle two cache lines (a std::vector of this size comes from mmap at 16
// bytes past a page boundary). bench_gemm showed no difference outside its run-to-run spread.
struct PackBuffer {
  uint32_t* p = nullptr;
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { std::free(p); }
  uint32_t* get(int64_t n) {
    if (!p) {
      p = static_cast<uint32_t*>(std::aligned_alloc(4096, (static_cast<size_t>(n) * sizeof(uint32_t) + 4095) & ~size_t{4095}));
      LLMKIT_CHECK(p != nullptr, kOutOfMemory, "could not allocate the BF16 GEMM's packing buffers");
    }
    return p;
  }
};
thread_local PackBuffer tl_apack, tl_bpack;

}  // namespace

bool gemm_bf16_available() {
#if LLMKIT_BF16_GEMM
  static const bool cpu_has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  // set_cpu_target() narrows Highway's supported targets for tests: honour it (AVX3_DL and newer).
  return cpu_has && (hwy::SupportedTargets() & HWY_AVX3_DL) != 0;
#else
  return false;
#endif
}

void gemm_bf16(const ref::GemmArgs& g) {
#if LLMKIT_BF16_GEMM
  LLMKIT_ASSERT(gemm_bf16_available() && g.bf16 && (g.at == DType::kF32 || g.at == DType::kBF16) &&
                    (g.bt == DType::kF32 || g.bt == DType::kBF16),
                "cpu::gemm_bf16: needs AVX512_BF16 and F32/BF16 operands");
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t m = 0; m < g.M; ++m) std::memset(g.c + m * g.ldc, 0, static_cast<size_t>(g.N) * sizeof(float));
    return;
  }
  auto run = [&g](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    Block(g, m0, m1, n0, n1, tl_apack.get(kMC * kKP), tl_bpack.get(kNC * kKP));
  };
  // One contiguous range per thread (parallel_for_streaming: claimed dynamically, so a slowed thread's
  // range is run by whoever is free). Each range packs its own share of one operand and all of the
  // other: split the longer of M and N, so the operand packed once per thread is the smaller one.
  ThreadPool& pool = ThreadPool::global();
  const int64_t m_tiles = (g.M + kMR - 1) / kMR, n_panels = (g.N + kNR - 1) / kNR;
  const int64_t min_macs = int64_t{1} << 21;  // below ~2M multiply-adds a second thread costs more
  if (g.M >= g.N || n_panels < 2) {
    const int64_t grain = std::max<int64_t>(1, min_macs / std::max<int64_t>(1, kMR * g.N * g.K));
    pool.parallel_for_streaming(m_tiles, grain, [&](int64_t tb, int64_t te) {
      run(tb * kMR, te * kMR < g.M ? te * kMR : g.M, 0, g.N);
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, min_macs / std::max<int64_t>(1, g.M * kNR * g.K));
    pool.parallel_for_streaming(n_panels, grain, [&](int64_t pb, int64_t pe) {
      run(0, g.M, pb * kNR, pe * kNR < g.N ? pe * kNR : g.N);
    });
  }
#else
  (void)g;
  LLMKIT_ASSERT(false, "cpu::gemm_bf16: not compiled for this architecture");
#endif
}

}  // namespace llmkit::cpu
