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

// One running sequence: its KV pages, the tokens so far, and its own sampler and text pipeline
// (detokenizer -> whole UTF-8 characters -> stop strings), as runtime::Generator chains them.
struct Scheduler::Seq {
  std::shared_ptr<Job> job;
  bool retired = false;
  models::KVCache cache;         // block table into the shared pool; n_past = n_fed
  int64_t reserved = 0;          // pages reserved in the block manager, not yet taken
  size_t n_published = 0;        // leading pages published (or found published) under their prefix hash
  uint64_t hash = BlockManager::kRootHash;  // prefix hash of those pages
  uint64_t pending = 0;          // hash in pending_ (first uncomputed prompt page), 0 = none
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

namespace {
int64_t pages_for(int64_t positions) { return (positions + BlockManager::kPage - 1) / BlockManager::kPage; }
}  // namespace

Scheduler::Scheduler(const models::Transformer& model, const Tokenizer& tokenizer, SchedulerOptions opts)
    : model_(model),
      tokenizer_(tokenizer),
      opts_(std::move(opts)),
      blocks_(std::max<int64_t>(1, opts_.n_slots) * pages_for(std::max<int64_t>(1, opts_.n_ctx))) {
  LLMKIT_CHECK(opts_.n_slots >= 1 && opts_.n_slots <= 256, kInvalidArgument, "--parallel ", opts_.n_slots,
               " must be in [1, 256]");
  LLMKIT_CHECK(opts_.batch_size >= opts_.n_slots, kInvalidArgument, "--batch-size ", opts_.batch_size,
               " must be at least --parallel (", opts_.n_slots, ") so every running sequence decodes each step");
  LLMKIT_CHECK(opts_.n_ctx >= 2, kInvalidArgument, "--ctx-size ", opts_.n_ctx, " is too small");
  static_assert(BlockManager::kPage == models::kKVPage, "the block manager and the KV pool must agree on the page size");
  pages_ = model_.new_kv_pages(blocks_.total());
  stats_.slots = opts_.n_slots;
  stats_.kv_blocks_total = blocks_.total();
  stats_.kv_blocks_free = blocks_.free();
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
  // Its pages go back at once: published ones stay cached for a later prompt with the same prefix
  // (pages are published only after a successful pass, so a failed pass leaves nothing untrusted).
  std::lock_guard<std::mutex> lk(mu_);
  for (int32_t page : s.cache.blocks) blocks_.release(page);
  s.cache.blocks.clear();
  s.cache.n_past = 0;
  blocks_.unreserve(s.reserved);
  s.reserved = 0;
  if (s.pending && --pending_[s.pending] == 0) pending_.erase(s.pending);
  s.pending = 0;
  s.retired = true;
}

// Publishes the pages that the last pass filled, under the hash of the prefix they end.
void Scheduler::publish_pages(Seq& s) {
  std::lock_guard<std::mutex> lk(mu_);
  while ((s.n_published + 1) * BlockManager::kPage <= s.n_fed) {
    const int32_t* toks = s.context.data() + s.n_published * BlockManager::kPage;
    const uint64_t h = BlockManager::chain(s.hash, toks);
    blocks_.publish(s.cache.blocks[s.n_published], s.hash, h, toks);
    s.hash = h;
    ++s.n_published;
    if (s.pending == h) {
      if (--pending_[h] == 0) pending_.erase(h);
      s.pending = 0;
    }
  }
  // Still in the prompt: its next whole page is pending now (a prompt longer than one step's batch).
  if (!s.pending && (s.n_published + 1) * BlockManager::kPage <= s.n_prompt) {
    s.pending = BlockManager::chain(s.hash, s.context.data() + s.n_published * BlockManager::kPage);
    ++pending_[s.pending];
  }
}

// Admission in arrival order. A job takes the published pages matching its prompt's leading whole
// pages (at most n_prompt - 1 tokens, so one is fed and yields logits) and reserves the rest of
// what it can need; when the pool cannot hold that, it and everyone behind it wait (no
// overtaking, so a long request is not starved). A job whose next prompt page is being computed
// by a running prefill waits a step and the ones behind it may go first.
void Scheduler::admit(std::vector<std::unique_ptr<Seq>>& active) {
  for (auto it = waiting_.begin(); it != waiting_.end() && static_cast<int64_t>(active.size()) < opts_.n_slots;) {
    std::shared_ptr<Job> job = *it;
    if (job->cancelled()) {
      it = waiting_.erase(it);
      job->finish("cancelled", 0, 0);
      count_finished_locked("cancelled");
      continue;
    }
    const std::vector<int32_t>& prompt = job->req.prompt;
    const int64_t n_prompt = static_cast<int64_t>(prompt.size());
    const int64_t lookup_pages = (n_prompt - 1) / BlockManager::kPage;
    std::vector<int32_t> shared;
    uint64_t h = BlockManager::kRootHash;
    for (int64_t b = 0; b < lookup_pages; ++b) {
      const int32_t page = blocks_.lookup(h, prompt.data() + b * BlockManager::kPage);
      if (page < 0) break;
      shared.push_back(page);
      h = BlockManager::chain(h, prompt.data() + b * BlockManager::kPage);
    }
    const int64_t n_shared = static_cast<int64_t>(shared.size());
    uint64_t next_hash = 0;  // the first page this job would compute, if it is a whole prompt page
    if ((n_shared + 1) * BlockManager::kPage <= n_prompt)
      next_hash = BlockManager::chain(h, prompt.data() + n_shared * BlockManager::kPage);
    if (next_hash && pending_.count(next_hash)) {
      ++it;  // being computed by a running prefill: wait for it
      continue;
    }
    const int64_t positions = std::min(opts_.n_ctx, n_prompt + job->req.max_tokens);
    const int64_t need = pages_for(positions) - n_shared;
    // Taking the shared pages first can move cached ones out of the available count.
    for (int32_t page : shared) blocks_.acquire(page);
    if (!blocks_.reserve(need)) {
      for (int32_t page : shared) blocks_.release(page);
      break;  // the pool is full: everyone waits for pages to come back
    }
    it = waiting_.erase(it);
    try {
      auto s = std::make_unique<Seq>(job, tokenizer_);
      s->cache.pages = pages_;
      s->cache.n_ctx = opts_.n_ctx;
      s->cache.blocks = std::move(shared);
      s->cache.n_past = n_shared * BlockManager::kPage;
      s->reserved = need;
      s->n_fed = static_cast<size_t>(s->cache.n_past);
      s->n_published = static_cast<size_t>(n_shared);
      s->hash = h;
      if (next_hash) {
        s->pending = next_hash;
        ++pending_[next_hash];
      }
      stats_.prompt_tokens += n_prompt;
      stats_.prefix_cache_hit_tokens += s->cache.n_past;
      active.push_back(std::move(s));
    } catch (const std::exception& e) {
      for (int32_t page : shared) blocks_.release(page);
      blocks_.unreserve(need);
      job->fail(e.what());
      count_finished_locked("error");
    }
  }
}

void Scheduler::update_kv_stats(const std::vector<std::unique_ptr<Seq>>& active) {
  int64_t kv_used = 0;
  for (const auto& s : active) kv_used += s->cache.n_past;
  stats_.kv_positions_used = kv_used;
  stats_.kv_blocks_used = blocks_.used();
  stats_.kv_blocks_cached = blocks_.cached();
  stats_.kv_blocks_free = blocks_.free();
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
    models::KVCache warm = model_.new_cache(std::min<int64_t>(16, opts_.n_ctx));
    std::vector<int32_t> one = {0};
    for (int64_t i = 0; i < warm.n_ctx; ++i) model_.forward(one, warm, 1);
  } catch (const std::exception&) {
    // A model that fails here fails the first request with its error instead.
  }
  while (true) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !waiting_.empty() || !active.empty(); });
      if (stop_) break;
      admit(active);
      stats_.waiting = static_cast<int64_t>(waiting_.size());
      stats_.running = static_cast<int64_t>(active.size());
      update_kv_stats(active);
    }
    if (active.empty()) {
      // Everyone waiting is blocked (pool full or a pending prefix of a finished sequence cannot
      // be: pending_ empties with active); wait for news rather than spin.
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(10));
      continue;
    }
    step(active);
    std::lock_guard<std::mutex> lk(mu_);
    stats_.running = static_cast<int64_t>(active.size());
    update_kv_stats(active);
    ++stats_.steps;
  }
  for (auto& s : active) retire(*s, "cancelled");
  active.clear();
  std::lock_guard<std::mutex> lk(mu_);
  update_kv_stats(active);
}

void Scheduler::step(std::vector<std::unique_ptr<Seq>>& active) {
  // Retire cancelled sequences before spending compute on them.
  for (auto& s : active)
    if (s->job->cancelled()) retire(*s, "cancelled");
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->retired; }), active.end());
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

  // Pages for this step's positions, from each sequence's reservation.
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (Seq* s : batch) {
      while (static_cast<int64_t>(s->cache.blocks.size()) < pages_for(s->cache.n_past + static_cast<int64_t>(s->chunk.size()))) {
        LLMKIT_ASSERT(s->reserved > 0);
        s->cache.blocks.push_back(blocks_.take());
        --s->reserved;
      }
    }
  }
  std::vector<models::Transformer::SeqBatch> seqs;
  seqs.reserve(batch.size());
  for (Seq* s : batch) seqs.push_back({&s->chunk, &s->cache, 1});
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
    active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->retired; }), active.end());
    return;
  }

  int64_t batch_tokens = 0;
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < batch.size(); ++i) {
    Seq& s = *batch[i];
    s.n_fed += s.chunk.size();
    batch_tokens += static_cast<int64_t>(s.chunk.size());
    publish_pages(s);
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
  active.erase(std::remove_if(active.begin(), active.end(), [](const auto& s) { return s->retired; }), active.end());
  std::lock_guard<std::mutex> lk(mu_);
  stats_.batch_tokens = batch_tokens;
}

}  // namespace llmkit::serve
