// The continuous-batching scheduler: one thread owns the model and, at every step, admits waiting
// requests into free slots (each slot a KVCache of n_ctx positions), runs one forward_batch over
// every active sequence — new ones feed their prompt in chunks so that the step stays within
// batch_size tokens and a long prompt never stalls running decodes, running ones feed their last
// token — samples each, streams the finished text out, and retires finished or cancelled
// sequences at once. Sequences join and leave at every step.
//
// A Job is shared between the HTTP thread that waits on it and the scheduler thread that fills
// it: text arrives through push(), the end through finish(); cancel() from the HTTP side (client
// gone) is honoured before the next step runs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "llmkit/models/transformer.h"
#include "llmkit/runtime/sampler.h"
#include "llmkit/tokenizer.h"

namespace llmkit::serve {

struct GenRequest {
  std::vector<int32_t> prompt;        // [n_prompt] token ids, validated: non-empty, < n_vocab
  int64_t max_tokens = 16;            // n_prompt + max_tokens <= n_ctx (validated before submit)
  runtime::SamplingParams sampling;   // validated before submit
  std::vector<std::string> stop;      // stop strings, not part of the output
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logits before sampling (ids < n_vocab)
  int top_logprobs = -1;              // -1: no logprobs; else each token's logprob and this many alternatives (<= 20)
};

// A sampled token's log-probability under the model (log_softmax of the raw logits, before
// temperature, penalties or truncation, as OpenAI and vLLM report them) and the top alternatives,
// most likely first.
struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
// Fills `out` for the token `id` from logits [n_vocab] (not modified).
void token_logprob(const float* logits, int64_t n_vocab, int32_t id, int n_top, TokenLogprob* out);

class Job {
 public:
  explicit Job(GenRequest r) : req(std::move(r)) {}
  const GenRequest req;
  const std::chrono::steady_clock::time_point created = std::chrono::steady_clock::now();

  // Scheduler side.
  void push(const std::string& text);
  void push_logprob(TokenLogprob lp);
  void finish(const std::string& reason, int64_t n_prompt, int64_t n_completion);
  void fail(const std::string& message);

  // HTTP side: waits up to `timeout` for news, appends new text to *text; returns true once the
  // job is over (then finish_reason / error / usage are final).
  // Logprobs of the tokens sampled since the last call go to *logprobs when it is given.
  bool wait(std::string* text, std::chrono::milliseconds timeout, std::vector<TokenLogprob>* logprobs = nullptr);
  // Without taking it: whether news is there (text, logprobs or the end); wait_ready waits up to
  // `timeout` for it.
  bool ready();
  bool wait_ready(std::chrono::milliseconds timeout);
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  std::string finish_reason, error;  // error non-empty: the request failed inside the engine
  int64_t n_prompt = 0, n_completion = 0;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  std::vector<TokenLogprob> pending_logprobs_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int n_slots = 4;
  int64_t n_ctx = 2048;        // positions per slot
  int64_t batch_size = 512;    // most tokens per forward pass; >= n_slots
  size_t max_queue = 64;
  std::vector<int32_t> stop_tokens;  // EOS / end-of-turn ids
  // Held around every forward pass when set: others that use the model (embeddings) take it too,
  // since a Transformer runs one pass at a time (its arena) and the thread pool serves one caller.
  std::mutex* compute_mu = nullptr;
};

// A latency histogram in Prometheus' form: counts per upper bound (seconds), cumulated on output.
struct LatencyHistogram {
  static constexpr double kBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  static constexpr size_t kN = sizeof(kBounds) / sizeof(kBounds[0]);
  uint64_t counts[kN + 1] = {};  // last: above every bound (+Inf)
  uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
};

struct SchedulerStats {
  int64_t waiting = 0, running = 0, slots = 0;
  int64_t steps = 0, tokens_generated = 0, prompt_tokens = 0;
  // Requests that ended, by finish reason, and those refused because the queue was full.
  int64_t finished_stop = 0, finished_length = 0, finished_cancelled = 0, finished_error = 0, rejected = 0;
  int64_t batch_tokens = 0;                        // token rows of the last forward pass
  int64_t kv_positions_used = 0, kv_positions_total = 0;  // over every slot's KV cache
  // Prefix caching: prompt tokens whose K/V were already in the slot a request was given (a
  // finished request leaves its tokens in its slot; the next request takes the free slot sharing
  // the longest prefix with its prompt), and positions held that way by idle slots.
  int64_t prefix_cache_hit_tokens = 0, kv_positions_cached = 0;
  LatencyHistogram ttft;  // request arrival -> its first sampled token
  LatencyHistogram itl;   // between consecutive tokens of one request
};

class Scheduler {
 public:
  Scheduler(const models::Transformer& model, const Tokenizer& tokenizer, SchedulerOptions opts);
  ~Scheduler();  // stops the thread; unfinished jobs end as "cancelled"
  // Queues the job; false when the queue is full (answer 429).
  bool submit(std::shared_ptr<Job> job);
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opts_; }
  void shutdown();

 private:
  struct Seq;
  void loop();
  void step(std::vector<std::unique_ptr<Seq>>& active);
  void retire(Seq& s, const std::string& reason);
  void count_finished(const std::string& reason);
  void count_finished_locked(const std::string& reason);  // mu_ held

  const models::Transformer& model_;
  const Tokenizer& tokenizer_;
  SchedulerOptions opts_;
  std::vector<models::KVCache> caches_;  // [n_slots]
  std::vector<int> free_slots_;
  // Per slot: the tokens whose K/V its cache holds, in order (positions 0 .. size-1), and when it
  // was last used (least recently used slots are overwritten first).
  std::vector<std::vector<int32_t>> slot_tokens_;
  std::vector<uint64_t> slot_used_;
  uint64_t admissions_ = 0;
  int take_slot(const std::vector<int32_t>& prompt, size_t* reused);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  bool stop_ = false;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace llmkit::serve
