// A model with random weights from a Hugging Face config.json, written as GGUF with llmkit's own
// writer: the starting point of training from scratch, and the stand-in for models too large to
// ship (benchmarks of a LLaMA-3.2-1B-shaped model without downloading one).
//
// Weights are drawn as transformers initialises them (normal, std = initializer_range, default
// 0.02; norm weights 1, biases 0) from a counter-based generator, so the same seed gives the same
// file on every machine and thread count. Each tensor is generated, quantized (when a type is
// given) and handed to the writer one at a time, so memory stays near the output size.
//
// The GGUF gets a stand-in byte-level vocabulary of n_vocab tokens (the 256 byte symbols, then
// "<|tok_N|>") with no merges, so that tokenizer-checking loaders (llama.cpp) accept the file; it is
// not a tokenizer anyone should use for text. Decoder families with separate q/k/v (LLaMA, Mistral,
// Qwen2, Gemma) are supported; others throw Error(kUnsupported).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "llmkit/models/convert.h"

namespace llmkit::models {

ConvertReport random_init_gguf(const std::string& config_json_path, const std::string& out_path, std::optional<DType> type,
                               uint64_t seed, const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace llmkit::models
