// The one configurable transformer: every decoder family of ModelConfig (LLaMA 1/2/3, SmolLM,
// Mistral, Mixtral, Qwen2, Gemma, Phi-3, GPT-2, OPT, BLOOM, GPT-NeoX) and the BERT encoder run this
// forward, steered by ModelConfig's flags (norm kind, biases, fused projections, position scheme,
// parallel residual, gated or plain MLP, mixture of experts) rather than by per-family classes.
// It runs on the ops layer, so on every backend the ops support.
//
// Weights are in llama.cpp's GGUF layout (weights.h), whether they came from a GGUF file or a
// Hugging Face folder, so one code path serves both and they give the same numbers.
//
// Per layer (pre-norm; BERT is post-norm):
//   h = norm(x)                                  RMSNorm or LayerNorm (with bias)
//   q, k, v = h Wq, h Wk, h Wv (+ bias)          or one fused Wqkv split into [q; k; v]
//   q, k = rope(q, k)                            GPT-J pairs on LLaMA's permuted rows, NeoX halves
//                                                otherwise; partial rotary; none for learned/ALiBi
//   a = attention(q, K, V) Wo (+ bias)           causal, GQA, sliding window, ALiBi
//   x = x + a;  x = x + mlp(norm(x))             or x + a + mlp(norm2(x)) (parallel residual)
//   mlp(h) = act(h Wg) * (h Wu) Wd               gated (SwiGLU, GeGLU; Phi-3's fused [g; u]), or
//            act(h Wu + bu) Wd + bd              plain, or a top-k routed mixture of gated experts
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/base/arena.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/weights.h"
#include "llmkit/ops/ops.h"

namespace llmkit::models {

// The KV cache is paged: K/V of every layer live in pages of kKVPage (16) positions in a pool
// (KVPages), and a sequence's KVCache lists its pages in order (its block table), so sequences can
// share the pages of a common prefix and grow a page at a time (the serving scheduler's block
// manager). Layouts (ops::paged_attention): per layer k [n_pages, n_kv_heads, head_dim, 16] (keys
// transposed, read in place by attention) and v [n_pages, n_kv_heads, 16, head_dim], F32.
constexpr int64_t kKVPage = ops::kKVPage;
struct KVPages {
  int64_t n_pages = 0;
  std::vector<Tensor> k, v;  // [n_layers]
  size_t nbytes() const;
};
// One sequence's view: positions [0, n_past) are filled; position j lives in page blocks[j / 16].
// The pages behind n_ctx positions must be in blocks before a pass writes there.
struct KVCache {
  std::shared_ptr<KVPages> pages;
  std::vector<int32_t> blocks;
  int64_t n_ctx = 0;
  int64_t n_past = 0;
};

// The rotary-embedding setup of a model (style, rotated dims, theta, scaling, per-frequency
// factors from rope_freqs.weight); *use_rope false for learned / ALiBi / no positions. Shared by the
// inference forward and the differentiable one (train/).
ops::RopeConfig rope_config(const ModelConfig& c, const Weights& w, bool* use_rope);
// The ops activation of a config's activation kind.
ops::Act to_act(Activation a);

class Transformer {
 public:
  // A GGUF file or a Hugging Face folder. Throws Error(kUnsupported) for architectures this class
  // does not run (T5), Error(kInvalidFile) naming a missing or mis-shaped tensor.
  static std::unique_ptr<Transformer> load(const std::string& path);
  static std::unique_ptr<Transformer> load_gguf(const std::string& path) { return from_weights(Weights::from_gguf(path)); }
  static std::unique_ptr<Transformer> from_weights(Weights weights);

  // The model's hyper-parameters (validated against the tensors).
  const ModelConfig& config() const { return cfg_; }
  const Weights& weights() const { return w_; }
  bool is_encoder() const { return cfg_.encoder && !cfg_.decoder; }

  // A private cache of n_ctx positions: its own pool with every page already in the block table.
  KVCache new_cache(int64_t n_ctx) const;
  // A pool of n_pages pages (not zeroed: untouched pages are never made resident) for caches whose
  // block tables a scheduler fills.
  std::shared_ptr<KVPages> new_kv_pages(int64_t n_pages) const;
  // Element type of the pages new_cache / new_kv_pages make from now on: F32 (the default; logits
  // match the reference implementations to float rounding) or F16 (half the memory and half the
  // bytes attention reads per step, as llama.cpp's default cache; K and V rounded to nearest even
  // on write). Error(kInvalidArgument) for any other type.
  void set_kv_dtype(DType t);
  DType kv_dtype() const { return kv_dtype_; }
  // Decoders: runs tokens [n_tokens] at positions cache.n_past .. n_past + n_tokens - 1, appends
  // their K/V to the cache, and returns logits [n_out, n_vocab] for the last n_out positions.
  Tensor forward(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out = 1) const;
  // Several sequences in one pass, without padding: their tokens are stacked into one [sum n_i, d]
  // activation so every projection and MLP is one matmul over all rows; only attention is run per
  // sequence, against that sequence's own cache. Returns logits [n_out_i, n_vocab] per sequence,
  // equal to running each sequence alone.
  struct SeqBatch {
    const std::vector<int32_t>* tokens;
    KVCache* cache;
    int64_t n_out = 1;
  };
  std::vector<Tensor> forward_batch(const std::vector<SeqBatch>& seqs) const;
  // Passes stack at most this many token rows (default 128 for quantized weights, 512 for dense
  // float ones): a longer prompt, or a batch with more rows, runs as consecutive micro-batches,
  // each appending to the caches before the next, so activation memory is bounded by the
  // micro-batch, not the prompt (a 512-token SmolLM2 Q4_1 prefill needs ~4 MB of scratch instead
  // of ~15 MB). Results do not depend on it beyond rounding.
  void set_ubatch(int64_t rows);
  int64_t ubatch() const { return ubatch_; }
  // Decoders: the last hidden state [n_tokens, d_model] (after the final norm, before the output
  // head) of one sequence from an empty context: what an embedding of a decoder model pools.
  Tensor hidden_states(const std::vector<int32_t>& tokens) const;
  // Encoders (BERT): the last hidden state [n_tokens, d_model] of one sequence (bidirectional).
  Tensor encode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& token_types = {}) const;

  // Activation observer (values live in the pass's arena: clone() what you keep): called with
  // every named intermediate ("blk.3.attn_out", "blk.3.ffn_out", "blk.3.x", ...) during a pass; for
  // calibration, parity debugging, dumps.
  using Observer = std::function<void(const std::string& name, const Tensor& value)>;
  void set_observer(Observer obs) { observer_ = std::move(obs); }

  // Scratch of the last pass. Every intermediate tensor of a pass comes from this arena
  // (ArenaScope), which keeps its memory across passes: after the first tokens, decoding asks the
  // system allocator only for the small tensor headers, not for activation buffers. One pass at a
  // time per Transformer (the serving work gives each worker its own arena).
  const Arena& scratch() const { return arena_; }
  // Bytes of weights moved at load into the huge-page slab (repack_weights), and of those the ones
  // held rows-interleaved by 8 for the CPU int8 kernel.
  size_t slab_bytes() const { return slab_bytes_; }
  size_t repacked_bytes() const { return repacked_bytes_; }
  // Matrices of a layer read as one concatenated view in small batches ([q; k; v], [gate; up]).
  int fused_views() const { return fused_views_; }

 private:
  struct Norm {
    Tensor w, b;  // b undefined for RMSNorm
  };
  struct Expert {
    Tensor gate, up, down;  // [d_ff, d_model] x2, [d_model, d_ff]
  };
  struct Layer {
    Norm attn_norm, ffn_norm;
    Tensor wq, wk, wv, wqkv, wo;  // separate q/k/v or fused [q; k; v] rows
    Tensor bq, bk, bv, bqkv, bo;
    Tensor w_gate, w_up, w_down;  // w_up is [2 d_ff, d_model] for Phi-3's fused [gate; up]
    Tensor b_up, b_down;
    // Views over matrices that read the same input and lie back to back in the slab: [q; k; v]
    // (with bqkv_cat when they have biases) and [gate; up]. Small batches (decode steps) run one
    // matmul over each instead of three or two; undefined when not adjacent (see repack_weights).
    Tensor wqkv_cat, bqkv_cat, w_gate_up_cat;
    Tensor router;                // MoE: [n_experts, d_model]
    std::vector<Expert> experts;
  };

  explicit Transformer(Weights w) : w_(std::move(w)), cfg_(w_.config()) {}
  void load_tensors();
  // The matrices every token reads, when they are views of a GGUF file, move at load into one slab
  // on transparent huge pages; the Q4_0 / Q4_1 / Q8_0 ones the CPU int8 kernel reads faster rows-
  // interleaved by 8 (ops::r8_helps) are repacked on the way (ops::relayout_into). Their file
  // pages are dropped as they are copied, so RSS stays near the file size. LLMKIT_REPACK=0 keeps
  // them in the file (for A/B measurements), as does a slab larger than 80% of MemAvailable (a
  // model that does not fit keeps running from the evictable file pages) or a failed allocation.
  void repack_weights();
  // Sets the layers' wqkv_cat / w_gate_up_cat views where the slab holds the parts back to back.
  void fuse_adjacent(const std::shared_ptr<void>& slab);
  // Every id in [0, n_vocab), else Error(kInvalidArgument) naming it: checked once per public call,
  // before any pass writes to a cache.
  void check_token_ids(const std::vector<int32_t>& tokens) const;
  Tensor norm(const Tensor& x, const Norm& n) const;
  Tensor embed(const std::vector<int32_t>& tokens, const Tensor& pos, const std::vector<int32_t>& token_types) const;
  // q [n, H, hd], k and v [n, Hkv, hd] of one layer (bias and RoPE applied).
  void qkv(const Layer& L, const Tensor& h, const Tensor& pos, Tensor* q, Tensor* k, Tensor* v) const;
  Tensor mlp(const Layer& L, const Tensor& h) const;
  Tensor moe(const Layer& L, const Tensor& h) const;
  // hidden: return the final-normed hidden state of every row (one sequence) instead of logits.
  std::vector<Tensor> forward_pass(const std::vector<SeqBatch>& seqs, bool hidden = false) const;
  Tensor encode_pass(const std::vector<int32_t>& tokens, const std::vector<int32_t>& token_types) const;
  void observe(const std::string& name, const Tensor& t) const {
    if (observer_) observer_(name, t);
  }

  Weights w_;
  ModelConfig cfg_;
  size_t slab_bytes_ = 0, repacked_bytes_ = 0;
  int fused_views_ = 0;
  DType kv_dtype_ = DType::kF32;
  ops::RopeConfig rope_;
  bool use_rope_ = false;
  ops::Act act_ = ops::Act::kSilu;
  Tensor tok_embd;        // [n_vocab, d_model]
  Tensor pos_embd;        // learned positions [n_ctx (+ offset), d_model]
  Tensor type_embd;       // BERT token types [n_token_types, d_model]
  Norm embd_norm;         // BLOOM, BERT
  Norm output_norm;
  Tensor output;          // [n_vocab, d_model] (tok_embd when tied)
  std::vector<Layer> layers_;
  Observer observer_;
  int64_t ubatch_ = 128;
  mutable Arena arena_;
};

}  // namespace llmkit::models
