// Public API: training. For now the gradient parity tool; the trainer lands on the same model.
#pragma once

#include <cstdint>
#include <string>

namespace llmkit {

// `llmkit grads`: reads int64 (or int32) `input_ids` [B, T] from a safetensors file, computes the
// mean causal-LM cross-entropy with labels = input_ids (shifted by one inside, as transformers
// does: position t predicts token t + 1, averaged over B x (T - 1) predictions) with every
// parameter of the model (GGUF file or Hugging Face folder; quantized weights dequantized to F32)
// trainable, and writes every parameter's gradient under its Hugging Face name and layout, plus
// `loss` [1], to a safetensors file. Dense decoder families; others throw Error(kUnsupported).
struct GradsFileResult {
  double loss = 0;
  int64_t batch = 0, tokens = 0, n_gradients = 0;
  double seconds = 0;
};
GradsFileResult grads_file(const std::string& model_path, const std::string& input_path, const std::string& output_path);

}  // namespace llmkit
