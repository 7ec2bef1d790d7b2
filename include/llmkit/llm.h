// Public API: load a model and generate text — what `llmkit run` and `llmkit chat` use.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/chat_template.h"

namespace llmkit {

struct GenerationParams {
  int64_t max_tokens = 256;
  float temperature = 0.8f;  // 0 = greedy
  int32_t top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0xC0FFEE;
  std::vector<std::string> stop;
};

struct Completion {
  std::string text;
  std::string finish_reason;  // "stop", "length", "cancelled", "context_full"
  int64_t prompt_tokens = 0, completion_tokens = 0, prompt_tokens_reused = 0;
  double prefill_seconds = 0, decode_seconds = 0;
};

struct StreamCallbacks {
  std::function<bool(const std::string& text)> on_text;  // return false to stop
  std::function<bool()> should_stop;                     // polled each token (Ctrl-C)
};

// CPU threads for all of llmkit's compute (0 = all cores). Call before loading a model.
void set_threads(int n_threads);

class LLM {
 public:
  // Loads a GGUF model with its tokenizer and chat template. n_ctx 0 = min(model's, 4096).
  static std::unique_ptr<LLM> load(const std::string& path, int64_t n_ctx = 0);
  ~LLM();

  // Continues raw text (no chat template).
  Completion complete(const std::string& prompt, const GenerationParams& params, const StreamCallbacks& cb = {});
  // Renders the conversation with the model's chat template (generation prompt added) and answers
  // as the assistant; stops at the model's end-of-turn token. Earlier turns reuse the KV cache.
  Completion chat(const std::vector<ChatMessage>& messages, const GenerationParams& params,
                  const StreamCallbacks& cb = {});
  void reset();  // drop the cached conversation

  std::string describe() const;  // "llama 134.5M params, q4_1, ctx 4096, byte-level BPE"
  int64_t n_ctx() const;

 private:
  struct Impl;
  explicit LLM(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmkit
