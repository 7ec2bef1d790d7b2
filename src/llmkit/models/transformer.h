// The decoder-only transformer over a GGUF file, running on the ops layer (so on every backend the
// ops support). This first version covers the LLaMA family as llama.cpp writes it to GGUF (LLaMA
// 1/2/3, SmolLM, Mistral without sliding window): RMSNorm, RoPE, GQA attention, SwiGLU MLP, tied
// or separate output head. It is the seed of the one configurable decoder: other families become
// flags of the same forward as ModelConfig grows.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/base/arena.h"
#include "llmkit/io/gguf.h"
#include "llmkit/models/model_config.h"
#include "llmkit/ops/ops.h"

namespace llmkit::models {


// A contiguous KV cache: per layer k and v [n_ctx, n_kv_heads, head_dim] (F32). n_past counts the
// positions already filled. (The serving work replaces it with a paged cache behind the same use.)
struct KVCache {
  std::vector<Tensor> k, v;  // [n_layers] x [n_ctx, n_kv_heads, head_dim]
  int64_t n_ctx = 0;
  int64_t n_past = 0;
};

class Transformer {
 public:
  // Loads a GGUF model (weights stay memory-mapped). Throws Error(kUnsupported) for architectures
  // not built yet, Error(kInvalidFile) naming the missing or mis-shaped tensor.
  static std::unique_ptr<Transformer> load_gguf(const std::string& path);

  // The model's hyper-parameters (from ModelConfig::from_gguf, validated against the tensors).
  const ModelConfig& config() const { return cfg_; }
  const io::GgufFile& file() const { return *file_; }

  KVCache new_cache(int64_t n_ctx) const;
  // Runs tokens [n_tokens] at positions cache.n_past .. n_past + n_tokens - 1, appends their K/V to
  // the cache, and returns logits [n_out, n_vocab] for the last n_out positions (1 for decoding).
  Tensor forward(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out = 1) const;

  // Activation observer (values live in the pass's arena: clone() what you keep): called with every named intermediate ("blk.3.attn_out", "blk.3.ffn_out",
  // "blk.3.x", "output_norm", ...) during forward; for calibration, parity debugging, dumps.
  using Observer = std::function<void(const std::string& name, const Tensor& value)>;
  void set_observer(Observer obs) { observer_ = std::move(obs); }

  // Scratch of the last forward pass. Every intermediate tensor of a pass comes from this arena
  // (ArenaScope), which keeps its memory across passes: after the first tokens, decoding asks the
  // system allocator only for the small tensor headers, not for activation buffers. One pass at a
  // time per Transformer (the serving work gives each worker its own arena).
  const Arena& scratch() const { return arena_; }

 private:
  Tensor forward_pass(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out) const;

  struct Layer {
    Tensor attn_norm;              // [d_model]
    Tensor wq, wk, wv, wo;         // [n_heads*head_dim, d_model], [n_kv_heads*head_dim, d_model] x2, [d_model, n_heads*head_dim]
    Tensor ffn_norm;               // [d_model]
    Tensor w_gate, w_up, w_down;   // [d_ff, d_model] x2, [d_model, d_ff]
  };
  std::shared_ptr<io::GgufFile> file_;
  ModelConfig cfg_;
  ops::RopeConfig rope_;
  Tensor tok_embd;     // [n_vocab, d_model]
  Tensor output_norm;  // [d_model]
  Tensor output;       // [n_vocab, d_model] (tok_embd when tied)
  std::vector<Layer> layers_;
  Observer observer_;
  mutable Arena arena_;
};

}  // namespace llmkit::models
