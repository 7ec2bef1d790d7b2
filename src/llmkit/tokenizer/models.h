// The tokenization models that turn one pre-tokenized word into ids: BPE (byte-level, or
// SentencePiece-style with byte fallback), WordPiece (BERT) and Unigram (T5 / SentencePiece
// unigram, Viterbi). Each follows the `tokenizers` library's algorithm step for step, including
// its tie-breaking, so ids are identical. Models are immutable after construction and safe to
// share between threads; BPE keeps a bounded word cache that one thread at a time may use.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llmkit::tok {

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StrMap = std::unordered_map<std::string, V, StrHash, std::equal_to<>>;

// Hard caps on what a tokenizer file may declare (RELIABILITY.md: "giant token text").
constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr int64_t kMaxVocab = int64_t{1} << 30;

class Bpe {
 public:
  struct Options {
    bool byte_level = false;  // vocabulary is in GPT-2 byte-mapped form; words are raw bytes
    std::optional<int32_t> unk;
    bool fuse_unk = false;
    bool byte_fallback = false;  // unknown chars -> <0xXX> tokens
    bool ignore_merges = false;  // a word that is itself a token is emitted whole (Llama-3)
    std::string continuing_subword_prefix, end_of_word_suffix;
  };
  // vocab: token text as in the file -> id. merges: (left text, right text) in rank order.
  // Throws Error(kInvalidFile) naming the merge when a part or the result is not in vocab.
  Bpe(const StrMap<int32_t>& vocab, const std::vector<std::pair<std::string, std::string>>& merges,
      Options opt);
  // Merges ranked by the score of the merged token (SentencePiece BPE, GGUF "llama"): every pair
  // of tokens whose concatenation is a token, best score first.
  static std::vector<std::pair<std::string, std::string>> merges_from_scores(
      const std::vector<std::string>& tokens, const std::vector<float>& scores, const std::vector<bool>& mergeable);

  // Appends the ids of one word (raw bytes when byte_level, else UTF-8 text).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  bool byte_level() const { return opt_.byte_level; }

 private:
  void merge(std::string_view word, std::vector<int32_t>& out) const;
  struct MergeRule { int32_t rank, new_id; };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  Options opt_;
  StrMap<int32_t> vocab_;  // model-space text (raw bytes when byte_level) -> id
  std::unordered_map<uint64_t, MergeRule> merges_;
  int32_t byte_id_[256];   // byte-level: id of each single byte; -1 when missing
  int32_t fallback_id_[256];  // byte fallback: id of <0xXX>; -1 when missing

  // Word cache: text -> ids in pool_. Used by whichever thread holds the lock (try_lock), so
  // concurrent encodes never wait on each other.
  mutable std::mutex cache_mu_;
  mutable StrMap<std::pair<uint32_t, uint32_t>> cache_;
  mutable std::vector<int32_t> pool_;
};

class WordPiece {
 public:
  WordPiece(const StrMap<int32_t>& vocab, int32_t unk, std::string prefix, size_t max_chars);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  StrMap<int32_t> vocab_;
  int32_t unk_;
  std::string prefix_;
  size_t max_chars_;
};

class Unigram {
 public:
  // pieces[id] = (text, score). unk: id of the unknown piece (required to encode unknown chars).
  Unigram(std::vector<std::pair<std::string, double>> pieces, std::optional<int32_t> unk, bool byte_fallback);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  std::vector<std::pair<std::string, double>> pieces_;
  StrMap<int32_t> ids_;
  std::optional<int32_t> unk_;
  bool byte_fallback_;
  double min_score_ = 0;
  size_t max_piece_bytes_ = 0;
  int32_t fallback_id_[256];
};

}  // namespace llmkit::tok
