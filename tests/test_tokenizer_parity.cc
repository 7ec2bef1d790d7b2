// Parity with the PyPI `tokenizers` library: for every tokenizer kind in testdata/tokenizer
// (written by tools/gen_tokenizer_fixtures.py) and every corpus line, llmkit's ids must equal the
// reference ids, with and without special tokens; decode() must give the reference text, and
// decode(encode(x)) == x wherever the reference round-trips.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmkit/tokenizer.h"
#include "llmkit/tokenizer/unicode.h"

namespace {

using nlohmann::json;

std::string dir() { return std::string(LLMKIT_TESTDATA_DIR) + "/tokenizer/"; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string hex_to_bytes(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

std::vector<std::string> corpus() {
  std::vector<std::string> lines;
  const json c = read_json(dir() + "corpus.json");
  for (const auto& l : c["lines"])
    lines.push_back(l.contains("text") ? l["text"].get<std::string>() : hex_to_bytes(l["hex"].get<std::string>()));
  return lines;
}

std::string show(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += std::to_string(v[i]) + " ";
  return s;
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, IdsAndDecodeMatchTheReference) {
  const json expected = read_json(dir() + "expected.json");
  const json& e = expected.at(GetParam());
  const llmkit::Tokenizer tok = llmkit::Tokenizer::load(dir() + e["file"].get<std::string>());
  const auto lines = corpus();
  ASSERT_EQ(lines.size(), e["ids"].size());
  size_t same = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto want = e["ids"][i].get<std::vector<int32_t>>();
    auto got = tok.encode(lines[i], true);
    if (got == want) {
      ++same;
    } else {
      ADD_FAILURE() << GetParam() << " line " << i << " \"" << lines[i].substr(0, 80) << "\"\n want " << show(want)
                    << "\n got  " << show(got);
    }
    if (i < e["plain_ids"].size()) {
      EXPECT_EQ(tok.encode(lines[i], false), e["plain_ids"][i].get<std::vector<int32_t>>()) << i;
    }
    std::string dec = tok.decode(want, true);
    if (e["decoded"].contains(std::to_string(i))) {
      EXPECT_EQ(dec, e["decoded"][std::to_string(i)].get<std::string>()) << i;
    }
    if (e["roundtrip"][i].get<bool>()) {
      // The reference saw invalid UTF-8 as U+FFFD (Python decode(errors="replace")), as encode() does.
      EXPECT_EQ(dec, llmkit::tok::utf8_sanitize(lines[i])) << "round trip, line " << i;
    }
  }
  std::printf("[parity] %-18s %s: %zu/%zu lines identical\n", GetParam().c_str(), tok.kind().c_str(), same, lines.size());
}

INSTANTIATE_TEST_SUITE_P(AllKinds, Parity,
                         ::testing::Values("smollm2", "bpe_gpt2", "bpe_llama3", "bpe_qwen2", "bpe_deepseek", "spm_bpe",
                                           "unigram", "wordpiece_minilm"));

}  // namespace
