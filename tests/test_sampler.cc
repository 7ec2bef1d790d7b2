// Sampler chain, stop strings and UTF-8 hold-back.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "llmkit/error.h"
#include "llmkit/runtime/sampler.h"

namespace llmkit::runtime {
namespace {

SamplingParams plain(float temp) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

TEST(Sampler, GreedyIsArgmax) {
  Sampler s(plain(0.0f));
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
}

// Greedy over a vocabulary-sized row is std::max_element's pick: the first of tied maxima, wherever
// it falls (a lane of the running maxima, the tail), and with NaN, -inf or all-equal logits.
TEST(Sampler, GreedyIsTheFirstLargestAtVocabularySize) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (const int64_t n : {int64_t{5}, int64_t{33}, int64_t{49152}, int64_t{49157}}) {
    std::vector<float> base(static_cast<size_t>(n));
    for (auto& v : base) v = nd(rng);
    std::vector<std::vector<float>> rows = {base};
    for (const int64_t at : {int64_t{0}, n / 3, n - 1}) {  // two tied maxima, the first at `at`
      std::vector<float> r = base;
      r[static_cast<size_t>(at)] = 9.0f;
      r[static_cast<size_t>(n - 1 - at / 2)] = 9.0f;
      rows.push_back(r);
      r[static_cast<size_t>(n / 2)] = std::nanf("");
      rows.push_back(r);
    }
    rows.push_back(std::vector<float>(static_cast<size_t>(n), -INFINITY));
    std::vector<float> nan0 = base;
    nan0[0] = std::nanf("");
    rows.push_back(nan0);
    for (size_t i = 0; i < rows.size(); ++i) {
      Sampler s(plain(0.0f));
      std::vector<float> r = rows[i];
      const auto want = static_cast<int32_t>(std::max_element(rows[i].begin(), rows[i].end()) - rows[i].begin());
      EXPECT_EQ(s.sample(r.data(), n, {}), want) << "n=" << n << " row " << i;
    }
  }
}

TEST(Sampler, TopK1IsArgmaxAtAnyTemperature) {
  auto p = plain(5.0f);
  p.top_k = 1;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l = {0.1f, 3.0f, -1.0f, 2.9f};
    EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
  }
}

TEST(Sampler, SeedReproducesAndFrequenciesMatchSoftmax) {
  std::vector<float> base = {1.0f, 2.0f, 0.5f, 1.5f};
  auto p = plain(1.0f);
  p.seed = 42;
  Sampler a(p), b(p);
  std::map<int, int> hist;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    auto l1 = base, l2 = base;
    int t = a.sample(l1.data(), 4, {});
    EXPECT_EQ(t, b.sample(l2.data(), 4, {}));
    hist[t]++;
  }
  double z = 0;
  for (float v : base) z += std::exp(v);
  for (int t = 0; t < 4; ++t) {
    double expect = std::exp(base[t]) / z;
    EXPECT_NEAR(hist[t] / double(n), expect, 0.01) << "token " << t;
  }
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  // probabilities ~ [0.64, 0.24, 0.09, 0.03]
  std::vector<float> base = {2.0f, 1.0f, 0.0f, -1.0f};
  auto p = plain(1.0f);
  p.top_p = 0.7f;  // keeps tokens 0 and 1 (0.64 < 0.7 <= 0.88)
  Sampler s(p);
  for (int i = 0; i < 2000; ++i) {
    auto l = base;
    EXPECT_LT(s.sample(l.data(), 4, {}), 2);
  }
  auto q = plain(1.0f);
  q.min_p = 0.2f;  // keeps p >= 0.128: tokens 0 and 1
  Sampler m(q);
  for (int i = 0; i < 2000; ++i) {
    auto l = base;
    EXPECT_LT(m.sample(l.data(), 4, {}), 2);
  }
}

TEST(Sampler, PenaltiesChangeTheWinner) {
  auto p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {2.0f, 1.5f};
  EXPECT_EQ(s.sample(l.data(), 2, {0}), 1);  // 2.0 / 2 = 1.0 < 1.5
  auto q = plain(0.0f);
  q.frequency_penalty = 0.3f;
  Sampler f(q);
  std::vector<float> l2 = {2.0f, 1.5f};
  EXPECT_EQ(f.sample(l2.data(), 2, {0, 0}), 1);  // 2.0 - 0.6 = 1.4 < 1.5
  std::vector<float> l3 = {2.0f, 1.5f};
  EXPECT_EQ(f.sample(l3.data(), 2, {0}), 0);  // 2.0 - 0.3 = 1.7
}

TEST(Sampler, LogitsProcessorHook) {
  Sampler s(plain(0.0f));
  s.add_processor([](float* l, int64_t, const std::vector<int32_t>&) { l[0] = -1e9f; });
  std::vector<float> l = {5.0f, 1.0f, 2.0f};
  EXPECT_EQ(s.sample(l.data(), 3, {}), 2);
}

TEST(Sampler, BadParamsAreTypedErrors) {
  auto p = plain(-1.0f);
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(1.0f);
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(1.0f);
  p.top_k = -3;
  EXPECT_THROW(Sampler{p}, Error);
  p = plain(NAN);
  EXPECT_THROW(Sampler{p}, Error);
}

TEST(StopMatcher, StopSplitAcrossPieces) {
  StopMatcher m({"<|im_end|>", "\n\n"});
  std::string out;
  for (const char* piece : {"Hello", " wor", "ld<|im", "_e", "nd|>after"}) out += m.feed(piece);
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello world");
  StopMatcher n({"STOP"});
  EXPECT_EQ(n.feed("abcST"), "abc");  // "ST" held back
  EXPECT_EQ(n.feed("x"), "STx");
  EXPECT_EQ(n.feed("S"), "");
  EXPECT_EQ(n.flush(), "S");
  EXPECT_FALSE(n.stopped());
}

TEST(Utf8Holdback, NeverEmitsHalfACharacter) {
  const std::string text = "中文 🎉 ok";  // 3-byte and 4-byte characters
  for (size_t split = 0; split <= text.size(); ++split) {
    Utf8Holdback h;
    std::string a = h.feed(text.substr(0, split));
    // Every emitted chunk ends on a character boundary.
    if (!a.empty()) {
      unsigned char last = static_cast<unsigned char>(a.back());
      EXPECT_TRUE(last < 0x80 || (last & 0xC0) == 0x80) << split;
      EXPECT_EQ(text.compare(0, a.size(), a), 0);
    }
    std::string b = h.feed(text.substr(split));
    EXPECT_EQ(a + b, text) << split;
    EXPECT_EQ(h.flush(), "");
  }
  Utf8Holdback h;
  EXPECT_EQ(h.feed("a\xE4\xB8"), "a");
  EXPECT_EQ(h.flush(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace llmkit::runtime
