// The generation loop: prefill, then sample one token at a time, with hooks instead of flags —
// streaming, stop conditions and logits processors plug in from outside (gemma.cpp's pattern).
// Tokenizer-agnostic: the caller passes a streaming detokenizer (push a token id, get the text that is
// final), and the loop streams only whole UTF-8 characters and never text past a stop string.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llmkit/models/transformer.h"
#include "llmkit/runtime/sampler.h"

namespace llmkit::runtime {

struct GenerateOptions {
  int64_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;        // stop strings (not included in the output)
  std::vector<int32_t> stop_tokens;     // e.g. EOS / end-of-turn ids (not included)
};

// Streaming detokenizer: push(id) returns the text that became final; flush() the held-back rest.
struct Detokenizer {
  std::function<std::string(int32_t)> push;
  std::function<std::string()> flush;
};

struct GenerateHooks {
  // Called with each chunk of finished text (whole UTF-8 characters); return false to stop.
  std::function<bool(const std::string& text)> on_text;
  // Called with each sampled token id, before it is decoded.
  std::function<void(int32_t token)> on_token;
  // Polled once per step; returning true stops generation (Ctrl-C, client disconnect).
  std::function<bool()> should_stop;
};

enum class FinishReason { kStop, kLength, kCancelled, kContextFull };
const char* finish_reason_name(FinishReason r);

struct GenerateResult {
  std::string text;
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kLength;
  int64_t n_prompt = 0, n_prompt_reused = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

// Owns a KV cache for one conversation and reuses it across calls: when the next prompt starts
// with the tokens already in the cache (a chat's earlier turns), only the new suffix is computed.
class Generator {
 public:
  Generator(const models::Transformer& model, int64_t n_ctx);
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                          const Detokenizer& detok, const GenerateHooks& hooks = {});
  void reset();  // forget the cached conversation
  int64_t n_ctx() const { return cache_.n_ctx; }

 private:
  const models::Transformer& model_;
  models::KVCache cache_;
  std::vector<int32_t> cached_;  // tokens whose K/V are in cache_
};

}  // namespace llmkit::runtime
