// Known answers for the reference kernels themselves (the op harness only compares implementations with
// the reference, so the reference needs its own oracle): hand-computed values, HF transformers' formulas
// for the RoPE scalings and BLOOM's ALiBi slopes (values from numpy re-implementations of
// modeling_rope_utils.py and build_alibi_tensor), naive O(T^2) attention, and properties (RoPE depends only
// on relative position). Also checks that the gradient checker catches a wrong backward.
#include <gtest/gtest-spi.h>

#include <cmath>

#include "op_harness.h"

namespace llmkit {
namespace {
using harness::rand_tensor;
using ops::RopeScaling;
using ops::RopeStyle;

TEST(RefKernels, MatmulSmallAllFloatDtypes) {
  // x = [[1, 2], [3, 4]], w = [[1, 0], [0.5, -1], [2, 2]] -> y = [[1, -1.5, 6], [3, -2.5, 14]]
  Tensor x = Tensor::from_floats({1, 2, 3, 4}, {2, 2});
  Tensor w = Tensor::from_floats({1, 0, 0.5f, -1, 2, 2}, {3, 2});
  const float want[] = {1, -1.5f, 6, 3, -2.5f, 14};
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    Tensor y = ops::matmul(x, harness::convert(w, t));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(y.data<float>()[i], want[i]) << dtype_name(t);
  }
  Tensor yb = ops::matmul_bf16(harness::convert(x, DType::kBF16), harness::convert(w, DType::kBF16));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(yb.data<float>()[i], want[i]);
}

TEST(RefKernels, NormsAndActivationsKnownValues) {
  Tensor x = Tensor::from_floats({1, 2, 3, 4}, {1, 4});
  Tensor y = ops::rmsnorm(x, Tensor::from_floats({1, 1, 1, 1}, {4}), 0.0f);
  EXPECT_NEAR(y.data<float>()[3], 4.0f / std::sqrt(7.5f), 1e-6f);
  Tensor yg = ops::rmsnorm(x, Tensor::from_floats({0, 0, 0, 0}, {4}), 0.0f, 1.0f);  // Gemma: w stored as w - 1
  EXPECT_NEAR(yg.data<float>()[3], 4.0f / std::sqrt(7.5f), 1e-6f);
  Tensor ln = ops::layernorm(x, Tensor(), Tensor(), 0.0f);
  EXPECT_NEAR(ln.data<float>()[0], -1.5f / std::sqrt(1.25f), 1e-6f);
  Tensor one = Tensor::from_floats({1.0f}, {1});
  EXPECT_NEAR(ops::gelu(one).data<float>()[0], 0.8413447f, 1e-6f);
  EXPECT_NEAR(ops::gelu(one, true).data<float>()[0], 0.8411920f, 1e-6f);
  EXPECT_NEAR(ops::silu(one).data<float>()[0], 0.7310586f, 1e-6f);
}

TEST(RefKernels, SoftmaxMasksAndFullyMaskedRow) {
  Tensor x = Tensor::from_floats({0, 0, 0, 0, 0, 0}, {2, 3});  // 2 query rows over 3 keys
  Tensor y = ops::softmax(x, {.causal = true, .n_q = 2});
  // Row 0 sits at position 1: sees keys 0, 1.
  EXPECT_FLOAT_EQ(y.data<float>()[0], 0.5f);
  EXPECT_FLOAT_EQ(y.data<float>()[2], 0.0f);
  EXPECT_NEAR(y.data<float>()[5], 1.0f / 3, 1e-7);
  Tensor z = ops::softmax(x, {.n_q = 2, .key_len = {0}});
  for (int i = 0; i < 6; ++i) EXPECT_EQ(z.data<float>()[i], 0.0f);  // no NaN
}

TEST(RefKernels, RopeScalingMatchesHfFormulas) {
  float f[8], m;
  ref::rope_freqs({.scaling = RopeScaling::kYarn, .factor = 4, .original_ctx = 64}, 16, f, &m);
  const float yarn[] = {1.0f, 0.237170825f, 0.05f, 0.00790569415f, 0.0025f, 0.000790569415f, 0.00025f, 7.90569415e-05f};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(f[i], yarn[i], 1e-6f * yarn[i]) << i;
  EXPECT_NEAR(m, 1.1386294f, 1e-6f);
  ref::rope_freqs({.theta = 500000, .scaling = RopeScaling::kLlama3, .factor = 8, .original_ctx = 64}, 16, f, &m);
  const float l3[] = {1.0f, 0.0794030092f, 0.00470075387f, 0.000911583092f, 0.000176776695f, 3.4281022e-05f,
                      6.64786987e-06f, 1.28917317e-06f};
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(f[i], l3[i], 1e-6f * l3[i]) << i;
  EXPECT_EQ(m, 1.0f);
  ref::rope_freqs({.scaling = RopeScaling::kLinear, .factor = 2}, 4, f, &m);
  EXPECT_FLOAT_EQ(f[0], 0.5f);
  EXPECT_FLOAT_EQ(f[1], 0.005f);
  ref::rope_freqs({.scaling = RopeScaling::kNtk, .factor = 4}, 4, f, &m);  // base' = 1e4 * 4^(4/2) = 1.6e5
  EXPECT_NEAR(f[1], 1.0f / 400.0f, 1e-9f);
}

TEST(RefKernels, RopeRotatesPairsAndIsRelative) {
  // NeoX, head_dim 4: pair (x0, x2) rotates by pos * 1, pair (x1, x3) by pos * 0.01.
  Tensor x = Tensor::from_floats({1, 0, 0, 1}, {1, 1, 4});
  Tensor pos = Tensor::empty({1}, DType::kI32);
  pos.data<int32_t>()[0] = 2;
  Tensor y = ops::rope(x, pos, {});
  EXPECT_NEAR(y.data<float>()[0], std::cos(2.0f), 1e-6f);
  EXPECT_NEAR(y.data<float>()[2], std::sin(2.0f), 1e-6f);
  EXPECT_NEAR(y.data<float>()[1], -std::sin(0.02f), 1e-6f);
  Tensor yj = ops::rope(x, pos, {.style = RopeStyle::kGptJ});  // pairs (x0, x1) and (x2, x3)
  EXPECT_NEAR(yj.data<float>()[1], std::sin(2.0f), 1e-6f);
  // <rope(q, m), rope(k, n)> depends only on m - n (Su et al. 2021, eq. 16).
  Tensor q = rand_tensor({1, 1, 8}, 1), k = rand_tensor({1, 1, 8}, 2);
  auto dot_at = [&](int m, int n, RopeStyle st) {
    Tensor pm = Tensor::empty({1}, DType::kI32), pn = Tensor::empty({1}, DType::kI32);
    pm.data<int32_t>()[0] = m;
    pn.data<int32_t>()[0] = n;
    Tensor a = ops::rope(q, pm, {.style = st}), b = ops::rope(k, pn, {.style = st});
    double d = 0;
    for (int i = 0; i < 8; ++i) d += a.data<float>()[i] * b.data<float>()[i];
    return d;
  };
  for (RopeStyle st : {RopeStyle::kNeoX, RopeStyle::kGptJ}) EXPECT_NEAR(dot_at(7, 3, st), dot_at(104, 100, st), 1e-5);
}

TEST(RefKernels, AlibiSlopesMatchBloom) {
  Tensor s8 = ops::alibi_slopes(8);
  for (int h = 0; h < 8; ++h) EXPECT_FLOAT_EQ(s8.data<float>()[h], std::ldexp(1.0f, -(h + 1)));
  Tensor s12 = ops::alibi_slopes(12);
  const float want[] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f,
                        0.707106781f, 0.353553391f, 0.176776695f, 0.0883883476f};
  for (int h = 0; h < 12; ++h) EXPECT_NEAR(s12.data<float>()[h], want[h], 1e-7f) << h;
}

// softmax(scale q k^T + bias + mask) v, materialised, in double.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionOptions& o) {
  const int64_t S = q.dim(0), Q = q.dim(1), H = q.dim(2), D = q.dim(3), KV = k.dim(1), KH = k.dim(2);
  Tensor out = Tensor::zeros(q.shape(), DType::kF32);
  Tensor slopes = ops::alibi_slopes(H);
  const double scale = o.scale > 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t s = 0; s < S; ++s)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Q; ++i) {
        const int64_t pos = i + KV - Q, kh = h / (H / KH);
        std::vector<double> sc(KV, -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < KV; ++j) {
          bool vis = (!o.causal || j <= pos) && (o.window == 0 || pos - j < o.window) &&
                     (o.kv_len.empty() || j < o.kv_len[s]);
          if (!vis) continue;
          double d = 0;
          for (int64_t c = 0; c < D; ++c)
            d += q.data<float>()[((s * Q + i) * H + h) * D + c] * k.data<float>()[((s * KV + j) * KH + kh) * D + c];
          sc[j] = scale * d + (o.alibi ? slopes.data<float>()[h] * static_cast<double>(j - pos) : 0.0);
          mx = std::max(mx, sc[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < KV; ++j) sum += sc[j] == -INFINITY ? 0 : std::exp(sc[j] - mx);
        for (int64_t j = 0; j < KV; ++j) {
          if (sc[j] == -INFINITY) continue;
          const double p = std::exp(sc[j] - mx) / sum;
          for (int64_t c = 0; c < D; ++c)
            out.data<float>()[((s * Q + i) * H + h) * D + c] +=
                static_cast<float>(p * v.data<float>()[((s * KV + j) * KH + kh) * D + c]);
        }
      }
  return out;
}

TEST(RefKernels, BlockedAttentionMatchesNaive) {
  struct C { int64_t s, q, kv, h, kvh, d; ops::AttentionOptions o; };
  const C cs[] = {
      {2, 150, 150, 4, 2, 8, {}},                          // 3 key blocks, GQA, causal
      {1, 3, 140, 4, 1, 16, {}},                           // decode, MQA
      {1, 70, 70, 2, 2, 8, {.window = 17}},                // sliding window across a block edge
      {1, 66, 66, 6, 3, 4, {.alibi = true}},               // ALiBi, non-power-of-two heads
      {2, 9, 9, 2, 2, 4, {.causal = false, .kv_len = {9, 4}}},  // padding
      {1, 5, 5, 2, 2, 4, {.scale = 0.3f, .causal = false}},
  };
  uint32_t seed = 77;
  for (const C& c : cs) {
    Tensor q = rand_tensor({c.s, c.q, c.h, c.d}, seed++, -2, 2);
    Tensor k = rand_tensor({c.s, c.kv, c.kvh, c.d}, seed++, -2, 2), v = rand_tensor({c.s, c.kv, c.kvh, c.d}, seed++);
    Tensor got = ops::attention(q, k, v, c.o).out, want = naive_attention(q, k, v, c.o);
    double err = 0;
    for (int64_t i = 0; i < got.numel(); ++i) err = std::max(err, double(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
    EXPECT_LT(err, 2e-6) << "case n_q=" << c.q << " n_kv=" << c.kv;
  }
}

TEST(RefKernels, CrossEntropyArgmaxTopk) {
  Tensor logits = Tensor::from_floats({0, 0, 0, 0, 1, 2, 3, 3}, {2, 4});
  Tensor tg = Tensor::empty({2}, DType::kI32);
  tg.data<int32_t>()[0] = 1;
  tg.data<int32_t>()[1] = 0;
  const double l1 = std::log(std::exp(1.0) + std::exp(2.0) + 2 * std::exp(3.0)) - 1.0;
  EXPECT_NEAR(ops::cross_entropy(logits, tg), (std::log(4.0) + l1) / 2, 1e-6);
  tg.data<int32_t>()[1] = ops::kIgnoreIndex;
  EXPECT_NEAR(ops::cross_entropy(logits, tg), std::log(4.0), 1e-6);
  tg.data<int32_t>()[0] = ops::kIgnoreIndex;
  EXPECT_EQ(ops::cross_entropy(logits, tg), 0.0f);  // nothing to average
  Tensor am = ops::argmax(logits);
  EXPECT_EQ(am.data<int32_t>()[0], 0);  // first of ties
  EXPECT_EQ(am.data<int32_t>()[1], 2);
  auto [vals, idx] = ops::topk(logits, 3);
  const int32_t want_idx[] = {0, 1, 2, 2, 3, 1};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(idx.data<int32_t>()[i], want_idx[i]) << i;
  EXPECT_EQ(vals.data<float>()[5], 2.0f);
}

TEST(RefKernels, ConcatSplitRoundTrip) {
  Tensor a = rand_tensor({2, 3, 4}, 5);
  std::vector<Tensor> parts = ops::split(a, {1, 2}, 1);
  EXPECT_EQ(parts[1].shape(), Shape({2, 2, 4}));
  Tensor b = ops::concat(parts, 1);
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a.data<float>()[i], b.data<float>()[i]);
}

TEST(GradChecker, CatchesAWrongBackward) {
  harness::GradCase bad{"silu", "deliberately wrong", {rand_tensor({5}, 3)}, {0},
                        [](const std::vector<Tensor>& in) { return ops::silu(in[0]); },
                        [](const std::vector<Tensor>& in, const Tensor& dy, std::vector<Tensor*>& g) {
                          ops::activation_backward(ops::Act::kGeluErf, in[0], dy, g[0]);  // wrong rule
                        }};
  EXPECT_NONFATAL_FAILURE(harness::check_grad(bad), "gradient of op silu");
}

}  // namespace
}  // namespace llmkit
