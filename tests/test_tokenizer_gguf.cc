// Tokenizers loaded from GGUF metadata (tokenizer.ggml.*): the parity fixtures' vocabularies are
// written into small GGUF files the way llama.cpp's converters lay them out (gpt2 with a pre type,
// bert with phantom-space spelling, t5 unigram, llama SentencePiece scores), then must give the
// reference ids; the installed default model (SmolLM2) must match its fixture; and malformed
// vocabularies (bad byte tokens, ids >= n_vocab, duplicates, bad merges) are refused by name.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmkit/error.h"
#include "llmkit/io/gguf.h"
#include "llmkit/tokenizer.h"

namespace {

using llmkit::Tokenizer;
using llmkit::io::GgufType;
using llmkit::io::GgufValue;
using llmkit::io::GgufWriter;
using nlohmann::json;

std::string dir() { return std::string(LLMKIT_TESTDATA_DIR) + "/tokenizer/"; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::vector<std::string> corpus() {
  std::vector<std::string> lines;
  const json c = read_json(dir() + "corpus.json");
  for (const auto& l : c["lines"]) {
    if (l.contains("text")) {
      lines.push_back(l["text"].get<std::string>());
    } else {
      std::string h = l["hex"].get<std::string>(), b;
      for (size_t i = 0; i + 1 < h.size(); i += 2) b.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
      lines.push_back(b);
    }
  }
  return lines;
}

// A fixture's vocabulary: token text per id, and which ids are special added tokens.
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int> types;  // GGUF token types: 1 normal, 3 control, 6 byte
  std::vector<float> scores;
  std::vector<std::string> merges;
};

Vocab vocab_of(const std::string& name) {
  json j = read_json(dir() + name + ".tokenizer.json");
  Vocab v;
  const json& m = j["model"];
  if (m["vocab"].is_array()) {
    for (const auto& e : m["vocab"]) {
      v.tokens.push_back(e[0].get<std::string>());
      v.scores.push_back(e[1].get<float>());
    }
  } else {
    v.tokens.resize(m["vocab"].size());
    for (const auto& [t, id] : m["vocab"].items()) v.tokens[id.get<size_t>()] = t;
    v.scores.assign(v.tokens.size(), 0.0f);
  }
  v.types.assign(v.tokens.size(), 1);
  for (const auto& a : j["added_tokens"])
    if (a["special"].get<bool>()) v.types[a["id"].get<size_t>()] = 3;
  if (m.contains("merges"))
    for (const auto& e : m["merges"]) v.merges.push_back(e[0].get<std::string>() + " " + e[1].get<std::string>());
  return v;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("llmkit_tok_" + std::to_string(::getpid()) + "_" + name + ".gguf")).string();
}

GgufWriter writer_for(const std::string& model, const Vocab& v) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::from_string("llama"));
  w.set("tokenizer.ggml.model", GgufValue::from_string(model));
  w.set("tokenizer.ggml.tokens", GgufValue::from_strings(v.tokens));
  std::vector<GgufValue> types, scores;
  for (int t : v.types) types.push_back(GgufValue::from_i32(t));
  for (float s : v.scores) scores.push_back(GgufValue::from_f32(s));
  w.set("tokenizer.ggml.token_type", GgufValue::from_array(GgufType::kI32, types));
  w.set("tokenizer.ggml.scores", GgufValue::from_array(GgufType::kF32, scores));
  if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GgufValue::from_strings(v.merges));
  return w;
}

// Encodes every corpus line and compares with the fixture's reference ids.
size_t count_identical(const Tokenizer& tok, const std::string& fixture, bool assert_each) {
  const json expected = read_json(dir() + "expected.json");
  const auto lines = corpus();
  size_t same = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto want = expected[fixture]["ids"][i].get<std::vector<int32_t>>();
    bool eq = tok.encode(lines[i], true) == want;
    same += eq;
    if (assert_each) {
      EXPECT_TRUE(eq) << fixture << " line " << i << ": " << lines[i].substr(0, 60);
    }
  }
  std::printf("[gguf parity] %-18s %zu/%zu lines identical\n", fixture.c_str(), same, lines.size());
  return same;
}

Tokenizer write_and_load(GgufWriter& w, const std::string& name) {
  std::string path = temp_path(name);
  w.write(path);
  Tokenizer tok = Tokenizer::load(path);
  std::filesystem::remove(path);
  return tok;
}

TEST(TokenizerGguf, Gpt2PreTypesMatchReference) {
  struct Case { const char* fixture; const char* pre; bool add_bos; };
  for (Case c : {Case{"bpe_gpt2", "gpt-2", false}, Case{"bpe_llama3", "llama-bpe", true},
                 Case{"bpe_deepseek", "deepseek-v3", true}}) {
    Vocab v = vocab_of(c.fixture);
    GgufWriter w = writer_for("gpt2", v);
    w.set("tokenizer.ggml.pre", GgufValue::from_string(c.pre));
    w.set("tokenizer.ggml.bos_token_id", GgufValue::from_u32(1));
    w.set("tokenizer.ggml.add_bos_token", GgufValue::from_bool(c.add_bos));
    Tokenizer tok = write_and_load(w, c.fixture);
    EXPECT_EQ(tok.kind(), "byte-level BPE");
    count_identical(tok, c.fixture, true);
  }
}

TEST(TokenizerGguf, BertPhantomSpellingMatchesReference) {
  Vocab v = vocab_of("wordpiece_minilm");
  for (size_t i = 0; i < v.tokens.size(); ++i) {  // llama.cpp's converter spelling
    std::string& t = v.tokens[i];
    if (t.size() >= 2 && t.front() == '[' && t.back() == ']') continue;
    t = t.rfind("##", 0) == 0 ? t.substr(2) : "\xE2\x96\x81" + t;
  }
  GgufWriter w = writer_for("bert", v);
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::from_u32(100));
  w.set("tokenizer.ggml.cls_token_id", GgufValue::from_u32(101));
  w.set("tokenizer.ggml.seperator_token_id", GgufValue::from_u32(102));
  Tokenizer tok = write_and_load(w, "bert");
  EXPECT_EQ(tok.kind(), "WordPiece");
  count_identical(tok, "wordpiece_minilm", true);
}

TEST(TokenizerGguf, T5UnigramMatchesReference) {
  Vocab v = vocab_of("unigram");
  GgufWriter w = writer_for("t5", v);
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::from_u32(2));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::from_u32(1));
  Tokenizer tok = write_and_load(w, "t5");
  EXPECT_EQ(tok.kind(), "Unigram");
  count_identical(tok, "unigram", true);
}

TEST(TokenizerGguf, LlamaSentencePieceScores) {
  // SentencePiece BPE ranks merges by the merged piece's score; give each learned token the score
  // of the merge that made it. Pairs that concatenate to a token by another split also merge in
  // SentencePiece (not in HF's merge list), so ids may differ on a few lines; text must round-trip.
  Vocab v = vocab_of("spm_bpe");
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.tokens[i].size() == 6 && v.tokens[i].rfind("<0x", 0) == 0) v.types[i] = 6;
  std::map<std::string, float> made;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    std::string m = v.merges[r];
    m.erase(m.find(' '), 1);
    made.emplace(m, -static_cast<float>(r));
  }
  for (size_t i = 0; i < v.tokens.size(); ++i) v.scores[i] = made.count(v.tokens[i]) ? made[v.tokens[i]] : -1e9f;
  v.merges.clear();
  GgufWriter w = writer_for("llama", v);
  w.set("tokenizer.ggml.bos_token_id", GgufValue::from_u32(1));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::from_u32(0));
  Tokenizer tok = write_and_load(w, "llama");
  EXPECT_EQ(tok.kind(), "SentencePiece BPE");
  size_t same = count_identical(tok, "spm_bpe", false);
  EXPECT_GE(same, corpus().size() * 3 / 4);
  for (const std::string& s : {std::string("Hello world, 大模型 🦀!"), std::string("  two  spaces")}) {
    auto ids = tok.encode(s, true);
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok.decode(ids), s);
  }
  auto crab = tok.encode("🦀", false);  // not in the vocabulary: ▁ then four byte tokens
  ASSERT_EQ(crab.size(), 5u);
  EXPECT_EQ(tok.piece(crab[1]), "<0xF0>");
}

TEST(TokenizerGguf, DefaultModelMatchesFixture) {
  const char* home = std::getenv("HOME");
  std::string path = std::string(home ? home : ".") + "/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not installed (scripts/setup)";
  Tokenizer tok = Tokenizer::load(path);
  EXPECT_EQ(tok.n_vocab(), 49152);
  EXPECT_EQ(tok.eos_id(), 2);
  count_identical(tok, "smollm2", true);
}

void expect_gguf_error(GgufWriter& w, llmkit::ErrorCode code, const std::string& needle) {
  std::string path = temp_path("bad");
  w.write(path);
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << "accepted a bad vocabulary; wanted: " << needle;
  } catch (const llmkit::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(TokenizerGguf, RejectsMalformedVocabularies) {
  using llmkit::ErrorCode;
  Vocab base;
  base.tokens = {"<unk>", "a", "b", "ab"};
  base.types = {2, 1, 1, 1};
  base.scores = {0, -1, -2, -0.5f};
  base.merges = {"a b"};
  {
    Vocab v = base;
    v.tokens.push_back("<0x-1>");
    v.types.push_back(6);
    v.scores.push_back(0);
    GgufWriter w = writer_for("llama", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "<0x-1>");
  }
  {
    Vocab v = base;
    v.tokens.push_back("zz");
    v.types.push_back(6);
    v.scores.push_back(0);
    GgufWriter w = writer_for("llama", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "\"zz\" is not <0xHH>");
  }
  {
    Vocab v = base;
    v.tokens[3] = "a";
    GgufWriter w = writer_for("gpt2", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "appears twice");
  }
  {
    GgufWriter w = writer_for("gpt2", base);
    w.set("tokenizer.ggml.bos_token_id", GgufValue::from_u32(4));
    expect_gguf_error(w, ErrorCode::kInvalidFile, "bos_token_id = 4");
  }
  {
    Vocab v = base;
    v.merges = {"a zz"};
    GgufWriter w = writer_for("gpt2", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "merge #0");
  }
  {
    Vocab v = base;
    v.tokens[1] = std::string(20000, 'x');
    GgufWriter w = writer_for("gpt2", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "20000 bytes");
  }
  {
    Vocab v = base;
    v.types.pop_back();
    GgufWriter w = writer_for("gpt2", v);
    expect_gguf_error(w, ErrorCode::kInvalidFile, "token_type has 3 entries");
  }
  {
    GgufWriter w = writer_for("mystery", base);
    expect_gguf_error(w, ErrorCode::kUnsupported, "mystery");
  }
  {
    GgufWriter w = writer_for("gpt2", base);
    w.set("tokenizer.ggml.pre", GgufValue::from_string("not-a-pre"));
    expect_gguf_error(w, ErrorCode::kUnsupported, "not-a-pre");
  }
  {
    GgufWriter w;
    w.set("general.architecture", GgufValue::from_string("llama"));
    expect_gguf_error(w, ErrorCode::kInvalidFile, "tokenizer.ggml.model");
  }
}

}  // namespace
