// The tokenizer behind include/llmkit/tokenizer.h: vocabulary, added/special tokens, and the
// pipeline stages (normalizer, pre-tokenizer, model, post-processor, decoder). Built by
// load_json.cc (tokenizer.json) or load_gguf.cc (GGUF metadata); finalize() validates the
// vocabulary and builds the added-token matchers. Immutable afterwards.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/tokenizer/models.h"
#include "llmkit/tokenizer/pipeline.h"

namespace llmkit::tok {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// Leftmost-longest matching of a set of literal strings (the added tokens).
class AddedMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens, const std::vector<std::string>& texts);
  bool empty() const { return texts_.empty(); }
  // A piece of the input: added token `token` (index into tokens) or plain text (token = -1).
  struct Piece { size_t begin, end; int32_t token; };
  void split(std::string_view s, std::vector<Piece>& out) const;

 private:
  const std::vector<AddedToken>* tokens_ = nullptr;
  std::vector<std::string> texts_;     // per token: the text to look for
  std::vector<int32_t> index_;         // token indices in this matcher
  std::array<std::vector<int32_t>, 256> by_first_;  // first byte -> candidates, longest first
};

struct TokenizerImpl {
  std::string name, kind;
  std::vector<std::string> pieces;  // id -> token text as stored
  std::vector<uint8_t> special;     // id -> special added token
  StrMap<int32_t> vocab;            // text -> id (model vocabulary and added tokens)
  std::vector<AddedToken> added;

  Normalizer normalizer;
  PreTokenizer pre;
  Decoder decoder;
  std::unique_ptr<Bpe> bpe;
  std::unique_ptr<WordPiece> wordpiece;
  std::unique_ptr<Unigram> unigram;
  std::vector<int32_t> prefix, suffix;  // post-processor: ids around the text when add_special
  std::optional<int32_t> bos, eos;

  bool join_with_space = false;  // no decoder in the file: tokens are joined with " "
  AddedMatcher raw_matcher, normalized_matcher;

  // Validates ids and builds the matchers; throws Error(kInvalidFile) naming a bad entry.
  void finalize();
  std::vector<int32_t> encode(std::string_view text, bool add_special) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special, bool raw) const;

 private:
  void encode_segment(std::string_view text, bool at_origin, std::vector<int32_t>& out) const;
  void encode_words(std::string_view text, bool at_origin, std::vector<int32_t>& out) const;
};

// Checks shared by both loaders: token text size, byte-token spelling. Throws kInvalidFile.
void check_token_text(const std::string& text, int64_t id, const std::string& file);

// config_text: the folder's tokenizer_config.json (may be empty): bos_token / eos_token names.
std::shared_ptr<TokenizerImpl> load_tokenizer_json(std::string_view text, const std::string& name,
                                                   std::string_view config_text = {});
std::shared_ptr<TokenizerImpl> load_tokenizer_gguf(const std::string& path);

}  // namespace llmkit::tok
