// T5 (Raffel et al. 2020): the encoder-decoder of ModelConfig's family kT5 (T5 v1.0 with ReLU,
// and v1.1 / FLAN-T5 with gated GELU). Its structure differs from the decoder-only transformer
// where a flag would not do (cross-attention, bucketed relative position bias shared by all layers
// of a stack, unscaled attention logits), so it is its own small class over the same ops and the same
// Weights (GGUF layout: enc.blk.N.*, dec.blk.N.*).
//
//   encoder:  x = embed(ids); per layer x += SelfAttn(rms(x), bias_enc); x += FF(rms(x)); rms(x)
//   decoder:  y = embed(dec_ids); per layer y += CausalSelfAttn(rms(y), bias_dec);
//             y += CrossAttn(rms(y), encoder output); y += FF(rms(y));
//             logits = (rms(y) * d_model^-0.5 when embeddings are tied) lm_head
//   attention: softmax(q k^T + bias) v, with no 1/sqrt(d) scale (T5 folds it into the weights);
//   bias[h, i, j] = table[bucket(j - i), h] from layer 0's relative_attention_bias: half the buckets
//   exact small distances, the rest logarithmic up to max_distance (bidirectional in the encoder,
//   past-only in the decoder).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/models/weights.h"
#include "llmkit/ops/ops.h"

namespace llmkit::models {

class T5Model {
 public:
  static std::unique_ptr<T5Model> from_weights(Weights weights);
  const ModelConfig& config() const { return w_.config(); }

  // Encoder output [n, d_model] (after the final norm).
  Tensor encode(const std::vector<int32_t>& ids) const;
  // Logits [n_dec, n_vocab] of every decoder position, given the encoder output.
  Tensor decode(const std::vector<int32_t>& decoder_ids, const Tensor& encoder_out) const;
  // Greedy decoding from the decoder start token for n_new tokens (recomputes the decoder each
  // step: this class is the parity path, not the fast one). Returns start token + n_new ids.
  std::vector<int32_t> greedy(const std::vector<int32_t>& ids, int64_t n_new) const;

  // bucket of relative position rel = key - query (HF T5's _relative_position_bucket).
  static int64_t relative_bucket(int64_t rel, bool bidirectional, int64_t n_buckets, int64_t max_distance);

 private:
  struct Attn {
    Tensor norm, q, k, v, o;
  };
  struct Block {
    Attn self, cross;  // cross only in the decoder
    Tensor ffn_norm, ffn_gate, ffn_up, ffn_down;
  };
  explicit T5Model(Weights w) : w_(std::move(w)) {}
  // [H, n_q, n_kv] bias from a stack's table, with -inf above the diagonal when causal.
  Tensor position_bias(const Tensor& table, int64_t n_q, int64_t n_kv, bool bidirectional, bool causal) const;
  // softmax(q k^T + bias) v over heads; q [n, d_inner] rows, kv source [m, d_model]; returns [n, d_model].
  Tensor attention(const Attn& a, const Tensor& h, const Tensor& kv_src, const Tensor* bias) const;
  Tensor ffn(const Block& b, const Tensor& x) const;

  Weights w_;
  ops::Act act_ = ops::Act::kRelu;
  Tensor embd, lm_head, enc_rel, dec_rel, enc_norm, dec_norm;
  std::vector<Block> enc_, dec_;
};

}  // namespace llmkit::models
