// Perplexity of the default model on a fixed public-domain text (KJV Genesis 1-10, 4 chunks of 512
// tokens: all 1020 scored tokens of the references) against llama.cpp on the same file, text,
// context and chunking (tools/llamacpp_perplexity.py): llama.cpp 4.6586 (2026-11-29, llama-cpp-python
// 0.3.36 on an AVX-512 Zen 4). The bar is 1%.
// And against Hugging Face transformers running the same GGUF dequantized to float32
// (tools/hf_perplexity.py writes testdata/models/smollm2_q4_1_hf_perplexity.json: the ids it
// evaluated and its running perplexity after each chunk; 4 chunks: 4.6502, 2026-11-28).
//
// Why 4 chunks, not 2: with 8-bit activations (llmkit and llama.cpp alike) rounding-level changes
// move the 2-chunk figure (510 tokens) by up to ~1%: llama.cpp itself gives 3.5775 on an AVX2 Zen 3
// and 3.5648 on an AVX-512 Zen 4; llmkit gives 3.5864 with its AVX2 kernels and 3.6020 with its
// AVX-512 ones on the same machine (transformers: 3.5660). Over 4 chunks the same variants give
// llmkit 4.6686 (AVX2) / 4.6743 (AVX-512): 0.40% / 0.52% from transformers, 0.22% / 0.34% from
// llama.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmkit/error.h"
#include "llmkit/eval.h"
#include "llmkit/tokenizer.h"

namespace llmkit {
namespace {

std::string default_model() {
  const char* home = std::getenv("LLMKIT_HOME");
  return (home ? std::string(home) : std::string(std::getenv("HOME")) + "/.cache/llmkit") +
         "/models/SmolLM2-135M-Instruct-Q4_1.gguf";
}

std::string genesis_text() {
  std::ifstream in(std::string(LLMKIT_TESTDATA_DIR) + "/text/kjv_genesis_1-10.txt", std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// llmkit's 4-chunk perplexity, computed once per process for both comparisons (ctest runs each
// test in a process of its own; a plain run of the binary computes it once).
const PerplexityResult& four_chunks() {
  static const PerplexityResult r = [] {
    PerplexityOptions opt;
    opt.n_ctx = 512;
    opt.max_chunks = 4;
    return perplexity(default_model(), genesis_text(), opt);
  }();
  return r;
}

TEST(Perplexity, DefaultModelWithinOnePercentOfLlamaCpp) {
  if (!std::filesystem::exists(default_model()))
    GTEST_SKIP() << "default model not installed (scripts/setup)";
  const PerplexityResult& r = four_chunks();
  EXPECT_EQ(r.n_tokens, 7949);  // llama.cpp's tokenizer gives the same count
  EXPECT_EQ(r.n_scored, 4 * 255);
  const double llama_cpp = 4.6586;
  EXPECT_LT(std::fabs(r.perplexity / llama_cpp - 1.0), 0.01)
      << "llmkit " << r.perplexity << " vs llama.cpp " << llama_cpp;
}

TEST(Perplexity, DefaultModelWithinOnePercentOfTransformers) {
  if (!std::filesystem::exists(default_model()))
    GTEST_SKIP() << "default model not installed (scripts/setup)";
  std::ifstream in(std::string(LLMKIT_TESTDATA_DIR) + "/models/smollm2_q4_1_hf_perplexity.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  ASSERT_EQ(ref["n_ctx"].get<int64_t>(), 512);
  ASSERT_GE(ref["n_chunks"].get<int64_t>(), 4);
  // Same ids: transformers scored exactly the tokens llmkit's tokenizer gives.
  const std::vector<int32_t> expect = ref["tokens"].get<std::vector<int32_t>>();
  const std::vector<int32_t> got = Tokenizer::load(default_model()).encode(genesis_text(), true);
  ASSERT_GE(got.size(), expect.size());
  EXPECT_TRUE(std::equal(expect.begin(), expect.end(), got.begin()))
      << "llmkit's token ids differ from the fixture's";
  const PerplexityResult& r = four_chunks();
  EXPECT_EQ(r.n_tokens, ref["n_tokens"].get<int64_t>());
  const double transformers = ref["chunk_ppl"][3].get<double>();  // running perplexity after 4 chunks
  EXPECT_LT(std::fabs(r.perplexity / transformers - 1.0), 0.01)
      << "llmkit " << r.perplexity << " vs transformers " << transformers;
}

TEST(Perplexity, BadOptionsAreTypedErrors) {
  PerplexityOptions opt;
  opt.n_ctx = 4;
  EXPECT_THROW(perplexity("/nonexistent.gguf", "text", opt), Error);
}

}  // namespace
}  // namespace llmkit
