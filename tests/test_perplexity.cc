// Perplexity of the default model on a fixed public-domain text (KJV Genesis 1-10) against
// llama.cpp on the same file, text, context and chunking (tools/llamacpp_perplexity.py, 2 chunks
// of 512 tokens): llama.cpp 3.5775 (2026-11-27, llama-cpp-python 0.3.x). The bar is 1%.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "llmkit/error.h"
#include "llmkit/eval.h"

namespace llmkit {
namespace {

TEST(Perplexity, DefaultModelWithinOnePercentOfLlamaCpp) {
  const char* home = std::getenv("LLMKIT_HOME");
  std::string model = (home ? std::string(home) : std::string(std::getenv("HOME")) + "/.cache/llmkit") +
                      "/models/SmolLM2-135M-Instruct-Q4_1.gguf";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "default model not installed (scripts/setup)";
  std::ifstream in(std::string(LLMKIT_TESTDATA_DIR) + "/text/kjv_genesis_1-10.txt", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  PerplexityOptions opt;
  opt.n_ctx = 512;
  opt.max_chunks = 2;
  PerplexityResult r = perplexity(model, text, opt);
  EXPECT_EQ(r.n_tokens, 7949);  // llama.cpp's tokenizer gives the same count
  EXPECT_EQ(r.n_scored, 2 * 255);
  const double llama_cpp = 3.5775;
  EXPECT_LT(std::fabs(r.perplexity / llama_cpp - 1.0), 0.01) << "llmkit " << r.perplexity << " vs llama.cpp " << llama_cpp;
}

TEST(Perplexity, BadOptionsAreTypedErrors) {
  PerplexityOptions opt;
  opt.n_ctx = 4;
  EXPECT_THROW(perplexity("/nonexistent.gguf", "text", opt), Error);
}

}  // namespace
}  // namespace llmkit
