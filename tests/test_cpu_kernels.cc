// Every cpu_table() kernel on every SIMD target of this machine (cpu_targets(), forced with
// set_cpu_target) against the reference: ref_table()'s entry when it exists, else a small local
// scalar reference in double precision below (the reference kernels land separately). Sizes are
// deliberately odd (not multiples of the 6 x 2-vector GEMM tile, the 256 K-block or the 256-column
// N-block; K=1, N=1, M=1) and cover the GEMV path (M <= 4), the N-split and the M-split GEMM paths.
// Error bounds are per dtype and derived next to each check. Quantized weights: the types that
// cpu::quant_matmul handles are tested by its owner (test_quant); the rest go through this file's
// dequantizing fallback and are checked here.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/error.h"
#include "llmkit/kernels/cpu/quant_matmul.h"
#include "llmkit/kernels/ref/ops.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/tensor/half.h"

// Counts heap allocations (all threads) so the tests can assert that a warmed-up kernel call does
// none.
// (hwy::AllocateAligned uses malloc, so the kernels' scratch growth itself is not counted; this
// catches std::vector/std::function/string allocations in the dispatch path.) GCC flags a
// replaced operator new paired with free() inside gtest's inlined code: a false positive here.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<long> g_allocs{0};
void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace llmkit {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of float32

std::vector<float> rand_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& f : v) f = u(rng);
  return v;
}

// Local references (double accumulation), used when ref_table() has no entry yet.
void local_matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = n * K + k;
        const float wv = wt == DType::kF32   ? static_cast<const float*>(w)[i]
                         : wt == DType::kF16 ? f16_to_f32(static_cast<const uint16_t*>(w)[i])
                                             : bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
        s += static_cast<double>(x[m * K + k]) * wv;
      }
      y[m * N + n] = static_cast<float>(s);
    }
  }
}
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Runs the body once per SIMD target, restoring the best target afterwards.
class CpuKernels : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { set_cpu_target(GetParam()); }
  void TearDown() override { reset_cpu_target(); }
};

TEST(CpuTargets, ListIsStableAndSelectable) {
  const auto all = cpu_targets();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(current_cpu_target(), all.front());
  for (const auto& t : all) {
    set_cpu_target(t);
    EXPECT_EQ(current_cpu_target(), t);
    EXPECT_EQ(cpu_targets(), all) << "the list must not shrink while a target is forced";
  }
  reset_cpu_target();
  EXPECT_EQ(current_cpu_target(), all.front());
  EXPECT_THROW(set_cpu_target("NO_SUCH_TARGET"), Error);
  EXPECT_EQ(current_cpu_target(), all.front());
}

TEST(CpuTargets, EveryEntryFilled) {
  const KernelTable& t = cpu_table();
  EXPECT_TRUE(t.matmul && t.matmul_bf16 && t.add && t.mul && t.scale && t.silu && t.swiglu && t.rmsnorm &&
              t.softmax && t.attention && t.gemm);
}

struct Shape { int64_t M, N, K; };
const Shape kShapes[] = {
    {1, 1, 1},   {1, 17, 33},  {3, 5, 1},    {1, 1, 300},   {4, 37, 129},  {5, 3, 7},    {7, 33, 257},
    {13, 1, 64}, {64, 64, 64}, {67, 45, 300}, {9, 300, 31}, {50, 1, 20},  {50, 16, 20}, {23, 70, 520},
    {400, 24, 72},  // taller than wide, enough rows for one range of rows per thread
    {5, 40, 700},   // deeper than one depth block of F32/F16/BF16 (640)
};

// Both sides compute exact products of F32 values (F16/BF16 weights and BF16 activations widen to
// F32 exactly) and accumulate K of them in F32 (or double): by the standard bound each side's
// error is at most gamma_K * sum|x||w| ~ K*u*sum|x||w|; the difference of the two is at most twice
// that. (The blocked kernel's error is in practice ~sqrt(K)*u, so this is loose but rigorous.)
void check_matmul(const float* x, const std::vector<float>& wf, const void* w, DType wt, int64_t M, int64_t N,
                  int64_t K, const float* y, const char* what) {
  std::vector<float> ref(static_cast<size_t>(M * N));
  if (ref_table().matmul) {
    ref_table().matmul(x, w, wt, ref.data(), M, N, K);
  } else {
    local_matmul(x, w, wt, ref.data(), M, N, K);
  }
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double absdot = 0;
      for (int64_t k = 0; k < K; ++k) absdot += std::fabs(static_cast<double>(x[m * K + k]) * wf[n * K + k]);
      const double tol = 2.0 * (K + 2) * kU * absdot + 1e-30;
      ASSERT_NEAR(y[m * N + n], ref[m * N + n], tol)
          << what << " M=" << M << " N=" << N << " K=" << K << " at m=" << m << " n=" << n;
    }
  }
}

TEST_P(CpuKernels, MatmulFloatWeights) {
  for (int threads : {1, 2}) {
    ThreadPool::set_global_threads(threads);
    for (const Shape& s : kShapes) {
      auto x = rand_vec(s.M * s.K, 1), wf = rand_vec(s.N * s.K, 2);
      for (DType wt : {DType::kF32, DType::kF16, DType::kBF16}) {
        std::vector<uint16_t> wh;
        std::vector<float> wexact = wf;  // the weight values as the kernel sees them
        if (wt != DType::kF32) {
          wh.resize(wf.size());
          for (size_t i = 0; i < wf.size(); ++i) {
            wh[i] = wt == DType::kF16 ? f32_to_f16(wf[i]) : f32_to_bf16(wf[i]);
            wexact[i] = wt == DType::kF16 ? f16_to_f32(wh[i]) : bf16_to_f32(wh[i]);
          }
        }
        const void* w = wt == DType::kF32 ? static_cast<const void*>(wf.data()) : static_cast<const void*>(wh.data());
        std::vector<float> y(static_cast<size_t>(s.M * s.N), std::nanf(""));
        cpu_table().matmul(x.data(), w, wt, y.data(), s.M, s.N, s.K);
        check_matmul(x.data(), wexact, w, wt, s.M, s.N, s.K, y.data(), dtype_name(wt));
      }
    }
  }
  ThreadPool::set_global_threads(2);
}

// Runs g (C from c0; g.c is set here) on cpu_table() and on ref::gemm and checks every element of C
// against the reference within the float-summation bound 2 (K + 3) u sum |a b| (plus |c0| when
// accumulating), and that the padding between C's rows is never written. bf: B's values as floats.
void expect_gemm_matches_ref(ref::GemmArgs g, const std::vector<float>& c0, const float* bf, const std::string& what) {
  std::vector<float> c = c0, want = c0;
  g.c = c.data();
  cpu_table().gemm(g);
  g.c = want.data();
  ref::gemm(g);
  const float* a = static_cast<const float*>(g.a);
  const int64_t ldc = g.ldc;
  for (int64_t m = 0; m < g.M; ++m) {
    for (int64_t n = 0; n < g.N; ++n) {
      double absdot = g.accumulate ? std::fabs(c0[m * ldc + n]) : 0.0;
      for (int64_t k = 0; k < g.K; ++k)
        absdot += std::fabs(static_cast<double>(g.a_t ? a[k * g.lda + m] : a[m * g.lda + k]) *
                            (g.b_kn ? bf[k * g.ldb + n] : bf[n * g.ldb + k]));
      ASSERT_NEAR(c[m * ldc + n], want[m * ldc + n], 2.0 * (g.K + 3) * kU * absdot + 1e-30)
          << "M=" << g.M << " N=" << g.N << " K=" << g.K << " a_t=" << g.a_t << " b_kn=" << g.b_kn << " " << what
          << " at m=" << m << " n=" << n;
    }
    for (int64_t n = g.N; n < ldc; ++n) ASSERT_EQ(c[m * ldc + n], c0[m * ldc + n]);
  }
}

// The strided GEMM of the backward products against ref::gemm: every layout of A and B, F32/F16/BF16
// B, padded strides (leading dimensions larger than the rows), overwrite and accumulate, 1 and 2
// threads. Tolerance as check_matmul (plus the accumulated C).
TEST_P(CpuKernels, GemmEveryLayout) {
  for (int threads : {1, 2}) {
    ThreadPool::set_global_threads(threads);
    for (const Shape& s : kShapes) {
      for (int layout = 0; layout < 4; ++layout) {
        const bool a_t = layout & 1, b_kn = layout & 2;
        for (DType bt : {DType::kF32, DType::kF16, DType::kBF16}) {
          if (bt != DType::kF32 && layout != 2) continue;  // F16/BF16 B: the dx = dy . w case
          const int64_t lda = (a_t ? s.M : s.K) + 3, ldb = (b_kn ? s.N : s.K) + 5, ldc = s.N + 2;
          const auto a = rand_vec((a_t ? s.K : s.M) * lda, 11);
          auto bf = rand_vec((b_kn ? s.K : s.N) * ldb, 12);
          std::vector<uint16_t> bh;
          if (bt != DType::kF32) {
            bh.resize(bf.size());
            for (size_t i = 0; i < bf.size(); ++i) {
              bh[i] = bt == DType::kF16 ? f32_to_f16(bf[i]) : f32_to_bf16(bf[i]);
              bf[i] = bt == DType::kF16 ? f16_to_f32(bh[i]) : bf16_to_f32(bh[i]);
            }
          }
          for (bool accumulate : {false, true}) {
            const auto c0 = rand_vec(s.M * ldc, 13);
            ref::GemmArgs g;
            g.M = s.M, g.N = s.N, g.K = s.K, g.a = a.data(), g.lda = lda, g.a_t = a_t;
            g.b = bt == DType::kF32 ? static_cast<const void*>(bf.data()) : static_cast<const void*>(bh.data());
            g.bt = bt, g.ldb = ldb, g.b_kn = b_kn, g.ldc = ldc, g.accumulate = accumulate;
            expect_gemm_matches_ref(g, c0, bf.data(), str_cat(dtype_name(bt), " accumulate=", accumulate));
            if (HasFailure()) return;
          }
        }
      }
    }
  }
  ThreadPool::set_global_threads(2);
}

// The dw = dy^T x products' two special paths, against ref::gemm (A transposed, B stored [K, N], F32):
//  * A of more than 8192 rows per thread (a tied head's dw) runs in short slabs with B read in place,
//    or packed whole once when it cannot be read in place (rows a multiple of 256 apart, or [N, K]);
//  * fewer rows than columns with a B that must be packed (row stride a multiple of 256: the
//    down-projection's dw) is split by columns.
TEST_P(CpuKernels, GemmTransposedATallAndWide) {
  struct Case {
    int64_t M, N, K, ldb;
    bool b_kn;
  };
  for (int threads : {1, 2}) {
    ThreadPool::set_global_threads(threads);
    // M = 0: more rows than the slab path's threshold (8192) in every thread's share. The packed-whole
    // cases cross depth blocks (K 800) and column blocks (N 300).
    for (Case s : {Case{0, 17, 130, 37, true}, Case{0, 9, 800, 256, true}, Case{0, 300, 9, 11, false},
                   Case{60, 200, 300, 256, true}}) {
      if (s.M == 0) s.M = 8250 * threads + 50;
      const int64_t lda = s.M + 1, ldc = s.N + 2;
      const auto a = rand_vec(s.K * lda, 31), b = rand_vec((s.b_kn ? s.K : s.N) * s.ldb, 32);
      for (bool accumulate : {false, true}) {
        const auto c0 = rand_vec(s.M * ldc, 33);
        ref::GemmArgs g;
        g.M = s.M, g.N = s.N, g.K = s.K, g.a = a.data(), g.lda = lda, g.a_t = true;
        g.b = b.data(), g.bt = DType::kF32, g.ldb = s.ldb, g.b_kn = s.b_kn, g.ldc = ldc;
        g.accumulate = accumulate;
        expect_gemm_matches_ref(g, c0, b.data(), str_cat("ldb=", s.ldb, " threads=", threads, " accumulate=", accumulate));
        if (HasFailure()) return;
      }
    }
  }
  ThreadPool::set_global_threads(2);
}

// BF16 compute (GemmArgs::bf16): on AVX512_BF16 targets the VDPBF16PS kernel (gemm_bf16.cc), else
// the F32 GEMM on rounded copies. Every layout, F32 and BF16 A and B, padded strides, shapes that
// cross its tile (8 x 48), depth block (256), odd depths (a half pair), more rows than one packed
// slab (512) and more columns than one packed block (768); against ref::gemm with bf16, whose
// products are the same exact ones, so only the F32 summation order differs.
TEST_P(CpuKernels, GemmBf16EveryLayout) {
  const Shape shapes[] = {{1, 1, 1},    {8, 48, 32},   {9, 49, 33},  {3, 5, 257},
                          {17, 95, 511}, {530, 21, 70}, {12, 800, 40}, {64, 64, 64}};
  // Values that BF16 does not hold, so rounding matters (checked below).
  for (int threads : {1, 2}) {
    ThreadPool::set_global_threads(threads);
    for (const Shape& s : shapes) {
      for (int layout = 0; layout < 4; ++layout) {
        const bool a_t = layout & 1, b_kn = layout & 2;
        for (DType at : {DType::kF32, DType::kBF16}) {
          for (DType bt : {DType::kF32, DType::kBF16}) {
            const int64_t lda = (a_t ? s.M : s.K) + 3, ldb = (b_kn ? s.N : s.K) + 5, ldc = s.N + 2;
            const auto af = rand_vec((a_t ? s.K : s.M) * lda, 21), bf = rand_vec((b_kn ? s.K : s.N) * ldb, 22);
            std::vector<uint16_t> ah(af.size()), bh(bf.size());
            for (size_t i = 0; i < af.size(); ++i) ah[i] = f32_to_bf16(af[i]);
            for (size_t i = 0; i < bf.size(); ++i) bh[i] = f32_to_bf16(bf[i]);
            for (bool accumulate : {false, true}) {
              const auto c0 = rand_vec(s.M * ldc, 23);
              std::vector<float> c = c0, want = c0, unrounded = c0;
              ref::GemmArgs g;
              g.M = s.M, g.N = s.N, g.K = s.K, g.lda = lda, g.a_t = a_t, g.ldb = ldb, g.b_kn = b_kn;
              g.a = at == DType::kF32 ? static_cast<const void*>(af.data()) : static_cast<const void*>(ah.data());
              g.b = bt == DType::kF32 ? static_cast<const void*>(bf.data()) : static_cast<const void*>(bh.data());
              g.at = at, g.bt = bt, g.c = c.data(), g.ldc = ldc, g.accumulate = accumulate, g.bf16 = true;
              cpu_table().gemm(g);
              g.c = want.data();
              ref::gemm(g);
              double max_rounding_effect = 0.0;
              for (int64_t m = 0; m < s.M; ++m) {
                for (int64_t n = 0; n < s.N; ++n) {
                  double absdot = accumulate ? std::fabs(c0[m * ldc + n]) : 0.0, exact = 0.0;
                  for (int64_t k = 0; k < s.K; ++k) {
                    const int64_t ia = a_t ? k * lda + m : m * lda + k, ib = b_kn ? k * ldb + n : n * ldb + k;
                    const double p = static_cast<double>(bf16_to_f32(ah[ia])) * bf16_to_f32(bh[ib]);
                    absdot += std::fabs(p);
                    exact += static_cast<double>(af[ia]) * bf[ib];
                  }
                  ASSERT_NEAR(c[m * ldc + n], want[m * ldc + n], 2.0 * (s.K + 3) * kU * absdot + 1e-30)
                      << "M=" << s.M << " N=" << s.N << " K=" << s.K << " a_t=" << a_t << " b_kn=" << b_kn << " "
                      << dtype_name(at) << " x " << dtype_name(bt) << " accumulate=" << accumulate << " at m=" << m
                      << " n=" << n;
                  const double plain = (accumulate ? c0[m * ldc + n] : 0.0) + exact;
                  max_rounding_effect = std::max(max_rounding_effect, std::fabs(c[m * ldc + n] - plain));
                }
                for (int64_t n = s.N; n < ldc; ++n) ASSERT_EQ(c[m * ldc + n], c0[m * ldc + n]);
              }
              // The operands were rounded to BF16 (relative 2^-9), not used at full F32 precision.
              if (at == DType::kF32 && bt == DType::kF32 && s.K >= 32) {
                EXPECT_GT(max_rounding_effect, 1e-4) << "M=" << s.M << " N=" << s.N << " K=" << s.K;
              }
            }
          }
        }
      }
    }
  }
  ThreadPool::set_global_threads(2);
}

// RoPE with precomputed cos/sin: the SIMD rotation gives the reference's bits (no FMA contraction),
// for full and partial rotation (vector tails), both styles, forward and accumulating backward,
// and in place (x == y).
TEST_P(CpuKernels, RopeApplyGivesTheReferenceBits) {
  struct Case { int64_t tokens, heads, head_dim, rot; bool neox; };
  for (const Case& k : {Case{7, 9, 64, 64, true}, Case{5, 3, 80, 40, true}, Case{3, 2, 6, 6, true},
                        Case{4, 4, 64, 32, false}, Case{3, 9, 64, 64, false}, Case{3, 2, 24, 8, false}}) {
    const int64_t n = k.tokens * k.heads * k.head_dim, half = k.rot / 2;
    std::vector<int32_t> pos(static_cast<size_t>(k.tokens));
    for (int64_t t = 0; t < k.tokens; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(t * 997 % 5000);
    std::vector<float> inv_freq(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) inv_freq[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / k.rot);
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> c(static_cast<size_t>(k.tokens * half)), s(c.size());
      ref::rope_cos_sin(pos.data(), k.tokens, k.rot, inv_freq.data(), 1.0f, sign, c.data(), s.data());
      const auto x = rand_vec(n, 51);
      for (bool acc : {false, true}) {
        auto y = rand_vec(n, 52), y_ref = y;
        cpu_table().rope_apply(x.data(), y.data(), c.data(), s.data(), k.tokens, k.heads, k.head_dim, k.rot, k.neox, acc);
        ref_table().rope_apply(x.data(), y_ref.data(), c.data(), s.data(), k.tokens, k.heads, k.head_dim, k.rot, k.neox,
                               acc);
        EXPECT_EQ(std::memcmp(y.data(), y_ref.data(), sizeof(float) * static_cast<size_t>(n)), 0)
            << "head_dim " << k.head_dim << " rot " << k.rot << " acc " << acc;
        EXPECT_NE(std::memcmp(y.data(), rand_vec(n, 52).data(), sizeof(float) * static_cast<size_t>(n)), 0);
      }
      // In place, and the whole against ref::rope / ref::rope_backward (which compute their own angles).
      auto z = x;
      cpu_table().rope_apply(z.data(), z.data(), c.data(), s.data(), k.tokens, k.heads, k.head_dim, k.rot, k.neox, false);
      std::vector<float> z_ref(static_cast<size_t>(n), 0.0f);
      const auto style = k.neox ? ref::RopeStyle::kNeoX : ref::RopeStyle::kGptJ;
      if (sign > 0) {
        ref::rope(x.data(), z_ref.data(), pos.data(), k.tokens, k.heads, k.head_dim, k.rot, inv_freq.data(), 1.0f, style);
      } else {
        ref::rope_backward(x.data(), z_ref.data(), pos.data(), k.tokens, k.heads, k.head_dim, k.rot, inv_freq.data(),
                           1.0f, style);
      }
      EXPECT_EQ(std::memcmp(z.data(), z_ref.data(), sizeof(float) * static_cast<size_t>(n)), 0) << "sign " << sign;
    }
  }
}

// Paged KV write: the SIMD F16 conversion and key scatter give the reference's bits, for a run of
// positions crossing pages in a scattered block table, with values at the edges of F16's range
// (ties at 65520, subnormals, Inf, NaN); the F32 cache too.
TEST_P(CpuKernels, PagedKvWriteGivesTheReferenceBits) {
  const int64_t n = 21, heads = 3, hd = 64, pos0 = 9, n_pages = 4;
  const std::vector<int32_t> blocks = {3, 0, 2, 1};
  auto k = rand_vec(n * heads * hd, 61, -70000.0f, 70000.0f), v = rand_vec(n * heads * hd, 62);
  const float specials[] = {65520.0f, -65519.0f, 65504.0f, 1e-7f, -3e-8f, 6.1e-5f, 0.0f, -0.0f,
                            std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 2.5e-8f, 1.0f + 0x1p-11f};
  for (size_t i = 0; i < std::size(specials); ++i) k[i * 7] = specials[i], v[i * 11] = specials[i];
  for (DType dt : {DType::kF16, DType::kF32}) {
    const size_t bytes = static_cast<size_t>(n_pages * heads * hd * ref::kKVPage) * static_cast<size_t>(type_size(dt));
    std::vector<uint8_t> kp(bytes, 0xAB), vp(bytes, 0xCD), kp_ref = kp, vp_ref = vp;
    cpu_table().paged_kv_write(k.data(), v.data(), n, heads, hd, pos0, blocks.data(), kp.data(), vp.data(), dt);
    ref_table().paged_kv_write(k.data(), v.data(), n, heads, hd, pos0, blocks.data(), kp_ref.data(), vp_ref.data(), dt);
    EXPECT_EQ(kp, kp_ref) << dtype_name(dt);
    EXPECT_EQ(vp, vp_ref) << dtype_name(dt);
    EXPECT_NE(kp, std::vector<uint8_t>(bytes, 0xAB));
  }
}

// AdamW: the SIMD update gives the reference's bits (same operations, same order, no FMA), over
// lengths with vector tails, with and without weight decay, at a first and a late step.
TEST_P(CpuKernels, AdamWGivesTheReferenceBits) {
  for (int64_t n : {1, 15, 16, 17, 1000, 4099}) {
    for (int step : {1, 50}) {
      ref::AdamWStep a;
      a.keep = step == 1 ? 1.0f : 1.0f - 1e-3f * 0.1f;
      a.step_size = static_cast<float>(1e-3 / (1.0 - std::pow(0.9, step)));
      a.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(0.999, step)));
      auto p = rand_vec(n, 31), g = rand_vec(n, 32, -0.01f, 0.01f), m = rand_vec(n, 33, -0.001f, 0.001f);
      auto v = rand_vec(n, 34, 0.0f, 1e-4f);
      auto p2 = p, m2 = m, v2 = v;
      cpu_table().adamw(a, p.data(), g.data(), m.data(), v.data(), n);
      ref_table().adamw(a, p2.data(), g.data(), m2.data(), v2.data(), n);
      EXPECT_EQ(std::memcmp(p.data(), p2.data(), sizeof(float) * static_cast<size_t>(n)), 0) << "n=" << n;
      EXPECT_EQ(std::memcmp(m.data(), m2.data(), sizeof(float) * static_cast<size_t>(n)), 0) << "n=" << n;
      EXPECT_EQ(std::memcmp(v.data(), v2.data(), sizeof(float) * static_cast<size_t>(n)), 0) << "n=" << n;
      EXPECT_NE(std::memcmp(p.data(), rand_vec(n, 31).data(), sizeof(float) * static_cast<size_t>(n)), 0);
    }
  }
}

// GELU (tanh form) forward and accumulating backward against the reference (libm tanh): within a few
// float ulps of the larger of the value and 1e-6, over [-10, 10] plus large magnitudes and zero.
TEST_P(CpuKernels, GeluTanhForwardAndBackward) {
  for (int64_t n : {1, 17, 40000}) {
    auto x = rand_vec(n, 41, -10.0f, 10.0f), dy = rand_vec(n, 42);
    x[0] = 0.0f;
    if (n > 3) x[1] = 1e4f, x[2] = -1e4f, x[3] = 1e-20f;
    std::vector<float> y(static_cast<size_t>(n)), y_ref(y.size());
    auto dx = rand_vec(n, 43), dx_ref = dx;
    const auto dx0 = dx;
    cpu_table().gelu(x.data(), y.data(), n, true);
    ref_table().gelu(x.data(), y_ref.data(), n, true);
    cpu_table().gelu_backward(x.data(), dy.data(), dx.data(), n, true);
    ref_table().gelu_backward(x.data(), dy.data(), dx_ref.data(), n, true);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(y[i], y_ref[i], 4e-6 * std::max(1.0f, std::fabs(y_ref[i]))) << "x=" << x[i];
      ASSERT_NEAR(dx[i], dx_ref[i], 4e-6 * std::max(1.0f, std::fabs(dx_ref[i]))) << "x=" << x[i];
    }
    EXPECT_NE(std::memcmp(dx.data(), dx0.data(), sizeof(float) * static_cast<size_t>(n)), 0);
  }
}

TEST_P(CpuKernels, MatmulBF16) {
  for (const Shape& s : kShapes) {
    auto xf = rand_vec(s.M * s.K, 3), wf = rand_vec(s.N * s.K, 4);
    std::vector<uint16_t> xb(xf.size()), wb(wf.size());
    for (size_t i = 0; i < xf.size(); ++i) { xb[i] = f32_to_bf16(xf[i]); xf[i] = bf16_to_f32(xb[i]); }
    for (size_t i = 0; i < wf.size(); ++i) { wb[i] = f32_to_bf16(wf[i]); wf[i] = bf16_to_f32(wb[i]); }
    std::vector<float> y(static_cast<size_t>(s.M * s.N)), ref(y.size());
    cpu_table().matmul_bf16(xb.data(), wb.data(), y.data(), s.M, s.N, s.K);
    if (ref_table().matmul_bf16) {
      ref_table().matmul_bf16(xb.data(), wb.data(), ref.data(), s.M, s.N, s.K);
    } else {
      local_matmul(xf.data(), wf.data(), DType::kF32, ref.data(), s.M, s.N, s.K);
    }
    for (int64_t m = 0; m < s.M; ++m) {
      for (int64_t n = 0; n < s.N; ++n) {
        double absdot = 0;
        for (int64_t k = 0; k < s.K; ++k) absdot += std::fabs(static_cast<double>(xf[m * s.K + k]) * wf[n * s.K + k]);
        ASSERT_NEAR(y[m * s.N + n], ref[m * s.N + n], 2.0 * (s.K + 2) * kU * absdot + 1e-30)
            << "M=" << s.M << " N=" << s.N << " K=" << s.K;
      }
    }
  }
}

TEST_P(CpuKernels, MatmulNoAllocationAfterWarmup) {
  ThreadPool::set_global_threads(2);
  for (const Shape& s : {Shape{1, 300, 520}, Shape{67, 300, 520}}) {
    auto x = rand_vec(s.M * s.K, 5), w = rand_vec(s.N * s.K, 6);
    std::vector<uint16_t> wh(w.size());
    for (size_t i = 0; i < w.size(); ++i) wh[i] = f32_to_bf16(w[i]);
    std::vector<float> y(static_cast<size_t>(s.M * s.N));
    for (int rep = 0; rep < 2; ++rep) {  // rep 0 warms the thread-local scratch of every thread
      const long before = g_allocs.load();
      cpu_table().matmul(x.data(), w.data(), DType::kF32, y.data(), s.M, s.N, s.K);
      cpu_table().matmul(x.data(), wh.data(), DType::kBF16, y.data(), s.M, s.N, s.K);
      cpu_table().matmul_bf16(wh.data(), wh.data(), y.data(), s.M < s.N ? s.M : s.N, s.N, s.K);
      if (rep == 1) {
        EXPECT_EQ(g_allocs.load(), before) << "M=" << s.M;
      }
    }
  }
}

// Quantized types without a cpu::quant_matmul kernel: matmul dequantizes kKC=256-wide slices of
// each row with ref::dequantize_row (K = 768 crosses two slice boundaries) and runs the F32 GEMM or
// GEMV. Dequantization is exact and shared with the reference, so the F32 accumulation bound
// applies to the dequantized weights.
TEST_P(CpuKernels, MatmulQuantizedFallback) {
  const DType types[] = {DType::kQ8_1, DType::kQ8_K, DType::kNF4, DType::kF8_E4M3, DType::kF8_E5M2};
  for (DType wt : types) {
    if (cpu::quant_matmul_supported(wt)) continue;  // covered by test_quant
    for (const Shape& s : {Shape{1, 5, 256}, Shape{3, 33, 768}, Shape{13, 33, 768}}) {
      auto x = rand_vec(s.M * s.K, 14), wf = rand_vec(s.N * s.K, 15);
      const size_t rb = row_bytes(wt, s.K);
      std::vector<uint8_t> wq(rb * static_cast<size_t>(s.N));
      std::vector<float> wd(wf.size());
      for (int64_t n = 0; n < s.N; ++n) {
        ref::quantize_row(wt, wf.data() + n * s.K, wq.data() + rb * n, s.K);
        ref::dequantize_row(wt, wq.data() + rb * n, wd.data() + n * s.K, s.K);
      }
      std::vector<float> y(static_cast<size_t>(s.M * s.N));
      cpu_table().matmul(x.data(), wq.data(), wt, y.data(), s.M, s.N, s.K);
      std::vector<float> ref(y.size());
      if (ref_table().matmul) {
        ref_table().matmul(x.data(), wq.data(), wt, ref.data(), s.M, s.N, s.K);
      } else {
        local_matmul(x.data(), wd.data(), DType::kF32, ref.data(), s.M, s.N, s.K);
      }
      for (int64_t m = 0; m < s.M; ++m) {
        for (int64_t n = 0; n < s.N; ++n) {
          double absdot = 0;
          for (int64_t k = 0; k < s.K; ++k) absdot += std::fabs(static_cast<double>(x[m * s.K + k]) * wd[n * s.K + k]);
          ASSERT_NEAR(y[m * s.N + n], ref[m * s.N + n], 2.0 * (s.K + 2) * kU * absdot + 1e-30)
              << dtype_name(wt) << " M=" << s.M << " N=" << s.N << " K=" << s.K;
        }
      }
    }
  }
}

// Odd lengths: shorter than a vector, around vector multiples, and large enough to be split
// over threads (kParallelMinElems = 32768).
const int64_t kLens[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 70001};

// add/mul/scale are one IEEE operation per element in both implementations: results must be
// bit-identical.
TEST_P(CpuKernels, AddMulScaleExact) {
  for (int64_t n : kLens) {
    auto a = rand_vec(n, 7, -100, 100), b = rand_vec(n, 8, -100, 100);
    std::vector<float> y(static_cast<size_t>(n)), r(y.size());
    cpu_table().add(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] + b[i]) << "add n=" << n;
    cpu_table().mul(a.data(), b.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] * b[i]) << "mul n=" << n;
    cpu_table().scale(a.data(), -0.37f, y.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], a[i] * -0.37f) << "scale n=" << n;
    if (ref_table().add) {
      ref_table().add(a.data(), b.data(), r.data(), n);
      cpu_table().add(a.data(), b.data(), y.data(), n);
      ASSERT_EQ(y, r);
    }
    // In place (y aliases a), as the ops layer does for residual adds.
    std::vector<float> c = a;
    cpu_table().add(c.data(), b.data(), c.data(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(c[i], a[i] + b[i]);
  }
}

// silu/swiglu: Highway's Exp is within 1 ULP, then 1 add, 1 divide and 1-2 multiplies, each
// rounding once: <= ~6 ULP, checked as 8 ULP relative (8*2^-23 ~ 1e-6). Below x ~ -87.3 exp(x)
// underflows float and Exp returns 0, so |silu(x)| < 88*e^-87.3 ~ 1e-36 may come out as 0:
// absolute slack 1e-35.
TEST_P(CpuKernels, SiluSwiglu) {
  for (int64_t n : kLens) {
    auto x = rand_vec(n, 9, -12, 12), u = rand_vec(n, 10, -3, 3);
    const float specials[] = {0.0f, -0.0f, 1e-3f, -1e-3f, 20.0f, -20.0f, 88.0f, -88.0f, -100.0f, 1000.0f, -1000.0f};
    for (size_t i = 0; i < std::size(specials) && static_cast<int64_t>(i) < n; ++i) x[i] = specials[i];
    std::vector<float> y(static_cast<size_t>(n)), y2(y.size()), r(y.size()), r2(y.size());
    cpu_table().silu(x.data(), y.data(), n);
    cpu_table().swiglu(x.data(), u.data(), y2.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      r[i] = static_cast<float>(x[i] * sigmoid(x[i]));
      r2[i] = static_cast<float>(x[i] * sigmoid(x[i]) * u[i]);
    }
    if (ref_table().silu) ref_table().silu(x.data(), r.data(), n);
    if (ref_table().swiglu) ref_table().swiglu(x.data(), u.data(), r2.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(y[i], r[i], 8 * 2 * kU * std::fabs(r[i]) + 1e-35) << "silu x=" << x[i];
      ASSERT_NEAR(y2[i], r2[i], 8 * 2 * kU * std::fabs(r2[i]) + 1e-35) << "swiglu x=" << x[i];
    }
  }
}

// rmsnorm: the sum of d squares (positive terms) has relative error <= d*u whatever the order;
// the mean/eps/sqrt/divide and the two multiplies by the scale and (w + offset) add ~6 roundings,
// and sqrt halves the sum's error. Against a float reference both sides carry that error:
// tolerance 2*(d/2 + 8)*u relative to the output.
TEST_P(CpuKernels, RmsNorm) {
  for (int64_t d : {1, 7, 16, 33, 1000, 4097}) {
    for (float off : {0.0f, 1.0f}) {
      const int64_t rows = d < 100 ? 37 : 9;  // 9 x 4097 > 32768: split over threads
      auto x = rand_vec(rows * d, 11, -4, 4), w = rand_vec(d, 12, -2, 2);
      std::vector<float> y(x.size()), r(x.size());
      const float eps = 1e-5f;
      cpu_table().rmsnorm(x.data(), w.data(), y.data(), rows, d, eps, off);
      for (int64_t i = 0; i < rows; ++i) {
        double ss = 0;
        for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(x[i * d + j]) * x[i * d + j];
        const double inv = 1.0 / std::sqrt(ss / d + eps);
        for (int64_t j = 0; j < d; ++j) r[i * d + j] = static_cast<float>(x[i * d + j] * inv * (w[j] + static_cast<double>(off)));
      }
      if (ref_table().rmsnorm) ref_table().rmsnorm(x.data(), w.data(), r.data(), rows, d, eps, off);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], r[i], 2.0 * (d / 2.0 + 8) * kU * std::fabs(r[i]) + 1e-30) << "d=" << d << " off=" << off;
      }
    }
  }
}

// softmax: x - max is one rounding (relative error u on a value up to the row's range R), which
// exp turns into an absolute error of R*u in the exponent, i.e. relative R*u in the output; Exp
// adds 1 ULP, the sum of d positive terms d*u, the final multiply 1 more. With inputs in
// [-10, 10] (R <= 20): tolerance 2*(d + 24)*u relative, plus 1e-30 for outputs that underflow.
TEST_P(CpuKernels, Softmax) {
  for (int64_t d : {1, 2, 7, 8, 9, 33, 1000, 4097}) {
    const int64_t rows = d < 100 ? 37 : 9;
    auto x = rand_vec(rows * d, 13, -10, 10);
    if (d > 2) {
      x[1] = -std::numeric_limits<float>::infinity();  // a masked position: exactly 0 out
      x[d + 1] = 1e30f;                                 // a huge logit: no overflow, one-hot
    }
    std::vector<float> y = x, r(x.size());
    cpu_table().softmax(y.data(), rows, d);
    for (int64_t i = 0; i < rows; ++i) {
      double mx = -INFINITY, s = 0;
      for (int64_t j = 0; j < d; ++j) mx = std::max(mx, static_cast<double>(x[i * d + j]));
      for (int64_t j = 0; j < d; ++j) s += std::exp(x[i * d + j] - mx);
      for (int64_t j = 0; j < d; ++j) r[i * d + j] = static_cast<float>(std::exp(x[i * d + j] - mx) / s);
    }
    if (ref_table().softmax) {
      r = x;
      ref_table().softmax(r.data(), rows, d);
    }
    for (int64_t i = 0; i < rows; ++i) {
      double sum = 0;
      for (int64_t j = 0; j < d; ++j) {
        const size_t k = static_cast<size_t>(i * d + j);
        ASSERT_TRUE(std::isfinite(y[k])) << "d=" << d << " row " << i;
        ASSERT_NEAR(y[k], r[k], 2.0 * (d + 24) * kU * std::fabs(r[k]) + 1e-30) << "d=" << d << " row " << i << " j=" << j;
        sum += y[k];
      }
      ASSERT_NEAR(sum, 1.0, 2.0 * (d + 24) * kU);
    }
    if (d > 2) {
      EXPECT_EQ(y[1], 0.0f);
      EXPECT_EQ(y[d + 1], 1.0f);
    }
  }
}

std::string target_name(const ::testing::TestParamInfo<std::string>& p) { return p.param; }
INSTANTIATE_TEST_SUITE_P(AllTargets, CpuKernels, ::testing::ValuesIn(cpu_targets()), target_name);

}  // namespace
}  // namespace llmkit
