// libFuzzer target: ModelConfig::from_hf_config_json on arbitrary text (config.json of a model
// folder is untrusted). Any input must give a validated config or an llmkit::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "llmkit/error.h"
#include "llmkit/models/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  try {
    auto c = llmkit::models::ModelConfig::from_hf_config_json(std::string(reinterpret_cast<const char*>(data), size));
    (void)c.to_hf_config_json();
  } catch (const llmkit::Error&) {
  }
  return 0;
}
