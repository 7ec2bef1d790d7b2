// The differentiable transformer; see model.h. The forward mirrors models::Transformer's
// forward_pass (one sequence batch, no cache) op for op, on ag::Var.
#include "llmkit/train/model.h"

#include <algorithm>
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::train {

std::unique_ptr<TrainModel> TrainModel::from_weights(const models::Weights& w) {
  return std::unique_ptr<TrainModel>(new TrainModel(w));
}

TrainModel::TrainModel(const models::Weights& w) : cfg_(w.config()), family_(w.config().family) {
  LLMKIT_CHECK(cfg_.decoder && !cfg_.encoder, kUnsupported, "model '", w.path(), "' (", models::family_name(family_),
               ") is not a decoder-only language model; training covers those");
  rope_ = models::rope_config(cfg_, w, &use_rope_);
  for (const auto& [name, t] : w.all()) {
    if (name == "rope_freqs.weight") continue;  // a constant of the rotary embedding, not trained
    // Weight decay on matrices only (norms, biases and 1-D tensors are exempt by convention).
    params_.add(name, t.shape(), /*trainable=*/true, /*decay=*/t.rank() >= 2);
  }
  params_.allocate();
  for (const auto& e : params_.entries()) {
    Tensor src = ops::to_f32(w.all().at(e.name));
    Tensor dst = e.var.value();
    std::memcpy(dst.data<float>(), src.contiguous().data<float>(), static_cast<size_t>(dst.numel()) * sizeof(float));
  }
}

ag::Var TrainModel::p(const std::string& name) const {
  for (const auto& e : params_.entries())
    if (e.name == name) return e.var;
  return ag::Var();
}

ag::Var TrainModel::norm(const ag::Var& x, const std::string& base) const {
  const ag::Var w = p(base + ".weight"), b = p(base + ".bias");
  LLMKIT_CHECK(w.defined(), kInvalidFile, "the model has no norm weight '", base, ".weight'");
  return cfg_.norm == models::NormKind::kLayerNorm ? ag::layernorm(x, w, b, cfg_.norm_eps)
                                                   : ag::rmsnorm(x, w, cfg_.norm_eps);
}

ag::Var TrainModel::linear(const ag::Var& x, const std::string& base) const {
  const ag::Var w = p(base + ".weight"), b = p(base + ".bias");
  LLMKIT_CHECK(w.defined(), kInvalidFile, "the model has no weight '", base, ".weight'");
  ag::Var y = ag::matmul(x, w);
  return b.defined() ? ag::add_bias(y, b) : y;
}

ag::Var TrainModel::loss(const std::vector<std::vector<int32_t>>& batch) {
  LLMKIT_CHECK(!batch.empty(), kInvalidArgument, "the batch is empty");
  TokenBatch tb;
  tb.B = static_cast<int64_t>(batch.size());
  tb.T = static_cast<int64_t>(batch[0].size());
  LLMKIT_CHECK(tb.T >= 2, kInvalidArgument, "rows need at least 2 tokens (one prediction), got ", tb.T);
  for (int64_t b = 0; b < tb.B; ++b) {
    const auto& row = batch[static_cast<size_t>(b)];
    LLMKIT_CHECK(static_cast<int64_t>(row.size()) == tb.T, kInvalidArgument, "row ", b, " has ", row.size(),
                 " tokens, row 0 has ", tb.T, ": rows must have one length");
    for (int64_t t = 0; t < tb.T; ++t) {
      tb.ids.push_back(row[static_cast<size_t>(t)]);
      tb.targets.push_back(t + 1 < tb.T ? row[static_cast<size_t>(t + 1)] : ops::kIgnoreIndex);
      tb.pos.push_back(static_cast<int32_t>(t));
    }
  }
  return loss(tb);
}

ag::Var TrainModel::loss(const TokenBatch& tb) {
  const int64_t B = tb.B, T = tb.T;
  LLMKIT_CHECK(B >= 1 && T >= 1, kInvalidArgument, "the batch is empty");
  const int64_t H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim, N = B * T;
  LLMKIT_CHECK(static_cast<int64_t>(tb.ids.size()) == N && static_cast<int64_t>(tb.targets.size()) == N &&
                   static_cast<int64_t>(tb.pos.size()) == N &&
                   (tb.doc_start.empty() || static_cast<int64_t>(tb.doc_start.size()) == N),
               kInvalidArgument, "a batch of ", B, " x ", T, " needs ", N, " ids, targets, positions (and document starts)");
  Tensor ids = Tensor::empty({N}, DType::kI32), pos = Tensor::empty({N}, DType::kI32),
         targets = Tensor::empty({N}, DType::kI32);
  for (int64_t i = 0; i < N; ++i) {
    const int32_t id = tb.ids[static_cast<size_t>(i)], tg = tb.targets[static_cast<size_t>(i)];
    LLMKIT_CHECK(id >= 0 && id < cfg_.n_vocab, kInvalidArgument, "token id ", id, " (row ", i / T, ", position ", i % T,
                 ") is outside the vocabulary [0, ", cfg_.n_vocab, ")");
    LLMKIT_CHECK(tg == ops::kIgnoreIndex || (tg >= 0 && tg < cfg_.n_vocab), kInvalidArgument, "target ", tg, " (row ",
                 i / T, ", position ", i % T, ") is outside the vocabulary [0, ", cfg_.n_vocab, ")");
    ids.data<int32_t>()[i] = id;
    targets.data<int32_t>()[i] = tg;
    pos.data<int32_t>()[i] = tb.pos[static_cast<size_t>(i)];
  }
  ag::Var hs = ag::embedding(p("token_embd.weight"), ids);  // [N, d]
  if (cfg_.embedding_scale != 1.0f) hs = ag::scale(hs, cfg_.embedding_scale);
  if (const ag::Var pe = p("position_embd.weight"); pe.defined()) {
    Tensor pids = Tensor::empty({N}, DType::kI32);
    for (int64_t i = 0; i < N; ++i) {
      const int64_t q = pos.data<int32_t>()[i] + cfg_.position_offset;
      LLMKIT_CHECK(q < pe.shape()[0], kInvalidArgument, "position ", q - cfg_.position_offset,
                   " is beyond the model's learned positions");
      pids.data<int32_t>()[i] = static_cast<int32_t>(q);
    }
    hs = ag::add(hs, ag::embedding(pe, pids));
  }
  if (cfg_.embedding_norm) hs = norm(hs, "token_embd_norm");
  ops::AttentionOptions opt;
  opt.causal = true;
  opt.window = cfg_.sliding_window;
  opt.alibi = cfg_.position == models::PositionKind::kAlibi;
  opt.first_key = tb.doc_start;
  const ops::Act act = models::to_act(cfg_.act);
  // One decoder layer, x -> x'. Captures by value: with recomputation it runs again during the
  // backward, after this function has returned.
  auto layer = [=, this](int64_t l, ag::Var x) -> ag::Var {
    const std::string pre = str_cat("blk.", l, ".");
    ag::Var h = norm(x, pre + "attn_norm");
    ag::Var q, k, v;
    if (p(pre + "attn_qkv.weight").defined()) {
      std::vector<ag::Var> parts = ag::split(linear(h, pre + "attn_qkv"), {H * hd, Hkv * hd, Hkv * hd}, 1);
      q = parts[0], k = parts[1], v = parts[2];
    } else {
      q = linear(h, pre + "attn_q");
      k = linear(h, pre + "attn_k");
      v = linear(h, pre + "attn_v");
    }
    q = ag::view(q, {N, H, hd});
    k = ag::view(k, {N, Hkv, hd});
    if (use_rope_) {
      q = ag::rope(q, pos, rope_);
      k = ag::rope(k, pos, rope_);
    }
    ag::Var att = ag::attention(ag::view(q, {B, T, H, hd}), ag::view(k, {B, T, Hkv, hd}), ag::view(v, {B, T, Hkv, hd}), opt);
    ag::Var o = linear(ag::view(att, {N, H * hd}), pre + "attn_output");
    auto mlp = [&](const ag::Var& hin) {
      if (cfg_.n_experts > 0) return moe(hin, pre, act);
      ag::Var a;
      if (cfg_.gated_mlp) {
        ag::Var g, u;
        if (p(pre + "ffn_gate.weight").defined()) {
          g = linear(hin, pre + "ffn_gate");
          u = linear(hin, pre + "ffn_up");
        } else {  // Phi-3: one [gate; up] projection
          std::vector<ag::Var> gu = ag::split(linear(hin, pre + "ffn_up"), {cfg_.d_ff, cfg_.d_ff}, 1);
          g = gu[0], u = gu[1];
        }
        a = ag::glu(act, g, u);
      } else {
        a = ag::activation(act, linear(hin, pre + "ffn_up"));
      }
      return linear(a, pre + "ffn_down");
    };
    if (cfg_.parallel_residual) {
      x = ag::add(ag::add(x, o), mlp(norm(x, pre + "ffn_norm")));
    } else {
      x = ag::add(x, o);
      x = ag::add(x, mlp(norm(x, pre + "ffn_norm")));
    }
    return x;
  };
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    if (!recompute_ || !ag::Tape::recording()) {
      hs = layer(l, hs);
      continue;
    }
    // Activation recomputation: the layer runs without recording, so the tape keeps only its input;
    // its backward runs it again on a private tape and back-propagates through that copy (the
    // parameters are the same Vars, so their gradients land in the store as usual).
    ag::Var x_in = hs;
    Tensor y;
    {
      ag::NoGrad ng;
      y = layer(l, ag::Var(x_in.value(), false)).value();
    }
    ag::Var out(y, true);
    ag::Tape::current().record([layer, l, x_in, out, cd = ag::compute_dtype()] {
      if (!out.grad().defined()) return;
      ag::ScopedCompute precision(cd);  // the rerun rounds as the first run did
      ag::Var xr(x_in.value(), x_in.requires_grad());
      ag::Tape local;
      ag::Var yr;
      {
        ag::ScopedTape st(local);
        yr = layer(l, xr);
      }
      local.backward(yr, out.grad());
      if (x_in.requires_grad() && xr.grad().defined()) ag::accumulate(x_in.grad_slot(), xr.grad());
    });
    hs = out;
  }
  ag::Var hf = norm(hs, "output_norm");
  ag::Var head = p("output.weight");
  if (!head.defined()) head = p("token_embd.weight");  // tied
  return ag::cross_entropy(ag::matmul(hf, head), targets);
}

// Mixtral routing as models::Transformer::moe: the top k experts by router probability (ties to
// the lower index), weights renormalised over them (= a softmax over the k selected logits), each
// expert's SwiGLU MLP over its tokens, the weighted outputs added back per token. The selection
// is a constant of the step; the weights, the experts and the router get gradients.
ag::Var TrainModel::moe(const ag::Var& h, const std::string& pre, ops::Act act) const {
  const int64_t n = h.shape()[0], d = h.shape()[1], E = cfg_.n_experts;
  const int64_t k = std::clamp<int64_t>(cfg_.n_experts_used, 1, E);
  const ag::Var logits = linear(h, pre + "ffn_gate_inp");  // [n, E]
  const float* lv = logits.value().data<float>();
  Tensor sel = Tensor::empty({n * k}, DType::kI32);
  std::vector<std::vector<std::pair<int32_t, int32_t>>> routed(static_cast<size_t>(E));  // (token, slot t*k + j)
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    const float* l = lv + t * E;
    for (int64_t e = 0; e < E; ++e) order[static_cast<size_t>(e)] = e;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [l](int64_t a, int64_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[static_cast<size_t>(j)];
      sel.data<int32_t>()[t * k + j] = static_cast<int32_t>(t * E + e);
      routed[static_cast<size_t>(e)].emplace_back(static_cast<int32_t>(t), static_cast<int32_t>(t * k + j));
    }
  }
  const ag::Var w = ag::softmax(ag::view(ag::embedding(ag::view(logits, {n * E, 1}), sel), {n, k}));
  const ag::Var w_flat = ag::view(w, {n * k, 1});
  // Expert matrices: one merged [E, ...] tensor per kind (llama.cpp's layout) or one per expert.
  auto experts = [&](const char* merged, const char* single, int64_t rows, int64_t cols) {
    std::vector<ag::Var> out;
    if (const ag::Var all = p(pre + merged + ".weight"); all.defined()) {
      for (const ag::Var& one : ag::split(all, std::vector<int64_t>(static_cast<size_t>(E), 1), 0))
        out.push_back(ag::view(one, {rows, cols}));
    } else {
      for (int64_t e = 0; e < E; ++e) {
        const ag::Var one = p(str_cat(pre, single, ".", e, ".weight"));
        LLMKIT_CHECK(one.defined(), kInvalidFile, "the model has no expert weight '", pre, single, ".", e, ".weight'");
        out.push_back(one);
      }
    }
    return out;
  };
  const std::vector<ag::Var> gate = experts("ffn_gate_exps", "ffn_gate", cfg_.d_ff, d);
  const std::vector<ag::Var> up = experts("ffn_up_exps", "ffn_up", cfg_.d_ff, d);
  const std::vector<ag::Var> down = experts("ffn_down_exps", "ffn_down", d, cfg_.d_ff);
  ag::Var out;
  for (int64_t e = 0; e < E; ++e) {
    const auto& r = routed[static_cast<size_t>(e)];
    if (r.empty()) continue;
    const int64_t m = static_cast<int64_t>(r.size());
    Tensor tok = Tensor::empty({m}, DType::kI32), slot = Tensor::empty({m * d}, DType::kI32);
    for (int64_t i = 0; i < m; ++i) {
      tok.data<int32_t>()[i] = r[static_cast<size_t>(i)].first;
      for (int64_t c = 0; c < d; ++c) slot.data<int32_t>()[i * d + c] = r[static_cast<size_t>(i)].second;
    }
    const ag::Var xe = ag::embedding(h, tok);  // [m, d]
    const ag::Var ye = ag::matmul(ag::glu(act, ag::matmul(xe, gate[static_cast<size_t>(e)]),
                                          ag::matmul(xe, up[static_cast<size_t>(e)])),
                                  down[static_cast<size_t>(e)]);
    const ag::Var we = ag::view(ag::embedding(w_flat, slot), {m, d});  // each row's weight, broadcast
    const ag::Var part = ag::scatter_rows(ag::mul(ye, we), tok, n);
    out = out.defined() ? ag::add(out, part) : part;
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> TrainModel::hf_gradients() const {
  const models::ArchInfo& arch = models::arch_info(family_);
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& e : params_.entries()) {
    const Tensor& g = e.var.grad();
    if (!g.defined()) continue;
    const auto m = models::gguf_to_hf_name(arch, e.name, cfg_.gated_mlp);
    if (!m) {
      out.emplace_back(e.name, g.clone());
      continue;
    }
    // Layout transforms are linear maps of rows (or a transpose): the gradient moves with its
    // weight. 1 + w has w's gradient.
    const models::Transform t = m->transform == models::Transform::kNormPlusOne ? models::Transform::kNone : m->transform;
    Tensor hg = models::apply_transform(t, cfg_, g, /*to_gguf=*/false, m->name);
    out.emplace_back(m->name, hg.data<float>() == g.data<float>() ? g.clone() : hg);
  }
  return out;
}

}  // namespace llmkit::train
