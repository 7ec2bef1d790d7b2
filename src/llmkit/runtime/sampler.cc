// Sampling chain, stop-string matching and UTF-8 hold-back; see sampler.h.
#include "llmkit/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "llmkit/base/check.h"

namespace llmkit::runtime {
namespace {

// std::max_element's pick (the first largest logit), vectorized: 16 running maxima in four 4-lane
// vectors (GCC / Clang vector extensions: `a > b ? a : b` is one maxps), then the first position
// holding the largest. The scalar compare-and-branch loop over a 49k vocabulary ran once per token
// per stream on the serving scheduler's thread. Any NaN: the std::max_element answer itself.
int32_t first_argmax(const float* x, int64_t n) {
  typedef float F4 __attribute__((vector_size(16)));
  typedef int32_t I4 __attribute__((vector_size(16)));
  constexpr int64_t kStep = 16;
  if (n < 2 * kStep) return static_cast<int32_t>(std::max_element(x, x + n) - x);
  F4 m[4];
  I4 nan[4];
  for (int j = 0; j < 4; ++j) {
    std::memcpy(&m[j], x + 4 * j, sizeof(F4));
    nan[j] = m[j] != m[j];
  }
  int64_t i = kStep;
  for (; i + kStep <= n; i += kStep)
    for (int j = 0; j < 4; ++j) {
      F4 v;
      std::memcpy(&v, x + i + 4 * j, sizeof(F4));
      m[j] = m[j] > v ? m[j] : v;
      nan[j] |= v != v;
    }
  float best = m[0][0];
  bool any_nan = false;
  for (int j = 0; j < 4; ++j)
    for (int l = 0; l < 4; ++l) {
      best = best > m[j][l] ? best : m[j][l];
      any_nan = any_nan || nan[j][l] != 0;
    }
  for (; i < n; ++i) {
    best = best > x[i] ? best : x[i];
    any_nan = any_nan || x[i] != x[i];
  }
  if (any_nan) return static_cast<int32_t>(std::max_element(x, x + n) - x);
  int64_t k = 0;
  while (x[k] != best) ++k;
  return static_cast<int32_t>(k);
}

}  // namespace

void SamplingParams::validate() const {
  LLMKIT_CHECK(std::isfinite(temperature) && temperature >= 0 && temperature <= 100, kInvalidArgument,
               "temperature ", temperature, " is out of range; use 0 (greedy) to 100");
  LLMKIT_CHECK(top_k >= 0, kInvalidArgument, "top_k ", top_k, " must be >= 0 (0 = off)");
  LLMKIT_CHECK(std::isfinite(top_p) && top_p > 0 && top_p <= 1, kInvalidArgument, "top_p ", top_p,
               " must be in (0, 1]");
  LLMKIT_CHECK(std::isfinite(min_p) && min_p >= 0 && min_p <= 1, kInvalidArgument, "min_p ", min_p,
               " must be in [0, 1]");
  LLMKIT_CHECK(std::isfinite(repeat_penalty) && repeat_penalty > 0 && repeat_penalty <= 10, kInvalidArgument,
               "repeat_penalty ", repeat_penalty, " must be in (0, 10]");
  LLMKIT_CHECK(repeat_last_n >= -1, kInvalidArgument, "repeat_last_n ", repeat_last_n, " must be >= -1");
  LLMKIT_CHECK(std::isfinite(presence_penalty) && std::fabs(presence_penalty) <= 2, kInvalidArgument,
               "presence_penalty ", presence_penalty, " must be in [-2, 2]");
  LLMKIT_CHECK(std::isfinite(frequency_penalty) && std::fabs(frequency_penalty) <= 2, kInvalidArgument,
               "frequency_penalty ", frequency_penalty, " must be in [-2, 2]");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) { params_.validate(); }

int32_t Sampler::sample(float* logits, int64_t n_vocab, const std::vector<int32_t>& tokens) {
  for (auto& p : processors_) p(logits, n_vocab, tokens);

  // Penalties over the recent window.
  const bool penalize = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  if (penalize && !tokens.empty()) {
    size_t n = tokens.size();
    size_t start = (params_.repeat_last_n < 0 || static_cast<size_t>(params_.repeat_last_n) >= n)
                       ? 0 : n - static_cast<size_t>(params_.repeat_last_n);
    counts_.assign(static_cast<size_t>(n_vocab), 0);
    for (size_t i = start; i < n; ++i)
      if (tokens[i] >= 0 && tokens[i] < n_vocab) counts_[static_cast<size_t>(tokens[i])]++;
    for (size_t i = start; i < n; ++i) {
      int32_t t = tokens[i];
      if (t < 0 || t >= n_vocab || counts_[static_cast<size_t>(t)] == 0) continue;
      float& l = logits[t];
      if (params_.repeat_penalty != 1.0f) l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
      l -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(counts_[static_cast<size_t>(t)]);
      counts_[static_cast<size_t>(t)] = 0;  // apply once per distinct token
    }
  }

  if (params_.temperature == 0.0f) {
    return first_argmax(logits, n_vocab);
  }

  cand_.resize(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) cand_[static_cast<size_t>(i)] = {logits[i] / params_.temperature, static_cast<int32_t>(i)};
  auto desc = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t k = cand_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < k) {
    k = static_cast<size_t>(params_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + static_cast<long>(k), cand_.end(), desc);
  } else {
    std::sort(cand_.begin(), cand_.end(), desc);
  }
  cand_.resize(k);
  // Softmax over the survivors.
  const float mx = cand_[0].first;
  double sum = 0;
  for (auto& c : cand_) {
    c.first = std::exp(c.first - mx);
    sum += c.first;
  }
  for (auto& c : cand_) c.first = static_cast<float>(c.first / sum);
  // top-p: smallest prefix with mass >= top_p.
  if (params_.top_p < 1.0f) {
    double acc = 0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      acc += cand_[i].first;
      if (acc >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  // min-p: relative to the most likely token.
  if (params_.min_p > 0.0f) {
    const float thresh = params_.min_p * cand_[0].first;
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].first >= thresh) ++keep;
    cand_.resize(keep);
  }
  double total = 0;
  for (auto& c : cand_) total += c.first;
  std::uniform_real_distribution<double> uni(0.0, total);
  double r = uni(rng_), acc = 0;
  for (auto& c : cand_) {
    acc += c.first;
    if (r < acc) return c.second;
  }
  return cand_.back().second;
}

std::string StopMatcher::feed(const std::string& piece) {
  if (stopped_) return {};
  pending_ += piece;
  for (const auto& s : stops_) {
    if (s.empty()) continue;
    size_t at = pending_.find(s);
    if (at != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, at);
      pending_.clear();
      return out;
    }
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  return out;
}

namespace {
// Length of the UTF-8 sequence a lead byte announces (0 for a continuation/invalid byte).
int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 0;
}
}  // namespace

std::string Utf8Holdback::feed(const std::string& bytes) {
  pending_ += bytes;
  // Find the start of a trailing incomplete sequence (look back at most 3 bytes).
  size_t n = pending_.size();
  size_t cut = n;
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(pending_[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    int len = utf8_len(c);
    if (len > 1 && static_cast<size_t>(len) > back) cut = n - back;  // incomplete: hold it back
    break;
  }
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string Utf8Holdback::flush() {
  std::string out;
  if (!pending_.empty()) out = "\xEF\xBF\xBD";  // U+FFFD for an incomplete trailing sequence
  pending_.clear();
  return out;
}

}  // namespace llmkit::runtime
