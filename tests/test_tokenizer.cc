// Tokenizer behaviour beyond parity: the streaming decoder never emits half a UTF-8 character,
// arbitrary bytes never crash encode(), UTF-8 repair matches CPython, and every malformed
// tokenizer.json case of RELIABILITY.md is refused with a typed error that names the entry.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "llmkit/error.h"
#include "llmkit/tokenizer.h"
#include "llmkit/tokenizer/regex.h"
#include "llmkit/tokenizer/unicode.h"

namespace {

using llmkit::ErrorCode;
using llmkit::Tokenizer;

std::string dir() { return std::string(LLMKIT_TESTDATA_DIR) + "/tokenizer/"; }

const Tokenizer& load(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) it = cache.emplace(name, Tokenizer::load(dir() + name + ".tokenizer.json")).first;
  return it->second;
}

const char* const kAll[] = {"smollm2", "bpe_gpt2", "bpe_llama3", "bpe_qwen2", "bpe_deepseek",
                            "spm_bpe", "unigram", "wordpiece_minilm"};

// ---- streaming ----

void check_stream(const Tokenizer& tok, const std::string& text, bool expect_hold) {
  auto ids = tok.encode(text, false);
  auto dec = tok.stream_decoder();
  std::string joined;
  bool held = false;
  for (int32_t id : ids) {
    std::string part = dec.push(id);
    EXPECT_TRUE(llmkit::tok::utf8_valid(part)) << "half a character emitted after id " << id;
    held |= part.empty();
    joined += part;
  }
  joined += dec.flush();
  EXPECT_EQ(joined, tok.decode(ids)) << tok.kind();
  if (expect_hold) {
    EXPECT_TRUE(held) << "no token ever split a character in: " << text;
  }
}

TEST(TokenizerStream, HoldsBackPartialUtf8ByteLevel) {
  // SmolLM2 splits many CJK characters and emoji into byte tokens.
  check_stream(load("smollm2"), "大模型训练 👨‍👩‍👧‍👦🇯🇵 𠀀𪚥 ok", true);
}

TEST(TokenizerStream, HoldsBackPartialUtf8ByteFallback) {
  // Emoji outside the SentencePiece vocabulary become <0xF0><0x9F>... byte tokens.
  check_stream(load("spm_bpe"), "emoji 🦀🐍 and 𪚥 here", true);
}

TEST(TokenizerStream, EveryKindMatchesDecode) {
  const std::string text = "Hello, world! 你好，世界。 naïve café — 123 45 😀\n  x";
  for (const char* name : kAll) check_stream(load(name), text, false);
}

TEST(TokenizerStream, LongStreamsStayConsistent) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "第" + std::to_string(i) + "章 the model 🚀 runs. ";
  for (const char* name : {"smollm2", "spm_bpe", "wordpiece_minilm", "unigram"}) check_stream(load(name), text, false);
}

// ---- invalid input ----

TEST(TokenizerInput, Utf8RepairMatchesPython) {
  using llmkit::tok::utf8_sanitize;
  // Expected strings from CPython bytes.decode("utf-8", "replace").
  EXPECT_EQ(utf8_sanitize("a\xFF" "b"), "a\uFFFD" "b");
  EXPECT_EQ(utf8_sanitize("\xE4\xBD\xA0\xE5\xA5 x"), "你\uFFFD x");           // truncated: one U+FFFD
  EXPECT_EQ(utf8_sanitize("\xC0\xAF"), "\uFFFD\uFFFD");                       // overlong: per byte
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");             // surrogate
  EXPECT_EQ(utf8_sanitize("\xF4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");   // > U+10FFFF
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98!"), "\uFFFD!");
  EXPECT_EQ(utf8_sanitize(std::string("\0z", 2)), std::string("\0z", 2));
  EXPECT_EQ(llmkit::tok::utf8_complete_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(llmkit::tok::utf8_complete_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(llmkit::tok::utf8_complete_prefix("ab\xFF"), 3u);
}

TEST(TokenizerInput, RandomBytesNeverCrash) {
  std::mt19937 rng(1234);
  for (const char* name : kAll) {
    const Tokenizer& tok = load(name);
    for (int iter = 0; iter < 300; ++iter) {
      std::string s(rng() % 64, '\0');
      for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? 0x80 + rng() % 128 : rng() % 256);
      auto ids = tok.encode(s, true);
      EXPECT_EQ(ids, tok.encode(llmkit::tok::utf8_sanitize(s), true)) << name;
      for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok.n_vocab());
      std::string d = tok.decode(ids);
      EXPECT_TRUE(llmkit::tok::utf8_valid(d));
    }
    // Ids out of range and random ids decode without crashing.
    std::vector<int32_t> junk = {-5, 0, 1, static_cast<int32_t>(tok.n_vocab()), 1 << 30};
    for (int k = 0; k < 200; ++k) junk.push_back(static_cast<int32_t>(rng() % tok.n_vocab()));
    EXPECT_TRUE(llmkit::tok::utf8_valid(tok.decode(junk, false)));
  }
}

TEST(TokenizerInput, SpecialTokensAndBos) {
  const Tokenizer& s = load("smollm2");
  auto ids = s.encode("<|im_start|>user\nhi<|im_end|>", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), *s.token_to_id("<|im_start|>"));
  EXPECT_EQ(ids.back(), *s.token_to_id("<|im_end|>"));
  EXPECT_TRUE(s.is_special(ids.front()));
  EXPECT_EQ(s.decode(ids, true), "user\nhi");
  EXPECT_EQ(s.decode(ids, false), "<|im_start|>user\nhi<|im_end|>");
  const Tokenizer& l3 = load("bpe_llama3");
  EXPECT_EQ(l3.encode("hi", true).front(), *l3.token_to_id("<|begin_of_text|>"));
  EXPECT_EQ(l3.bos_id(), l3.token_to_id("<|begin_of_text|>"));
  const Tokenizer& bert = load("wordpiece_minilm");
  auto b = bert.encode("hello", true);
  EXPECT_EQ(b.front(), 101);
  EXPECT_EQ(b.back(), 102);
  EXPECT_EQ(bert.piece(101), "[CLS]");
}

TEST(TokenizerInput, ConcurrentEncodesAgree) {
  // One Tokenizer shared by several threads (the BPE word cache is taken with try_lock).
  const Tokenizer& tok = load("smollm2");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("line " + std::to_string(i * 7919) + " 大模型 tokens 😀 word" + std::to_string(i % 13));
  std::vector<std::vector<int32_t>> want;
  for (const auto& t : texts) want.push_back(tok.encode(t, true));
  std::vector<std::thread> pool;
  std::vector<int> bad(4, 0);
  for (int k = 0; k < 4; ++k)
    pool.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < texts.size(); ++i) bad[k] += tok.encode(texts[i], true) != want[i];
    });
  for (auto& th : pool) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

// ---- malformed tokenizer.json ----

std::string bpe_json(const std::string& vocab, const std::string& merges, const std::string& extra = "") {
  return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" + merges + "}" + extra + "}";
}

void expect_error(const std::string& json, ErrorCode code, const std::string& needle) {
  try {
    Tokenizer::from_json(json, "bad.json");
    ADD_FAILURE() << "accepted: " << json.substr(0, 200);
  } catch (const llmkit::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message \"" << e.what() << "\" lacks " << needle;
  }
}

TEST(TokenizerLoad, RejectsMalformedVocabularies) {
  const std::string ok = bpe_json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a b"])");
  EXPECT_EQ(Tokenizer::from_json(ok).encode("ab", false), std::vector<int32_t>{2});
  expect_error(bpe_json(R"({"a": 0, "<0x-1>": 1})", "[]"), ErrorCode::kInvalidFile, "<0x-1>");
  expect_error(bpe_json(R"({"a": 0, "<0xZZ>": 1})", "[]"), ErrorCode::kInvalidFile, "<0xZZ>");
  expect_error(bpe_json(R"({"a": 0, "b": 5})", "[]"), ErrorCode::kInvalidFile, "has id 5 but the file lists only 2");
  expect_error(bpe_json(R"({"a": 0, "c": 2})", "[]", R"(, "added_tokens": [{"id": 2, "content": "c"}])"),
               ErrorCode::kInvalidFile, "id 1 has no token");
  // Refused before any table is sized by the id (this once allocated ~1 GB for a 60-byte file).
  expect_error(bpe_json(R"({"a": 0, "b": 30000000})", "[]"), ErrorCode::kInvalidFile, "has id 30000000");
  expect_error(bpe_json(R"({"a": 0, "b": 0})", "[]"), ErrorCode::kInvalidFile, "id 0");
  expect_error(bpe_json(R"({"a": 0, "b": -1})", "[]"), ErrorCode::kInvalidFile, "-1");
  expect_error(bpe_json(R"({"a": 0, "b": 4294967296})", "[]"), ErrorCode::kInvalidFile, "4294967296");
  expect_error(bpe_json(R"({"a": 0, ")" + std::string(20000, 'x') + R"(": 1})", "[]"), ErrorCode::kInvalidFile,
               "20000 bytes");
  expect_error(bpe_json(R"({"a": 0, "b": 1})", R"(["a c"])"), ErrorCode::kInvalidFile, "merge #0");
  expect_error(bpe_json(R"({"a": 0, "b": 1})", R"(["a b"])"), ErrorCode::kInvalidFile, "\"ab\"");
  expect_error(bpe_json(R"({"a": 0, "b": 1})", R"(["ab"])"), ErrorCode::kInvalidFile, "merge #0");
  expect_error(bpe_json(R"({"a": 0})", "[]", R"(, "added_tokens": [{"id": 7, "content": "<x>"}])"),
               ErrorCode::kInvalidFile, "\"<x>\" has id 7 but the file lists only 2");
  expect_error(bpe_json(R"({"a": 0})", "[]", R"(, "added_tokens": [{"id": 0, "content": "<x>"}])"),
               ErrorCode::kInvalidFile, "duplicate id");
  expect_error(R"({"model": {"type": "Unigram", "vocab": [["a", -1.0], ["a", -2.0]]}})", ErrorCode::kInvalidFile,
               "appears twice");
  expect_error(R"({"model": {"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 3}})", ErrorCode::kInvalidFile,
               "unk_id 3");
  expect_error(R"({"model": {"type": "Mystery", "vocab": {}}})", ErrorCode::kUnsupported, "Mystery");
  expect_error("{not json", ErrorCode::kInvalidFile, "not a JSON object");
  expect_error(R"({"no_model": 1})", ErrorCode::kInvalidFile, "no \"model\"");
  expect_error(bpe_json(R"({"a": 0})", "[]", R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"},
               "behavior": "Isolated"})"), ErrorCode::kInvalidFile, "does not compile");
  expect_error(bpe_json(R"({"a": 0})", "[]", R"(, "post_processor": {"type": "BertProcessing", "cls": ["a", 0],
               "sep": ["z", 9]})"), ErrorCode::kInvalidFile, "id 9");
  expect_error(bpe_json(R"({"a": 0})", "[]", R"(, "normalizer": {"type": "Precompiled"})"), ErrorCode::kUnsupported,
               "Precompiled");
}

TEST(TokenizerLoad, CatastrophicRegexIsBounded) {
  // A crafted pre-tokenizer pattern with exponential backtracking: the run must end quickly,
  // either with a result or with a typed error, never hang.
  const std::string json = bpe_json(R"({"a": 0, "b": 1})", "[]",
                                    R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a|aa)+$"},
                                    "behavior": "Isolated"})");
  Tokenizer tok = Tokenizer::from_json(json);
  std::string evil(5000, 'a');
  evil += "b";
  auto t0 = std::chrono::steady_clock::now();
  try {
    tok.encode(evil, false);
  } catch (const llmkit::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
}

TEST(TokenizerLoad, OnigurumaWhitespaceClass) {
  // \s includes U+0085 (NEXT LINE) as in Oniguruma, inside and outside classes.
  EXPECT_EQ(llmkit::tok::onig_to_pcre2(R"(\s+(?!\S)|[^\s\p{L}])"), R"([\s\x{85}]+(?![^\s\x{85}])|[^\s\x{85}\p{L}])");
  llmkit::tok::Regex re(R"(\s+)");
  size_t n = 0;
  re.for_each_match("a\xC2\x85" "b", [&](size_t b, size_t e) { n += e - b; });
  EXPECT_EQ(n, 2u);
}

TEST(TokenizerLoad, FolderWithConfig) {
  namespace fs = std::filesystem;
  fs::path d = fs::temp_directory_path() / ("llmkit_tok_folder_" + std::to_string(::getpid()));
  fs::create_directories(d);
  fs::copy_file(dir() + "smollm2.tokenizer.json", d / "tokenizer.json", fs::copy_options::overwrite_existing);
  std::ofstream(d / "tokenizer_config.json") << R"({"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"}})";
  Tokenizer tok = Tokenizer::load(d.string());
  EXPECT_EQ(tok.eos_id(), tok.token_to_id("<|im_end|>"));
  EXPECT_EQ(tok.bos_id(), tok.token_to_id("<|im_start|>"));
  EXPECT_EQ(tok.kind(), "byte-level BPE");
  fs::remove_all(d);
  EXPECT_THROW(Tokenizer::load((d / "missing").string()), llmkit::Error);
}

}  // namespace
