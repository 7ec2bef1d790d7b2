// T5 encoder-decoder; see t5.h.
#include "llmkit/models/t5.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "llmkit/base/check.h"

namespace llmkit::models {
namespace {

ops::Act to_act(Activation a) {
  switch (a) {
    case Activation::kSilu: return ops::Act::kSilu;
    case Activation::kGelu: return ops::Act::kGeluErf;
    case Activation::kGeluTanh: return ops::Act::kGeluTanh;
    case Activation::kRelu: return ops::Act::kRelu;
  }
  return ops::Act::kRelu;
}

// Columns [c0, c0 + width) of a contiguous [rows, cols] F32 matrix, as a contiguous [rows, width].
Tensor columns(const Tensor& x, int64_t c0, int64_t width) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  Tensor out = Tensor::empty({rows, width}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(x.data<float>() + r * cols + c0, width, out.data<float>() + r * width);
  return out;
}

Tensor transpose2d(const Tensor& x) {
  const int64_t rows = x.dim(0), cols = x.dim(1);
  Tensor out = Tensor::empty({cols, rows}, DType::kF32);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out.data<float>()[c * rows + r] = x.data<float>()[r * cols + c];
  return out;
}

}  // namespace

int64_t T5Model::relative_bucket(int64_t rel, bool bidirectional, int64_t n_buckets, int64_t max_distance) {
  int64_t bucket = 0;
  if (bidirectional) {
    n_buckets /= 2;
    if (rel > 0) bucket += n_buckets;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;  // only the past: -min(rel, 0)
  }
  const int64_t max_exact = n_buckets / 2;
  if (rel < max_exact) return bucket + rel;
  // As HF computes it: a float32 log of the ratio, divided by the (double, then float) log of
  // max_distance / max_exact, scaled in float32 and truncated toward zero.
  const float num = std::log(static_cast<float>(rel) / static_cast<float>(max_exact));
  const float den = static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float f = num / den * static_cast<float>(n_buckets - max_exact);
  const int64_t large = std::min<int64_t>(max_exact + static_cast<int64_t>(f), n_buckets - 1);
  return bucket + large;
}

std::unique_ptr<T5Model> T5Model::from_weights(Weights weights) {
  const ModelConfig& c = weights.config();
  LLMKIT_CHECK(c.family == ArchFamily::kT5, kInvalidArgument, "model '", weights.path(), "' is ", family_name(c.family),
               ", not T5");
  auto m = std::unique_ptr<T5Model>(new T5Model(std::move(weights)));
  const Weights& w = m->w_;
  const int64_t d = c.d_model, inner = c.n_heads * c.head_dim;
  m->act_ = to_act(c.act);
  m->embd = w.require("token_embd.weight", {c.n_vocab, d});
  m->lm_head = w.find("output.weight") ? w.require("output.weight", {c.n_vocab, d}) : m->embd;
  m->enc_rel = ops::to_f32(w.require("enc.blk.0.attn_rel_b.weight", {c.n_rel_buckets, c.n_heads}));
  m->dec_rel = ops::to_f32(w.require("dec.blk.0.attn_rel_b.weight", {c.n_rel_buckets, c.n_heads}));
  m->enc_norm = w.require("enc.output_norm.weight", {d});
  m->dec_norm = w.require("dec.output_norm.weight", {d});
  auto attn = [&](const std::string& p, const std::string& what) {
    Attn a;
    a.norm = w.require(p + what + "_norm.weight", {d});
    a.q = w.require(p + what + "_q.weight", {inner, d});
    a.k = w.require(p + what + "_k.weight", {inner, d});
    a.v = w.require(p + what + "_v.weight", {inner, d});
    a.o = w.require(p + what + "_o.weight", {d, inner});
    return a;
  };
  auto ffn = [&](const std::string& p, Block& b) {
    b.ffn_norm = w.require(p + "ffn_norm.weight", {d});
    if (c.gated_mlp) b.ffn_gate = w.require(p + "ffn_gate.weight", {c.d_ff, d});
    b.ffn_up = w.require(p + "ffn_up.weight", {c.d_ff, d});
    b.ffn_down = w.require(p + "ffn_down.weight", {d, c.d_ff});
  };
  for (int64_t l = 0; l < c.n_encoder_layers; ++l) {
    const std::string p = str_cat("enc.blk.", l, ".");
    Block b;
    b.self = attn(p, "attn");
    ffn(p, b);
    m->enc_.push_back(std::move(b));
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = str_cat("dec.blk.", l, ".");
    Block b;
    b.self = attn(p, "attn");
    b.cross = attn(p, "cross_attn");
    ffn(p, b);
    m->dec_.push_back(std::move(b));
  }
  return m;
}

Tensor T5Model::position_bias(const Tensor& table, int64_t n_q, int64_t n_kv, bool bidirectional, bool causal) const {
  const ModelConfig& c = config();
  const int64_t H = c.n_heads;
  Tensor bias = Tensor::empty({H, n_q, n_kv}, DType::kF32);
  float* b = bias.data<float>();
  const float* t = table.data<float>();  // [n_buckets, H]
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t j = 0; j < n_kv; ++j) {
      const int64_t bucket = relative_bucket(j - i, bidirectional, c.n_rel_buckets, c.rel_max_distance);
      for (int64_t h = 0; h < H; ++h)
        b[(h * n_q + i) * n_kv + j] = causal && j > i ? -std::numeric_limits<float>::infinity() : t[bucket * H + h];
    }
  return bias;
}

Tensor T5Model::attention(const Attn& a, const Tensor& h, const Tensor& kv_src, const Tensor* bias) const {
  const ModelConfig& c = config();
  const int64_t H = c.n_heads, hd = c.head_dim, n = h.dim(0), m = kv_src.dim(0);
  Tensor q = ops::matmul(h, a.q), k = ops::matmul(kv_src, a.k), v = ops::matmul(kv_src, a.v);  // [n|m, H hd]
  Tensor out = Tensor::empty({n, H * hd}, DType::kF32);
  for (int64_t head = 0; head < H; ++head) {
    Tensor s = ops::matmul(columns(q, head * hd, hd), columns(k, head * hd, hd));  // [n, m] = q k^T, unscaled
    if (bias) s = ops::add(s, bias->slice(0, head, head + 1).view({n, m}));
    Tensor o = ops::matmul(ops::softmax(s), transpose2d(columns(v, head * hd, hd)));  // [n, hd]
    for (int64_t r = 0; r < n; ++r)
      std::copy_n(o.data<float>() + r * hd, hd, out.data<float>() + r * H * hd + head * hd);
  }
  return ops::matmul(out, a.o);
}

Tensor T5Model::ffn(const Block& b, const Tensor& x) const {
  Tensor h = ops::rmsnorm(x, b.ffn_norm, config().norm_eps);
  Tensor g = b.ffn_gate.defined() ? ops::glu(act_, ops::matmul(h, b.ffn_gate), ops::matmul(h, b.ffn_up))
                                  : ops::activation(act_, ops::matmul(h, b.ffn_up));
  return ops::matmul(g, b.ffn_down);
}

Tensor T5Model::encode(const std::vector<int32_t>& ids) const {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(ids.size());
  LLMKIT_CHECK(n > 0, kInvalidArgument, "T5 encode needs at least one token");
  Tensor t = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    LLMKIT_CHECK(ids[static_cast<size_t>(i)] >= 0 && ids[static_cast<size_t>(i)] < c.n_vocab, kInvalidArgument, "token id ",
                 ids[static_cast<size_t>(i)], " is outside the vocabulary [0, ", c.n_vocab, ")");
    t.data<int32_t>()[i] = ids[static_cast<size_t>(i)];
  }
  Tensor x = ops::to_f32(ops::embedding(embd, t));
  Tensor bias = position_bias(enc_rel, n, n, /*bidirectional=*/true, /*causal=*/false);
  for (const Block& b : enc_) {
    Tensor h = ops::rmsnorm(x, b.self.norm, c.norm_eps);
    x = ops::add(x, attention(b.self, h, h, &bias));
    x = ops::add(x, ffn(b, x));
  }
  return ops::rmsnorm(x, enc_norm, c.norm_eps);
}

Tensor T5Model::decode(const std::vector<int32_t>& decoder_ids, const Tensor& encoder_out) const {
  const ModelConfig& c = config();
  const int64_t n = static_cast<int64_t>(decoder_ids.size());
  LLMKIT_CHECK(n > 0, kInvalidArgument, "T5 decode needs at least one decoder token");
  Tensor t = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    LLMKIT_CHECK(decoder_ids[static_cast<size_t>(i)] >= 0 && decoder_ids[static_cast<size_t>(i)] < c.n_vocab,
                 kInvalidArgument, "decoder token id ", decoder_ids[static_cast<size_t>(i)], " is outside the vocabulary");
    t.data<int32_t>()[i] = decoder_ids[static_cast<size_t>(i)];
  }
  Tensor y = ops::to_f32(ops::embedding(embd, t));
  Tensor bias = position_bias(dec_rel, n, n, /*bidirectional=*/false, /*causal=*/true);
  for (const Block& b : dec_) {
    Tensor h = ops::rmsnorm(y, b.self.norm, c.norm_eps);
    y = ops::add(y, attention(b.self, h, h, &bias));
    h = ops::rmsnorm(y, b.cross.norm, c.norm_eps);
    y = ops::add(y, attention(b.cross, h, encoder_out, nullptr));
    y = ops::add(y, ffn(b, y));
  }
  Tensor h = ops::rmsnorm(y, dec_norm, c.norm_eps);
  if (c.tied_embeddings) h = ops::scale(h, 1.0f / std::sqrt(static_cast<float>(c.d_model)));
  return ops::matmul(h, lm_head);
}

std::vector<int32_t> T5Model::greedy(const std::vector<int32_t>& ids, int64_t n_new) const {
  const ModelConfig& c = config();
  Tensor enc = encode(ids);
  std::vector<int32_t> out = {static_cast<int32_t>(c.bos_token_id >= 0 ? c.bos_token_id : (c.pad_token_id >= 0 ? c.pad_token_id : 0))};
  for (int64_t i = 0; i < n_new; ++i) {
    Tensor logits = decode(out, enc);
    const float* row = logits.data<float>() + (logits.dim(0) - 1) * c.n_vocab;
    out.push_back(static_cast<int32_t>(std::max_element(row, row + c.n_vocab) - row));
  }
  return out;
}

}  // namespace llmkit::models
