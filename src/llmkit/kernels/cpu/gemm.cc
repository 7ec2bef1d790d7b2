// Dense CPU matmul y[M,N] = x[M,K] . w[N,K]^T for F32, F16 and BF16 weights (and the dequantizing
// fallback for block-quantized weights), compiled once per Highway target (foreach_target.h) and
// chosen at run time. Two paths:
//  * GEMM (M > kGemvMaxM): GotoBLAS/BLIS-style. Each thread owns a range of output columns; for
//    each block of kNC columns x kKC depth (the whole depth up to kKCOne for float weights) it packs
//    w into panels of NR = 2 vectors of columns,
//    laid out [k][NR] (converting F16/BF16/quantized rows to F32 on the way, so conversion is paid
//    once per M-sweep), then a kMR x NR register tile (6 x 16 floats on AVX2: 12 accumulators +
//    2 w vectors + 1 broadcast = 15 of 16 ymm) accumulates over the K block with FMAs, x rows
//    broadcast straight from memory (6 rows x kKC = 6 KiB stay in L1).
//  * GEMV (M <= kGemvMaxM, decode): w is streamed once, one row at a time for K <= kDot1MaxK
//    (one stream for the hardware prefetcher) else four rows at a time with a software prefetch
//    ahead, each dotted with the M rows of x (vector accumulators along K, one horizontal sum per
//    output; both orders give the same bits); one contiguous range of rows per thread.
// Both parallelise over N on ThreadPool::global() (over M when N is too narrow to split, and in one
// range of rows per thread when the product is taller than wide). Scratch is thread-local and grows
// once; no heap allocation per call after warm-up. BF16 compute (GemmArgs::bf16) runs in
// gemm_bf16.cc where the CPU has AVX512_BF16, else here on rounded F32 copies (cpu::gemm below).
// No BLAS inside the library: bench_gemm measured this kernel at parity with OpenBLAS 0.3.21 on a
// quiet machine (512^3 F32, 1 thread: 74.5 vs 74.8 GFLOPS) and at 0.81-0.99x its median under
// heavy contention (docs/BENCHMARKS.md, 2026-11-27), not enough to justify the dependency.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/cpu/quant_matmul.h"
#include "llmkit/kernels/ref/ops.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/tensor/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "llmkit/kernels/cpu/gemm.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace llmkit::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// Tuning (AMD EPYC Zen3 VM, AVX2, 2 vCPUs, 512 KiB L2/core; bench_gemm F32, 1 thread,
// 2026-11-27). kKC=256 keeps one packed panel (256 x 16 floats = 16 KiB) in L1 and must stay a
// multiple of 256 so quantized row slices start on block boundaries; kNC=256 makes the packed
// block 256 KiB, half of L2. The machine was shared with two concurrent builds while tuning
// (load average 4-8 on 2 cores, run-to-run spread +-30%): kKC 128/256/512 x kNC 128/256/512 all
// reached 65-75 GFLOPS on 512^3 and 1024^3 in their best run, i.e. no variant stood out of the
// noise, so 256/256 is kept for the cache arithmetic above. Re-tune on a quiet machine.
constexpr int kMR = 6;
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 256;
// The packed block (nc x kc floats) is kept to kPackFloats = 512 KiB, half of Zen 4's L2: nc shrinks
// when kc is long.
constexpr int64_t kPackFloats = 128 * 1024;
// A depth of at most kKCOne runs as one depth block when w is not block-quantized (the quantized
// row slices need kKC boundaries): SmolLM2's K = 576 ran as 256 + 256 + 64, so every output tile
// was read and written three times, and the head's logits (1024 x 49152 floats, 201 MB) went
// through memory three times per product. bench_gemm, SmolLM2's 1024-token F32 products, 2 threads,
// alternating builds (Zen 4): forward q 3.20-3.27 -> 3.07-3.14 ms, gate/up 8.9-9.4 -> 8.4-8.6, head
// 287-291 -> 272-274, down dx 9.1-9.2 -> 8.5-8.7; one block of 1024 (the dw products) was no faster.
// Up to 768 (GPT-2's K), against 640: fused qkv forward 17.7-18.4 -> 16.7 ms, head 377-380 -> 363-365.
constexpr int64_t kKCOne = 768;
inline bool BlockQuantized(DType t) { return t != DType::kF32 && t != DType::kF16 && t != DType::kBF16; }
inline int64_t DepthBlock(int64_t K, DType wt) { return K <= kKCOne && !BlockQuantized(wt) ? K : kKC; }
// M up to this uses the GEMV path: packing costs one pass over w per call, which pays off only
// once enough rows of x reuse each packed panel. Measured (N=K=4096, 1 thread, interleaved runs,
// same noisy machine): M=4 GEMV 10-11 vs packed GEMM 5.5-6.5 GFLOPS; M=16 both 13-19 GFLOPS.
constexpr int64_t kGemvMaxM = 4;

// Thread-local float buffer grown on demand and kept: after the first call of a given size, no
// allocation happens on this thread.
struct Scratch {
  hwy::AlignedFreeUniquePtr<float[]> buf;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      buf = hwy::AllocateAligned<float>(n);
      LLMKIT_ASSERT(buf != nullptr, "out of memory for matmul scratch (", n, " floats)");
      cap = n;
    }
    return buf.get();
  }
};
thread_local Scratch tl_pack, tl_rows, tl_x, tl_a, tl_bfull;

// w[n, k0 : k0+len) as floats: a pointer into w for F32, else converted into out[len].
const float* RowF32(const void* w, DType wt, int64_t K, int64_t n, int64_t k0, int64_t len, float* out) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  if (wt == DType::kF32) return static_cast<const float*>(w) + n * K + k0;
  if (wt == DType::kF16 || wt == DType::kBF16) {
    const uint16_t* src = static_cast<const uint16_t*>(w) + n * K + k0;
    int64_t i = 0;
    if (wt == DType::kF16) {
      const hn::Rebind<hwy::float16_t, DF> dh;
      const hwy::float16_t* s = reinterpret_cast<const hwy::float16_t*>(src);
      for (; i + L <= len; i += L) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, s + i)), d, out + i);
      for (; i < len; ++i) out[i] = f16_to_f32(src[i]);
    } else {
      const hn::Rebind<hwy::bfloat16_t, DF> dh;
      const hwy::bfloat16_t* s = reinterpret_cast<const hwy::bfloat16_t*>(src);
      for (; i + L <= len; i += L) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, s + i)), d, out + i);
      for (; i < len; ++i) out[i] = bf16_to_f32(src[i]);
    }
    return out;
  }
  // Block-quantized: k0 is a multiple of kKC (a multiple of every block size), K of the block size.
  const uint8_t* row = static_cast<const uint8_t*>(w) + static_cast<int64_t>(row_bytes(wt, K)) * n;
  ref::dequantize_row(wt, row + row_bytes(wt, k0), out, len);
  return out;
}

// A kKC-long row of zeros: the source of the padding columns of a partial panel.
alignas(64) const float kZeros[kKCOne > kKC ? kKCOne : kKC] = {};

// panel[k*NR + j] = rows[j][k] for k < kc, j < NR: the transposition at the heart of packing.
void TransposeRows(const float* const* rows, int64_t NR, int64_t kc, float* HWY_RESTRICT panel) {
  int64_t k0 = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  // 8x8 in-register transposes (AVX2 unpack/shuffle/permute; NR is a multiple of 8 on AVX2 and
  // AVX3). Packing with the scalar loop below took ~15% of a 128x1536x576 GEMM (bench_gemm).
  for (; k0 + 8 <= kc; k0 += 8) {
    for (int64_t j0 = 0; j0 < NR; j0 += 8) {
      __m256 r[8], t[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows[j0 + i] + k0);
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(panel + (k0 + i) * NR + j0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(panel + (k0 + i + 4) * NR + j0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
      }
    }
  }
#endif
  for (int64_t k = k0; k < kc; ++k) {
    for (int64_t j = 0; j < NR; ++j) panel[k * NR + j] = rows[j][k];
  }
}

// Packs columns [n0, n0+nn) x depth [k0, k0+kc) of w into ceil(nn/NR) panels, panel p at
// pw + p*kc*NR laid out [k][NR]; columns past nn are zero so the micro-kernel needs no masks.
// row_tmp holds NR rows of row_stride >= kc floats (converted rows of non-F32 weights).
void PackW(const void* w, DType wt, int64_t K, int64_t n0, int64_t nn, int64_t k0, int64_t kc, float* pw,
           float* row_tmp, int64_t row_stride) {
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  const float* rows[2 * HWY_MAX_BYTES / sizeof(float)];
  for (int64_t p = 0; p * NR < nn; ++p) {
    for (int64_t j = 0; j < NR; ++j) {
      rows[j] = p * NR + j < nn ? RowF32(w, wt, K, n0 + p * NR + j, k0, kc, row_tmp + j * row_stride) : kZeros;
    }
    TransposeRows(rows, NR, kc, pw + p * kc * NR);
  }
}

// y[MR, nvalid] (+)= x[MR, kc] (row stride ldx) . panel[kc, NR] (row stride ldp: NR for a packed
// panel, ldb when an F32 [K, N] B is read in place); accumulate adds to y.
template <int MR>
HWY_INLINE void MicroKernel(const float* HWY_RESTRICT x, int64_t ldx, const float* HWY_RESTRICT panel, int64_t ldp,
                            int64_t kc, float* HWY_RESTRICT y, int64_t ldy, int64_t nvalid, bool accumulate) {
  const DF d;
  using V = hn::Vec<DF>;
  const size_t L = hn::Lanes(d);
  V c0[MR], c1[MR];
  for (int m = 0; m < MR; ++m) c0[m] = c1[m] = hn::Zero(d);
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = hn::LoadU(d, panel + k * ldp);
    const V b1 = hn::LoadU(d, panel + k * ldp + L);
    for (int m = 0; m < MR; ++m) {
      const V a = hn::Set(d, x[m * ldx + k]);
      c0[m] = hn::MulAdd(a, b0, c0[m]);
      c1[m] = hn::MulAdd(a, b1, c1[m]);
    }
  }
  if (nvalid == static_cast<int64_t>(2 * L)) {
    for (int m = 0; m < MR; ++m) {
      float* yr = y + m * ldy;
      if (accumulate) {
        c0[m] = hn::Add(c0[m], hn::LoadU(d, yr));
        c1[m] = hn::Add(c1[m], hn::LoadU(d, yr + L));
      }
      hn::StoreU(c0[m], d, yr);
      hn::StoreU(c1[m], d, yr + L);
    }
    return;
  }
  HWY_ALIGN float tmp[2 * HWY_MAX_BYTES / sizeof(float)];
  for (int m = 0; m < MR; ++m) {
    hn::Store(c0[m], d, tmp);
    hn::Store(c1[m], d, tmp + L);
    float* yr = y + m * ldy;
    for (int64_t j = 0; j < nvalid; ++j) yr[j] = accumulate ? yr[j] + tmp[j] : tmp[j];
  }
}

void MicroDispatch(int mr, const float* x, int64_t ldx, const float* panel, int64_t ldp, int64_t kc, float* y,
                   int64_t ldy, int64_t nvalid, bool acc) {
  switch (mr) {
    case 6: MicroKernel<6>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
    case 5: MicroKernel<5>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
    case 4: MicroKernel<4>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
    case 3: MicroKernel<3>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
    case 2: MicroKernel<2>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
    default: MicroKernel<1>(x, ldx, panel, ldp, kc, y, ldy, nvalid, acc); break;
  }
}
static_assert(kMR == 6, "MicroDispatch handles 1..6 rows");

// Rows [m0, m1) x columns [n0, n1) of y, on the calling thread.
void GemmBlock(const float* x, const void* w, DType wt, float* y, int64_t N, int64_t K, int64_t m0, int64_t m1,
               int64_t n0, int64_t n1) {
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  float* pw = tl_pack.get(static_cast<size_t>(kPackFloats));
  const int64_t kcb = DepthBlock(K, wt);
  float* row_tmp = tl_rows.get(static_cast<size_t>(NR * kcb));
  // Equal column blocks of at most nc_max (a multiple of NR): 288 columns run as 2 x 144, not
  // 256 + 32, whose thin block streams every x row for 2 panels of work.
  const int64_t nc_max = std::max(NR, std::min(kNC, kPackFloats / std::min(kcb, K) / NR * NR));
  const int64_t n_blocks = (n1 - n0 + nc_max - 1) / nc_max;
  const int64_t nc = std::min(nc_max, ((n1 - n0 + n_blocks - 1) / n_blocks + NR - 1) / NR * NR);
  for (int64_t nb = n0; nb < n1; nb += nc) {
    const int64_t nn = std::min(nc, n1 - nb);
    for (int64_t kb = 0; kb < K; kb += kcb) {
      const int64_t kc = std::min(kcb, K - kb);
      PackW(w, wt, K, nb, nn, kb, kc, pw, row_tmp, kcb);
      for (int64_t mb = m0; mb < m1; mb += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, m1 - mb));
        for (int64_t p = 0; p * NR < nn; ++p) {
          MicroDispatch(mr, x + mb * K + kb, K, pw + p * kc * NR, NR, kc, y + mb * N + nb + p * NR, N,
                        std::min(NR, nn - p * NR), kb > 0);
        }
      }
    }
  }
}

void Gemm(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  ThreadPool& pool = ThreadPool::global();
  const int64_t n_panels = (N + NR - 1) / NR;
  // ~64k FMAs per task at least: below that, waking a worker costs more than it saves.
  const int64_t min_flops = int64_t{1} << 16;
  if (M >= N && M >= 32 * kMR * pool.size()) {
    // Taller than wide (training's 1024-token products, N <= M): one range of rows per thread, each
    // packing all of w once per block; split by columns, every share would stream all of x again.
    const int64_t m_tiles = (M + kMR - 1) / kMR;
    pool.parallel_for_streaming(m_tiles, 1, [&](int64_t tb, int64_t te) {
      GemmBlock(x, w, wt, y, N, K, tb * kMR, std::min(M, te * kMR), 0, N);
    });
  } else if (n_panels >= 2 * pool.size() || M < 2 * kMR) {
    const int64_t grain = std::max<int64_t>(1, min_flops / std::max<int64_t>(1, M * K * NR));
    pool.parallel_for(n_panels, grain, [&](int64_t pb, int64_t pe) {
      GemmBlock(x, w, wt, y, N, K, 0, M, pb * NR, std::min(N, pe * NR));
    });
  } else {  // narrow N, tall M: split rows (each thread packs the same w; N is small here)
    const int64_t m_tiles = (M + kMR - 1) / kMR;
    const int64_t grain = std::max<int64_t>(1, min_flops / std::max<int64_t>(1, kMR * K * N));
    pool.parallel_for(m_tiles, grain, [&](int64_t tb, int64_t te) {
      GemmBlock(x, w, wt, y, N, K, tb * kMR, std::min(M, te * kMR), 0, N);
    });
  }
}

// ---- General strided GEMM (ref::GemmArgs): the backward products of training ----------------------

// Panels of B for columns [n0, n0+nn) x depth [k0, k0+kc) when B is stored [K, N] (row stride ldb):
// a panel row is a contiguous slice of a B row, so packing is a copy (a widening for F16/BF16).
void PackKN(const void* b, DType bt, int64_t ldb, int64_t n0, int64_t nn, int64_t k0, int64_t kc, float* pw,
            float* row_tmp) {
  const DF d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const int64_t NR = 2 * L;
  for (int64_t p = 0; p * NR < nn; ++p) {
    const int64_t cols = std::min(NR, nn - p * NR);
    float* dst = pw + p * kc * NR;
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = RowF32(b, bt, ldb, k0 + k, n0 + p * NR, cols, row_tmp);
      float* drow = dst + k * NR;
      if (cols == NR) {
        hn::Store(hn::LoadU(d, src), d, drow);
        hn::Store(hn::LoadU(d, src + L), d, drow + L);
      } else {
        int64_t j = 0;
        for (; j < cols; ++j) drow[j] = src[j];
        for (; j < NR; ++j) drow[j] = 0.0f;
      }
    }
  }
}

// A transposed A (stored [K, M]) is packed into row-major [rows][kc] slabs of up to kMC rows, once
// per depth block, with the 8x8 register transposes of TransposeRows (packing it a register tile
// at a time, inside the column-block loop, took ~13% of a training step), then every column block
// of B runs over the slab. kAPackFloats bounds the slab (4 MiB: L2/L3).
constexpr int64_t kAPackFloats = int64_t{1} << 20;
constexpr int64_t kTallRows = 8192, kTallSlab = 80 * kMR;
constexpr int64_t kTallPackFloats = int64_t{4} << 20;  // 16 MiB
// B can be read in place (an F32 [K, N] whose rows do not all fall into a few cache sets): see
// GemmExBlock. Not on the AVX2 target: measured on a Zen 3 (AVX2, no AVX-512), the panels' strided
// rows (2304 B apart for SmolLM2) streamed slower than packed panels, where Zen 4 (AVX-512 targets)
// ran in place 10% faster. bench_gemm there, minima of 3 alternating runs: q/o dx 7.30 -> 5.45 ms
// packed; a SmolLM2 F32 training step, 7 alternations of one binary: 106 -> 109.5 tok/s (medians),
// packed ahead in 6 of 7 pairs. The target stands in for the CPU: other AVX2-only CPUs are untested.
constexpr bool kBInPlaceTarget = !(HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2);
inline bool BInPlace(const ref::GemmArgs& g) {
  return kBInPlaceTarget && g.b_kn && g.bt == DType::kF32 && g.ldb % 256 != 0;
}

// Columns [n0, n1) of C for rows [m0, m1) whose A rows are x (row stride ldx, depth kb.. of this slab
// already applied by the caller: x points at depth kb), for one depth block. bdirect (or null): B's
// F32 [K, N] rows read in place (row stride ldb) for the whole panels; the last partial panel is
// packed in pw as usual.
void GemmExPanelLoop(const ref::GemmArgs& g, const float* x, int64_t ldx, int64_t m0, int64_t m1, int64_t nb,
                     int64_t nn, int64_t kb, int64_t kc, const float* pw, const float* bdirect) {
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  const bool acc = g.accumulate || kb > 0;
  for (int64_t mb = m0; mb < m1; mb += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, m1 - mb));
    for (int64_t p = 0; p * NR < nn; ++p) {
      const bool direct = bdirect && (p + 1) * NR <= nn;
      MicroDispatch(mr, x + (mb - m0) * ldx, ldx, direct ? bdirect + p * NR : pw + p * kc * NR, direct ? g.ldb : NR,
                    kc, g.c + mb * g.ldc + nb + p * NR, g.ldc, std::min(NR, nn - p * NR), acc);
    }
  }
}

// Rows [m0, m1) x columns [n0, n1) of C, on the calling thread: GemmBlock's loop nest over B's
// column and depth blocks (B packed from either layout).
void GemmExBlock(const ref::GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  float* pw = tl_pack.get(static_cast<size_t>(kPackFloats));
  const int64_t kcb = DepthBlock(g.K, g.bt);
  float* row_tmp = tl_rows.get(static_cast<size_t>(NR * kcb));
  const int64_t nc_max = std::max(NR, std::min(kNC, kPackFloats / std::min(kcb, g.K) / NR * NR));
  const int64_t n_blocks = (n1 - n0 + nc_max - 1) / nc_max;
  const int64_t nc = std::min(nc_max, ((n1 - n0 + n_blocks - 1) / n_blocks + NR - 1) / NR * NR);
  // An F32 B stored [K, N] needs no packing: a panel row is a contiguous slice of a B row, which the
  // micro-kernel loads in place (packing it was ~5% of an F32 training step); only a last partial
  // panel is packed, for its zero padding. Rows of B a multiple of 1 KiB apart fall into a few cache
  // sets (6 KiB: 2 of L1's 64), and many rows reusing each panel (the tied head's dw, 24k rows per
  // thread) need the block to stay in L2: those pack (bench_gemm, SmolLM2's 1024-token products:
  // in place 10% faster at 576 columns, 5-10% slower at 1536 columns or 24k rows; Zen 4, the AVX-512
  // targets: on AVX2 BInPlace packs).
  // A transposed A of very many rows (the tied head's dw = dy^T x: 24k rows per thread) runs in short
  // slabs of kTallSlab rows with B read in place: C's slab then stays in L2 over the depth blocks,
  // where 4k-row slabs streamed C (113 MB for SmolLM2's head) through memory once per depth block
  // (bench_gemm, head dw at 1024 tokens: 370 -> 325-347 ms).
  const bool tall_at = g.a_t && m1 - m0 > kTallRows;
  const bool direct = BInPlace(g) && (tall_at || m1 - m0 <= 1024);
  // ...and a B that must be packed there (GPT-2's head dw: x's rows are 768 floats apart) is packed
  // whole, once, and shared by every slab, while it fits kTallPackFloats (bench_gemm, GPT-2's head
  // dw at 1024 tokens: 436-444 -> 390-395 ms).
  const int64_t n_blocks_all = (n1 - n0 + nc - 1) / nc;
  const bool prepacked = tall_at && !direct && n_blocks_all * nc * g.K <= kTallPackFloats;
  float* bfull = prepacked ? tl_bfull.get(static_cast<size_t>(n_blocks_all * nc * g.K)) : nullptr;
  // Block (nb, kb) of the whole packed B: nb's blocks are g.K x nc apart, kb's panels kb x nn apart.
  auto bfull_at = [&](int64_t nb, int64_t nn, int64_t kb) {
    return bfull + (nb - n0) / nc * nc * g.K + kb * ((nn + NR - 1) / NR * NR);
  };
  auto pack_b = [&](int64_t nb, int64_t nn, int64_t kb, int64_t kc) -> const float* {
    if (direct) {
      const int64_t full = nn / NR * NR;
      if (full < nn) PackKN(g.b, g.bt, g.ldb, nb + full, nn - full, kb, kc, pw + full / NR * kc * NR, row_tmp);
      return static_cast<const float*>(g.b) + kb * g.ldb + nb;
    }
    if (g.b_kn) {
      PackKN(g.b, g.bt, g.ldb, nb, nn, kb, kc, pw, row_tmp);
    } else {
      PackW(g.b, g.bt, g.ldb, nb, nn, kb, kc, pw, row_tmp, kcb);
    }
    return nullptr;
  };
  if (!g.a_t) {
    for (int64_t nb = n0; nb < n1; nb += nc) {
      const int64_t nn = std::min(nc, n1 - nb);
      for (int64_t kb = 0; kb < g.K; kb += kcb) {
        const int64_t kc = std::min(kcb, g.K - kb);
        const float* bd = pack_b(nb, nn, kb, kc);
        GemmExPanelLoop(g, static_cast<const float*>(g.a) + m0 * g.lda + kb, g.lda, m0, m1, nb, nn, kb, kc, pw, bd);
      }
    }
    return;
  }
  if (prepacked) {
    for (int64_t nb = n0; nb < n1; nb += nc) {
      const int64_t nn = std::min(nc, n1 - nb);
      for (int64_t kb = 0; kb < g.K; kb += kcb) {
        const int64_t kc = std::min(kcb, g.K - kb);
        if (g.b_kn) {
          PackKN(g.b, g.bt, g.ldb, nb, nn, kb, kc, bfull_at(nb, nn, kb), row_tmp);
        } else {
          PackW(g.b, g.bt, g.ldb, nb, nn, kb, kc, bfull_at(nb, nn, kb), row_tmp, kcb);
        }
      }
    }
  }
  const int64_t mc_max =
      tall_at && (direct || prepacked) ? kTallSlab : std::max<int64_t>(kMR, kAPackFloats / kcb / kMR * kMR);
  float* apack = tl_a.get(static_cast<size_t>(std::min(mc_max, m1 - m0) * kcb));
  const float* rows[kKCOne > kKC ? kKCOne : kKC];
  for (int64_t mc0 = m0; mc0 < m1; mc0 += mc_max) {
    const int64_t mc1 = std::min(m1, mc0 + mc_max);
    for (int64_t kb = 0; kb < g.K; kb += kcb) {
      const int64_t kc = std::min(kcb, g.K - kb);
      // apack[m * kc + k] = A(mc0 + m, kb + k) = a[(kb + k) * lda + mc0 + m]
      for (int64_t k = 0; k < kc; ++k) rows[k] = static_cast<const float*>(g.a) + (kb + k) * g.lda + mc0;
      if (kc % 8 == 0) {
        TransposeRows(rows, kc, mc1 - mc0, apack);
      } else {
        for (int64_t m = 0; m < mc1 - mc0; ++m)
          for (int64_t k = 0; k < kc; ++k) apack[m * kc + k] = rows[k][m];
      }
      for (int64_t nb = n0; nb < n1; nb += nc) {
        const int64_t nn = std::min(nc, n1 - nb);
        if (prepacked) {
          GemmExPanelLoop(g, apack, kc, mc0, mc1, nb, nn, kb, kc, bfull_at(nb, nn, kb), nullptr);
          continue;
        }
        const float* bd = pack_b(nb, nn, kb, kc);
        GemmExPanelLoop(g, apack, kc, mc0, mc1, nb, nn, kb, kc, pw, bd);
      }
    }
  }
}

void GemmEx(const ref::GemmArgs& g) {
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t m = 0; m < g.M; ++m) std::memset(g.c + m * g.ldc, 0, static_cast<size_t>(g.N) * sizeof(float));
    return;
  }
  const DF d;
  const int64_t NR = 2 * static_cast<int64_t>(hn::Lanes(d));
  ThreadPool& pool = ThreadPool::global();
  const int64_t n_panels = (g.N + NR - 1) / NR;
  const int64_t min_flops = int64_t{1} << 16;
  // A transposed A is split by rows when there are enough: each thread then transposes only its own
  // rows of A (split by columns, every thread would transpose all of A). Unless B is the wider operand
  // and must be packed (a row split packs all of it in every thread): SmolLM2's down-projection dw
  // (M 576, N 1536, ldb 1536) ran 10.5-10.7 ms split by rows and 9.4-9.5 by columns, while the k/v
  // dw (M 192, N 576, B read in place) ran 1.05 ms by rows and 1.27 by columns (bench_gemm).
  const bool split_m = g.a_t && g.M >= 4 * kMR * pool.size() && (g.M >= g.N || BInPlace(g));
  if (g.M >= g.N && g.M >= 32 * kMR * pool.size()) {  // as Gemm: one range of rows per thread
    const int64_t m_tiles = (g.M + kMR - 1) / kMR;
    pool.parallel_for_streaming(m_tiles, 1, [&](int64_t tb, int64_t te) {
      GemmExBlock(g, tb * kMR, std::min(g.M, te * kMR), 0, g.N);
    });
  } else if (!split_m && (n_panels >= 2 * pool.size() || g.M < 2 * kMR)) {
    const int64_t grain = std::max<int64_t>(1, min_flops / std::max<int64_t>(1, g.M * g.K * NR));
    pool.parallel_for(n_panels, grain, [&](int64_t pb, int64_t pe) {
      GemmExBlock(g, 0, g.M, pb * NR, std::min(g.N, pe * NR));
    });
  } else {
    const int64_t m_tiles = (g.M + kMR - 1) / kMR;
    const int64_t grain = std::max<int64_t>(1, min_flops / std::max<int64_t>(1, kMR * g.K * g.N));
    pool.parallel_for(m_tiles, grain, [&](int64_t tb, int64_t te) {
      GemmExBlock(g, tb * kMR, std::min(g.M, te * kMR), 0, g.N);
    });
  }
}

// One vector of row elements as floats: F32 loads, F16/BF16 load half a vector and widen.
template <typename T>
HWY_INLINE hn::Vec<DF> LoadF32(DF d, const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, DF>(), p));
  }
}
template <typename T>
HWY_INLINE float ScalarF32(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *p;
  } else if constexpr (std::is_same_v<T, hwy::float16_t>) {
    return f16_to_f32(*reinterpret_cast<const uint16_t*>(p));
  } else {
    return bf16_to_f32(*reinterpret_cast<const uint16_t*>(p));
  }
}

// out[r] = dot(x[0:K], rows[r][0:K]) for r < 4. F16/BF16 rows are widened in registers, so the
// weights are read from memory once, at their stored size (decode is bound by those bytes).
//
// `next` (may be null): the first byte of a later group of 4 rows (GemvRange picks the one >= 16 KB
// ahead), prefetched a slice per step so that it is in cache when its turn comes. The 4 rows are read interleaved (4 streams a row
// apart), which the hardware prefetcher follows poorly: SmolLM2-135M F16 decode on one Zen 3
// core read weights at ~10 GB/s without this, against ~20 GB/s for a plain read stream. Into L2
// (prefetcht1), not L1: on Zen 4, weights beyond L3, one thread, 2048 x 8192 read 14.8 GB/s with
// L1 prefetches and 21.3 with L2 ones (8192 x 2048: 19.1 -> 22.5; bench_quant's cold case).
HWY_INLINE void PrefetchL2(const uint8_t* p) {
#if HWY_ARCH_X86
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T1);
#else
  hwy::Prefetch(p);
#endif
}

template <typename T>
HWY_INLINE void Dot4(const float* HWY_RESTRICT x, const T* const* rows, int64_t K, float* out,
                     const uint8_t* next = nullptr) {
  const DF d;
  using V = hn::Vec<DF>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const T* r0 = rows[0];
  const T* r1 = rows[1];
  const T* r2 = rows[2];
  const T* r3 = rows[3];
  V a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  V b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
  int64_t k = 0;
  // Two accumulators per row: FMA latency 4 x 2 ports needs 8 independent chains.
  constexpr int64_t kStepBytes = 4 * static_cast<int64_t>(sizeof(T));  // next group's bytes per k
  for (; k + 2 * L <= K; k += 2 * L) {
    if (next) {
      for (int64_t b = 0; b < 2 * L * kStepBytes; b += 64) PrefetchL2(next + k * kStepBytes + b);
    }
    const V xa = hn::LoadU(d, x + k), xb = hn::LoadU(d, x + k + L);
    a0 = hn::MulAdd(xa, LoadF32(d, r0 + k), a0);
    a1 = hn::MulAdd(xa, LoadF32(d, r1 + k), a1);
    a2 = hn::MulAdd(xa, LoadF32(d, r2 + k), a2);
    a3 = hn::MulAdd(xa, LoadF32(d, r3 + k), a3);
    b0 = hn::MulAdd(xb, LoadF32(d, r0 + k + L), b0);
    b1 = hn::MulAdd(xb, LoadF32(d, r1 + k + L), b1);
    b2 = hn::MulAdd(xb, LoadF32(d, r2 + k + L), b2);
    b3 = hn::MulAdd(xb, LoadF32(d, r3 + k + L), b3);
  }
  for (; k + L <= K; k += L) {
    const V xa = hn::LoadU(d, x + k);
    a0 = hn::MulAdd(xa, LoadF32(d, r0 + k), a0);
    a1 = hn::MulAdd(xa, LoadF32(d, r1 + k), a1);
    a2 = hn::MulAdd(xa, LoadF32(d, r2 + k), a2);
    a3 = hn::MulAdd(xa, LoadF32(d, r3 + k), a3);
  }
  out[0] = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, b0)));
  out[1] = hn::GetLane(hn::SumOfLanes(d, hn::Add(a1, b1)));
  out[2] = hn::GetLane(hn::SumOfLanes(d, hn::Add(a2, b2)));
  out[3] = hn::GetLane(hn::SumOfLanes(d, hn::Add(a3, b3)));
  for (; k < K; ++k) {
    out[0] += x[k] * ScalarF32(r0 + k);
    out[1] += x[k] * ScalarF32(r1 + k);
    out[2] += x[k] * ScalarF32(r2 + k);
    out[3] += x[k] * ScalarF32(r3 + k);
  }
}

// dot(x[0:K], row[0:K]) with Dot4's arithmetic for one of its rows (the same two chains, the same
// order, so the same bits): Dot4 and Dot1 are interchangeable per row.
template <typename T>
HWY_INLINE float Dot1(const float* HWY_RESTRICT x, const T* HWY_RESTRICT r0, int64_t K) {
  const DF d;
  using V = hn::Vec<DF>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  V a0 = hn::Zero(d), b0 = hn::Zero(d);
  int64_t k = 0;
  for (; k + 2 * L <= K; k += 2 * L) {
    a0 = hn::MulAdd(hn::LoadU(d, x + k), LoadF32(d, r0 + k), a0);
    b0 = hn::MulAdd(hn::LoadU(d, x + k + L), LoadF32(d, r0 + k + L), b0);
  }
  for (; k + L <= K; k += L) a0 = hn::MulAdd(hn::LoadU(d, x + k), LoadF32(d, r0 + k), a0);
  float out = hn::GetLane(hn::SumOfLanes(d, hn::Add(a0, b0)));
  for (; k < K; ++k) out += x[k] * ScalarF32(r0 + k);
  return out;
}

// Up to this K, stored float rows are read one at a time (Dot1): one sequential stream that the
// hardware prefetcher follows, no software prefetch. Beyond it x (K floats) no longer stays in L1
// next to the stream, and four rows per pass over x (Dot4) win. Measured on Zen 4, one thread:
// SmolLM2-135M F16 decode 62.5-65.6 -> 74.5-82.7 tokens/s (3 interleaved runs each); bench_quant
// cold F16 1536 x 576 ~18 -> ~21 GB/s, 8192 x 2048 even, 2048 x 8192 16-19 -> 10-12 (so not there).
constexpr int64_t kDot1MaxK = 2048;

// Rows of w in groups of 4, each group dotted with all M rows of x while it is in L1/L2.
template <typename T>
void GemvRange(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K, int64_t gb,
               int64_t ge) {
  // Quantized rows are dequantized into scratch first (T = float then).
  float* tmp = is_quantized(wt) ? tl_rows.get(static_cast<size_t>(4 * K)) : nullptr;
  if (tmp == nullptr && K <= kDot1MaxK) {
    for (int64_t n = 4 * gb; n < std::min<int64_t>(N, 4 * ge); ++n) {
      const T* row = static_cast<const T*>(w) + n * K;
      for (int64_t m = 0; m < M; ++m) y[m * N + n] = Dot1(x + m * K, row, K);
    }
    return;
  }
  for (int64_t g = gb; g < ge; ++g) {
    const int64_t n = 4 * g;
    const int nr = static_cast<int>(std::min<int64_t>(4, N - n));
    const T* rows[4] = {};
    for (int r = 0; r < 4; ++r) {
      if (r >= nr) {
        rows[r] = rows[0];
      } else if (tmp != nullptr) {
        rows[r] = reinterpret_cast<const T*>(RowF32(w, wt, K, n + r, 0, K, tmp + r * K));
      } else {
        rows[r] = static_cast<const T*>(w) + (n + r) * K;
      }
    }
    // Float rows that are the weights themselves are contiguous: prefetch the group at least
    // kPrefetchAhead bytes ahead. One group ahead is only 4.6 KB at K = 576 (SmolLM2), about one
    // DRAM latency of streaming: bench_quant's cold F16 1536 x 576 read ~15 GB/s with it and ~19
    // with 16 KB (one Zen 4 thread, medians of 3).
    constexpr int64_t kPrefetchAhead = 16384;
    const int64_t group_bytes = 4 * K * static_cast<int64_t>(sizeof(T));
    const int64_t ahead = std::max<int64_t>(1, (kPrefetchAhead + group_bytes - 1) / group_bytes);
    const int64_t pg = std::min(g + ahead, ge - 1);  // else the range's last group (see quant_i8.cc)
    const uint8_t* next = tmp == nullptr && pg > g && 4 * pg + 4 <= N
                              ? reinterpret_cast<const uint8_t*>(static_cast<const T*>(w) + 4 * pg * K)
                              : nullptr;
    for (int64_t m = 0; m < M; ++m) {
      float out[4];
      Dot4(x + m * K, rows, K, out, m == 0 ? next : nullptr);
      for (int r = 0; r < nr; ++r) y[m * N + n + r] = out[r];
    }
  }
}

void Gemv(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  const int64_t groups = (N + 3) / 4;
  // Each task covers at least ~32k weights so the wake-up (~1 us) stays small next to the work.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, 4 * K));
  ThreadPool::global().parallel_for_streaming(groups, grain, [&](int64_t gb, int64_t ge) {
    if (wt == DType::kF16) {
      GemvRange<hwy::float16_t>(x, w, wt, y, M, N, K, gb, ge);
    } else if (wt == DType::kBF16) {
      GemvRange<hwy::bfloat16_t>(x, w, wt, y, M, N, K, gb, ge);
    } else {
      GemvRange<float>(x, w, wt, y, M, N, K, gb, ge);
    }
  });
}

void Matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    std::memset(y, 0, static_cast<size_t>(M * N) * sizeof(float));
    return;
  }
  if (M <= kGemvMaxM) {
    Gemv(x, w, wt, y, M, N, K);
  } else {
    Gemm(x, w, wt, y, M, N, K);
  }
}

void MatmulBF16(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  const size_t n = static_cast<size_t>(M * K);
  float* xf = tl_x.get(n == 0 ? 1 : n);
  const DF d;
  const hn::Rebind<hwy::bfloat16_t, DF> dh;
  const size_t L = hn::Lanes(d);
  const hwy::bfloat16_t* s = reinterpret_cast<const hwy::bfloat16_t*>(x);
  size_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(hn::PromoteTo(d, hn::LoadU(dh, s + i)), d, xf + i);
  for (; i < n; ++i) xf[i] = bf16_to_f32(x[i]);
  Matmul(xf, w, DType::kBF16, y, M, N, K);
}

}  // namespace HWY_NAMESPACE
}  // namespace llmkit::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmkit::cpu {

HWY_EXPORT(Matmul);
HWY_EXPORT(MatmulBF16);
HWY_EXPORT(GemmEx);

void matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  if (is_quantized(wt) && quant_matmul_supported(wt)) {
    quant_matmul(x, w, wt, y, M, N, K);
    return;
  }
  HWY_DYNAMIC_DISPATCH(Matmul)(x, w, wt, y, M, N, K);
}

void matmul_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K) {
  if (M >= 8 && gemm_bf16_available()) {  // (decode-sized M keeps the GEMV path)
    ref::GemmArgs g;
    g.M = M, g.N = N, g.K = K;
    g.a = x, g.at = DType::kBF16, g.lda = K;
    g.b = w, g.bt = DType::kBF16, g.ldb = K;
    g.c = y, g.ldc = N, g.bf16 = true;
    gemm_bf16(g);
    return;
  }
  HWY_DYNAMIC_DISPATCH(MatmulBF16)(x, w, y, M, N, K);
}

namespace {
// A stored operand (rows x cols, row stride ld) of dtype t as F32, rounded to BF16 when `round`.
std::vector<float> widened(const void* p, DType t, int64_t rows, int64_t cols, int64_t ld, bool round) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * ld + c;
      float v = t == DType::kF32    ? static_cast<const float*>(p)[i]
                : t == DType::kBF16 ? bf16_to_f32(static_cast<const uint16_t*>(p)[i])
                                    : f16_to_f32(static_cast<const uint16_t*>(p)[i]);
      if (round) v = bf16_to_f32(f32_to_bf16(v));
      out[static_cast<size_t>(r * cols + c)] = v;
    }
  }
  return out;
}
}  // namespace

void gemm(const ref::GemmArgs& g) {
  LLMKIT_ASSERT(g.bt == DType::kF32 || g.bt == DType::kF16 || g.bt == DType::kBF16, "cpu::gemm: B of dtype ",
                dtype_name(g.bt), " (F32, F16 or BF16 only)");
  LLMKIT_ASSERT(g.at == DType::kF32 || g.at == DType::kBF16, "cpu::gemm: A of dtype ", dtype_name(g.at),
                " (F32 or BF16 only)");
  LLMKIT_ASSERT(!(g.bf16 && g.bt == DType::kF16), "cpu::gemm: BF16 compute with an F16 B");
  if (g.bf16 && gemm_bf16_available()) {
    gemm_bf16(g);
    return;
  }
  if ((g.bf16 || g.at != DType::kF32) && g.M > 0 && g.N > 0 && g.K > 0) {
    // No BF16 dot product here (or a BF16 A): the same values through the F32 GEMM, from copies.
    ref::GemmArgs f = g;
    const int64_t a_rows = g.a_t ? g.K : g.M, a_cols = g.a_t ? g.M : g.K;
    const std::vector<float> a = widened(g.a, g.at, a_rows, a_cols, g.lda, g.bf16);
    f.a = a.data(), f.at = DType::kF32, f.lda = a_cols, f.bf16 = false;
    std::vector<float> b;
    if (g.bf16 && g.bt == DType::kF32) {
      const int64_t b_rows = g.b_kn ? g.K : g.N, b_cols = g.b_kn ? g.N : g.K;
      b = widened(g.b, g.bt, b_rows, b_cols, g.ldb, true);
      f.b = b.data(), f.ldb = b_cols;
    }
    HWY_DYNAMIC_DISPATCH(GemmEx)(f);
    return;
  }
  HWY_DYNAMIC_DISPATCH(GemmEx)(g);
}

}  // namespace llmkit::cpu
#endif  // HWY_ONCE
