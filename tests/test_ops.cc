// The op harness's forward mode: every op case (op x shapes x dtypes) runs on the reference and on
// kCpu for every SIMD target of this CPU and must match the reference by NMSE within the dtype's bound
// (tests/op_harness.h). LLMKIT_HARNESS_PERF=1 prints per-op per-target timings. Also: every
// KernelTable entry of ref_table() is filled, and bad arguments surface as llmkit::Error naming the op.
#include <array>
#include <cstring>

#include "op_harness.h"

namespace llmkit {
namespace {
using harness::OpCase;
using harness::rand_tensor;
using ops::RopeScaling;
using ops::RopeStyle;

std::vector<OpCase> cases() {
  std::vector<OpCase> out;
  auto add = [&](std::string op, std::string desc, double bound, std::function<std::vector<Tensor>()> fn) {
    out.push_back({std::move(op), std::move(desc), bound, std::move(fn)});
  };
  uint32_t seed = 1;
  // matmul: float weights, then every quantized type whose reference exists.
  const int64_t mm[][3] = {{1, 32, 64}, {7, 13, 96}, {33, 65, 256}, {4, 512, 512}};
  std::vector<DType> wtypes = {DType::kF32, DType::kF16, DType::kBF16};
  for (DType t : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                  DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kNF4})
    wtypes.push_back(t);
  for (DType wt : wtypes) {
    for (const auto& s : mm) {
      if (s[2] % block_size(wt)) continue;
      Tensor x = rand_tensor({s[0], s[2]}, seed++);
      Tensor w = harness::convert(rand_tensor({s[1], s[2]}, seed++), wt);
      add("matmul", str_cat("M=", s[0], " N=", s[1], " K=", s[2], " w=", dtype_name(wt)), harness::nmse_bound(wt),
          [x, w] { return std::vector<Tensor>{ops::matmul(x, w)}; });
    }
  }
  // The rows-interleaved-by-8 inference layouts (ops::repack_r8), N a multiple of 8: matmul and the
  // embedding lookup of a tied output head.
  for (DType wt : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    for (const auto& s : {std::array<int64_t, 3>{1, 32, 64}, std::array<int64_t, 3>{13, 24, 96},
                          std::array<int64_t, 3>{70, 64, 256}}) {
      Tensor x = rand_tensor({s[0], s[2]}, seed++);
      Tensor w = ops::repack_r8(harness::convert(rand_tensor({s[1], s[2]}, seed++), wt));
      add("matmul", str_cat("M=", s[0], " N=", s[1], " K=", s[2], " w=", dtype_name(w.dtype())), harness::nmse_bound(wt),
          [x, w] { return std::vector<Tensor>{ops::matmul(x, w)}; });
    }
    Tensor table = ops::repack_r8(harness::convert(rand_tensor({24, 64}, seed++), wt));
    Tensor ids = harness::ids_tensor({7}, seed++, 0, 24);
    add("embedding", str_cat("[24,64] ", dtype_name(table.dtype())), 0,
        [table, ids] { return std::vector<Tensor>{ops::embedding(table, ids)}; });
  }
  // matmul backward (dx for float and quantized weights, dw): reference-only today; the cases are here
  // for the SIMD backward kernel when it lands.
  for (DType wt : {DType::kF32, DType::kBF16, DType::kQ8_0}) {
    for (const auto& s : mm) {
      Tensor x = rand_tensor({s[0], s[2]}, seed++), dy = rand_tensor({s[0], s[1]}, seed++);
      Tensor w = harness::convert(rand_tensor({s[1], s[2]}, seed++), wt);
      add("matmul_bwd", str_cat("M=", s[0], " N=", s[1], " K=", s[2], " w=", dtype_name(wt)), 1e-7, [x, w, dy] {
        Tensor dx = Tensor::zeros(x.shape(), DType::kF32), dw;  // dx accumulates onto zeros
        ops::matmul_backward(dy, x, w, &dx, is_quantized(w.dtype()) ? nullptr : &dw);
        return dw.defined() ? std::vector<Tensor>{dx, dw} : std::vector<Tensor>{dx};
      });
    }
  }
  for (const auto& s : mm) {
    Tensor x = harness::convert(rand_tensor({s[0], s[2]}, seed++), DType::kBF16);
    Tensor w = harness::convert(rand_tensor({s[1], s[2]}, seed++), DType::kBF16);
    add("matmul_bf16", str_cat("M=", s[0], " N=", s[1], " K=", s[2]), 1e-7,
        [x, w] { return std::vector<Tensor>{ops::matmul_bf16(x, w)}; });
  }
  // BF16 mixed precision (the --precision bf16 training products): F32 or BF16 operands, forward and
  // both backward products (accumulated onto non-zero gradients), a 3-D x.
  for (const auto& s : mm) {
    for (DType t : {DType::kF32, DType::kBF16}) {
      Tensor x = harness::convert(rand_tensor({s[0], s[2]}, seed++), t);
      Tensor w = harness::convert(rand_tensor({s[1], s[2]}, seed++), t);
      Tensor dy = rand_tensor({s[0], s[1]}, seed++), dx0 = rand_tensor({s[0], s[2]}, seed++);
      Tensor dw0 = rand_tensor({s[1], s[2]}, seed++);
      const std::string d = str_cat("M=", s[0], " N=", s[1], " K=", s[2], " ", dtype_name(t));
      add("matmul_mixed_bf16", d, 1e-7, [x, w] { return std::vector<Tensor>{ops::matmul_mixed_bf16(x, w)}; });
      add("matmul_backward_mixed_bf16", d, 1e-7, [x, w, dy, dx0, dw0] {
        Tensor dx = dx0.clone(), dw = dw0.clone();
        ops::matmul_backward_mixed_bf16(dy, x, w, &dx, &dw);
        return std::vector<Tensor>{dx, dw};
      });
      add("matmul_backward_mixed_bf16", d + " fresh dx", 1e-7, [x, w, dy] {
        Tensor dx;  // undefined: allocated and overwritten, not accumulated onto zeros
        ops::matmul_backward_mixed_bf16(dy, x, w, &dx, nullptr);
        return std::vector<Tensor>{dx};
      });
    }
  }
  {
    Tensor x = rand_tensor({3, 37, 70}, seed++), w = rand_tensor({50, 70}, seed++);
    add("matmul_mixed_bf16", "x [3,37,70]", 1e-7, [x, w] { return std::vector<Tensor>{ops::matmul_mixed_bf16(x, w)}; });
  }
  // Element-wise and activations over odd and SIMD-friendly lengths.
  for (int64_t n : {1, 7, 64, 1000, 4099, 40000}) {
    Tensor a = rand_tensor({n}, seed++, -4, 4), b = rand_tensor({n}, seed++, -4, 4);
    const std::string d = str_cat("n=", n);
    add("add", d, 1e-12, [a, b] { return std::vector<Tensor>{ops::add(a, b)}; });
    add("mul", d, 1e-12, [a, b] { return std::vector<Tensor>{ops::mul(a, b)}; });
    add("scale", d, 1e-12, [a] { return std::vector<Tensor>{ops::scale(a, -0.37f)}; });
    for (ops::Act act : {ops::Act::kSilu, ops::Act::kGeluErf, ops::Act::kGeluTanh, ops::Act::kRelu})
      add(ops::act_name(act), d, 1e-10, [a, act] { return std::vector<Tensor>{ops::activation(act, a)}; });
    add("swiglu", d, 1e-10, [a, b] { return std::vector<Tensor>{ops::swiglu(a, b)}; });
    // Both gradients accumulated onto non-zero values; n = 40000 crosses the threading threshold.
    Tensor dy = rand_tensor({n}, seed++), g0 = rand_tensor({n}, seed++), u0 = rand_tensor({n}, seed++);
    add("swiglu_backward", d, 1e-10, [a, b, dy, g0, u0] {
      Tensor gg = g0.clone(), gu = u0.clone();
      ops::glu_backward(ops::Act::kSilu, a, b, dy, &gg, &gu);
      return std::vector<Tensor>{gg, gu};
    });
    add("geglu", d, 1e-10, [a, b] { return std::vector<Tensor>{ops::geglu(a, b, true)}; });
  }
  {
    // Non-contiguous views are accepted (copied to contiguous first).
    Tensor xt = rand_tensor({64, 5}, seed++).transpose(0, 1), w = rand_tensor({9, 64}, seed++);
    add("matmul", "x transposed view [5,64]", 1e-7, [xt, w] { return std::vector<Tensor>{ops::matmul(xt, w)}; });
    Tensor a = rand_tensor({6, 4}, seed++).slice(0, 1, 5);
    add("rmsnorm", "sliced view", 1e-10, [a] {
      return std::vector<Tensor>{ops::rmsnorm(a, Tensor::from_floats({1, 2, 3, 4}, {4}), 1e-6f)};
    });
  }
  {
    Tensor x = rand_tensor({5, 3, 24}, seed++), b = rand_tensor({24}, seed++);
    add("add_bias", "[5,3,24]+[24]", 1e-12, [x, b] { return std::vector<Tensor>{ops::add_bias(x, b)}; });
  }
  // Norms and softmax.
  for (const auto& s : std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {4, 64}, {9, 1000}, {3, 4096}}) {
    Tensor x = rand_tensor({s.first, s.second}, seed++, -3, 3), w = rand_tensor({s.second}, seed++);
    Tensor b = rand_tensor({s.second}, seed++);
    const std::string d = str_cat("rows=", s.first, " d=", s.second);
    add("rmsnorm", d, 1e-10, [x, w] { return std::vector<Tensor>{ops::rmsnorm(x, w, 1e-6f)}; });
    add("rmsnorm", d + " gemma", 1e-10, [x, w] { return std::vector<Tensor>{ops::rmsnorm(x, w, 1e-6f, 1.0f)}; });
    add("layernorm", d, 1e-10, [x, w, b] { return std::vector<Tensor>{ops::layernorm(x, w, b, 1e-5f)}; });
    add("softmax", d, 1e-10, [x] { return std::vector<Tensor>{ops::softmax(x)}; });
  }
  // Norm backward on enough rows to be split over the pool (weight gradients summed from per-range
  // partials), accumulated onto non-zero gradients; against the single-piece reference.
  {
    Tensor x = rand_tensor({37, 2048}, seed++, -3, 3), w = rand_tensor({2048}, seed++), dy = rand_tensor({37, 2048}, seed++);
    Tensor dx0 = rand_tensor({37, 2048}, seed++), dw0 = rand_tensor({2048}, seed++), db0 = rand_tensor({2048}, seed++);
    add("rmsnorm_backward", "rows=37 d=2048", 1e-10, [x, w, dy, dx0, dw0] {
      Tensor dx = dx0.clone(), dw = dw0.clone();
      ops::rmsnorm_backward(x, w, dy, 1e-6f, 0.0f, &dx, &dw);
      return std::vector<Tensor>{dx, dw};
    });
    add("layernorm_backward", "rows=37 d=2048", 1e-10, [x, w, dy, dx0, dw0, db0] {
      Tensor dx = dx0.clone(), dw = dw0.clone(), db = db0.clone();
      ops::layernorm_backward(x, w, dy, 1e-5f, &dx, &dw, &db);
      return std::vector<Tensor>{dx, dw, db};
    });
    add("layernorm", "rows=37 d=2048", 1e-10, [x, w, db0] { return std::vector<Tensor>{ops::layernorm(x, w, db0, 1e-5f)}; });
  }
  {
    Tensor x = rand_tensor({2, 2, 3, 7}, seed++, -5, 5);  // [n_seqs, n_heads, n_q, n_keys]
    add("softmax", "causal+padding [2,2,3,7]", 1e-10, [x] {
      return std::vector<Tensor>{ops::softmax(x, {.causal = true, .n_q = 3, .key_len = {7, 7, 5, 5}})};
    });
  }
  // RoPE: both styles, partial rotary, every scaling.
  {
    Tensor x = rand_tensor({5, 3, 16}, seed++);
    Tensor pos = harness::ids_tensor({5}, seed++, 0, 9000);
    using S = RopeScaling;
    const std::pair<const char*, ops::RopeConfig> cfgs[] = {
        {"neox", {}},
        {"gptj", {.style = RopeStyle::kGptJ}},
        {"neox rot=8", {.rot_dims = 8}},
        {"gptj rot=8", {.style = RopeStyle::kGptJ, .rot_dims = 8}},
        {"linear x4", {.scaling = S::kLinear, .factor = 4}},
        {"ntk x4", {.scaling = S::kNtk, .factor = 4}},
        {"yarn x8", {.theta = 500000, .scaling = S::kYarn, .factor = 8, .original_ctx = 4096}},
        {"llama3 x8", {.theta = 500000, .scaling = S::kLlama3, .factor = 8, .original_ctx = 8192}},
    };
    for (const auto& [name, cfg] : cfgs)
      add("rope", name, 1e-10, [x, pos, cfg] { return std::vector<Tensor>{ops::rope(x, pos, cfg)}; });
    // SmolLM2's q shape at 60 tokens: SIMD rows, tokens split over the pool, and the cached cos/sin
    // tables (the second call at the same positions reuses them; a third at other positions must not).
    Tensor xq = rand_tensor({60, 9, 64}, seed++);
    Tensor pos_a = harness::ids_tensor({60}, seed++, 0, 8000), pos_b = harness::ids_tensor({60}, seed++, 0, 8000);
    add("rope", "[60,9,64] cached tables", 1e-10, [xq, pos_a, pos_b] {
      Tensor dx = Tensor::zeros(xq.shape(), DType::kF32);
      ops::rope_backward(xq, pos_a, {}, &dx);
      return std::vector<Tensor>{ops::rope(xq, pos_a, {}), ops::rope(xq, pos_a, {}), ops::rope(xq, pos_b, {}), dx};
    });
  }
  // Attention: MHA/GQA/MQA, causal, window, ALiBi, padding, decode (n_q < n_kv).
  struct Att { int64_t s, q, kv, h, kvh, d; ops::AttentionOptions o; const char* name; };
  const Att atts[] = {
      {1, 9, 9, 4, 4, 16, {}, "mha causal"},
      {2, 70, 70, 4, 2, 8, {}, "gqa causal 2 blocks"},
      {2, 5, 5, 4, 1, 8, {.causal = false}, "mqa full"},
      {1, 1, 130, 4, 2, 16, {}, "decode n_kv=130"},
      {1, 20, 20, 2, 2, 8, {.window = 4}, "sliding window 4"},
      {1, 12, 12, 6, 6, 8, {.alibi = true}, "alibi 6 heads"},
      {2, 10, 10, 2, 1, 8, {.kv_len = {10, 6}}, "padding"},
      // Shapes of the SIMD kernel's paths (kernels/cpu/attention.cc): the transposed-key prefill
      // path over several key blocks and row items, head_dim not a multiple of the vector, and the
      // dot-product decode path with a few query rows.
      {1, 300, 300, 9, 3, 64, {}, "smollm2 prefill 300"},
      {1, 37, 37, 4, 2, 20, {}, "head_dim 20 causal"},
      {2, 40, 40, 6, 6, 8, {.alibi = true, .kv_len = {40, 23}}, "alibi+padding prefill"},
      {1, 50, 260, 2, 1, 64, {.window = 100}, "window 100 chunk after 210"},
      {1, 3, 300, 9, 3, 64, {}, "decode 3 rows n_kv=300"},
      {1, 2, 45, 4, 4, 12, {.causal = false}, "non-causal few rows head_dim 12"},
      {1, 12, 12, 9, 3, 64, {}, "smollm2 prefill 12"},
      {1, 40, 40, 8, 2, 64, {}, "gqa group 4 (llama-3.2 shape)"},
      {1, 33, 33, 10, 2, 24, {.alibi = true}, "gqa group 5 alibi"},
  };
  for (const Att& a : atts) {
    Tensor q = rand_tensor({a.s, a.q, a.h, a.d}, seed++);
    Tensor k = rand_tensor({a.s, a.kv, a.kvh, a.d}, seed++), v = rand_tensor({a.s, a.kv, a.kvh, a.d}, seed++);
    ops::AttentionOptions o = a.o;
    add("attention", a.name, 1e-10, [q, k, v, o] {
      ops::AttentionOutput r = ops::attention(q, k, v, o);
      return std::vector<Tensor>{r.out, r.lse};
    });
    // The backward on every backend and target: dq, dk, dv accumulated onto non-zero gradients.
    Tensor dout = rand_tensor(q.shape(), seed++);
    Tensor gq0 = rand_tensor(q.shape(), seed++), gk0 = rand_tensor(k.shape(), seed++), gv0 = rand_tensor(v.shape(), seed++);
    add("attention_backward", a.name, 1e-10, [q, k, v, o, dout, gq0, gk0, gv0] {
      ops::AttentionOutput f = ops::attention(q, k, v, o);
      Tensor gq = gq0.clone(), gk = gk0.clone(), gv = gv0.clone();
      ops::attention_backward(q, k, v, f, dout, o, &gq, &gk, &gv);
      return std::vector<Tensor>{gq, gk, gv};
    });
  }
  // Packed documents (first_key): sequence 0 holds documents of 5, 30 and 35 rows, sequence 1 one of
  // 70; forward and backward on every target against the reference, and each document's rows equal
  // the same document run alone.
  {
    const int64_t S = 2, T = 70, H = 6, Hkv = 2, D = 64;
    ops::AttentionOptions o;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = 0; i < T; ++i) o.first_key.push_back(s == 1 ? 0 : i < 5 ? 0 : i < 35 ? 5 : 35);
    Tensor q = rand_tensor({S, T, H, D}, seed++), k = rand_tensor({S, T, Hkv, D}, seed++), v = rand_tensor({S, T, Hkv, D}, seed++);
    Tensor dout = rand_tensor(q.shape(), seed++);
    add("attention", "packed documents", 1e-10, [q, k, v, o] {
      ops::AttentionOutput r = ops::attention(q, k, v, o);
      return std::vector<Tensor>{r.out, r.lse};
    });
    add("attention_backward", "packed documents", 1e-10, [q, k, v, o, dout] {
      ops::AttentionOutput f = ops::attention(q, k, v, o);
      Tensor gq = Tensor::zeros(q.shape(), DType::kF32), gk = Tensor::zeros(k.shape(), DType::kF32),
             gv = Tensor::zeros(v.shape(), DType::kF32);
      ops::attention_backward(q, k, v, f, dout, o, &gq, &gk, &gv);
      return std::vector<Tensor>{gq, gk, gv};
    });
  }
  // Loss and selection. [9, 3001] (vocabulary not a multiple of the vector, above the row-split
  // threshold), logits spread wide so some rows have a dominant entry.
  {
    Tensor logits = rand_tensor({9, 3001}, seed++, -20, 20);
    Tensor tg = harness::ids_tensor({9}, seed++, 0, 3001);
    tg.data<int32_t>()[4] = ops::kIgnoreIndex;
    add("cross_entropy", "[9,3001]", 1e-10, [logits, tg] {
      return std::vector<Tensor>{Tensor::from_floats({ops::cross_entropy(logits, tg)}, {1})};
    });
    add("cross_entropy_backward", "[9,3001]", 1e-10, [logits, tg] {
      Tensor g = Tensor::zeros(logits.shape(), DType::kF32);
      ops::cross_entropy_backward(logits, tg, 1.3f, &g);
      return std::vector<Tensor>{g};
    });
  }
  {
    Tensor logits = rand_tensor({6, 50}, seed++, -6, 6);
    Tensor tg = harness::ids_tensor({6}, seed++, 0, 50);
    tg.data<int32_t>()[2] = ops::kIgnoreIndex;
    add("cross_entropy", "[6,50] one ignored", 1e-10, [logits, tg] {
      return std::vector<Tensor>{Tensor::from_floats({ops::cross_entropy(logits, tg)}, {1})};
    });
    add("cross_entropy_backward", "[6,50] one ignored", 1e-10, [logits, tg] {
      Tensor g = Tensor::zeros(logits.shape(), DType::kF32);
      ops::cross_entropy_backward(logits, tg, 0.7f, &g);
      return std::vector<Tensor>{g};
    });
    add("argmax", "[6,50]", 0, [logits] { return std::vector<Tensor>{ops::argmax(logits)}; });
    add("topk", "[6,50] k=5", 0, [logits] {
      auto [v, i] = ops::topk(logits, 5);
      return std::vector<Tensor>{v, i};
    });
  }
  // Embedding (dense and quantized tables), concat/split.
  for (DType t : wtypes) {
    if (64 % block_size(t)) continue;
    Tensor table = harness::convert(rand_tensor({20, 256}, seed++), t);
    Tensor ids = harness::ids_tensor({2, 5}, seed++, 0, 20);
    add("embedding", str_cat("[20,256] ", dtype_name(t)), 0,
        [table, ids] { return std::vector<Tensor>{ops::embedding(table, ids)}; });
  }
  {
    Tensor a = rand_tensor({3, 4, 5}, seed++), b = rand_tensor({3, 2, 5}, seed++);
    add("concat", "dim 1", 0, [a, b] { return std::vector<Tensor>{ops::concat({a, b}, 1)}; });
    Tensor c = rand_tensor({6, 10}, seed++);
    add("split", "dim -1 [3,7]", 0, [c] { return ops::split(c, {3, 7}, -1); });
  }
  return out;
}

TEST(OpHarness, EveryOpOnEveryTargetMatchesReference) {
  const std::vector<OpCase> all = cases();
  int failures = 0;
  for (const OpCase& c : all) failures += harness::run_case(c);
  std::printf("[harness] %zu op cases x %zu targets, %d failures\n", all.size(), harness::all_targets().size(),
              failures);
  EXPECT_EQ(failures, 0);
}

// ---- gradient mode: every differentiable op's backward against central finite differences ----------
using harness::GradCase;
using Ts = std::vector<Tensor>;
using Gs = std::vector<Tensor*>;

// dx += dy for ops whose input gradient is the identity (add_bias's x).
void accumulate(Tensor* g, const Tensor& dy) {
  if (!g) return;
  if (!g->defined()) *g = Tensor::zeros(dy.shape(), DType::kF32);
  for (int64_t i = 0; i < dy.numel(); ++i) g->data<float>()[i] += dy.data<float>()[i];
}

// Inputs at least 0.2 away from 0, for ReLU's kink.
Tensor away_from_zero(Tensor t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    float& v = t.data<float>()[i];
    v = v < 0 ? v - 0.2f : v + 0.2f;
  }
  return t;
}

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> out;
  uint32_t seed = 1000;
  out.push_back({"matmul", "x[3,5] w[4,5]", {rand_tensor({3, 5}, seed++), rand_tensor({4, 5}, seed++)}, {0, 1},
                 [](const Ts& in) { return ops::matmul(in[0], in[1]); },
                 [](const Ts& in, const Tensor& dy, Gs& g) { ops::matmul_backward(dy, in[0], in[1], g[0], g[1]); }});
  {
    Tensor wh = harness::convert(rand_tensor({4, 6}, seed++), DType::kF16);  // frozen half weight: dx only
    out.push_back({"matmul", "frozen f16 w", {rand_tensor({2, 6}, seed++)}, {0},
                   [wh](const Ts& in) { return ops::matmul(in[0], wh); },
                   [wh](const Ts& in, const Tensor& dy, Gs& g) { ops::matmul_backward(dy, in[0], wh, g[0], nullptr); }});
  }
  out.push_back({"mul", "[7]", {rand_tensor({7}, seed++), rand_tensor({7}, seed++)}, {0, 1},
                 [](const Ts& in) { return ops::mul(in[0], in[1]); },
                 [](const Ts& in, const Tensor& dy, Gs& g) { ops::mul_backward(in[0], in[1], dy, g[0], g[1]); }});
  out.push_back({"add_bias", "[3,4]+[4]", {rand_tensor({3, 4}, seed++), rand_tensor({4}, seed++)}, {0, 1},
                 [](const Ts& in) { return ops::add_bias(in[0], in[1]); },
                 [](const Ts&, const Tensor& dy, Gs& g) { accumulate(g[0], dy); ops::add_bias_backward(dy, g[1]); }});
  for (ops::Act a : {ops::Act::kSilu, ops::Act::kGeluErf, ops::Act::kGeluTanh, ops::Act::kRelu}) {
    out.push_back({ops::act_name(a), "[9]", {away_from_zero(rand_tensor({9}, seed++, -2, 2))}, {0},
                   [a](const Ts& in) { return ops::activation(a, in[0]); },
                   [a](const Ts& in, const Tensor& dy, Gs& g) { ops::activation_backward(a, in[0], dy, g[0]); }});
  }
  for (ops::Act a : {ops::Act::kSilu, ops::Act::kGeluErf, ops::Act::kGeluTanh}) {
    out.push_back({str_cat("glu/", ops::act_name(a)), "[8]", {rand_tensor({8}, seed++, -2, 2), rand_tensor({8}, seed++)},
                   {0, 1}, [a](const Ts& in) { return ops::glu(a, in[0], in[1]); },
                   [a](const Ts& in, const Tensor& dy, Gs& g) { ops::glu_backward(a, in[0], in[1], dy, g[0], g[1]); }});
  }
  for (float off : {0.0f, 1.0f}) {
    out.push_back({"rmsnorm", str_cat("[3,6] w_offset=", off), {rand_tensor({3, 6}, seed++), rand_tensor({6}, seed++)},
                   {0, 1}, [off](const Ts& in) { return ops::rmsnorm(in[0], in[1], 1e-5f, off); },
                   [off](const Ts& in, const Tensor& dy, Gs& g) {
                     ops::rmsnorm_backward(in[0], in[1], dy, 1e-5f, off, g[0], g[1]);
                   }});
  }
  out.push_back({"layernorm", "[3,6] w,b",
                 {rand_tensor({3, 6}, seed++), rand_tensor({6}, seed++), rand_tensor({6}, seed++)}, {0, 1, 2},
                 [](const Ts& in) { return ops::layernorm(in[0], in[1], in[2], 1e-5f); },
                 [](const Ts& in, const Tensor& dy, Gs& g) {
                   ops::layernorm_backward(in[0], in[1], dy, 1e-5f, g[0], g[1], g[2]);
                 }});
  out.push_back({"layernorm", "[2,5] no affine", {rand_tensor({2, 5}, seed++)}, {0},
                 [](const Ts& in) { return ops::layernorm(in[0], Tensor(), Tensor(), 1e-5f); },
                 [](const Ts& in, const Tensor& dy, Gs& g) {
                   ops::layernorm_backward(in[0], Tensor(), dy, 1e-5f, g[0], nullptr, nullptr);
                 }});
  for (bool masked : {false, true}) {
    ops::SoftmaxOptions o;
    if (masked) o = {.causal = true, .n_q = 3, .key_len = {5, 4}};
    out.push_back({"softmax", masked ? "[2,3,5] causal+padding" : "[2,3,5]", {rand_tensor({2, 3, 5}, seed++, -2, 2)}, {0},
                   [o](const Ts& in) { return ops::softmax(in[0], o); },
                   [o](const Ts& in, const Tensor& dy, Gs& g) { ops::softmax_backward(ops::softmax(in[0], o), dy, g[0]); }});
  }
  {
    Tensor pos = harness::ids_tensor({4}, seed++, 0, 50);
    const std::pair<const char*, ops::RopeConfig> cfgs[] = {
        {"neox rot=4", {.rot_dims = 4}},
        {"gptj", {.style = RopeStyle::kGptJ}},
        {"yarn", {.scaling = RopeScaling::kYarn, .factor = 4, .original_ctx = 64}},
        {"llama3", {.scaling = RopeScaling::kLlama3, .factor = 8, .original_ctx = 16}},
        {"ntk", {.scaling = RopeScaling::kNtk, .factor = 2}},
    };
    for (const auto& [name, cfg] : cfgs)
      out.push_back({"rope", name, {rand_tensor({4, 2, 6}, seed++)}, {0},
                     [pos, cfg](const Ts& in) { return ops::rope(in[0], pos, cfg); },
                     [pos, cfg](const Ts&, const Tensor& dy, Gs& g) { ops::rope_backward(dy, pos, cfg, g[0]); }});
  }
  struct Att { int64_t s, q, kv, h, kvh, d; ops::AttentionOptions o; const char* name; };
  const Att atts[] = {
      {1, 4, 4, 2, 1, 3, {}, "gqa causal"},
      {2, 3, 3, 2, 2, 2, {.causal = false, .kv_len = {3, 2}}, "full + padding"},
      {1, 2, 5, 2, 2, 3, {.window = 2}, "decode window 2"},
      {1, 4, 4, 3, 3, 2, {.alibi = true}, "alibi 3 heads"},
      {2, 2, 4, 4, 1, 2, {.scale = 0.7f}, "mqa decode causal, scale"},
      {1, 6, 6, 2, 1, 3, {.first_key = {0, 0, 2, 2, 2, 5}}, "packed documents 2+3+1"},
  };
  for (const Att& a : atts) {
    ops::AttentionOptions o = a.o;
    auto fwd = [o](const Ts& in) { return ops::attention(in[0], in[1], in[2], o).out; };
    auto bwd = [o](const Ts& in, const Tensor& dy, Gs& g) {
      ops::AttentionOutput f = ops::attention(in[0], in[1], in[2], o);
      ops::attention_backward(in[0], in[1], in[2], f, dy, o, g[0], g[1], g[2]);
    };
    out.push_back({"attention", a.name,
                   {rand_tensor({a.s, a.q, a.h, a.d}, seed++), rand_tensor({a.s, a.kv, a.kvh, a.d}, seed++),
                    rand_tensor({a.s, a.kv, a.kvh, a.d}, seed++)},
                   {0, 1, 2}, fwd, bwd});
  }
  {
    Tensor tg = harness::ids_tensor({4}, seed++, 0, 7);
    tg.data<int32_t>()[1] = ops::kIgnoreIndex;
    out.push_back({"cross_entropy", "[4,7] one ignored", {rand_tensor({4, 7}, seed++, -3, 3)}, {0},
                   [tg](const Ts& in) { return Tensor::from_floats({ops::cross_entropy(in[0], tg)}, {1}); },
                   [tg](const Ts& in, const Tensor& dy, Gs& g) {
                     ops::cross_entropy_backward(in[0], tg, dy.data<float>()[0], g[0]);
                   }});
  }
  {
    Tensor ids = Tensor::empty({5}, DType::kI32);
    const int32_t v[] = {3, 1, 3, 0, 3};  // repeated ids: the scatter must add
    for (int i = 0; i < 5; ++i) ids.data<int32_t>()[i] = v[i];
    out.push_back({"embedding", "[4,3] repeated ids", {rand_tensor({4, 3}, seed++)}, {0},
                   [ids](const Ts& in) { return ops::embedding(in[0], ids); },
                   [ids](const Ts& in, const Tensor& dy, Gs& g) { ops::embedding_backward(ids, dy, g[0], in[0].dim(0)); }});
  }
  return out;
}

TEST(OpHarness, EveryBackwardMatchesFiniteDifferences) {
  const std::vector<GradCase> all = grad_cases();
  double worst = 0;
  for (const GradCase& c : all) worst = std::max(worst, harness::check_grad(c));
  std::printf("[harness] %zu gradient cases, worst relative error %.2e\n", all.size(), worst);
}

// A packed document sees nothing of its neighbours: its rows (outputs and gradients) equal the same
// document run as a sequence of its own, and a wrong first_key is a typed error.
TEST(OpHarness, PackedDocumentsAreIndependent) {
  const int64_t T = 40, H = 4, Hkv = 2, D = 16, a = 12;  // documents [0, 12) and [12, 40)
  Tensor q = rand_tensor({1, T, H, D}, 901), k = rand_tensor({1, T, Hkv, D}, 902), v = rand_tensor({1, T, Hkv, D}, 903);
  Tensor dout = rand_tensor(q.shape(), 904);
  ops::AttentionOptions packed;
  for (int64_t i = 0; i < T; ++i) packed.first_key.push_back(i < a ? 0 : static_cast<int32_t>(a));
  ops::AttentionOutput f = ops::attention(q, k, v, packed);
  Tensor gq = Tensor::zeros(q.shape(), DType::kF32), gk = Tensor::zeros(k.shape(), DType::kF32),
         gv = Tensor::zeros(v.shape(), DType::kF32);
  ops::attention_backward(q, k, v, f, dout, packed, &gq, &gk, &gv);
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, a}, {a, T}}) {
    auto slice = [&](const Tensor& t) { return t.slice(1, lo, hi).contiguous(); };
    Tensor qs = slice(q), ks = slice(k), vs = slice(v), ds = slice(dout);
    ops::AttentionOutput fs = ops::attention(qs, ks, vs, {});
    Tensor sq = Tensor::zeros(qs.shape(), DType::kF32), sk = Tensor::zeros(ks.shape(), DType::kF32),
           sv = Tensor::zeros(vs.shape(), DType::kF32);
    ops::attention_backward(qs, ks, vs, fs, ds, {}, &sq, &sk, &sv);
    const std::pair<Tensor, Tensor> pairs[] = {{slice(f.out), fs.out}, {slice(gq), sq}, {slice(gk), sk}, {slice(gv), sv}};
    for (const auto& [got, want] : pairs)
      for (int64_t i = 0; i < want.numel(); ++i)
        ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5) << "document [" << lo << ", " << hi << ") at " << i;
  }
  ops::AttentionOptions bad;
  bad.first_key.assign(static_cast<size_t>(T), 0);
  bad.first_key[5] = 3;  // then back to 0: not non-decreasing
  EXPECT_THROW(ops::attention(q, k, v, bad), Error);
}

TEST(OpHarness, RefTableIsComplete) {
  const KernelTable& t = ref_table();
  EXPECT_STREQ(t.name, "ref");
  EXPECT_TRUE(t.matmul && t.matmul_bf16 && t.add && t.mul && t.scale && t.silu && t.swiglu && t.rmsnorm &&
              t.rmsnorm_backward && t.layernorm && t.layernorm_backward && t.softmax &&
              t.attention);
}

TEST(OpHarness, BackendScopeNestsAndDefaultsToCpu) {
  EXPECT_EQ(ops::current_backend(), ops::Backend::kCpu);
  {
    ops::ScopedBackend r(ops::Backend::kRef);
    EXPECT_EQ(ops::current_backend(), ops::Backend::kRef);
    EXPECT_EQ(&ops::active_table(), &ref_table());
  }
  EXPECT_EQ(ops::current_backend(), ops::Backend::kCpu);
  EXPECT_NE(ops::active_table().matmul, nullptr);  // never null: falls back to the reference
}

// Bad user input is a typed error that names the op and the shapes, never an abort.
void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an llmkit::Error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OpErrors, ShapeAndDtypeMistakesAreTypedErrors) {
  Tensor x = rand_tensor({2, 8}, 1), w = rand_tensor({4, 6}, 2);
  expect_error([&] { ops::matmul(x, w); }, "matmul: x [2, 8] must end in K = 6");
  expect_error([&] { ops::add(x, w); }, "add:");
  expect_error([&] { ops::rmsnorm(x, rand_tensor({7}, 3), 1e-6f); }, "rmsnorm: 'w' must be [d_model] = [8]");
  Tensor ids = harness::ids_tensor({3}, 4, 0, 2);
  ids.data<int32_t>()[1] = 99;
  expect_error([&] { ops::embedding(w, ids); }, "token id 99");
  Tensor q = rand_tensor({1, 3, 6, 4}, 5), k = rand_tensor({1, 3, 4, 4}, 6);
  expect_error([&] { ops::attention(q, k, k); }, "n_kv_heads (4) must divide n_heads (6)");
  Tensor tg = harness::ids_tensor({2}, 7, 0, 8);
  tg.data<int32_t>()[0] = 8;
  expect_error([&] { ops::cross_entropy(x, tg); }, "target 8 at row 0");
  expect_error([&] { ops::rope(rand_tensor({2, 1, 6}, 8), harness::ids_tensor({2}, 9, 0, 5), {.rot_dims = 3}); },
               "rot_dims 3");
  expect_error([&] { ops::rope(rand_tensor({2, 1, 6}, 8), harness::ids_tensor({2}, 9, 0, 5),
                               {.scaling = RopeScaling::kYarn, .factor = 4}); },
               "original_max_position_embeddings");
  expect_error([&] { ops::topk(x, 9); }, "topk: k = 9");
  expect_error([&] { ops::split(x, {3, 3}, 1); }, "sizes sum to 6");
  expect_error([&] { ops::matmul(Tensor::zeros({2, 8}, DType::kI32), rand_tensor({4, 8}, 3)); }, "must be f32");
  Tensor wq = harness::convert(rand_tensor({4, 32}, 3), DType::kQ8_0), dw;
  expect_error([&] { ops::matmul_backward(rand_tensor({2, 4}, 1), rand_tensor({2, 32}, 2), wq, nullptr, &dw); },
               "freeze it");
  expect_error([&] { ops::matmul_mixed_bf16(harness::convert(x, DType::kF16), rand_tensor({4, 8}, 3)); },
               "matmul_mixed_bf16: 'x' must be f32 or bf16, got");
  expect_error([&] { ops::matmul_mixed_bf16(x, rand_tensor({4, 6}, 3)); }, "matmul_mixed_bf16: x [2, 8] must end in K = 6");
  expect_error([&] { ops::matmul_backward_mixed_bf16(rand_tensor({2, 3}, 1), x, rand_tensor({4, 8}, 3), nullptr, &dw); },
               "'dy' [2, 3] must end in N = 4");
}

// repack_r8 keeps every value: the lookup, the conversion to F32 and the product equal the base
// layout's bit for bit; what it cannot repack is a typed error naming the fix.
TEST(OpRepackR8, SameValuesAsTheBaseLayoutAndClearErrors) {
  for (DType wt : {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0}) {
    Tensor w = harness::convert(rand_tensor({40, 96}, 11), wt);
    Tensor r = ops::repack_r8(w);
    EXPECT_EQ(r.dtype(), *r8_of(wt));
    EXPECT_EQ(r.shape(), w.shape());
    EXPECT_EQ(r.nbytes(), w.nbytes());
    EXPECT_NE(0, std::memcmp(r.raw(), w.raw(), w.nbytes()));
    auto same = [&](const Tensor& a, const Tensor& b, const char* what) {
      ASSERT_EQ(a.shape(), b.shape()) << what;
      EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), a.nbytes())) << what << " " << dtype_name(wt);
    };
    same(ops::to_f32(r), ops::to_f32(w), "to_f32");
    Tensor ids = harness::ids_tensor({9}, 12, 0, 40);
    same(ops::embedding(r, ids), ops::embedding(w, ids), "embedding");
    Tensor x = rand_tensor({3, 96}, 13);
    same(ops::matmul(x, r), ops::matmul(x, w), "matmul");
    Tensor dx1 = Tensor::zeros(x.shape(), DType::kF32), dx2 = Tensor::zeros(x.shape(), DType::kF32);
    Tensor dy = rand_tensor({3, 40}, 14);
    ops::matmul_backward(dy, x, r, &dx1, nullptr);
    ops::matmul_backward(dy, x, w, &dx2, nullptr);
    same(dx1, dx2, "matmul_backward dx");
  }
  expect_error([&] { ops::repack_r8(harness::convert(rand_tensor({12, 64}, 1), DType::kQ4_0)); },
               "needs a multiple of 8 rows (N = 12)");
  expect_error([&] { ops::repack_r8(rand_tensor({16, 64}, 1)); }, "only q4_0, q4_1 and q8_0");
  Tensor w = harness::convert(rand_tensor({16, 64}, 2), DType::kQ8_0);
  expect_error([&] { ops::relayout_into(w, Tensor::empty({8, 64}, DType::kQ8_0_R8)); }, "out must be a contiguous CPU q8_0_r8 tensor [16, 64]");
  EXPECT_FALSE(ops::r8_helps(harness::convert(rand_tensor({12, 64}, 1), DType::kQ4_0)));
  EXPECT_FALSE(ops::r8_helps(rand_tensor({16, 64}, 1)));
}

TEST(OpHarness, WeightGradientOfHalfWeightsIsF32) {
  // dw depends only on dy and x: a BF16 weight gets the same f32 gradient as its f32 master copy.
  Tensor x = rand_tensor({3, 8}, 1), dy = rand_tensor({3, 4}, 2), w = rand_tensor({4, 8}, 3);
  Tensor dw32, dw16;
  ops::matmul_backward(dy, x, w, nullptr, &dw32);
  ops::matmul_backward(dy, x, harness::convert(w, DType::kBF16), nullptr, &dw16);
  ASSERT_EQ(dw16.dtype(), DType::kF32);
  for (int64_t i = 0; i < dw32.numel(); ++i) EXPECT_EQ(dw32.data<float>()[i], dw16.data<float>()[i]);
}

// Training-sized products take the GEMM path of matmul_backward (transposed copies through the
// forward SIMD GEMM): against the reference loops, F32 and F16 weights, accumulating into existing
// gradients as every backward does.
TEST(OpHarness, LargeMatmulBackwardTakesTheGemmPathAndMatchesTheReference) {
  const int64_t M = 96, N = 448, K = 416;  // 17.9M multiply-adds: above the GEMM threshold
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  auto rnd = [&](Shape s) {
    Tensor t = Tensor::empty(s, DType::kF32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
    return t;
  };
  const Tensor x = rnd({M, K}), dy = rnd({M, N}), w32 = rnd({N, K});
  for (const DType wt : {DType::kF32, DType::kF16}) {
    const Tensor w = wt == DType::kF32 ? w32 : harness::convert(w32, wt);
    Tensor dx_ref = rnd({M, K}), dw_ref = rnd({N, K});
    Tensor dx = dx_ref.clone(), dw = dw_ref.clone();
    {
      ops::ScopedBackend b(ops::Backend::kRef);
      ops::matmul_backward(dy, x, w, &dx_ref, &dw_ref);
    }
    ops::matmul_backward(dy, x, w, &dx, &dw);
    for (const auto& [got, want] : {std::pair{dx, dx_ref}, std::pair{dw, dw_ref}}) {
      double err = 0, norm = 0;
      for (int64_t i = 0; i < want.numel(); ++i) {
        const double d = got.data<float>()[i] - want.data<float>()[i];
        err += d * d;
        norm += static_cast<double>(want.data<float>()[i]) * want.data<float>()[i];
      }
      EXPECT_LT(std::sqrt(err / norm), 1e-6) << dtype_name(wt);
    }
  }
}

}  // namespace
}  // namespace llmkit
