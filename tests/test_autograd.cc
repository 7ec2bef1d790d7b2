// Autograd: the tape through a 2-layer MLP and a small pre-norm attention block (RMSNorm, RoPE, GQA
// attention, SwiGLU, residuals) matches central finite differences on every parameter; frozen
// parameters get no gradient and cost no grad memory; two backward() calls accumulate until zero_grad();
// the ParamStore's flat buffers back the per-parameter views; AdamW and SGD match hand-computed updates.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <cstring>
#include <random>

#include "llmkit/autograd/ops.h"
#include "llmkit/autograd/param_store.h"

namespace llmkit {
namespace {
using ag::Var;

void fill_random(const Tensor& t, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
}
Tensor ids(std::vector<int32_t> v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::kI32);
  for (size_t i = 0; i < v.size(); ++i) t.data<int32_t>()[i] = v[i];
  return t;
}

// Compares the store's gradients with central differences of `loss` over every trainable element.
void expect_grads_match_fd(ag::ParamStore& ps, const std::function<Var()>& loss, double tol = 2e-2) {
  ps.zero_grad();
  ag::backward(loss());
  const float* g = ps.grads().data<float>();
  float* p = ps.params().data<float>();
  for (const auto& e : ps.entries()) {
    if (!e.trainable) continue;
    double max_diff = 0, max_num = 0;
    for (int64_t i = e.offset; i < e.offset + e.numel; ++i) {
      const float saved = p[i];
      const float h = 1e-2f;
      double lp, lm;
      {
        ag::NoGrad ng;
        p[i] = saved + h;
        lp = loss().value().data<float>()[0];
        p[i] = saved - h;
        lm = loss().value().data<float>()[0];
      }
      p[i] = saved;
      const double num = (lp - lm) / (2.0 * h);
      max_num = std::max(max_num, std::fabs(num));
      max_diff = std::max(max_diff, std::fabs(num - g[i]));
    }
    EXPECT_LE(max_diff / std::max(max_num, 1e-3), tol)
        << "parameter " << e.name << ": max |analytic - numeric| " << max_diff << ", max |numeric| " << max_num;
  }
}

struct Mlp {
  ag::ParamStore ps;
  Var w1, b1, w2;
  Var x;
  Tensor targets = ids({0, 3, 4, ops::kIgnoreIndex});
  explicit Mlp(bool freeze_w1 = false) {
    w1 = ps.add("w1", {8, 6}, !freeze_w1);
    b1 = ps.add("b1", {8}, true, /*decay=*/false);
    w2 = ps.add("w2", {5, 8});
    ps.allocate();
    fill_random(w1.value(), 1, 0.5f);
    fill_random(b1.value(), 2, 0.5f);
    fill_random(w2.value(), 3, 0.5f);
    Tensor xv = Tensor::empty({4, 6}, DType::kF32);
    fill_random(xv, 4, 1.0f);
    x = Var(xv);
  }
  Var loss() const {
    Var h = ag::activation(ops::Act::kGeluTanh, ag::add_bias(ag::matmul(x, w1), b1));  // [4, 8]
    return ag::cross_entropy(ag::matmul(h, w2), targets);                                // logits [4, 5]
  }
};

TEST(Autograd, MlpMatchesFiniteDifferences) {
  Mlp m;
  expect_grads_match_fd(m.ps, [&] { return m.loss(); });
}

TEST(Autograd, AttentionBlockMatchesFiniteDifferences) {
  // n_tokens = 5, d_model = 8, n_heads = 2, n_kv_heads = 1, head_dim = 4, d_ff = 12, n_vocab = 7.
  const int64_t T = 5, D = 8, H = 2, KVH = 1, HD = 4, FF = 12, V = 7;
  ag::ParamStore ps;
  Var emb = ps.add("tok_embd", {V, D});
  Var attn_norm = ps.add("attn_norm", {D}, true, false);
  Var wq = ps.add("wq", {H * HD, D}), wk = ps.add("wk", {KVH * HD, D}), wv = ps.add("wv", {KVH * HD, D});
  Var wo = ps.add("wo", {D, H * HD});
  Var ffn_norm = ps.add("ffn_norm", {D}, true, false);
  Var wg = ps.add("w_gate", {FF, D}), wu = ps.add("w_up", {FF, D}), wd = ps.add("w_down", {D, FF});
  ps.allocate();
  uint32_t seed = 10;
  for (const auto& e : ps.entries()) fill_random(e.var.value(), seed++, 0.5f);
  Tensor tokens = ids({1, 4, 2, 6, 0}), targets = ids({4, 2, 6, 0, 3});
  Tensor pos = ids({0, 1, 2, 3, 4});
  auto loss = [&] {
    Var x = ag::embedding(emb, tokens);                                      // [T, D]
    Var hn = ag::rmsnorm(x, attn_norm, 1e-5f, 1.0f);                         // Gemma-style offset
    Var q = ag::rope(ag::view(ag::matmul(hn, wq), {1, T, H, HD}), pos, {});  // [1, T, H, HD]
    Var k = ag::rope(ag::view(ag::matmul(hn, wk), {1, T, KVH, HD}), pos, {});
    Var v = ag::view(ag::matmul(hn, wv), {1, T, KVH, HD});
    Var a = ag::view(ag::attention(q, k, v), {T, H * HD});
    x = ag::add(x, ag::matmul(a, wo));
    Var f = ag::rmsnorm(x, ffn_norm, 1e-5f);
    x = ag::add(x, ag::matmul(ag::glu(ops::Act::kSilu, ag::matmul(f, wg), ag::matmul(f, wu)), wd));
    return ag::cross_entropy(ag::matmul(x, emb), targets);  // tied output embedding: emb used twice
  };
  expect_grads_match_fd(ps, loss);
}

TEST(Autograd, FrozenParametersGetNoGradient) {
  Mlp m(/*freeze_w1=*/true);
  EXPECT_FALSE(m.w1.requires_grad());
  EXPECT_EQ(m.ps.n_trainable(), 16 + 48);  // b1 (padded to 16) + w2; w1 has no grad memory
  ag::backward(m.loss());
  EXPECT_FALSE(m.w1.grad().defined());
  EXPECT_TRUE(m.b1.grad().defined());
  // A frozen half-precision weight outside the store (a PEFT base): dx flows, no dw is attempted.
  Tensor wh = Tensor::empty({3, 6}, DType::kF16);
  std::memset(wh.raw(), 0, wh.nbytes());
  Var base(wh, false);
  Var xin(m.x.value(), true);
  ag::backward(ag::sum(ag::matmul(xin, base)));
  EXPECT_FALSE(base.grad().defined());
  EXPECT_TRUE(xin.grad().defined());
  // Everything frozen: nothing is recorded.
  Var c(m.x.value(), false);
  ag::sum(ag::matmul(c, base));
  EXPECT_EQ(ag::Tape::current().size(), 0u);
  ag::Tape::current().clear();
}

TEST(Autograd, TwoBackwardsAccumulateUntilZeroGrad) {
  Mlp m;
  ag::backward(m.loss());
  Tensor once = m.ps.grads().clone();
  ag::backward(m.loss());
  const float* g = m.ps.grads().data<float>();
  double max_norm = 0;
  for (int64_t i = 0; i < once.numel(); ++i) {
    EXPECT_NEAR(g[i], 2.0f * once.data<float>()[i], 1e-6f) << i;
    max_norm = std::max(max_norm, double(std::fabs(once.data<float>()[i])));
  }
  EXPECT_GT(max_norm, 0.0);
  m.ps.zero_grad();
  for (int64_t i = 0; i < once.numel(); ++i) EXPECT_EQ(g[i], 0.0f);
  ag::NoGrad ng;
  m.loss();
  EXPECT_EQ(ag::Tape::current().size(), 0u);
}

TEST(ParamStore, FlatBuffersBackTheViews) {
  Mlp m(/*freeze_w1=*/true);
  const float* base = m.ps.params().data<float>();
  // Trainable first (b1 then w2), frozen w1 last; every view 64-byte aligned.
  EXPECT_EQ(m.b1.value().data<float>(), base);
  EXPECT_EQ(m.w2.value().data<float>(), base + 16);
  EXPECT_EQ(m.w1.value().data<float>(), base + 64);
  EXPECT_EQ(m.w2.grad().data<float>(), m.ps.grads().data<float>() + 16);
  for (const auto& e : m.ps.entries()) EXPECT_EQ(reinterpret_cast<uintptr_t>(e.var.value().raw()) % 64, 0u);
  EXPECT_THROW(m.ps.add("late", {2}), Error);
  EXPECT_THROW(m.ps.get("nope"), Error);
}

TEST(ParamStore, AdamWMatchesHandComputedUpdate) {
  ag::ParamStore ps;
  Var w = ps.add("w", {2});
  Var b = ps.add("b", {1}, true, /*decay=*/false);
  ps.allocate();
  w.value().data<float>()[0] = 1.0f;
  w.value().data<float>()[1] = -2.0f;
  b.value().data<float>()[0] = 0.5f;
  const ag::AdamWConfig cfg{.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
  const float g1[] = {0.5f, -1.0f, 2.0f}, g2[] = {0.25f, 3.0f, -1.0f};
  double p[] = {1.0, -2.0, 0.5}, m[3] = {}, v[3] = {};
  for (int step = 1; step <= 2; ++step) {
    const float* g = step == 1 ? g1 : g2;
    ps.zero_grad();
    w.grad().data<float>()[0] = g[0];
    w.grad().data<float>()[1] = g[1];
    b.grad().data<float>()[0] = g[2];
    ps.step_adamw(cfg);
    for (int i = 0; i < 3; ++i) {  // by hand, in double
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.999, step));
      const double wd = i < 2 ? 0.1 : 0.0;
      p[i] = p[i] - 0.1 * (mh / (std::sqrt(vh) + 1e-8) + wd * p[i]);
    }
    EXPECT_NEAR(w.value().data<float>()[0], p[0], 1e-6);
    EXPECT_NEAR(w.value().data<float>()[1], p[1], 1e-6);
    EXPECT_NEAR(b.value().data<float>()[0], p[2], 1e-6);
  }
  // Step 1 of Adam moves each weight by ~lr against its gradient's sign: 1 - 0.1 (1 + 0.1) = 0.89.
  EXPECT_EQ(ps.step_count(), 2);
}

TEST(ParamStore, SgdMomentumAndClipping) {
  ag::ParamStore ps;
  Var w = ps.add("w", {1});
  ps.allocate();
  w.value().data<float>()[0] = 1.0f;
  const ag::SgdConfig cfg{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.0f};
  w.grad().data<float>()[0] = 1.0f;
  ps.step_sgd(cfg);  // buf = 1, p = 0.9
  ps.step_sgd(cfg);  // buf = 1.9, p = 0.71
  EXPECT_NEAR(w.value().data<float>()[0], 0.71f, 1e-6f);
  w.grad().data<float>()[0] = -4.0f;
  EXPECT_NEAR(ps.clip_grad_norm(1.0), 4.0, 1e-9);
  EXPECT_NEAR(w.grad().data<float>()[0], -1.0f, 1e-7f);
}

// AdamW with the clipping factor applied as gradients are read gives bitwise the parameters and
// moments of clipping the gradients first (what the trainer did before, and PyTorch does).
TEST(ParamStore, AdamWGradScaleEqualsClippingFirst) {
  ag::ParamStore a, b;
  Var wa = a.add("w", {1000}), wb = b.add("w", {1000});
  a.allocate();
  b.allocate();
  for (int i = 0; i < 1000; ++i) {
    wa.value().data<float>()[i] = wb.value().data<float>()[i] = 0.01f * static_cast<float>(i % 37) - 0.2f;
  }
  for (int step = 0; step < 3; ++step) {
    for (int i = 0; i < 1000; ++i)
      wa.grad().data<float>()[i] = wb.grad().data<float>()[i] = 0.37f * static_cast<float>((i * 7 + step) % 23) - 4.1f;
    const double norm_a = a.clip_grad_norm(1.0);
    a.step_adamw({.lr = 0.01f});
    const double norm_b = b.grad_norm();
    const float c = ag::ParamStore::clip_factor(norm_b, 1.0);
    EXPECT_EQ(norm_a, norm_b);
    EXPECT_LT(c, 1.0f);  // the gradients are large: clipping applies
    b.step_adamw({.lr = 0.01f, .grad_scale = c});
    EXPECT_EQ(std::memcmp(wa.value().data<float>(), wb.value().data<float>(), 1000 * sizeof(float)), 0) << step;
    EXPECT_EQ(std::memcmp(a.m().data<float>(), b.m().data<float>(), 1000 * sizeof(float)), 0) << step;
    EXPECT_EQ(std::memcmp(a.v().data<float>(), b.v().data<float>(), 1000 * sizeof(float)), 0) << step;
    a.zero_grad();
    b.zero_grad();
  }
}

TEST(Autograd, TrainingLoopReducesLoss) {
  Mlp m;
  const float first = m.loss().value().data<float>()[0];
  ag::Tape::current().clear();
  for (int i = 0; i < 30; ++i) {
    m.ps.zero_grad();
    ag::backward(m.loss());
    m.ps.step_adamw({.lr = 0.05f});
  }
  ag::NoGrad ng;
  EXPECT_LT(m.loss().value().data<float>()[0], 0.5f * first);
}

}  // namespace
}  // namespace llmkit
