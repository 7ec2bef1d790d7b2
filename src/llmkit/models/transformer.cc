// The LLaMA-family decoder forward; see transformer.h.
#include "llmkit/models/transformer.h"

#include <cmath>

#include "llmkit/base/check.h"

namespace llmkit::models {
namespace {

Tensor require_tensor(const io::GgufFile& f, const std::string& name, const Shape& shape) {
  const io::GgufTensorInfo* ti = f.find_tensor(name);
  LLMKIT_CHECK(ti != nullptr, kInvalidFile, "model '", f.name(), "' lacks tensor '", name, "'");
  LLMKIT_CHECK(ti->shape == shape, kInvalidFile, "model '", f.name(), "': tensor '", name, "' has shape ",
               ti->shape.str(), " but the hyper-parameters need ", shape.str());
  return f.tensor(name);
}

}  // namespace

std::unique_ptr<Transformer> Transformer::load_gguf(const std::string& path) {
  auto m = std::unique_ptr<Transformer>(new Transformer());
  m->file_ = std::make_shared<io::GgufFile>(io::GgufFile::open(path));
  const io::GgufFile& f = *m->file_;
  ModelConfig& hp = m->cfg_;
  hp = ModelConfig::from_gguf(f);
  hp.check_tensor_shapes([&f](const std::string& name) -> std::optional<Shape> {
    const io::GgufTensorInfo* ti = f.find_tensor(name);
    return ti ? std::optional<Shape>(ti->shape) : std::nullopt;
  });
  LLMKIT_CHECK(hp.family == ArchFamily::kLlama && hp.n_experts == 0 && hp.rope_scaling.kind == RopeScalingKind::kNone,
               kUnsupported, "model '", path, "' (", family_name(hp.family), hp.n_experts ? ", MoE" : "",
               hp.rope_scaling.kind != RopeScalingKind::kNone ? ", scaled RoPE" : "",
               ") is not supported by this build's decoder yet; it runs the LLaMA family (LLaMA, SmolLM, Mistral)");
  // llama.cpp's converter permutes the q/k rows of LLaMA so that rotating adjacent pairs (GPT-J
  // style, ggml rope mode 0) on the file's weights equals HF's rotate_half on the original ones.
  m->rope_.style = ops::RopeStyle::kGptJ;
  m->rope_.rot_dims = static_cast<int64_t>(std::lround(hp.head_dim * hp.partial_rotary));
  m->rope_.theta = hp.rope_theta;

  const int64_t d = hp.d_model, q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  m->tok_embd = require_tensor(f, "token_embd.weight", {hp.n_vocab, d});
  m->output_norm = require_tensor(f, "output_norm.weight", {d});
  m->output = f.find_tensor("output.weight") ? require_tensor(f, "output.weight", {hp.n_vocab, d}) : m->tok_embd;
  for (int64_t l = 0; l < hp.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer L;
    L.attn_norm = require_tensor(f, p + "attn_norm.weight", {d});
    L.wq = require_tensor(f, p + "attn_q.weight", {q_dim, d});
    L.wk = require_tensor(f, p + "attn_k.weight", {kv_dim, d});
    L.wv = require_tensor(f, p + "attn_v.weight", {kv_dim, d});
    L.wo = require_tensor(f, p + "attn_output.weight", {d, q_dim});
    L.ffn_norm = require_tensor(f, p + "ffn_norm.weight", {d});
    L.w_gate = require_tensor(f, p + "ffn_gate.weight", {hp.d_ff, d});
    L.w_up = require_tensor(f, p + "ffn_up.weight", {hp.d_ff, d});
    L.w_down = require_tensor(f, p + "ffn_down.weight", {d, hp.d_ff});
    m->layers_.push_back(std::move(L));
  }
  return m;
}

KVCache Transformer::new_cache(int64_t n_ctx) const {
  LLMKIT_CHECK(n_ctx > 0 && n_ctx <= (int64_t{1} << 22), kInvalidArgument, "context size ", n_ctx,
               " is out of range; use 1 .. 4194304");
  KVCache c;
  c.n_ctx = n_ctx;
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    c.k.push_back(Tensor::zeros({n_ctx, cfg_.n_kv_heads, cfg_.head_dim}, DType::kF32));
    c.v.push_back(Tensor::zeros({n_ctx, cfg_.n_kv_heads, cfg_.head_dim}, DType::kF32));
  }
  return c;
}

Tensor Transformer::forward(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out) const {
  arena_.reset();
  Tensor logits;
  {
    ArenaScope scope(arena_);
    logits = forward_pass(tokens, cache, n_out);
  }
  return logits.clone();  // outside the scope: the result outlives the arena's next reset
}

Tensor Transformer::forward_pass(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  LLMKIT_CHECK(n > 0, kInvalidArgument, "forward needs at least one token");
  LLMKIT_CHECK(cache.n_past + n <= cache.n_ctx, kInvalidArgument, "context is full: ", cache.n_past, " + ", n,
               " tokens exceed the context size ", cache.n_ctx, "; start a new conversation or raise --ctx-size");
  LLMKIT_CHECK(n_out >= 1 && n_out <= n, kInvalidArgument, "n_out ", n_out, " must be in [1, ", n, "]");
  const int64_t H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim, past = cache.n_past, total = past + n;

  Tensor ids = Tensor::empty({n}, DType::kI32);
  Tensor pos = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    ids.data<int32_t>()[i] = tokens[static_cast<size_t>(i)];
    pos.data<int32_t>()[i] = static_cast<int32_t>(past + i);
  }
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (observer_) observer_(name, t);
  };
  Tensor x = ops::embedding(tok_embd, ids);  // [n, d_model]
  observe("token_embd", x);
  ops::AttentionOptions attn_opt;
  attn_opt.causal = true;
  attn_opt.window = cfg_.sliding_window;  // Mistral; 0 = full attention
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    Tensor h = ops::rmsnorm(x, L.attn_norm, cfg_.norm_eps);
    Tensor q = ops::rope(ops::matmul(h, L.wq).view({n, H, hd}), pos, rope_);
    Tensor k = ops::rope(ops::matmul(h, L.wk).view({n, Hkv, hd}), pos, rope_);
    Tensor v = ops::matmul(h, L.wv).view({n, Hkv, hd});
    copy_into(cache.k[l].slice(0, past, total), k);
    copy_into(cache.v[l].slice(0, past, total), v);
    Tensor kc = cache.k[l].slice(0, 0, total).view({1, total, Hkv, hd});
    Tensor vc = cache.v[l].slice(0, 0, total).view({1, total, Hkv, hd});
    Tensor att = ops::attention(q.view({1, n, H, hd}), kc, vc, attn_opt).out;  // [1, n, H, hd]
    const std::string p = "blk." + std::to_string(l) + ".";
    observe(p + "attn_norm", h);
    observe(p + "attn", att);
    Tensor attn_out = ops::matmul(att.view({n, H * hd}), L.wo);
    observe(p + "attn_out", attn_out);
    x = ops::add(x, attn_out);
    h = ops::rmsnorm(x, L.ffn_norm, cfg_.norm_eps);
    observe(p + "ffn_norm", h);
    Tensor g = ops::swiglu(ops::matmul(h, L.w_gate), ops::matmul(h, L.w_up));
    observe(p + "ffn_act", g);
    Tensor ffn_out = ops::matmul(g, L.w_down);
    observe(p + "ffn_out", ffn_out);
    x = ops::add(x, ffn_out);
    observe(p + "x", x);
  }
  cache.n_past = total;
  Tensor last = x.slice(0, n - n_out, n);
  Tensor logits = ops::matmul(ops::rmsnorm(last, output_norm, cfg_.norm_eps), output);  // [n_out, n_vocab]
  return logits;
}

}  // namespace llmkit::models
