// The LLaMA-family decoder forward; see transformer.h.
#include "llmkit/models/transformer.h"

#include <cmath>

#include "llmkit/base/check.h"

namespace llmkit::models {
namespace {

int64_t require_int(const io::GgufFile& f, const std::string& key) {
  auto v = f.get_int(key);
  LLMKIT_CHECK(v.has_value(), kInvalidFile, "model '", f.name(), "' lacks the hyper-parameter '", key, "'");
  return *v;
}

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
  DecoderHParams& hp = m->hp_;
  hp.arch = f.get_string("general.architecture").value_or("");
  LLMKIT_CHECK(hp.arch == "llama" || hp.arch == "mistral", kUnsupported, "architecture '", hp.arch, "' of '", path,
               "' is not supported yet (this build runs the LLaMA family: llama, mistral)");
  const std::string a = hp.arch + ".";
  hp.n_layers = require_int(f, a + "block_count");
  hp.d_model = require_int(f, a + "embedding_length");
  hp.n_heads = require_int(f, a + "attention.head_count");
  hp.n_kv_heads = f.get_int(a + "attention.head_count_kv").value_or(hp.n_heads);
  hp.d_ff = require_int(f, a + "feed_forward_length");
  hp.n_ctx = f.get_int(a + "context_length").value_or(4096);
  LLMKIT_CHECK(hp.n_layers > 0 && hp.n_layers <= 1024 && hp.d_model > 0 && hp.n_heads > 0 && hp.n_kv_heads > 0 &&
                   hp.n_heads % hp.n_kv_heads == 0 && hp.d_model % hp.n_heads == 0 && hp.d_ff > 0 && hp.n_ctx > 0,
               kInvalidFile, "model '", path, "' has inconsistent hyper-parameters: layers ", hp.n_layers, ", d_model ",
               hp.d_model, ", heads ", hp.n_heads, ", kv heads ", hp.n_kv_heads, ", d_ff ", hp.d_ff);
  hp.head_dim = f.get_int(a + "attention.key_length").value_or(hp.d_model / hp.n_heads);
  if (const auto* eps = f.find(a + "attention.layer_norm_rms_epsilon")) hp.norm_eps = static_cast<float>(eps->as_number().value_or(1e-5));
  const io::GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  LLMKIT_CHECK(emb != nullptr && emb->shape.rank() == 2, kInvalidFile, "model '", path, "' lacks token_embd.weight");
  hp.n_vocab = emb->shape[0];
  // llama.cpp's converter permutes the q/k rows of LLaMA so that rotating adjacent pairs (GPT-J
  // style, ggml rope mode 0) equals HF's rotate_half on the original weights.
  hp.rope.style = ops::RopeStyle::kGptJ;
  hp.rope.rot_dims = f.get_int(a + "rope.dimension_count").value_or(hp.head_dim);
  if (const auto* th = f.find(a + "rope.freq_base")) hp.rope.theta = static_cast<float>(th->as_number().value_or(10000.0));

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
  for (int64_t l = 0; l < hp_.n_layers; ++l) {
    c.k.push_back(Tensor::zeros({n_ctx, hp_.n_kv_heads, hp_.head_dim}, DType::kF32));
    c.v.push_back(Tensor::zeros({n_ctx, hp_.n_kv_heads, hp_.head_dim}, DType::kF32));
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
  const int64_t H = hp_.n_heads, Hkv = hp_.n_kv_heads, hd = hp_.head_dim, past = cache.n_past, total = past + n;

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
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    Tensor h = ops::rmsnorm(x, L.attn_norm, hp_.norm_eps);
    Tensor q = ops::rope(ops::matmul(h, L.wq).view({n, H, hd}), pos, hp_.rope);
    Tensor k = ops::rope(ops::matmul(h, L.wk).view({n, Hkv, hd}), pos, hp_.rope);
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
    h = ops::rmsnorm(x, L.ffn_norm, hp_.norm_eps);
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
  Tensor logits = ops::matmul(ops::rmsnorm(last, output_norm, hp_.norm_eps), output);  // [n_out, n_vocab]
  return logits;
}

}  // namespace llmkit::models
