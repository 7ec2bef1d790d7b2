// Token sampling: penalties, temperature, top-k, top-p, min-p and a seeded draw, applied in that
// order (llama.cpp's default chain order minus the exotic samplers). temperature == 0 is greedy.
// Logits processors (grammar constraints, biases) plug in as hooks before the chain.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace llmkit::runtime {

struct SamplingParams {
  float temperature = 0.8f;       // 0 = greedy (arg-max)
  int32_t top_k = 40;             // 0 = off
  float top_p = 0.95f;            // 1 = off
  float min_p = 0.05f;            // 0 = off; drop tokens below min_p * p(top token)
  float repeat_penalty = 1.0f;    // 1 = off (CTRL, Keskar et al. 2019): logit / p if > 0 else * p
  int32_t repeat_last_n = 64;     // window of recent tokens the penalties look at; -1 = all
  float presence_penalty = 0.0f;  // OpenAI: logit -= presence if the token occurred
  float frequency_penalty = 0.0f; // OpenAI: logit -= frequency * count
  uint64_t seed = 0xC0FFEE;

  // Throws Error(kInvalidArgument) naming the first out-of-range field.
  void validate() const;
};

// Modifies logits [n_vocab] in place given the tokens so far (prompt + generated).
using LogitsProcessor = std::function<void(float* logits, int64_t n_vocab, const std::vector<int32_t>& tokens)>;

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  void add_processor(LogitsProcessor p) { processors_.push_back(std::move(p)); }
  // logits [n_vocab] (modified in place); tokens = the context so far, for penalties.
  int32_t sample(float* logits, int64_t n_vocab, const std::vector<int32_t>& tokens);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<LogitsProcessor> processors_;
  std::vector<std::pair<float, int32_t>> cand_;  // scratch, reused across calls
  std::vector<int32_t> counts_;
};

// Finds stop strings in streamed text. feed() appends a piece and returns the text that is safe
// to emit now: everything except a tail that could still be the start of a stop string. Once a
// stop string has appeared, stopped() is true and the text before it has been emitted.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  std::string feed(const std::string& piece);
  std::string flush();  // the held-back tail at the end of generation
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

// Splits a byte stream into complete UTF-8 characters: feed() returns the longest prefix that
// ends on a character boundary and keeps an incomplete trailing sequence for the next call.
class Utf8Holdback {
 public:
  std::string feed(const std::string& bytes);
  std::string flush();  // leftover bytes (invalid/incomplete) replaced by U+FFFD

 private:
  std::string pending_;
};

}  // namespace llmkit::runtime
