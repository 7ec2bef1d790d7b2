// The generation loop; see generate.h.
#include "llmkit/runtime/generate.h"

#include <algorithm>

#include "llmkit/base/check.h"
#include "llmkit/base/timer.h"

namespace llmkit::runtime {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kContextFull: return "context_full";
  }
  return "?";
}

Generator::Generator(const models::Transformer& model, int64_t n_ctx) : model_(model), cache_(model.new_cache(n_ctx)) {}

void Generator::reset() {
  cache_.n_past = 0;
  cached_.clear();
}

GenerateResult Generator::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                                   const Detokenizer& detok, const GenerateHooks& hooks) {
  LLMKIT_CHECK(!prompt.empty(), kInvalidArgument, "the prompt is empty; give at least one token");
  LLMKIT_CHECK(opts.max_tokens >= 0, kInvalidArgument, "max_tokens ", opts.max_tokens, " must be >= 0");
  LLMKIT_CHECK(static_cast<int64_t>(prompt.size()) < cache_.n_ctx, kInvalidArgument, "the prompt has ", prompt.size(),
               " tokens but the context holds ", cache_.n_ctx, "; shorten it or raise --ctx-size");
  GenerateResult res;
  res.n_prompt = static_cast<int64_t>(prompt.size());

  // Reuse the longest common prefix of the cached tokens (keep at least one token to recompute,
  // so that there are logits to sample from).
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;
  cache_.n_past = static_cast<int64_t>(common);
  cached_.resize(common);
  res.n_prompt_reused = static_cast<int64_t>(common);

  Sampler sampler(opts.sampling);
  std::vector<int32_t> context(prompt.begin(), prompt.end());
  std::vector<int32_t> step(prompt.begin() + static_cast<long>(common), prompt.end());
  StopMatcher stops(opts.stop);
  Utf8Holdback utf8;
  bool go_on = true;
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    res.text += s;
    if (hooks.on_text && !hooks.on_text(s)) go_on = false;
  };

  Timer timer;
  bool first = true;
  int64_t produced = 0;
  res.finish = FinishReason::kLength;
  while (true) {
    if (hooks.should_stop && hooks.should_stop()) {
      res.finish = FinishReason::kCancelled;
      break;
    }
    if (produced >= opts.max_tokens) break;
    if (cache_.n_past + static_cast<int64_t>(step.size()) > cache_.n_ctx) {
      res.finish = FinishReason::kContextFull;
      break;
    }
    Tensor logits = model_.forward(step, cache_, 1);
    cached_.insert(cached_.end(), step.begin(), step.end());
    if (first) {
      res.prefill_seconds = timer.seconds();
      timer.reset();
      first = false;
    }
    const int64_t n_vocab = logits.dim(-1);
    int32_t tok = sampler.sample(logits.data<float>(), n_vocab, context);
    if (hooks.on_token) hooks.on_token(tok);
    if (std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), tok) != opts.stop_tokens.end()) {
      res.finish = FinishReason::kStop;
      break;
    }
    ++produced;
    res.tokens.push_back(tok);
    context.push_back(tok);
    step.assign(1, tok);
    emit(stops.feed(utf8.feed(detok.push(tok))));
    if (stops.stopped()) {
      res.finish = FinishReason::kStop;
      break;
    }
    if (!go_on) {
      res.finish = FinishReason::kCancelled;
      break;
    }
  }
  if (!stops.stopped()) {
    emit(stops.feed(utf8.feed(detok.flush ? detok.flush() : std::string())));
    if (!stops.stopped()) emit(stops.feed(utf8.flush()) + stops.flush());
  }
  res.decode_seconds = timer.seconds();
  return res;
}

}  // namespace llmkit::runtime
