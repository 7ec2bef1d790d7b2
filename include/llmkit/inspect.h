// Public API: what is inside a model file, for `llmkit inspect` and for programs.
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
  std::string format;           // "GGUF v3"
  std::string architecture;     // general.architecture
  std::string name;             // general.name
  std::vector<std::pair<std::string, std::string>> hyperparameters;  // "<arch>.*" keys
  std::vector<std::pair<std::string, std::string>> tokenizer;        // "tokenizer.*" keys (abbreviated)
  std::vector<std::pair<std::string, std::string>> other;            // everything else
  std::string chat_template;
  std::vector<InspectTensor> tensors;
  uint64_t file_bytes = 0;
  uint64_t tensor_bytes = 0;
  uint64_t n_params = 0;
};

// Reads the header of a model file (tensor data is mapped, not read). Throws llmkit::Error with a
// fix for unreadable, corrupt, pickle or not-yet-supported inputs.
InspectReport inspect_model(const std::string& path);

}  // namespace llmkit
