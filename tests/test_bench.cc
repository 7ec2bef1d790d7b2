// `llmkit bench`: the API's rows, the reproducible token ids (pinned to values a Python
// splitmix64 gives, which tools/bench_vs_llamacpp.py relies on), and the CLI's table and JSON on
// the tiny LLaMA folder of testdata with tiny -p/-n.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
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
  // Split each row on '|' and check every cell (std::regex is avoided: g++ 12's <regex> trips
  // -Werror=maybe-uninitialized in the sanitizer build).
  const char* expect[][2] = {{"1", "pp8"}, {"1", "tg4"}, {"2", "pp8"}, {"2", "tg4"}};
  for (int i = 0; i < 4; ++i) {
    const std::string& l = lines[2 + i];
    ASSERT_TRUE(l.size() > 2 && l.front() == '|' && l.back() == '|') << l;
    std::vector<std::string> cells;
    std::istringstream cs(l.substr(1, l.size() - 2));
    for (std::string c; std::getline(cs, c, '|');) cells.push_back(c);
    ASSERT_EQ(cells.size(), 6u) << l;
    auto is_num = [](const std::string& s) {
      return !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos;
    };
    std::istringstream model(cells[0]);
    std::string arch, size, type;
    model >> arch >> size >> type;
    EXPECT_EQ(arch, "llama") << l;
    EXPECT_TRUE(size.size() > 1 && is_num(size.substr(0, size.size() - 1)) &&
                std::string("KMB").find(size.back()) != std::string::npos) << l;
    EXPECT_FALSE(type.empty()) << l;
    EXPECT_EQ(cells[1].substr(cells[1].size() - 5), " MiB ") << l;
    EXPECT_TRUE(is_num(cells[1].substr(1, cells[1].size() - 6))) << l;
    EXPECT_EQ(cells[2].substr(cells[2].size() - 3), " M ") << l;
    EXPECT_TRUE(is_num(cells[2].substr(1, cells[2].size() - 4))) << l;
    EXPECT_EQ(cells[3], " " + std::string(expect[i][0]) + " ") << l;
    EXPECT_EQ(cells[4], " " + std::string(expect[i][1]) + " ") << l;
    const std::string pm = " \xc2\xb1 ";  // " ± "
    const size_t at = cells[5].find(pm);
    ASSERT_NE(at, std::string::npos) << l;
    EXPECT_TRUE(is_num(cells[5].substr(1, at - 1))) << l;
    EXPECT_TRUE(is_num(cells[5].substr(at + pm.size(), cells[5].size() - at - pm.size() - 1))) << l;
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
  // Memory fields: the tiny model's file, its KV cache of 8 positions, and a peak RSS above both.
  const auto& row = j["rows"][0];
  uint64_t folder = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(kTiny))
    if (e.is_regular_file()) folder += e.file_size();
  EXPECT_EQ(row["file_bytes"].get<uint64_t>(), folder);
  EXPECT_GT(row["kv_cache_bytes"].get<uint64_t>(), 0u);
  EXPECT_GT(row["peak_rss_bytes"].get<uint64_t>(), row["kv_cache_bytes"].get<uint64_t>());
  EXPECT_NE(run_cli("bench -m /nonexistent.gguf -p 4 -n 0", &status).find("nonexistent"), std::string::npos);
  EXPECT_NE(status, 0);
}

}  // namespace
}  // namespace llmkit
