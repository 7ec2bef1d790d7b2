// The stages around the model, as tokenizer.json describes them: normalizer -> pre-tokenizer ->
// (model) -> post-processor, and the decoder for the way back. Each stage is a list of steps
// built from the JSON (or from GGUF metadata), applied in order, matching the `tokenizers`
// library. Only ids matter here, so no offsets are tracked.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "llmkit/tokenizer/regex.h"

namespace llmkit::tok {

// A literal string or a regex, as in tokenizer.json {"String": ...} / {"Regex": ...}.
struct Pattern {
  std::string literal;
  std::shared_ptr<Regex> regex;  // null for a literal
  static Pattern from_json(const nlohmann::json& j, const char* where);
  // Calls fn(begin, end) for each match in text.
  template <typename Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    if (regex) { regex->for_each_match(text, fn); return; }
    if (literal.empty()) return;
    for (size_t p = text.find(literal); p != std::string_view::npos; p = text.find(literal, p + literal.size()))
      fn(p, p + literal.size());
  }
};

class Normalizer {
 public:
  struct Step;
  Normalizer();
  ~Normalizer();
  Normalizer(Normalizer&&) noexcept;
  Normalizer& operator=(Normalizer&&) noexcept;
  static Normalizer from_json(const nlohmann::json& j);  // null -> no-op
  // SentencePiece layout: optional "▁" prefix, spaces -> "▁" (GGUF "llama").
  static Normalizer spm(bool add_space_prefix);
  static Normalizer bert(bool lowercase);  // GGUF "bert"
  bool empty() const { return steps_.empty(); }
  std::string apply(std::string_view s) const;

 private:
  void add_json(const nlohmann::json& j);
  std::vector<std::unique_ptr<Step>> steps_;
};

// Pieces of one text segment: byte spans into buf.
struct Words {
  std::string buf;
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end)
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  struct Step;
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  static PreTokenizer from_json(const nlohmann::json& j);  // null -> the whole segment is one word
  // GGUF "gpt2" models: the regex list llama.cpp uses for tokenizer.ggml.pre, then byte-level.
  // Throws Error(kUnsupported) naming an unknown pre type.
  static PreTokenizer from_gguf_pre(const std::string& pre);
  static PreTokenizer metaspace(bool prepend_always);  // GGUF "t5"
  static PreTokenizer bert();                          // GGUF "bert"
  // Splits w (initially one span over the segment). at_origin: the segment starts the input.
  void apply(Words& w, bool at_origin) const;
  bool byte_level() const { return byte_level_; }

 private:
  void add_json(const nlohmann::json& j);
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
};

class Decoder {
 public:
  struct Step;
  Decoder();
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;
  static Decoder from_json(const nlohmann::json& j);
  static Decoder byte_level();
  static Decoder spm(bool strip_leading_space);
  static Decoder metaspace(bool prepend);
  static Decoder wordpiece();
  // Joins token texts. raw: keep invalid UTF-8 bytes (streaming); otherwise they become U+FFFD.
  std::string decode(std::vector<std::string> tokens, bool raw) const;

 private:
  void add_json(const nlohmann::json& j);
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace llmkit::tok
