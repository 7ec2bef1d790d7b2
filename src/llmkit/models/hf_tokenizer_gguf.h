// The tokenizer half of `llmkit convert`: Hugging Face tokenizer.json + tokenizer_config.json ->
// GGUF tokenizer.ggml.* keys and tokenizer.chat_template, and back.
//
// HF -> GGUF writes the vocabulary by id (tokenizer.ggml.tokens, token_type, scores, merges), the
// special token ids, add_bos/add_eos, the chat template, and, under the GGUF spec's own key
// tokenizer.huggingface.json, the whole tokenizer.json, so a GGUF -> HF conversion gives back the
// very same file. GGUF -> HF (for files from other converters, which lack that key) rebuilds a
// byte-level BPE tokenizer.json from tokenizer.ggml.* ("gpt2" models only; the pre-tokenizer is
// the plain GPT-2 one, so models with another split rule need their original tokenizer.json).
// The tokenizer itself (encoding, decoding) lives in src/llmkit/tokenizer/.
#pragma once

#include <string>
#include <vector>

#include "llmkit/io/gguf.h"
#include "llmkit/models/model_config.h"

namespace llmkit::models {

// Either text may be empty (file absent). Notes on what could not be carried go to `notes`.
void hf_tokenizer_to_gguf(const std::string& tokenizer_json, const std::string& tokenizer_config_json,
                          const std::string& chat_template_file, const ModelConfig& c, io::GgufWriter& w,
                          std::vector<std::string>* notes);

struct HfTokenizerFiles {
  std::string tokenizer_json;         // empty if it cannot be rebuilt
  std::string tokenizer_config_json;  // always written (special tokens, chat template)
};
HfTokenizerFiles gguf_tokenizer_to_hf(const io::GgufFile& f, std::vector<std::string>* notes);

}  // namespace llmkit::models
