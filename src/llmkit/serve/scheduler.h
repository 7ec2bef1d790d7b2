// The continuous-batching scheduler: one thread owns the model and, at every step, admits waiting
// requests (up to n_slots running, each given pages of one shared paged KV pool by the block
// manager, kv_blocks.h, which also shares prompt-prefix pages across requests), runs one forward_batch over
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
#include <unordered_map>
#include <vector>

#include "llmkit/models/transformer.h"
#include "llmkit/runtime/sampler.h"
#include "llmkit/serve/kv_blocks.h"
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
  int n_slots = 4;             // sequences running at once
  int64_t n_ctx = 2048;        // positions per sequence; the KV pool holds n_slots x n_ctx positions
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
  int64_t kv_positions_used = 0;                   // positions filled by running sequences
  // KV pool pages (16 positions each): held by running sequences (a shared prefix page counts
  // once), cached (a finished request's published prefix pages, reusable, evicted last-released
  // first) and free.
  int64_t kv_blocks_used = 0, kv_blocks_cached = 0, kv_blocks_free = 0, kv_blocks_total = 0;
  // Prefix caching: prompt tokens whose K/V were found in published pages (of running or finished
  // requests) instead of computed.
  int64_t prefix_cache_hit_tokens = 0;
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
  std::shared_ptr<models::KVPages> pages_;  // the pool every sequence's pages come from
  BlockManager blocks_;
  // Prefix hashes of the first uncomputed prompt page of each sequence still in prefill: a request
  // whose next page is one of them waits (admitted a step later it finds the page published)
  // instead of computing the same prefix twice, e.g. the n choices of one request.
  std::unordered_map<uint64_t, int> pending_;
  // Admits waiting jobs while sequences and pages allow; mu_ held.
  void admit(std::vector<std::unique_ptr<Seq>>& active);
  void publish_pages(Seq& s);
  void update_kv_stats(const std::vector<std::unique_ptr<Seq>>& active);  // mu_ held

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> waiting_;
  bool stop_ = false;
  SchedulerStats stats_;
  std::thread thread_;
};

}  // namespace llmkit::serve
