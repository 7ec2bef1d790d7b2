// `llmkit bench`: the API's rows, the reproducible token ids (pinned to values a Python
// splitmix64 gives, which tools/bench_vs_llamacpp.py relies on), and the CLI's table and JSON on
// the tiny LLaMA folder of testdata with tiny -p/-n.
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/bench.h"
#include "llmkit/error.h"

namespace llmkit {
namespace {

const std::string kTiny = std::string(LLMKIT_TESTDATA_DIR) + "/hf/tiny-llama";

TEST(Bench, TokensMatchPythonSplitmix64) {
  // Python: sm(42 + i) % 49152 with the splitmix64 of bench.h -> 28309, 28552, 37971, 35542.
  EXPECT_EQ(bench_tokens(42, 4, 49152), (std::vector<int32_t>{28309, 28552, 37971, 35542}));
  EXPECT_EQ(bench_tokens(42, 4, 100), (std::vector<int32_t>{13, 60, 31, 26}));
}

TEST(Bench, RowsPerThreadCountAndTest) {
  BenchOptions opt;
  opt.model = kTiny;
  opt.n_prompt = 8;
  opt.n_gen = 4;
  opt.threads = {1, 2};
  opt.reps = 2;
  const std::vector<BenchRow> rows = bench(opt);
  ASSERT_EQ(rows.size(), 4u);
  const char* tests[] = {"pp8", "tg4", "pp8", "tg4"};
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].test, tests[i]);
    EXPECT_EQ(rows[i].threads, i < 2 ? 1 : 2);
    EXPECT_EQ(rows[i].samples.size(), 2u);
    EXPECT_GT(rows[i].mean, 0.0);
    EXPECT_GE(rows[i].stddev, 0.0);
    EXPECT_GT(rows[i].n_params, 0u);
    EXPECT_GT(rows[i].size_bytes, 0u);
    EXPECT_EQ(rows[i].model.rfind("llama ", 0), 0u) << rows[i].model;
  }
  opt.n_gen = 0;  // pp only
  EXPECT_EQ(bench(opt).size(), 2u);
}

TEST(Bench, BadOptionsAreTypedErrors) {
  BenchOptions opt;
  opt.model = kTiny;
  opt.n_prompt = opt.n_gen = 0;
  EXPECT_THROW(bench(opt), Error);
  opt.n_prompt = 4;
  opt.reps = 0;
  EXPECT_THROW(bench(opt), Error);
  opt.reps = 1;
  opt.n_prompt = 1 << 30;  // beyond the model's context
  EXPECT_THROW(bench(opt), Error);
  opt.model = "/nonexistent.gguf";
  opt.n_prompt = 4;
  EXPECT_THROW(bench(opt), Error);
}

std::string run_cli(const std::string& args, int* status) {
  const std::string cmd = std::string(LLMKIT_CLI_PATH) + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  *status = pclose(f);
  return out;
}

TEST(Bench, CliPrintsLlamaBenchTable) {
  int status = 0;
  const std::string out = run_cli("bench -m " + kTiny + " -p 8 -n 4 -t 1,2 -r 2", &status);
  ASSERT_EQ(status, 0) << out;
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 6u) << out;  // header, separator, 2 threads x (pp, tg)
  EXPECT_EQ(lines[0], "| model | size | params | threads | test | t/s |");
  const std::regex row(R"(\| llama [0-9.]+[KMB] \w+ \| [0-9.]+ MiB \| [0-9.]+ M \| ([12]) \| (pp8|tg4) \| [0-9.]+ ± [0-9.]+ \|)");
  const char* expect[] = {"1pp8", "1tg4", "2pp8", "2tg4"};
  for (int i = 0; i < 4; ++i) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(lines[2 + i], m, row)) << lines[2 + i];
    EXPECT_EQ(m[1].str() + m[2].str(), expect[i]);
  }
}

TEST(Bench, CliJsonHasEverySample) {
  int status = 0;
  const std::string out = run_cli("bench -m " + kTiny + " -p 8 -n 0 -t 1 -r 3 --json", &status);
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["rows"].size(), 1u);
  EXPECT_EQ(j["rows"][0]["test"], "pp8");
  EXPECT_EQ(j["rows"][0]["samples"].size(), 3u);
  EXPECT_EQ(j["seed"], 42);
  EXPECT_NE(run_cli("bench -m /nonexistent.gguf -p 4 -n 0", &status).find("nonexistent"), std::string::npos);
  EXPECT_NE(status, 0);
}

}  // namespace
}  // namespace llmkit
