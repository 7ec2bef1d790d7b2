// Public API: a model's tokenizer, loaded from a GGUF file (tokenizer.ggml.* metadata) or from a
// Hugging Face tokenizer.json (a file, or a folder that holds one). Every tokenizer kind real
// models use: byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM/StarCoder, DeepSeek pre-tokenizers),
// SentencePiece-style BPE with byte fallback (Llama-2, Mistral), WordPiece (BERT) and Unigram (T5).
// Ids match the PyPI `tokenizers` library (tests/test_tokenizer_parity.cc).
//
// Files are untrusted: a malformed vocabulary (bad byte tokens, ids >= n_vocab, duplicates, giant
// token text, merges of unknown tokens) throws llmkit::Error naming the entry. Text may be any
// bytes: invalid UTF-8 is replaced by U+FFFD first (as Python's decode(errors="replace") does).
// A Tokenizer is immutable and may be used from several threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace llmkit {

namespace tok { struct TokenizerImpl; }

class Tokenizer {
 public:
  // Path: a .gguf file, a tokenizer.json file, or a folder containing tokenizer.json.
  static Tokenizer load(const std::string& path);
  // tokenizer.json text; name is used in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& name = "tokenizer.json");

  // Text -> ids. add_special: add the BOS/EOS/CLS/SEP tokens the model declares (tokenizer.json
  // post_processor, GGUF add_bos_token / add_eos_token). Special tokens written in the text
  // ("<|im_start|>") are always recognized, as in `tokenizers`.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // Ids -> text. skip_special: drop special tokens (the `tokenizers` default). Ids out of range
  // are skipped. Invalid UTF-8 that byte tokens produce becomes U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special = true) const;

  // One token's bytes as decoding it alone gives them, invalid UTF-8 kept (a byte token of a
  // multi-byte character is that byte): what OpenAI's logprobs report as "bytes". Decoders that
  // strip the first token's leading space (SentencePiece) strip it here too. "" when out of range.
  std::string token_bytes(int32_t id) const;

  int64_t n_vocab() const;
  // The token's text as the vocabulary stores it ("Ġthe", "▁the", "##ing"); "" when out of range.
  const std::string& piece(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view piece) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;
  // "byte-level BPE", "SentencePiece BPE", "WordPiece", "Unigram".
  std::string kind() const;

  // Incremental decoding for streaming: push ids one at a time and print what comes back. Text is
  // released only when it is final: never half a UTF-8 character, and spaces that the decoder
  // would strip or merge are settled first. flush() returns whatever is held back at the end.
  class StreamDecoder {
   public:
    std::string push(int32_t id);
    std::string flush();

   private:
    friend class Tokenizer;
    StreamDecoder(std::shared_ptr<const tok::TokenizerImpl> impl, bool skip_special);
    std::shared_ptr<const tok::TokenizerImpl> impl_;
    bool skip_special_;
    std::vector<int32_t> ids_;  // context (already emitted) + pending ids
    size_t n_context_ = 0;
    std::string context_text_;  // decode of the context ids
  };
  StreamDecoder stream_decoder(bool skip_special = true) const;

 private:
  explicit Tokenizer(std::shared_ptr<const tok::TokenizerImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const tok::TokenizerImpl> impl_;
};

}  // namespace llmkit
