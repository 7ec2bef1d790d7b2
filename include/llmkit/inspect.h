// Public API: what is inside a model, for `llmkit inspect` and for programs. Reads GGUF files,
// Hugging Face folders (config.json + safetensors shards + tokenizer files) and single
// .safetensors files; refuses pickle checkpoints with advice.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmkit {

struct InspectTensor {
  std::string name;
  std::string dtype;            // "q4_1"
  std::vector<int64_t> shape;   // outermost first, as llmkit uses it
  uint64_t bytes = 0;
};

struct InspectReport {
  std::string path;
  std::string format;           // "GGUF v3", "Hugging Face folder (2 safetensors shards)", "safetensors"
  std::string architecture;     // general.architecture, or the family of config.json's model_type
  std::string name;             // general.name
  std::vector<std::pair<std::string, std::string>> hyperparameters;  // "<arch>.*" keys / ModelConfig fields
  std::vector<std::pair<std::string, std::string>> tokenizer;        // "tokenizer.*" keys (abbreviated)
  std::vector<std::pair<std::string, std::string>> other;            // everything else (incl. ignored files)
  std::string chat_template;
  std::vector<InspectTensor> tensors;
  uint64_t file_bytes = 0;
  uint64_t tensor_bytes = 0;
  uint64_t n_params = 0;
};

// Reads the header of a model file or folder (tensor data is mapped, not read). Throws llmkit::Error with a
// fix for unreadable, corrupt, pickle or not-yet-supported inputs.
InspectReport inspect_model(const std::string& path);

}  // namespace llmkit
