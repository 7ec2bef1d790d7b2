// libFuzzer target: the GGUF parser and ModelConfig::from_gguf on arbitrary bytes. Any input must
// give a parsed file or an llmkit::Error; a crash, a sanitizer report, a leak or an allocation
// beyond the RSS limit is a bug. Caps are lowered so that valid-but-huge declarations are rejected
// quickly instead of exhausting the fuzzer's memory limit.
#include <cstddef>
#include <cstdint>

#include "llmkit/error.h"
#include "llmkit/io/gguf.h"
#include "llmkit/models/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  llmkit::io::GgufLimits lim;
  lim.max_string = 1u << 20;
  lim.max_array = 1u << 16;
  lim.max_kv = 1u << 12;
  lim.max_tensors = 1u << 12;
  try {
    auto f = llmkit::io::GgufFile::parse(data, size, nullptr, "fuzz.gguf", lim);
    volatile uint8_t sink = 0;
    for (const auto& ti : f.tensors()) {
      llmkit::Tensor t = f.tensor(ti.name);
      if (ti.bytes > 0) sink = sink + static_cast<const uint8_t*>(t.raw())[ti.bytes - 1];
    }
    for (const auto& kv : f.metadata()) (void)kv.second.summary(40);
    (void)llmkit::models::ModelConfig::from_gguf(f);
  } catch (const llmkit::Error&) {
  }
  return 0;
}
