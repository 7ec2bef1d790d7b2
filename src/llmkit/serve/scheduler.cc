// The continuous-batching scheduler; see scheduler.h.
#include "llmkit/serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "llmkit/base/check.h"

namespace llmkit::serve {

void Job::push(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_ += text;
  }
  cv_.notify_all();
}

void Job::push_logprob(TokenLogprob lp) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    pending_logprobs_.push_back(std::move(lp));
  }
  cv_.notify_all();
}

bool Job::ready() {
  std::lock_guard<std::mutex> lk(mu_);
  return done_ || !pending_.empty() || !pending_logprobs_.empty();
}

bool Job::wait_ready(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_for(lk, timeout, [&] { return done_ || !pending_.empty() || !pending_logprobs_.empty(); });
}

void Job::finish(const std::string& reason, int64_t n_prompt_tokens, int64_t n_completion_tokens) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (done_) return;
    finish_reason = reason;
    n_prompt = n_prompt_tokens;
    n_completion = n_completion_tokens;
    done_ = true;
  }
  cv_.notify_all();
}

void Job::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (done_) return;
    error = message.empty() ? "internal error" : message;
    finish_reason = "error";
    done_ = true;
  }
  cv_.notify_all();
}

bool Job::wait(std::string* text, std::chrono::milliseconds timeout, std::vector<TokenLogprob>* logprobs) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return done_ || !pending_.empty() || !pending_logprobs_.empty(); });
  text->append(pending_);
  pending_.clear();
  if (logprobs) {
    for (auto& lp : pending_logprobs_) logprobs->push_back(std::move(lp));
    pending_logprobs_.clear();
  }
  return done_;
}

void token_logprob(const float* logits, int64_t n_vocab, int32_t id, int n_top, TokenLogprob* out) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const float log_z = mx + static_cast<float>(std::log(sum));
  out->id = id;
  out->logprob = logits[id] - log_z;
  out->top.clear();
  if (n_top <= 0) return;
  // The n_top largest logits, ties by lower id: one pass keeping a small sorted list.
  const auto k = static_cast<size_t>(std::min<int64_t>(n_top, n_vocab));
  std::vector<std::pair<int32_t, float>>& top = out->top;
  auto better = [](const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  for (int64_t i = 0; i < n_vocab; ++i) {
    const std::pair<int32_t, float> c{static_cast<int32_t>(i), logits[i]};
    if (top.size() == k && !better(c, top.back())) continue;
    top.insert(std::upper_bound(top.begin(), top.end(), c, better), c);
    if (top.size() > k) top.pop_back();
  }
  for (auto& t : top) t.second -= log_z;
}

void LatencyHistogram::observe(double seconds) {
  size_t i = 0;
  while (i < kN && seconds > kBounds[i]) ++i;
  ++counts[i];
  ++count;
  sum += seconds;
}

// One running sequence: its slot, the tokens so far, and its own sampler and text pipeline
// (detokenizer -> whole UTF-8 characters -> stop strings), as runtime::Generator chains them.
struct Scheduler::Seq {
  std::shared_ptr<Job> job;
  int slot = -1;
  models::KVCache* cache = nullptr;
  std::vector<int32_t> context;  // prompt + generated
  size_t n_fed = 0;              // tokens of context whose K/V are in the cache
  size_t n_prompt = 0;
  int64_t produced = 0;
  runtime::Sampler sampler;
  runtime::StopMatcher stops;
  runtime::Utf8Holdback utf8;
  Tokenizer::StreamDecoder dec;
  std::vector<int32_t> chunk;    // this step's input tokens
  std::chrono::steady_clock::time_point last_token;

  Seq(std::shared_ptr<Job> j, const Tokenizer& tok)
      : job(std::move(j)), context(job->req.prompt), n_prompt(context.size()), sampler(job->req.sampling),
        stops(job->req.stop), dec(tok.stream_decoder(true)) {
    if (!job->req.logit_bias.empty()) {
      sampler.add_processor([bias = job->req.logit_bias](float* logits, int64_t n_vocab, const std::vector<int32_t>&) {
        for (const auto& [id, b] : bias)
          if (id >= 0 && id < n_vocab) logits[id] += b;
      });
    }
  }
};

Scheduler::Scheduler(const models::Transformer& model, const Tokenizer& tokenizer, SchedulerOptions opts)
    : model_(model), tokenizer_(tokenizer), opts_(std::move(opts)) {
  LLMKIT_CHECK(opts_.n_slots >= 1 && opts_.n_slots <= 256, kInvalidArgument, "--parallel ", opts_.n_slots,
               " must be in [1, 256]");
  LLMKIT_CHECK(opts_.batch_size >= opts_.n_slots, kInvalidArgument, "--batch-size ", opts_.batch_size,
               " must be at least --parallel (", opts_.n_slots, ") so every running sequence decodes each step");
  LLMKIT_CHECK(opts_.n_ctx >= 2, kInvalidArgument, "--ctx-size ", opts_.n_ctx, " is too small");
  for (int i = 0; i < opts_.n_slots; ++i) {
    caches_.push_back(model_.new_cache(opts_.n_ctx));
    free_slots_.push_back(opts_.n_slots - 1 - i);
  }
  slot_tokens_.resize(static_cast<size_t>(opts_.n_slots));
  slot_used_.assign(static_cast<size_t>(opts_.n_slots), 0);
  stats_.slots = opts_.n_slots;
  stats_.kv_positions_total = opts_.n_slots * opts_.n_ctx;
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& j : waiting_) {
    j->finish("cancelled", 0, 0);
    count_finished_locked("cancelled");
  }
  waiting_.clear();
}

bool Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    // Room: the free slots (admitted at the next step) plus max_queue waiting places.
    const auto free_slots = static_cast<size_t>(std::max<int64_t>(0, opts_.n_slots - stats_.running));
    if (stop_ || waiting_.size() >= opts_.max_queue + free_slots) {
      ++stats_.rejected;
      return false;
    }
    waiting_.push_back(std::move(job));
    stats_.waiting = static_cast<int64_t>(waiting_.size());
  }
  cv_.notify_all();
  return true;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void Scheduler::count_finished(const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  count_finished_locked(reason);
}

void Scheduler::count_finished_locked(const std::string& reason) {
  if (reason == "stop") ++stats_.finished_stop;
  else if (reason == "length") ++stats_.finished_length;
  else if (reason == "cancelled") ++stats_.finished_cancelled;
  else ++stats_.finished_error;
}

void Scheduler::retire(Seq& s, const std::string& reason) {
  if (reason != "cancelled" && reason != "error" && !s.stops.stopped()) {
    // The held-back tail: what the detokenizer, the UTF-8 hold-back and the stop matcher kept.
    s.job->push(s.stops.feed(s.utf8.feed(s.dec.flush())));
    if (!s.stops.stopped()) s.job->push(s.stops.feed(s.utf8.flush()) + s.stops.flush());
  }
  count_finished(reason);  // before the client can see the end (and scrape /metrics)
  if (reason != "error") s.job->finish(reason, static_cast<int64_t>(s.n_prompt), s.produced);
  // The slot keeps the K/V of the tokens fed so far for a later request with the same prefix; after
  // a failed pass its cache is not trusted.
  auto& kept = slot_tokens_[static_cast<size_t>(s.slot)];
  if (reason == "error") kept.clear();
  else kept.assign(s.context.begin(), s.context.begin() + static_cast<long>(s.n_fed));
  s.cache->n_past = 0;
  free_slots_.push_back(s.slot);
  s.slot = -1;
}

// The free slot for a prompt: the one whose cached tokens share the longest prefix with it (at
// most n_prompt - 1, so at least one token is fed and yields logits); with no shared prefix, the
// least recently used one. Every model input that changes K/V is in the key: the cache holds one
// model, and a token's K/V depends only on the tokens before it. Called with mu_ held.
int Scheduler::take_slot(const std::vector<int32_t>& prompt, size_t* reused) {
  size_t best_i = 0, best_lcp = 0;
  for (size_t i = 0; i < free_slots_.size(); ++i) {
    const auto& t = slot_tokens_[static_cast<size_t>(free_slots_[i])];
    const size_t lim = std::min(t.size(), prompt.size() - 1);
    size_t l = 0;
    while (l < lim && t[l] == prompt[l]) ++l;
    const bool older = slot_used_[static_cast<size_t>(free_slots_[i])] < slot_used_[static_cast<size_t>(free_slots_[best_i])];
    if (l > best_lcp || (l == best_lcp && older)) {
      best_i = i;
      best_lcp = l;
    }
  }
  const int slot = free_slots_[best_i];
  free_slots_.erase(free_slots_.begin() + static_cast<long>(best_i));
  slot_used_[static_cast<size_t>(slot)] = ++admissions_;
  slot_tokens_[static_cast<size_t>(slot)].resize(best_lcp);
  *reused = best_lcp;
  return slot;
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Seq>> active;
  // Warm-up on this thread before the first client (as llama.cpp's server does): 16 one-token passes,
  // ~0.1 s. The first request of a fresh server was seen decoding several times slower than the next
  // ones (SmolLM2 Q4_1, 64 tokens, 2 threads, non-streamed: 2.99 s, then 0.44 s; 0.48 s with this
  // warm-up), but on this shared 2-core machine a slow first streamed request still showed up at
  // times, so the cause (thread pool / arena first use, or CPU contention) is not pinned down.
  try {
    std::unique_lock<std::mutex> compute;
    if (opts_.compute_mu) compute = std::unique_lock<std::mutex>(*opts_.compute_mu);
    std::vector<int32_t> one = {0};
    for (int i = 0; i < 16 && i + 1 < opts_.n_ctx; ++i) model_.forward(one, caches_[0], 1);
  } catch (const std::exception&) {
    // A model that fails here fails the first request with its error instead.
  }
  caches_[0].n_past = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !waiting_.empty() || !active.empty(); });
      if (stop_) break;
      // Admit: a cancelled waiting job never takes a slot.
      while (!waiting_.empty() && !free_slots_.empty()) {
        std::shared_ptr<Job> job = std::move(waiting_.front());
        waiting_.pop_front();
        if (job->cancelled()) {
          job->finish("cancelled", 0, 0);
          count_finished_locked("cancelled");
          continue;
        }
        try {
          auto s = std::make_unique<Seq>(job, tokenizer_);
          size_t reused = 0;
          s->slot = take_slot(s->context, &reused);
          s->cache = &caches_[static_cast<size_t>(s->slot)];
          s->cache->n_past = static_cast<int64_t>(reused);
          s->n_fed = reused;
          stats_.prompt_tokens += static_cast<int64_t>(s->n_prompt);
          stats_.prefix_cache_hit_tokens += static_cast<int64_t>(reused);
          active.push_back(std::move(s));
        } catch (const std::exception& e) {
          job->fail(e.what());
          count_finished_locked("error");
        }
      }
      stats_.waiting = static_cast<int64_t>(waiting_.size());
      stats_.running = static_cast<int64_t>(active.size());
    }
    step(active);
    int64_t kv_used = 0, kv_cached = 0;
    for (const auto& s : active) kv_used += s->cache->n_past;
    std::lock_guard<std::mutex> lk(mu_);
    for (int slot : free_slots_) kv_cached += static_cast<int64_t>(slot_tokens_[static_cast<size_t>(slot)].size());
    stats_.running = static_cast<int64_t>(active.size());
    stats_.kv_positions_used = kv_used;
    stats_.kv_positions_cached = kv_cached;
    ++stats_.steps;
  }
  for (auto& s : active) retire(*s, "cancelled");
  active.clear();
}

void Scheduler::step(std::vector<std::unique_ptr<Seq>>& active) {
  // Retire cancelled sequences before spending compute on them.
  for (auto& s : active)
    if (s->job->cancelled()) retire(*s, "cancelled");
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->slot < 0; }), active.end());
  if (active.empty()) return;

  // Plan: decodes (one pending token) first, then prompt chunks in admission order, within budget.
  int64_t budget = opts_.batch_size;
  std::vector<Seq*> batch;
  for (auto& s : active) {
    s->chunk.clear();
    if (s->context.size() - s->n_fed == 1 && budget > 0) {
      s->chunk.push_back(s->context.back());
      --budget;
      batch.push_back(s.get());
    }
  }
  for (auto& s : active) {
    const size_t left = s->context.size() - s->n_fed;
    if (left <= 1 || budget <= 0) continue;
    const size_t n = std::min<size_t>(left, static_cast<size_t>(budget));
    s->chunk.assign(s->context.begin() + static_cast<long>(s->n_fed), s->context.begin() + static_cast<long>(s->n_fed + n));
    budget -= static_cast<int64_t>(n);
    batch.push_back(s.get());
  }
  if (batch.empty()) return;

  std::vector<models::Transformer::SeqBatch> seqs;
  seqs.reserve(batch.size());
  for (Seq* s : batch) seqs.push_back({&s->chunk, s->cache, 1});
  std::vector<Tensor> logits;
  try {
    std::unique_lock<std::mutex> compute;
    if (opts_.compute_mu) compute = std::unique_lock<std::mutex>(*opts_.compute_mu);
    logits = model_.forward_batch(seqs);
  } catch (const std::exception& e) {
    // A failed pass fails the requests in it; the server and the other requests carry on.
    for (Seq* s : batch) {
      s->job->fail(std::string("the forward pass failed: ") + e.what());
      retire(*s, "error");
    }
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->slot < 0; }), active.end());
    return;
  }

  int64_t batch_tokens = 0;
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < batch.size(); ++i) {
    Seq& s = *batch[i];
    s.n_fed += s.chunk.size();
    batch_tokens += static_cast<int64_t>(s.chunk.size());
    if (s.n_fed < s.context.size()) continue;  // more prompt to feed next step
    try {
      const int64_t n_vocab = logits[i].dim(-1);
      TokenLogprob lp;
      const int n_top = s.job->req.top_logprobs;
      std::vector<float> raw;  // the sampler changes the logits in place; logprobs use them unchanged
      if (n_top >= 0) raw.assign(logits[i].data<float>(), logits[i].data<float>() + n_vocab);
      const int32_t tok = s.sampler.sample(logits[i].data<float>(), n_vocab, s.context);
      if (n_top >= 0) token_logprob(raw.data(), n_vocab, tok, n_top, &lp);
      const bool first = s.context.size() == s.n_prompt;
      const bool end = std::find(opts_.stop_tokens.begin(), opts_.stop_tokens.end(), tok) != opts_.stop_tokens.end();
      {  // counted before the token or the end reaches the client
        std::lock_guard<std::mutex> lk(mu_);
        (first ? stats_.ttft : stats_.itl).observe(std::chrono::duration<double>(now - (first ? s.job->created : s.last_token)).count());
        if (!end) ++stats_.tokens_generated;
      }
      s.last_token = now;
      if (end) {
        retire(s, "stop");
        continue;
      }
      ++s.produced;
      s.context.push_back(tok);
      if (n_top >= 0) s.job->push_logprob(std::move(lp));
      s.job->push(s.stops.feed(s.utf8.feed(s.dec.push(tok))));
      if (s.stops.stopped()) {
        retire(s, "stop");
      } else if (s.produced >= s.job->req.max_tokens || static_cast<int64_t>(s.context.size()) >= opts_.n_ctx) {
        retire(s, "length");
      }
    } catch (const std::exception& e) {
      s.job->fail(e.what());
      retire(s, "error");
    }
  }
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->slot < 0; }), active.end());
  std::lock_guard<std::mutex> lk(mu_);
  stats_.batch_tokens = batch_tokens;
}

}  // namespace llmkit::serve
