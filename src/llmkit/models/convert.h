// `llmkit convert`: Hugging Face folder <-> GGUF, optionally quantizing (HF -> GGUF) or choosing
// the float type of the output (either way).
//
// HF -> GGUF: config.json -> ModelConfig -> the "<arch>.*" keys; tensor names through the
// architecture table with llama.cpp's layout transforms; tokenizer.json / tokenizer_config.json
// -> tokenizer.ggml.* and tokenizer.chat_template; config.json, tokenizer.json,
// tokenizer_config.json and generation_config.json also carried verbatim so the way back is
// lossless. GGUF -> HF: the inverse, dequantizing quantized tensors (ref::dequantize_row).
//
// Without --type, every tensor keeps its dtype, so HF -> GGUF -> HF gives back bit-identical
// weights (tests/test_convert.cc). With a quantized --type, 2-D weights are quantized by
// ref::quantize_row; 1-D tensors (norms, biases) stay F32 and 2-D tensors whose rows are not a
// whole number of blocks fall back to F16, as llama.cpp does.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "llmkit/tensor/dtype.h"

namespace llmkit::models {

struct ConvertOptions {
  std::optional<DType> type;  // nullopt: keep each tensor's dtype (quantized -> F32 when going to HF)
  uint64_t max_shard_bytes = 5ull << 30;  // HF output: shard size, as transformers' save_pretrained
  // Called after each tensor with bytes done and total (input bytes).
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct ConvertReport {
  std::string direction;  // "hf->gguf" or "gguf->hf"
  std::string architecture;
  size_t n_tensors = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  std::vector<std::string> files;  // written
  std::vector<std::string> notes;  // skipped buffers, ignored files, fallbacks
};

// The types `--type` accepts for each direction.
bool valid_gguf_output_type(DType t);  // f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k
bool valid_hf_output_type(DType t);    // f32 f16 bf16

ConvertReport convert_hf_to_gguf(const std::string& in_dir, const std::string& out_path, const ConvertOptions& opt = {});
ConvertReport convert_gguf_to_hf(const std::string& in_path, const std::string& out_dir, const ConvertOptions& opt = {});
// Picks the direction from the input: a folder converts to GGUF, a GGUF file to a folder.
ConvertReport convert_model(const std::string& in, const std::string& out, const ConvertOptions& opt = {});

}  // namespace llmkit::models
