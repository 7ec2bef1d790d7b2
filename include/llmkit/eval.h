// Public API: evaluation. Perplexity with llama.cpp's definition, so numbers are comparable.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llmkit {

struct PerplexityOptions {
  int64_t n_ctx = 512;       // tokens per chunk
  int64_t max_chunks = 0;    // 0 = all whole chunks of the text
  // Called after each chunk with (chunks done, chunks total, running perplexity).
  std::function<void(int64_t, int64_t, double)> progress;
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t n_chunks = 0, n_scored = 0, n_tokens = 0;
  std::vector<double> chunk_ppl;  // running perplexity after each chunk
  double seconds = 0;
};

// Perplexity of `text` under the GGUF model at `model_path`, chunked as llama.cpp's perplexity
// tool does: the text is tokenized once (with BOS when the model adds one); it is cut into
// floor(n_tokens / n_ctx) chunks of n_ctx tokens, each evaluated independently from an empty
// context (its first token replaced by BOS when the model adds one); only the predictions of the
// second half of each chunk are scored (positions n_ctx/2 .. n_ctx-2 predicting the next token),
// so every scored token has at least n_ctx/2 tokens of context. PPL = exp(mean NLL).
PerplexityResult perplexity(const std::string& model_path, const std::string& text, const PerplexityOptions& opt);

// `llmkit logits`: a parity tool against any framework. Reads int64 (or int32) `input_ids` [B, T]
// from a safetensors file, runs each row through the model (GGUF file or Hugging Face folder) from
// an empty context, and writes a safetensors file with float32 `logits` [B, T, n_vocab] for
// language models or `last_hidden_state` [B, T, d_model] for encoders (BERT). Rows are independent
// (no padding, no attention mask). Encoder-decoder models (T5) also read `decoder_input_ids`
// [B, T_dec] and write the decoder's `logits` [B, T_dec, n_vocab].
struct LogitsFileResult {
  std::string output_name;  // "logits" or "last_hidden_state"
  int64_t batch = 0, tokens = 0, width = 0;
  double seconds = 0;
};
LogitsFileResult logits_file(const std::string& model_path, const std::string& input_path, const std::string& output_path,
                             const std::function<void(int64_t rows_done, int64_t rows_total)>& progress = {});

}  // namespace llmkit
