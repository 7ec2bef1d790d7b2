// Tests of block quantization: (1) bit-exactness of ref::quantize_row / dequantize_row against the
// committed fixtures of tools/gen_quant_fixtures.py (ggml's C reference and gguf's numpy code;
// testdata/quant/SOURCES.txt says which produced each type); (2) properties of every type
// (round-trip error bounds, zeros stay zeros, no NaN from finite input, dot_row); (3) the SIMD
// cpu::quant_matmul against a float reference on every Highway target this CPU supports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/quant_matmul.h"
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/tensor/dtype.h"
#include "llmkit/tensor/half.h"

namespace llmkit {
namespace {

std::vector<uint8_t> read_file(const std::string& name) {
  std::ifstream f(std::string(LLMKIT_TESTDATA_DIR) + "/quant/" + name, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
uint32_t u32_at(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v;
  std::memcpy(&v, b.data() + off, 4);
  return v;
}
std::vector<float> floats_at(const std::vector<uint8_t>& b, size_t off, size_t n) {
  std::vector<float> v(n);
  std::memcpy(v.data(), b.data() + off, n * 4);
  return v;
}
bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, 4) == 0;
}

// ---------------------------------------------------------------------------------------------
// (1) Bit-exactness against the fixtures.

const DType kFixtureTypes[] = {DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1, DType::kQ5_0,
                               DType::kQ5_1, DType::kQ8_0, DType::kQ8_1, DType::kQ2_K, DType::kQ3_K,
                               DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_K, DType::kNF4};

class FixtureTest : public ::testing::TestWithParam<DType> {};

TEST_P(FixtureTest, QuantizeAndDequantizeAreBitExact) {
  const DType t = GetParam();
  const auto in = read_file("inputs.bin");
  const auto fx = read_file(std::string(dtype_name(t)) + ".bin");
  ASSERT_GE(in.size(), 12u) << "missing testdata/quant/inputs.bin: run tools/gen_quant_fixtures.py";
  ASSERT_GE(fx.size(), 16u) << "missing fixture for " << dtype_name(t);
  const uint32_t rows = u32_at(in, 4), n = u32_at(in, 8);
  ASSERT_EQ(u32_at(fx, 4), rows);
  ASSERT_EQ(u32_at(fx, 8), n);
  const size_t rb = row_bytes(t, n);
  ASSERT_EQ(u32_at(fx, 12), rb);
  ASSERT_EQ(fx.size(), 16 + rows * rb + size_t{rows} * n * 4);
  const auto x = floats_at(in, 12, size_t{rows} * n);
  const auto want_deq = floats_at(fx, 16 + rows * rb, size_t{rows} * n);
  const size_t bb = static_cast<size_t>(type_size(t));
  std::vector<uint8_t> q(rb);
  std::vector<float> deq(n);
  for (uint32_t r = 0; r < rows; ++r) {
    const uint8_t* want_q = fx.data() + 16 + r * rb;
    ref::quantize_row(t, x.data() + size_t{r} * n, q.data(), n);
    for (size_t b = 0; b < rb; b += bb) {
      ASSERT_EQ(std::memcmp(q.data() + b, want_q + b, bb), 0)
          << dtype_name(t) << " row " << r << " block " << b / bb << ": quantized bytes differ";
    }
    ref::dequantize_row(t, want_q, deq.data(), n);
    for (uint32_t j = 0; j < n; ++j) {
      ASSERT_TRUE(same_float(deq[j], want_deq[size_t{r} * n + j]))
          << dtype_name(t) << " row " << r << " value " << j << ": " << deq[j] << " vs " << want_deq[size_t{r} * n + j];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, FixtureTest, ::testing::ValuesIn(kFixtureTypes),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

TEST(Fp8Fixture, EncodeAndDecodeAreBitExact) {
  for (DType t : {DType::kF8_E4M3, DType::kF8_E5M2}) {
    const auto fx = read_file(std::string(dtype_name(t)) + ".bin");
    ASSERT_GE(fx.size(), 16u) << dtype_name(t);
    const uint32_t n = u32_at(fx, 8);
    ASSERT_EQ(fx.size(), 16 + n + size_t{n} * 8);
    const uint8_t* want_q = fx.data() + 16;
    const auto want_deq = floats_at(fx, 16 + n, n);
    const auto x = floats_at(fx, 16 + n + size_t{n} * 4, n);
    std::vector<uint8_t> q(n);
    std::vector<float> deq(n);
    ref::quantize_row(t, x.data(), q.data(), n);
    ref::dequantize_row(t, want_q, deq.data(), n);
    for (uint32_t j = 0; j < n; ++j) {
      EXPECT_EQ(q[j], want_q[j]) << dtype_name(t) << " x=" << x[j];
      EXPECT_TRUE(same_float(deq[j], want_deq[j])) << dtype_name(t) << " code " << int(want_q[j]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// (2) Properties of every type.

const DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,    DType::kQ4_1,
                           DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ8_1,    DType::kQ2_K,
                           DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K,    DType::kQ8_K,
                           DType::kNF4,  DType::kF8_E4M3, DType::kF8_E5M2};

// Bound on RMS(round-trip error) / RMS(x) for these 4096 N(0,1) values (seed 7). Measured at
// commit time: q4_0 .084, q4_1 .077, q5_0 .042, q5_1 .037, q8_0/q8_1 .0052, q2_k .29, q3_k .15,
// q4_k .071, q5_k .036, q6_k .018, q8_k .0067, nf4 .092, e4m3 .027, e5m2 .053, f16 2.1e-4,
// bf16 1.6e-3; the bounds leave 1.3-2x headroom (more for f16/bf16), so a quantizer whose
// search or packing breaks lands well above them.
double rel_rms_bound(DType t) {
  switch (t) {
    case DType::kF32: return 0.0;
    case DType::kF16: return 1e-3;
    case DType::kBF16: return 5e-3;
    case DType::kQ8_0: case DType::kQ8_1: case DType::kQ8_K: return 0.01;
    case DType::kQ6_K: return 0.03;
    case DType::kQ5_0: case DType::kQ5_1: case DType::kQ5_K: return 0.06;
    case DType::kF8_E4M3: return 0.04;
    case DType::kF8_E5M2: return 0.08;
    case DType::kQ4_0: case DType::kQ4_1: case DType::kQ4_K: case DType::kNF4: return 0.12;
    case DType::kQ3_K: return 0.25;
    case DType::kQ2_K: return 0.45;
    default: return 0.0;
  }
}

class PropertyTest : public ::testing::TestWithParam<DType> {};

TEST_P(PropertyTest, RoundTripErrorIsBounded) {
  const DType t = GetParam();
  const int64_t n = 4096;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(n), y(n);
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> q(row_bytes(t, n));
  ref::quantize_row(t, x.data(), q.data(), n);
  ref::dequantize_row(t, q.data(), y.data(), n);
  double err = 0, ref2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << dtype_name(t) << " index " << i;
    err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    ref2 += double(x[i]) * x[i];
  }
  const double rel = std::sqrt(err / ref2);
  EXPECT_LE(rel, rel_rms_bound(t)) << dtype_name(t);
  // dot_row is the dequantized dot product.
  std::vector<float> a(n);
  for (auto& v : a) v = nd(rng);
  double want = 0;
  for (int64_t i = 0; i < n; ++i) want += double(y[i]) * a[i];
  EXPECT_NEAR(ref::dot_row(t, q.data(), a.data(), n), want, 1e-4 * std::sqrt(double(n)) * 4) << dtype_name(t);
}

TEST_P(PropertyTest, ZerosAndTinyValuesStayFinite) {
  const DType t = GetParam();
  const int64_t n = 512;
  std::vector<float> x(n, 0.0f), y(n, 1.0f);
  std::vector<uint8_t> q(row_bytes(t, n));
  ref::quantize_row(t, x.data(), q.data(), n);
  ref::dequantize_row(t, q.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], 0.0f) << dtype_name(t);
  // Tiny and constant inputs exercise the zero-scale and max == min branches.
  for (int64_t i = 0; i < n; ++i) x[i] = (i % 3 == 0) ? 1e-7f * float(i % 5) : (i < 256 ? 0.25f : -1e-12f);
  ref::quantize_row(t, x.data(), q.data(), n);
  ref::dequantize_row(t, q.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << dtype_name(t) << " index " << i;
    ASSERT_LE(std::fabs(y[i] - x[i]), 0.25f * 0.5f + 1e-6f) << dtype_name(t) << " index " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, PropertyTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

TEST(Fp8, SpecialValues) {
  const float in[] = {448.f, 1e6f, -INFINITY, NAN, 57344.f, 61440.f, INFINITY};
  uint8_t e4[7], e5[7];
  ref::quantize_row(DType::kF8_E4M3, in, e4, 7);
  ref::quantize_row(DType::kF8_E5M2, in, e5, 7);
  EXPECT_EQ(e4[0], 0x7E);  // 448 = max finite
  EXPECT_EQ(e4[1], 0x7E);  // saturates
  EXPECT_EQ(e4[2], 0xFE);  // -Inf saturates to -448
  EXPECT_EQ(e4[3] & 0x7F, 0x7F);  // NaN
  EXPECT_EQ(e5[4], 0x7B);  // 57344 = max finite
  EXPECT_EQ(e5[5], 0x7C);  // halfway to 2^16 rounds to even: Inf
  EXPECT_EQ(e5[6], 0x7C);
}



// ---------------------------------------------------------------------------------------------
// (3) SIMD quantized matmul vs a float reference, on every SIMD target of this CPU.

const DType kMatmulTypes[] = {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                              DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

// Error bound. quant_matmul computes sum_i w_i * x'_i exactly in integers (up to float rounding
// of the per-block partial sums), where x' is the activation after quantization to Q8_0 (legacy
// weights) or Q8_K (k-quants); so y - y_ref = sum_i w_i (x'_i - x_i) with w the dequantized weights.
//  * Q8_K: q = nearest(x / d), d = max / 127 kept in f32: |x' - x| <= d / 2.
//  * Q8_0: q = round(x / d) but the block scale is stored as f16(d): |x' - x| <= d/2 + 127 |d - f16(d)|
//    <= d (1/2 + 127 * 2^-11) < 0.563 d.
// Hence |y - y_ref| <= sum_blocks c * d_b * sum_{i in b} |w_i| (c = 0.563 or 0.5), plus float
// rounding, bounded by 1e-5 * sum |w_i x_i| (a few hundred f32 additions of rounded products).
// This is the per-dtype bound: it depends only on the activation type the weight type pairs with.
double matmul_bound(DType wt, const float* x, const float* w, int64_t K) {
  const bool kq = block_size(wt) == kQK_K;
  const int64_t bs = kq ? kQK_K : kQK;
  const double c = kq ? 0.5 : 0.563;
  double bound = 1e-6, mag = 0;
  for (int64_t b = 0; b < K; b += bs) {
    double amax = 0, wsum = 0;
    for (int64_t i = b; i < b + bs; ++i) {
      amax = std::max(amax, double(std::fabs(x[i])));
      wsum += std::fabs(w[i]);
      mag += std::fabs(double(w[i]) * x[i]);
    }
    bound += c * (amax / 127.0) * wsum;
  }
  return bound * 1.0001 + 1e-5 * mag;
}

class QuantMatmulTest : public ::testing::TestWithParam<DType> {};

// Shapes: M in {1, 3, 5, 8} (the kernel shares each weight block among up to 4 activation rows,
// so 1, 3 and 5 hit every remainder), odd N (= 37, split unevenly across threads), K = 512 and 768
// (an odd number of 256-blocks: the kernel alternates two accumulators over blocks) and, for the
// legacy types, K = 288 (9 blocks of 32).
TEST_P(QuantMatmulTest, MatchesFloatReferenceOnEveryTarget) {
  const DType wt = GetParam();
  ASSERT_TRUE(cpu::quant_matmul_supported(wt));
  std::vector<int64_t> ks = {512, 768};
  if (block_size(wt) == kQK) ks.push_back(288);
  const auto targets = cpu_targets();
  ASSERT_FALSE(targets.empty());
  for (const int64_t K : ks) {
    const int64_t N = 37;
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<float> wf(N * K), wdq(N * K);
    for (auto& v : wf) v = nd(rng) * 0.05f;
    for (int64_t i = 0; i < K; i += 97) wf[i] = 1.5f;  // an outlier in the first rows
    const size_t rb = row_bytes(wt, K);
    std::vector<uint8_t> w(rb * N);
    for (int64_t n = 0; n < N; ++n) {
      ref::quantize_row(wt, wf.data() + n * K, w.data() + n * rb, K);
      ref::dequantize_row(wt, w.data() + n * rb, wdq.data() + n * K, K);
    }
    for (const auto& target : targets) {
      set_cpu_target(target);
      for (int64_t M : {1, 3, 5, 8}) {
        std::vector<float> x(M * K), y(M * N, NAN);
        for (auto& v : x) v = nd(rng);
        for (int64_t i = 0; i < K; i += 64) x[i] *= 8.0f;  // activation outliers
        cpu::quant_matmul(x.data(), w.data(), wt, y.data(), M, N, K);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) {
            double want = 0;
            for (int64_t k = 0; k < K; ++k) want += double(wdq[n * K + k]) * x[m * K + k];
            const double bound = matmul_bound(wt, x.data() + m * K, wdq.data() + n * K, K);
            ASSERT_LE(std::fabs(y[m * N + n] - want), bound)
                << dtype_name(wt) << " target " << target << " K=" << K << " M=" << M << " m=" << m
                << " n=" << n << " got " << y[m * N + n] << " want " << want;
          }
        }
      }
    }
    reset_cpu_target();
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantMatmulTest, ::testing::ValuesIn(kMatmulTypes),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

// Batch invariance: a row's result does not depend on how many rows are multiplied with it (what
// keeps a prompt's last logits equal to the same tokens decoded one by one, and a serving batch
// from changing any sequence's output). M = 70 crosses every row-grouping boundary of the kernels
// (groups of 4, quant_i8's in-register/L1-scratch switch and its 64-row passes); M = 5, 8 and 13
// take quant_i8's register passes of <= 4 rows per tile (a serving batch of 5-16 decodes) on AVX2,
// and on AVX512-VNNI its 8-row group pass (rows 0-7) beside the smaller passes (13, 70).
TEST_P(QuantMatmulTest, RowsAreBitwiseIndependentOfM) {
  const DType wt = GetParam();
  const int64_t N = 37, K = 512;
  for (const int64_t M : {int64_t{5}, int64_t{8}, int64_t{13}, int64_t{70}}) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    std::vector<float> wf(N * K), x(M * K);
    for (auto& v : wf) v = nd(rng) * 0.05f;
    for (auto& v : x) v = nd(rng);
    const size_t rb = row_bytes(wt, K);
    std::vector<uint8_t> w(rb * N);
    for (int64_t n = 0; n < N; ++n) ref::quantize_row(wt, wf.data() + n * K, w.data() + n * rb, K);
    for (const auto& target : cpu_targets()) {
      set_cpu_target(target);
      std::vector<float> all(M * N), one(N);
      cpu::quant_matmul(x.data(), w.data(), wt, all.data(), M, N, K);
      for (int64_t m = 0; m < M; ++m) {
        cpu::quant_matmul(x.data() + m * K, w.data(), wt, one.data(), 1, N, K);
        for (int64_t n = 0; n < N; ++n)
          ASSERT_EQ(all[m * N + n], one[n]) << dtype_name(wt) << " target " << target << " M=" << M << " m=" << m << " n=" << n;
      }
    }
  }
  reset_cpu_target();
}

// The int8 kernels (Q4_0, Q4_1, Q8_0 on AVX2 and later) compute exact integer block sums, whatever
// instructions do it (vpmaddubsw + vpmaddwd on AVX2, AVX512-VNNI's vpdpbusd on AVX3_DL): every
// x86 target from AVX2 up gives the same bits, at decode (M = 1), serving (8) and prompt (70) sizes.
TEST(QuantMatmul, Int8KernelsAgreeBitwiseAcrossTargets) {
  std::vector<std::string> x86;
  for (const auto& t : cpu_targets())
    if (t == "AVX2" || t.rfind("AVX3", 0) == 0) x86.push_back(t);
  if (x86.size() < 2) GTEST_SKIP() << "fewer than two x86 targets from AVX2 up on this CPU";
  const int64_t N = 45, K = 576;
  for (const DType wt : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    for (const int64_t M : {int64_t{1}, int64_t{8}, int64_t{70}}) {
      std::mt19937 rng(11);
      std::normal_distribution<float> nd;
      std::vector<float> wf(N * K), x(M * K);
      for (auto& v : wf) v = nd(rng) * 0.05f;
      for (auto& v : x) v = nd(rng);
      const size_t rb = row_bytes(wt, K);
      std::vector<uint8_t> w(rb * N);
      for (int64_t n = 0; n < N; ++n) ref::quantize_row(wt, wf.data() + n * K, w.data() + n * rb, K);
      std::vector<float> first(M * N), y(M * N);
      for (size_t i = 0; i < x86.size(); ++i) {
        set_cpu_target(x86[i]);
        cpu::quant_matmul(x.data(), w.data(), wt, (i == 0 ? first : y).data(), M, N, K);
        if (i == 0) continue;
        for (int64_t j = 0; j < M * N; ++j)
          ASSERT_EQ(y[j], first[j]) << dtype_name(wt) << " " << x86[i] << " vs " << x86[0] << " M=" << M << " at " << j;
      }
    }
  }
  reset_cpu_target();
}

// Q8_0 levels of -128 (outside what quantizers write, [-127, 127], but a file may hold them) and
// +127 at every position, against activations of both signs: each int8 path takes them
// differently (|w| and sign(x, w) on AVX2; w + 128 as unsigned in the AVX512-VNNI prompt kernel),
// and all must give the exact integer block sums. Expected: the activations quantized as the
// kernels do (d = amax / 127 rounded to f16, levels round-to-even of x / d), each block's exact
// integer sum scaled in double; the x86 targets must also agree bitwise.
TEST(QuantMatmul, Q8ExtremeLevelsAgreeAcrossPaths) {
  const int64_t N = 19, K = 256;
  const size_t rb = row_bytes(DType::kQ8_0, K);
  std::vector<uint8_t> w(rb * N);
  std::mt19937 rng(21);
  for (int64_t n = 0; n < N; ++n) {
    uint8_t* row = w.data() + n * rb;
    for (int64_t b = 0; b < K / 32; ++b) {
      uint8_t* blk = row + b * 34;
      const uint16_t d = f32_to_f16(0.01f * static_cast<float>(1 + (n + b) % 5));
      std::memcpy(blk, &d, 2);
      for (int i = 0; i < 32; ++i) {
        const int r = static_cast<int>(rng() % 3);
        blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(r == 0 ? -128 : (r == 1 ? 127 : -1)));
      }
    }
  }
  for (const int64_t M : {int64_t{1}, int64_t{8}, int64_t{70}}) {
    std::normal_distribution<float> nd;
    std::vector<float> x(M * K);
    for (auto& v : x) v = nd(rng);
    std::vector<double> want(M * N, 0.0), mag(M * N, 0.0);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t b = 0; b < K / 32; ++b) {
        const float* xb = x.data() + m * K + b * 32;
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float d = amax / 127, id = d != 0.0f ? 1.0f / d : 0.0f;
        const double dx = f16_to_f32(f32_to_f16(d));
        int lv[32];
        for (int i = 0; i < 32; ++i) lv[i] = std::min(127, static_cast<int>(std::nearbyint(xb[i] * id)));
        for (int64_t n = 0; n < N; ++n) {
          const uint8_t* blk = w.data() + n * rb + b * 34;
          uint16_t dh;
          std::memcpy(&dh, blk, 2);
          int64_t sum = 0;
          for (int i = 0; i < 32; ++i) sum += int64_t{static_cast<int8_t>(blk[2 + i])} * lv[i];
          want[m * N + n] += double(f16_to_f32(dh)) * dx * double(sum);
          mag[m * N + n] += std::fabs(double(f16_to_f32(dh)) * dx * double(sum));
        }
      }
    }
    std::vector<float> first;
    for (const auto& target : cpu_targets()) {
      set_cpu_target(target);
      std::vector<float> y(M * N, NAN);
      cpu::quant_matmul(x.data(), w.data(), DType::kQ8_0, y.data(), M, N, K);
      for (int64_t i = 0; i < M * N; ++i)
        ASSERT_NEAR(y[i], want[i], 1e-5 * (1.0 + mag[i])) << target << " M=" << M << " at " << i;
      if (target == "AVX2" || target.rfind("AVX3", 0) == 0) {
        if (first.empty()) {
          first = y;
        } else {
          for (int64_t i = 0; i < M * N; ++i) ASSERT_EQ(y[i], first[i]) << target << " M=" << M << " at " << i;
        }
      }
    }
    reset_cpu_target();
  }
}

// Rows interleaved by 8 (dtype.h, *_R8): pack and unpack are inverses, the bytes sit where the
// layout comment says, and matmul gives the base layout's bits on every target (the int8 kernel
// reads the interleaved groups; a target without it unpacks them) and in the reference.
std::vector<uint8_t> random_rows(DType base, int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> wf(N * K);
  for (auto& v : wf) v = nd(rng) * 0.05f;
  const size_t rb = row_bytes(base, K);
  std::vector<uint8_t> w(rb * N);
  for (int64_t n = 0; n < N; ++n) ref::quantize_row(base, wf.data() + n * K, w.data() + n * rb, K);
  return w;
}

TEST(QuantR8, PackAndUnpackAreInversesWithTheDocumentedLayout) {
  const int64_t N = 24, K = 96;
  for (const DType base : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    const std::vector<uint8_t> w = random_rows(base, N, K, 7);
    const size_t rb = row_bytes(base, K), kb = type_size(base);
    std::vector<uint8_t> packed(w.size(), 0xAA);
    ref::pack_r8(base, w.data(), packed.data(), K, 0, 1);  // groups in two calls
    ref::pack_r8(base, w.data(), packed.data(), K, 1, N / 8);
    EXPECT_NE(packed, w) << dtype_name(base);
    std::vector<uint8_t> row(rb);
    for (int64_t n = 0; n < N; ++n) {
      ref::unpack_r8_row(base, packed.data(), n, K, row.data());
      ASSERT_EQ(0, std::memcmp(row.data(), w.data() + n * rb, rb)) << dtype_name(base) << " row " << n;
    }
    // Row 13 = group 1, r = 5 (pair i = 1, second half), block 2: its scale and first level bytes.
    const uint8_t* src = w.data() + 13 * rb + 2 * kb;
    const uint8_t* blk = packed.data() + 8 * rb + 2 * 8 * kb;
    EXPECT_EQ(0, std::memcmp(blk + 2 * 5, src, 2)) << dtype_name(base);
    const size_t lev = base == DType::kQ4_1 ? 32 : 16;
    const size_t qs = base == DType::kQ4_1 ? 4 : 2;
    const size_t pair = base == DType::kQ8_0 ? 64 : 32;
    EXPECT_EQ(0, std::memcmp(blk + lev + pair * 1 + 16, src + qs, 16)) << dtype_name(base);
    if (base == DType::kQ4_1) {
      EXPECT_EQ(0, std::memcmp(blk + 16 + 2 * 5, src + 2, 2));
    }
    if (base == DType::kQ8_0) {
      EXPECT_EQ(0, std::memcmp(blk + lev + 64 + 32 + 16, src + 18, 16));
    }
  }
}

TEST(QuantR8, MatmulGivesTheBaseLayoutsBitsOnEveryTarget) {
  const int64_t N = 48, K = 576;
  for (const DType base : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    const DType r8 = *r8_of(base);
    EXPECT_EQ(r8_base(r8), base);
    EXPECT_TRUE(is_r8(r8));
    EXPECT_FALSE(dtype_from_name(dtype_name(r8)).has_value()) << "an inference layout, not a file or flag type";
    ASSERT_TRUE(cpu::quant_matmul_supported(r8));
    const std::vector<uint8_t> w = random_rows(base, N, K, 3);
    std::vector<uint8_t> packed(w.size());
    ref::pack_r8(base, w.data(), packed.data(), K, 0, N / 8);
    // Decode (1-4), serving register passes (5, 8), the row-per-lane scratch (12, 16), a prompt (70).
    for (const int64_t M : {1, 2, 3, 4, 5, 8, 12, 16, 70}) {
      std::mt19937 rng(static_cast<uint32_t>(M));
      std::normal_distribution<float> nd;
      std::vector<float> x(M * K);
      for (auto& v : x) v = nd(rng);
      for (const auto& target : cpu_targets()) {
        set_cpu_target(target);
        std::vector<float> want(M * N, NAN), got(M * N, NAN);
        cpu::quant_matmul(x.data(), w.data(), base, want.data(), M, N, K);
        cpu::quant_matmul(x.data(), packed.data(), r8, got.data(), M, N, K);
        for (int64_t i = 0; i < M * N; ++i)
          ASSERT_EQ(got[i], want[i]) << dtype_name(r8) << " target " << target << " M=" << M << " at " << i;
      }
      reset_cpu_target();
      if (M <= 3) {
        std::vector<float> want(M * N), got(M * N);
        ref_table().matmul(x.data(), w.data(), base, want.data(), M, N, K);
        ref_table().matmul(x.data(), packed.data(), r8, got.data(), M, N, K);
        for (int64_t i = 0; i < M * N; ++i) ASSERT_EQ(got[i], want[i]) << dtype_name(r8) << " reference, M=" << M;
      }
    }
  }
}

TEST(QuantMatmul, TwoThreadsMatchOneThread) {
  const int64_t M = 2, N = 101, K = 256;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> wf(N * K), x(M * K);
  for (auto& v : wf) v = nd(rng);
  for (auto& v : x) v = nd(rng);
  std::vector<uint8_t> w(row_bytes(DType::kQ4_K, K) * N);
  for (int64_t n = 0; n < N; ++n) ref::quantize_row(DType::kQ4_K, wf.data() + n * K, w.data() + n * row_bytes(DType::kQ4_K, K), K);
  std::vector<float> y1(M * N), y2(M * N);
  ThreadPool::set_global_threads(1);
  cpu::quant_matmul(x.data(), w.data(), DType::kQ4_K, y1.data(), M, N, K);
  ThreadPool::set_global_threads(2);
  cpu::quant_matmul(x.data(), w.data(), DType::kQ4_K, y2.data(), M, N, K);
  for (int64_t i = 0; i < M * N; ++i) ASSERT_EQ(y1[i], y2[i]) << i;
  EXPECT_FALSE(cpu::quant_matmul_supported(DType::kNF4));
  EXPECT_FALSE(cpu::quant_matmul_supported(DType::kF32));
}

}  // namespace
}  // namespace llmkit
