// Public API: convert a model between a Hugging Face folder and a GGUF file (`llmkit convert`).
// A folder converts to GGUF (optionally quantized); a GGUF file converts to a folder of
// safetensors shards, config.json and tokenizer files (quantized tensors dequantized).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llmkit {

struct ConvertSummary {
  std::string direction;     // "hf->gguf" or "gguf->hf"
  std::string architecture;  // "llama"
  size_t n_tensors = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  std::vector<std::string> files;  // written
  std::vector<std::string> notes;  // skipped buffers, ignored files (*.py, auto_map), type fallbacks
};

// type: "" keeps each tensor's type; to GGUF: f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k; to a
// folder: f32 f16 bf16. progress(done, total) is called after each tensor (input bytes). Throws
// llmkit::Error (kInvalidArgument for a bad type or a non-empty output folder).
ConvertSummary convert_model_files(const std::string& input, const std::string& output, const std::string& type,
                                   const std::function<void(uint64_t, uint64_t)>& progress = {});

// `llmkit convert config.json OUT.gguf --random-init`: a model with random weights (transformers'
// initialisation, reproducible from `seed`) for the architecture config.json describes, written
// as GGUF (quantized when `type` is given) with a stand-in vocabulary; for training from scratch
// and for benchmarks of shapes too large to download. LLaMA, Mistral, Qwen2 and Gemma families.
ConvertSummary random_model_file(const std::string& config_json, const std::string& output, const std::string& type,
                                 uint64_t seed, const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace llmkit
