// The configurable transformer's forward; see transformer.h.
#include "llmkit/models/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "llmkit/base/check.h"

namespace llmkit::models {

namespace {
// /proc/meminfo's MemAvailable (Linux): what can be allocated without swapping, page cache
// included. nullopt elsewhere or when unreadable.
std::optional<size_t> mem_available_bytes() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return std::nullopt;
  char line[256];
  std::optional<size_t> out;
  while (std::fgets(line, sizeof line, f)) {
    unsigned long long kb = 0;
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
      out = static_cast<size_t>(kb) * 1024;
      break;
    }
  }
  std::fclose(f);
  return out;
}
}  // namespace

ops::Act to_act(Activation a) {
  switch (a) {
    case Activation::kSilu: return ops::Act::kSilu;
    case Activation::kGelu: return ops::Act::kGeluErf;
    case Activation::kGeluTanh: return ops::Act::kGeluTanh;
    case Activation::kRelu: return ops::Act::kRelu;
  }
  return ops::Act::kSilu;
}

namespace {

ops::RopeScaling to_rope_scaling(RopeScalingKind k) {
  switch (k) {
    case RopeScalingKind::kNone: return ops::RopeScaling::kNone;
    case RopeScalingKind::kLinear: return ops::RopeScaling::kLinear;
    case RopeScalingKind::kNtk: return ops::RopeScaling::kNtk;
    case RopeScalingKind::kYarn: return ops::RopeScaling::kYarn;
    case RopeScalingKind::kLlama3: return ops::RopeScaling::kLlama3;
  }
  return ops::RopeScaling::kNone;
}

// Batches of up to this many rows run [q; k; v] and [gate; up] as one matmul each (one quantization
// of the input, one parallel region, a longer range to share between threads); larger ones keep
// the separate products, whose outputs need no split copies.
constexpr int64_t kFusedMaxRows = 64;

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y = ops::matmul(x, w);
  return b.defined() ? ops::add_bias(y, b) : y;
}

Tensor opt_tensor(const Weights& w, const std::string& name, const Shape& shape) {
  auto t = w.optional(name, shape);
  return t ? *t : Tensor();
}

}  // namespace

ops::RopeConfig rope_config(const ModelConfig& hp, const Weights& w, bool* use_rope) {
  ops::RopeConfig rope;
  *use_rope = hp.position == PositionKind::kRopeNeox || hp.position == PositionKind::kRopeGptj;
  if (*use_rope) {
    // llama.cpp's converter (and weights.h for HF folders) permutes the q/k rows of the LLaMA family
    // so that rotating adjacent pairs (GPT-J style) equals HF's rotate_half on the original rows.
    const bool permuted = hp.family == ArchFamily::kLlama;
    rope.style = permuted || hp.position == PositionKind::kRopeGptj ? ops::RopeStyle::kGptJ : ops::RopeStyle::kNeoX;
    rope.rot_dims = static_cast<int64_t>(std::lround(hp.head_dim * hp.partial_rotary));
    rope.theta = hp.rope_theta;
    rope.scaling = to_rope_scaling(hp.rope_scaling.kind);
    rope.factor = hp.rope_scaling.factor;
    rope.original_ctx = hp.rope_scaling.original_n_ctx;
    rope.beta_fast = hp.rope_scaling.beta_fast;
    rope.beta_slow = hp.rope_scaling.beta_slow;
    rope.low_freq_factor = hp.rope_scaling.low_freq_factor;
    rope.high_freq_factor = hp.rope_scaling.high_freq_factor;
    // GGUF files from llama.cpp carry Llama-3 scaling only as per-frequency divisors (no parameters
    // in the metadata); files written by llmkit carry both, and the parameters win.
    const Tensor* rf = w.find("rope_freqs.weight");
    if (rf && hp.rope_scaling.kind == RopeScalingKind::kNone) {
      Tensor f = ops::to_f32(w.require("rope_freqs.weight", {(rope.rot_dims ? rope.rot_dims : hp.head_dim) / 2}));
      rope.freq_factors.assign(f.data<float>(), f.data<float>() + f.numel());
    }
  }
  return rope;
}

std::unique_ptr<Transformer> Transformer::load(const std::string& path) { return from_weights(Weights::open(path)); }

std::unique_ptr<Transformer> Transformer::from_weights(Weights weights) {
  const ModelConfig& c = weights.config();
  LLMKIT_CHECK(c.family != ArchFamily::kT5, kUnsupported, "model '", weights.path(),
               "' is T5 (encoder-decoder); this build's transformer runs decoder-only models and the BERT encoder");
  auto m = std::unique_ptr<Transformer>(new Transformer(std::move(weights)));
  m->load_tensors();
  m->repack_weights();
  return m;
}

void Transformer::repack_weights() {
  const char* env = std::getenv("LLMKIT_REPACK");
  if ((env && std::string(env) == "0") || ops::current_backend() != ops::Backend::kCpu) return;
  std::vector<Tensor*> todo;
  for (Layer& L : layers_) {
    for (Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wqkv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) todo.push_back(t);
    for (Expert& E : L.experts)
      for (Tensor* t : {&E.gate, &E.up, &E.down}) todo.push_back(t);
  }
  // A tied output head is the embedding table too: lookups read the moved (maybe repacked) rows
  // (ops::embedding takes every layout).
  const bool tied = output.defined() && output.raw() == tok_embd.raw();
  todo.push_back(&output);
  // Only views of the file: a copy of anything else (an HF folder's transformed tensors, kept by
  // w_) would add to RSS instead of replacing pages.
  std::erase_if(todo, [&](const Tensor* t) {
    return !t->defined() || t->rank() != 2 || !t->is_contiguous() || !w_.is_file_view(*t);
  });
  if (todo.empty()) return;
  // Decode streams every byte once per token; in 4 KiB pages each costs a TLB walk, and the
  // hardware prefetchers stop at every page boundary. SmolLM2 F16 tg64 (Zen 4, alternating runs):
  // 1 thread 66-74 -> 88-94 t/s, 2 threads 98-104 -> 113-126; 1B Q4_0 2 threads 50 -> 55-58.
  constexpr size_t kHuge = size_t{2} << 20;
  size_t total = 0;
  for (const Tensor* t : todo) total += (t->nbytes() + 63) / 64 * 64;
  total = (total + kHuge - 1) / kHuge * kHuge;
  // Anonymous memory cannot be evicted the way clean file pages can: a model that does not fit
  // in memory next to everything else keeps running from the mapping (paged from disk) instead of
  // being killed for memory. MemAvailable counts the page cache (the file's own pages too).
  if (const std::optional<size_t> avail = mem_available_bytes(); avail && total > *avail / 10 * 8) return;
  void* p = std::aligned_alloc(kHuge, total);
  if (p == nullptr) return;  // no slab: the file layout, as with LLMKIT_REPACK=0
#ifdef __linux__
  (void)madvise(p, total, MADV_HUGEPAGE);  // advice: without it the slab is ordinary pages
#endif
  std::shared_ptr<void> slab(p, std::free);
  size_t off = 0;
  std::vector<Tensor> sources;
  for (Tensor* t : todo) {
    const Tensor src = *t;
    const bool r8 = ops::r8_helps(src);
    Tensor out = Tensor::from_external(static_cast<uint8_t*>(p) + off, src.shape(),
                                       r8 ? *r8_of(src.dtype()) : src.dtype(), slab);
    off += (src.nbytes() + 63) / 64 * 64;
    // Each chunk's file pages are dropped as soon as it is copied: peak RSS ~ file + 4 MB.
    ops::relayout_into(src, out, [&](size_t bytes) { w_.release_pages(src.raw(), bytes); });
    if (r8) repacked_bytes_ += src.nbytes();
    slab_bytes_ += src.nbytes();
    sources.push_back(src);
    *t = std::move(out);
  }
  // Reading a tensor maps back up to 64 KB of already dropped neighbours (the kernel's fault-around
  // of file mappings): ~12 MB for SmolLM2's 211 matrices. Drop them once more.
  for (const Tensor& s : sources) w_.release_pages(s.raw(), s.nbytes());
  if (tied) tok_embd = output;
  fuse_adjacent(slab);
}

void Transformer::fuse_adjacent(const std::shared_ptr<void>& slab) {
  // `todo` put [q, k, v] and [gate, up] back to back (64-byte padding vanishes when a matrix's
  // bytes are a multiple of 64). A view from the first over all of them is their row
  // concatenation: for the rows-interleaved-by-8 layouts too, when every part has whole groups of
  // 8 rows. Each output row is computed from its own weight row and the same quantized input, so
  // the fused product's columns are bitwise the separate products'.
  auto next_to = [](const Tensor& a, const Tensor& b) {
    return a.defined() && b.defined() && a.rank() == 2 && b.rank() == 2 && a.dtype() == b.dtype() &&
           a.dim(1) == b.dim(1) && a.dim(0) % 8 == 0 && b.dim(0) % 8 == 0 &&
           static_cast<const uint8_t*>(a.raw()) + a.nbytes() == static_cast<const uint8_t*>(b.raw());
  };
  auto view = [&](const Tensor& first, int64_t rows) {
    return Tensor::from_external(const_cast<void*>(first.raw()), {rows, first.dim(1)}, first.dtype(), slab);
  };
  for (Layer& L : layers_) {
    if (!L.wqkv.defined() && next_to(L.wq, L.wk) && next_to(L.wk, L.wv)) {
      const int n_bias = L.bq.defined() + L.bk.defined() + L.bv.defined();
      if (n_bias == 0 || n_bias == 3) {
        L.wqkv_cat = view(L.wq, L.wq.dim(0) + L.wk.dim(0) + L.wv.dim(0));
        if (n_bias == 3) L.bqkv_cat = ops::concat({ops::to_f32(L.bq), ops::to_f32(L.bk), ops::to_f32(L.bv)}, 0);
        ++fused_views_;
      }
    }
    if (L.w_gate.defined() && !L.b_up.defined() && next_to(L.w_gate, L.w_up) && L.w_gate.dim(0) == L.w_up.dim(0)) {
      L.w_gate_up_cat = view(L.w_gate, 2 * L.w_gate.dim(0));
      ++fused_views_;
    }
  }
}

void Transformer::load_tensors() {
  const ModelConfig& hp = cfg_;
  const Weights& w = w_;
  act_ = to_act(hp.act);
  rope_ = rope_config(hp, w, &use_rope_);
  const bool ln = hp.norm == NormKind::kLayerNorm;
  const int64_t d = hp.d_model, q_dim = hp.n_heads * hp.head_dim, kv_dim = hp.n_kv_heads * hp.head_dim;
  auto norm_of = [&](const std::string& base) {
    Norm n;
    n.w = w.require(base + ".weight", {d});
    if (ln) n.b = w.require(base + ".bias", {d});
    return n;
  };
  tok_embd = w.require("token_embd.weight", {hp.n_vocab, d});
  if (hp.position == PositionKind::kLearned) {
    const Tensor* p = w.find("position_embd.weight");
    LLMKIT_CHECK(p && p->rank() == 2 && p->dim(1) == d && p->dim(0) >= hp.position_offset + 1, kInvalidFile, "model '",
                 w.path(), "' lacks a position embedding 'position_embd.weight' [n_positions, ", d, "]");
    pos_embd = *p;
  }
  if (hp.n_token_types > 0 && w.find("token_types.weight"))
    type_embd = w.require("token_types.weight", {w.find("token_types.weight")->dim(0), d});
  if (hp.embedding_norm) embd_norm = norm_of("token_embd_norm");
  if (hp.decoder) {
    output_norm = norm_of("output_norm");
    output = w.find("output.weight") ? w.require("output.weight", {hp.n_vocab, d}) : tok_embd;
  }
  for (int64_t l = 0; l < hp.n_layers; ++l) {
    const std::string p = str_cat("blk.", l, ".");
    Layer L;
    L.attn_norm = norm_of(p + (hp.post_norm ? "attn_output_norm" : "attn_norm"));
    L.ffn_norm = norm_of(p + (hp.post_norm ? "layer_output_norm" : "ffn_norm"));
    if (w.find(p + "attn_qkv.weight")) {
      L.wqkv = w.require(p + "attn_qkv.weight", {q_dim + 2 * kv_dim, d});
      L.bqkv = opt_tensor(w, p + "attn_qkv.bias", {q_dim + 2 * kv_dim});
    } else {
      L.wq = w.require(p + "attn_q.weight", {q_dim, d});
      L.wk = w.require(p + "attn_k.weight", {kv_dim, d});
      L.wv = w.require(p + "attn_v.weight", {kv_dim, d});
      L.bq = opt_tensor(w, p + "attn_q.bias", {q_dim});
      L.bk = opt_tensor(w, p + "attn_k.bias", {kv_dim});
      L.bv = opt_tensor(w, p + "attn_v.bias", {kv_dim});
    }
    L.wo = w.require(p + "attn_output.weight", {d, q_dim});
    L.bo = opt_tensor(w, p + "attn_output.bias", {d});
    if (hp.n_experts > 0) {
      L.router = w.require(p + "ffn_gate_inp.weight", {hp.n_experts, d});
      const Tensor* merged = w.find(p + "ffn_gate_exps.weight");
      for (int64_t e = 0; e < hp.n_experts; ++e) {
        Expert E;
        if (merged) {  // llama.cpp's current layout: one [n_experts, d_ff, d_model] tensor per matrix
          auto slice = [&](const char* what, const Shape& one) {
            Tensor all = w.require(p + what, {hp.n_experts, one[0], one[1]});
            return all.slice(0, e, e + 1).view(one);
          };
          E.gate = slice("ffn_gate_exps.weight", {hp.d_ff, d});
          E.up = slice("ffn_up_exps.weight", {hp.d_ff, d});
          E.down = slice("ffn_down_exps.weight", {d, hp.d_ff});
        } else {
          E.gate = w.require(str_cat(p, "ffn_gate.", e, ".weight"), {hp.d_ff, d});
          E.up = w.require(str_cat(p, "ffn_up.", e, ".weight"), {hp.d_ff, d});
          E.down = w.require(str_cat(p, "ffn_down.", e, ".weight"), {d, hp.d_ff});
        }
        L.experts.push_back(std::move(E));
      }
    } else {
      const bool fused_gate_up = hp.gated_mlp && !w.find(p + "ffn_gate.weight");  // Phi-3
      L.w_up = w.require(p + "ffn_up.weight", {fused_gate_up ? 2 * hp.d_ff : hp.d_ff, d});
      if (hp.gated_mlp && !fused_gate_up) L.w_gate = w.require(p + "ffn_gate.weight", {hp.d_ff, d});
      L.w_down = w.require(p + "ffn_down.weight", {d, hp.d_ff});
      L.b_up = opt_tensor(w, p + "ffn_up.bias", {hp.d_ff});
      L.b_down = opt_tensor(w, p + "ffn_down.bias", {d});
    }
    layers_.push_back(std::move(L));
  }
  // Micro-batch rows: the dense float GEMM packs (and converts) each weight panel once per pass,
  // so it wants longer passes (SmolLM2 F16 pp512: 1 thread, 128 rows ~7% slower than 256 or 512;
  // 2 threads, 256 rows ~8% slower than 512: each pass pays the per-op thread hand-offs);
  // the quantized kernels decode weights per tile whatever the row count, and 128 rows keep the
  // scratch at ~4 MB (peak RSS within ~7% of file + KV cache).
  if (!layers_.empty()) {
    const Layer& L0 = layers_.front();
    const Tensor& wd = L0.experts.empty() ? L0.w_down : L0.experts.front().down;
    ubatch_ = wd.defined() && !is_quantized(wd.dtype()) ? 512 : 128;
  }
}

size_t KVPages::nbytes() const {
  size_t n = 0;
  for (size_t l = 0; l < k.size(); ++l) n += k[l].nbytes() + v[l].nbytes();
  return n;
}

std::shared_ptr<KVPages> Transformer::new_kv_pages(int64_t n_pages) const {
  LLMKIT_CHECK(n_pages > 0 && n_pages <= (int64_t{1} << 22) / kKVPage, kInvalidArgument, "KV pool of ", n_pages,
               " pages (", kKVPage, " positions each) is out of range; use 1 .. ", (int64_t{1} << 22) / kKVPage);
  auto p = std::make_shared<KVPages>();
  p->n_pages = n_pages;
  // Not zeroed: attention reads only the positions already written, and untouched pages of a large
  // allocation are never made resident, so memory grows with the context actually used.
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    p->k.push_back(Tensor::empty({n_pages, cfg_.n_kv_heads, cfg_.head_dim, kKVPage}, kv_dtype_));
    p->v.push_back(Tensor::empty({n_pages, cfg_.n_kv_heads, kKVPage, cfg_.head_dim}, kv_dtype_));
  }
  return p;
}

void Transformer::set_kv_dtype(DType t) {
  LLMKIT_CHECK(t == DType::kF32 || t == DType::kF16, kInvalidArgument, "KV cache type ", dtype_name(t),
               " is not supported; use f32 or f16");
  kv_dtype_ = t;
}

KVCache Transformer::new_cache(int64_t n_ctx) const {
  LLMKIT_CHECK(n_ctx > 0 && n_ctx <= (int64_t{1} << 22), kInvalidArgument, "context size ", n_ctx,
               " is out of range; use 1 .. 4194304");
  KVCache c;
  c.n_ctx = n_ctx;
  c.pages = new_kv_pages((n_ctx + kKVPage - 1) / kKVPage);
  c.blocks.resize(static_cast<size_t>(c.pages->n_pages));
  for (size_t b = 0; b < c.blocks.size(); ++b) c.blocks[b] = static_cast<int32_t>(b);
  return c;
}

Tensor Transformer::forward(const std::vector<int32_t>& tokens, KVCache& cache, int64_t n_out) const {
  return forward_batch({SeqBatch{&tokens, &cache, n_out}})[0];
}

void Transformer::check_token_ids(const std::vector<int32_t>& tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i)
    LLMKIT_CHECK(tokens[i] >= 0 && tokens[i] < cfg_.n_vocab, kInvalidArgument, "token id ", tokens[i], " at position ",
                 i, " is outside the vocabulary [0, ", cfg_.n_vocab, ")");
}

void Transformer::set_ubatch(int64_t rows) {
  LLMKIT_CHECK(rows >= 1 && rows <= (int64_t{1} << 20), kInvalidArgument, "micro-batch size ", rows,
               " is out of range; use 1 .. 1048576");
  ubatch_ = rows;
}

std::vector<Tensor> Transformer::forward_batch(const std::vector<SeqBatch>& seqs) const {
  LLMKIT_CHECK(cfg_.decoder, kUnsupported, "model '", w_.path(), "' is an encoder (", family_name(cfg_.family),
               "): it has no next-token logits; use it for embeddings (last hidden state)");
  LLMKIT_CHECK(!seqs.empty(), kInvalidArgument, "forward needs at least one sequence");
  // Everything is checked before the first micro-batch writes to a cache, so a bad request
  // leaves every cache as it was.
  int64_t total = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqBatch& b = seqs[s];
    LLMKIT_CHECK(b.tokens && b.cache, kInvalidArgument, "sequence ", s, " has no tokens or no cache");
    const int64_t n = static_cast<int64_t>(b.tokens->size());
    const KVCache& cache = *b.cache;
    LLMKIT_CHECK(n > 0, kInvalidArgument, "forward needs at least one token (sequence ", s, ")");
    LLMKIT_CHECK(cache.n_past + n <= cache.n_ctx, kInvalidArgument, "context is full: ", cache.n_past, " + ", n,
                 " tokens exceed the context size ", cache.n_ctx, "; start a new conversation or raise --ctx-size");
    LLMKIT_CHECK(b.n_out >= 1 && b.n_out <= n, kInvalidArgument, "n_out ", b.n_out, " must be in [1, ", n, "]");
    LLMKIT_CHECK(cache.pages && static_cast<int64_t>(cache.pages->k.size()) == cfg_.n_layers &&
                     cache.pages->k.front().dim(1) == cfg_.n_kv_heads && cache.pages->k.front().dim(2) == cfg_.head_dim,
                 kInvalidArgument, "the KV cache was made for another model (or has no pages); make it with this model's new_cache()");
    LLMKIT_CHECK(cache.n_past + n <= static_cast<int64_t>(cache.blocks.size()) * kKVPage, kInvalidArgument,
                 "the KV cache's block table holds ", cache.blocks.size(), " pages, too few for ", cache.n_past + n,
                 " positions; add pages before the pass");
    for (int32_t page : cache.blocks)
      LLMKIT_CHECK(page >= 0 && page < cache.pages->n_pages, kInvalidArgument, "KV block ", page, " is outside the pool of ",
                   cache.pages->n_pages, " pages");
    for (size_t t = 0; t < s; ++t)
      LLMKIT_CHECK(seqs[t].cache != b.cache, kInvalidArgument, "sequences ", t, " and ", s, " share one KV cache");
    check_token_ids(*b.tokens);
    total += n;
  }
  auto run = [&](const std::vector<SeqBatch>& part) {
    arena_.reset();
    ArenaScope scope(arena_);
    return forward_pass(part);
  };
  if (total <= ubatch_) return run(seqs);  // the logits live outside the arena (forward_pass)
  // Micro-batches: take rows from the sequences in order until the budget is spent; a sequence's
  // piece asks for the logits of the rows of it that fall in its last n_out positions.
  std::vector<Tensor> out(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) out[s] = Tensor::empty({seqs[s].n_out, cfg_.n_vocab}, DType::kF32);
  std::vector<int64_t> done(seqs.size(), 0);
  size_t first = 0;  // first sequence with tokens left
  while (first < seqs.size()) {
    std::vector<std::vector<int32_t>> tokens;
    std::vector<SeqBatch> part;
    std::vector<std::pair<size_t, int64_t>> dest;  // (sequence, first logits row) per piece
    tokens.reserve(seqs.size());
    int64_t budget = ubatch_;
    for (size_t s = first; s < seqs.size() && budget > 0; ++s) {
      const int64_t n = static_cast<int64_t>(seqs[s].tokens->size());
      const int64_t a = done[s], b = std::min(n, a + budget);
      const auto* src = seqs[s].tokens->data();
      tokens.emplace_back(src + a, src + b);
      const int64_t want_from = n - seqs[s].n_out;  // rows [want_from, n) are wanted
      const int64_t n_out = std::max<int64_t>(0, b - std::max(a, want_from));
      part.push_back(SeqBatch{&tokens.back(), seqs[s].cache, n_out});
      dest.emplace_back(s, std::max(a, want_from) - want_from);
      budget -= b - a;
      done[s] = b;
    }
    std::vector<Tensor> logits = run(part);
    for (size_t i = 0; i < part.size(); ++i)
      if (part[i].n_out > 0)
        copy_into(out[dest[i].first].slice(0, dest[i].second, dest[i].second + part[i].n_out), logits[i]);
    while (first < seqs.size() && done[first] == static_cast<int64_t>(seqs[first].tokens->size())) ++first;
  }
  return out;
}

Tensor Transformer::hidden_states(const std::vector<int32_t>& tokens) const {
  LLMKIT_CHECK(cfg_.decoder, kUnsupported, "hidden_states() is for decoders; use encode() for '", w_.path(), "'");
  const int64_t n = static_cast<int64_t>(tokens.size());
  LLMKIT_CHECK(n > 0, kInvalidArgument, "hidden_states needs at least one token");
  LLMKIT_CHECK(n <= cfg_.n_ctx, kInvalidArgument, n, " tokens exceed the ", cfg_.n_ctx, " positions of this model");
  check_token_ids(tokens);
  KVCache cache = new_cache(n);
  Tensor out = Tensor::empty({n, cfg_.d_model}, DType::kF32);  // outside the arena: outlives the passes
  for (int64_t a = 0; a < n; a += ubatch_) {
    const int64_t b = std::min(n, a + ubatch_);
    const std::vector<int32_t> piece(tokens.begin() + a, tokens.begin() + b);
    arena_.reset();
    ArenaScope scope(arena_);
    copy_into(out.slice(0, a, b), forward_pass({SeqBatch{&piece, &cache, b - a}}, /*hidden=*/true)[0]);
  }
  return out;
}

Tensor Transformer::encode(const std::vector<int32_t>& tokens, const std::vector<int32_t>& token_types) const {
  LLMKIT_CHECK(is_encoder(), kUnsupported, "model '", w_.path(), "' is a decoder; encode() is for encoder models (BERT)");
  check_token_ids(tokens);
  arena_.reset();
  Tensor h;
  {
    ArenaScope scope(arena_);
    h = encode_pass(tokens, token_types);
  }
  return h.clone();
}

Tensor Transformer::norm(const Tensor& x, const Norm& n) const {
  // Weights are in GGUF layout, where Gemma's (1 + w) is already folded into the stored weight.
  return n.b.defined() ? ops::layernorm(x, n.w, n.b, cfg_.norm_eps) : ops::rmsnorm(x, n.w, cfg_.norm_eps);
}

Tensor Transformer::embed(const std::vector<int32_t>& tokens, const Tensor& pos,
                          const std::vector<int32_t>& token_types) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  Tensor ids = Tensor::empty({n}, DType::kI32);
  std::copy(tokens.begin(), tokens.end(), ids.data<int32_t>());  // checked by the public entry points
  Tensor x = ops::embedding(tok_embd, ids);  // [n, d_model]
  if (cfg_.embedding_scale != 1.0f) x = ops::scale(x, cfg_.embedding_scale);
  if (pos_embd.defined()) {
    Tensor pids = Tensor::empty({n}, DType::kI32);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = pos.data<int32_t>()[i] + cfg_.position_offset;
      LLMKIT_CHECK(p < pos_embd.dim(0), kInvalidArgument, "position ", p - cfg_.position_offset, " is beyond the ",
                   pos_embd.dim(0) - cfg_.position_offset, " positions this model has embeddings for");
      pids.data<int32_t>()[i] = static_cast<int32_t>(p);
    }
    x = ops::add(x, ops::embedding(pos_embd, pids));
  }
  if (type_embd.defined()) {
    Tensor tids = Tensor::zeros({n}, DType::kI32);
    for (size_t i = 0; i < token_types.size() && i < tokens.size(); ++i) {
      LLMKIT_CHECK(token_types[i] >= 0 && token_types[i] < type_embd.dim(0), kInvalidArgument, "token type ",
                   token_types[i], " is outside [0, ", type_embd.dim(0), ")");
      tids.data<int32_t>()[i] = token_types[i];
    }
    x = ops::add(x, ops::embedding(type_embd, tids));
  }
  if (embd_norm.w.defined()) x = norm(x, embd_norm);
  return x;
}

void Transformer::qkv(const Layer& L, const Tensor& h, const Tensor& pos, Tensor* q, Tensor* k, Tensor* v) const {
  const int64_t n = h.dim(0), H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  if (L.wqkv.defined()) {
    std::vector<Tensor> parts = ops::split(linear(h, L.wqkv, L.bqkv), {H * hd, Hkv * hd, Hkv * hd}, 1);
    *q = parts[0], *k = parts[1], *v = parts[2];
  } else if (L.wqkv_cat.defined() && n <= kFusedMaxRows) {
    std::vector<Tensor> parts = ops::split(linear(h, L.wqkv_cat, L.bqkv_cat), {H * hd, Hkv * hd, Hkv * hd}, 1);
    *q = parts[0], *k = parts[1], *v = parts[2];
  } else {
    *q = linear(h, L.wq, L.bq);
    *k = linear(h, L.wk, L.bk);
    *v = linear(h, L.wv, L.bv);
  }
  *q = q->view({n, H, hd});
  *k = k->view({n, Hkv, hd});
  *v = v->view({n, Hkv, hd});
  if (use_rope_) {
    *q = ops::rope(*q, pos, rope_);
    *k = ops::rope(*k, pos, rope_);
  }
}

Tensor Transformer::mlp(const Layer& L, const Tensor& h) const {
  if (!L.experts.empty()) return moe(L, h);
  if (!cfg_.gated_mlp) return linear(ops::activation(act_, linear(h, L.w_up, L.b_up)), L.w_down, L.b_down);
  Tensor g;
  if (L.w_gate_up_cat.defined() && h.dim(0) <= kFusedMaxRows) {
    const int64_t ff = L.w_gate_up_cat.dim(0) / 2;
    std::vector<Tensor> gu = ops::split(ops::matmul(h, L.w_gate_up_cat), {ff, ff}, 1);
    g = ops::glu(act_, gu[0], gu[1]);
  } else if (L.w_gate.defined()) {
    g = ops::glu(act_, ops::matmul(h, L.w_gate), linear(h, L.w_up, L.b_up));
  } else {  // Phi-3: one matmul gives [gate | up]
    std::vector<Tensor> gu = ops::split(ops::matmul(h, L.w_up), {cfg_.d_ff, cfg_.d_ff}, 1);
    g = ops::glu(act_, gu[0], gu[1]);
  }
  return linear(g, L.w_down, L.b_down);
}

// Mixtral routing: softmax over all experts' router logits, keep the top k, renormalise their
// weights to sum to 1, and add the weighted outputs of those experts. Tokens are grouped by expert
// so each expert runs one matmul over all of its tokens.
Tensor Transformer::moe(const Layer& L, const Tensor& h) const {
  const int64_t n = h.dim(0), d = h.dim(1), E = cfg_.n_experts;
  const int64_t k = std::clamp<int64_t>(cfg_.n_experts_used, 1, E);
  Tensor probs = ops::softmax(ops::matmul(h, L.router));  // [n, E]
  std::vector<std::vector<std::pair<int64_t, float>>> routed(static_cast<size_t>(E));  // expert -> (token, weight)
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs.data<float>() + i * E;
    for (int64_t e = 0; e < E; ++e) order[static_cast<size_t>(e)] = e;
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [p](int64_t a, int64_t b) {
      return p[a] > p[b] || (p[a] == p[b] && a < b);
    });
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += p[order[static_cast<size_t>(j)]];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = order[static_cast<size_t>(j)];
      routed[static_cast<size_t>(e)].emplace_back(i, p[e] / sum);
    }
  }
  Tensor out = Tensor::zeros({n, d}, DType::kF32);
  Tensor hc = h.is_contiguous() ? h : ops::copy(h);
  for (int64_t e = 0; e < E; ++e) {
    const auto& r = routed[static_cast<size_t>(e)];
    if (r.empty()) continue;
    const int64_t m = static_cast<int64_t>(r.size());
    Tensor xe = Tensor::empty({m, d}, DType::kF32);
    for (int64_t j = 0; j < m; ++j)
      std::copy_n(hc.data<float>() + r[static_cast<size_t>(j)].first * d, d, xe.data<float>() + j * d);
    const Expert& X = L.experts[static_cast<size_t>(e)];
    Tensor ye = ops::matmul(ops::glu(act_, ops::matmul(xe, X.gate), ops::matmul(xe, X.up)), X.down);  // [m, d]
    for (int64_t j = 0; j < m; ++j) {
      const auto [tok, wgt] = r[static_cast<size_t>(j)];
      float* o = out.data<float>() + tok * d;
      const float* y = ye.data<float>() + j * d;
      for (int64_t c = 0; c < d; ++c) o[c] += wgt * y[c];
    }
  }
  return out;
}

std::vector<Tensor> Transformer::forward_pass(const std::vector<SeqBatch>& seqs, bool hidden) const {
  const int64_t H = cfg_.n_heads, hd = cfg_.head_dim;
  // Row offsets of each sequence in the stacked activation (inputs checked by forward_batch; a
  // micro-batch piece may want no logits: n_out 0).
  std::vector<int64_t> off(seqs.size() + 1, 0);
  for (size_t s = 0; s < seqs.size(); ++s) off[s + 1] = off[s] + static_cast<int64_t>(seqs[s].tokens->size());
  const int64_t N = off.back();
  std::vector<int32_t> all_tokens;
  all_tokens.reserve(static_cast<size_t>(N));
  Tensor pos = Tensor::empty({N}, DType::kI32);
  for (size_t s = 0; s < seqs.size(); ++s) {
    all_tokens.insert(all_tokens.end(), seqs[s].tokens->begin(), seqs[s].tokens->end());
    for (int64_t i = off[s]; i < off[s + 1]; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(seqs[s].cache->n_past + i - off[s]);
  }
  Tensor x = embed(all_tokens, pos, {});
  observe("token_embd", x);
  ops::AttentionOptions attn_opt;
  attn_opt.causal = true;
  attn_opt.window = cfg_.sliding_window;  // Mistral; 0 = full attention
  attn_opt.alibi = cfg_.position == PositionKind::kAlibi;
  // Each layer's intermediates are released when the layer ends (the arena is rewound to a mark),
  // so a pass holds one layer's buffers, not all of them: the residual stream is copied into
  // `resid`, allocated before the mark, and that is all a layer leaves behind.
  Tensor resid = Tensor::empty({N, cfg_.d_model}, DType::kF32);
  copy_into(resid, x);
  x = resid;
  std::vector<ops::PagedSeq> paged(seqs.size());
  bool one_pool = true;
  for (const SeqBatch& b : seqs) one_pool = one_pool && b.cache->pages == seqs[0].cache->pages;
  for (size_t s = 0; s < seqs.size(); ++s) {
    paged[s].n_q = off[s + 1] - off[s];
    paged[s].blocks = &seqs[s].cache->blocks;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Arena::Mark layer_start = arena_.mark();
    const Layer& L = layers_[l];
    const std::string p = str_cat("blk.", l, ".");
    Tensor h = norm(x, L.attn_norm);
    observe(p + "attn_norm", h);
    Tensor q, k, v;
    qkv(L, h, pos, &q, &k, &v);
    // Each sequence's new K/V go into its pages; then one attention call over every sequence.
    for (size_t s = 0; s < seqs.size(); ++s) {
      KVCache& cache = *seqs[s].cache;
      ops::paged_kv_write(k.slice(0, off[s], off[s + 1]), v.slice(0, off[s], off[s + 1]), cache.n_past, cache.blocks,
                          cache.pages->k[l], cache.pages->v[l]);
      paged[s].n_kv = cache.n_past + off[s + 1] - off[s];
    }
    Tensor att;
    if (one_pool) {
      att = ops::paged_attention(q.view({N, H, hd}), seqs[0].cache->pages->k[l], seqs[0].cache->pages->v[l], paged,
                                 attn_opt);
    } else {  // caches from different pools (e.g. several new_cache()): one call per sequence
      att = Tensor::empty({N, H, hd}, DType::kF32);
      for (size_t s = 0; s < seqs.size(); ++s) {
        const KVPages& pg = *seqs[s].cache->pages;
        copy_into(att.slice(0, off[s], off[s + 1]),
                  ops::paged_attention(q.slice(0, off[s], off[s + 1]).view({off[s + 1] - off[s], H, hd}), pg.k[l], pg.v[l],
                                       {paged[s]}, attn_opt));
      }
    }
    observe(p + "attn", att);
    Tensor attn_out = linear(att.view({N, H * hd}), L.wo, L.bo);
    observe(p + "attn_out", attn_out);
    if (cfg_.parallel_residual) {  // GPT-NeoX: x + attn(ln1(x)) + mlp(ln2(x))
      h = norm(x, L.ffn_norm);
      observe(p + "ffn_norm", h);
      Tensor ffn_out = mlp(L, h);
      observe(p + "ffn_out", ffn_out);
      x = ops::add(ops::add(x, attn_out), ffn_out);
    } else {
      // The attention half's buffers are released before the MLP half allocates its own.
      copy_into(resid, ops::add(x, attn_out));
      x = resid;
      arena_.rewind(layer_start);
      h = norm(x, L.ffn_norm);
      observe(p + "ffn_norm", h);
      Tensor ffn_out = mlp(L, h);
      observe(p + "ffn_out", ffn_out);
      x = ops::add(x, ffn_out);
    }
    observe(p + "x", x);
    copy_into(resid, x);
    x = resid;
    arena_.rewind(layer_start);
  }
  for (size_t s = 0; s < seqs.size(); ++s) seqs[s].cache->n_past += off[s + 1] - off[s];
  if (hidden) return {norm(x, output_norm)};
  // The output head runs only on the rows whose logits are wanted, all sequences in one matmul.
  std::vector<int64_t> out_off(seqs.size() + 1, 0);
  for (size_t s = 0; s < seqs.size(); ++s) out_off[s + 1] = out_off[s] + seqs[s].n_out;
  std::vector<Tensor> out;
  if (out_off.back() == 0) {  // a micro-batch piece that wants no logits
    for (size_t s = 0; s < seqs.size(); ++s) out.emplace_back();
    return out;
  }
  Tensor last;
  if (seqs.size() == 1) {
    last = x.slice(0, N - seqs[0].n_out, N);
  } else {
    last = Tensor::empty({out_off.back(), cfg_.d_model}, DType::kF32);
    for (size_t s = 0; s < seqs.size(); ++s)
      copy_into(last.slice(0, out_off[s], out_off[s + 1]), x.slice(0, off[s + 1] - seqs[s].n_out, off[s + 1]));
  }
  Tensor h = norm(last, output_norm);
  observe("output_norm", h);
  // [sum n_out, n_vocab], from the system allocator: the logits outlive the arena's next reset
  // without a copy (8 serving rows of a 49k vocabulary are 1.5 MB).
  Tensor logits;
  {
    ArenaScope heap(nullptr);
    logits = ops::matmul(h, output);
  }
  for (size_t s = 0; s < seqs.size(); ++s) out.push_back(logits.slice(0, out_off[s], out_off[s + 1]));
  return out;
}

// BERT: post-norm, bidirectional attention, no cache.
Tensor Transformer::encode_pass(const std::vector<int32_t>& tokens, const std::vector<int32_t>& token_types) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  LLMKIT_CHECK(n > 0, kInvalidArgument, "encode needs at least one token");
  LLMKIT_CHECK(n <= cfg_.n_ctx, kInvalidArgument, n, " tokens exceed the ", cfg_.n_ctx, " positions of this model");
  const int64_t H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  Tensor pos = Tensor::empty({n}, DType::kI32);
  for (int64_t i = 0; i < n; ++i) pos.data<int32_t>()[i] = static_cast<int32_t>(i);
  Tensor x = embed(tokens, pos, token_types);
  observe("token_embd", x);
  ops::AttentionOptions attn_opt;
  attn_opt.causal = false;
  Tensor resid = Tensor::empty({n, cfg_.d_model}, DType::kF32);  // as in forward_pass: one layer's buffers at a time
  copy_into(resid, x);
  x = resid;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Arena::Mark layer_start = arena_.mark();
    const Layer& L = layers_[l];
    const std::string p = str_cat("blk.", l, ".");
    Tensor q, k, v;
    qkv(L, x, pos, &q, &k, &v);
    Tensor att = ops::attention(q.view({1, n, H, hd}), k.view({1, n, Hkv, hd}), v.view({1, n, Hkv, hd}), attn_opt).out;
    Tensor attn_out = linear(att.view({n, H * hd}), L.wo, L.bo);
    observe(p + "attn_out", attn_out);
    x = norm(ops::add(x, attn_out), L.attn_norm);
    Tensor ffn_out = mlp(L, x);
    observe(p + "ffn_out", ffn_out);
    x = norm(ops::add(x, ffn_out), L.ffn_norm);
    observe(p + "x", x);
    copy_into(resid, x);
    x = resid;
    arena_.rewind(layer_start);
  }
  return x;
}

}  // namespace llmkit::models
