// libFuzzer target: the safetensors parser on arbitrary bytes. Any input must give a parsed file
// or an llmkit::Error; every tensor of a parsed file must be readable within the input.
#include <cstddef>
#include <cstdint>

#include "llmkit/error.h"
#include "llmkit/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = llmkit::io::SafetensorsFile::parse(data, size, nullptr, "fuzz.safetensors");
    volatile uint8_t sink = 0;
    for (const auto& ti : f.tensors()) {
      auto [p, n] = f.bytes(ti.name);
      if (n > 0) sink = sink + p[0] + p[n - 1];
      try {
        llmkit::Tensor t = f.tensor(ti.name);
        if (t.nbytes() > 0) sink = sink + static_cast<const uint8_t*>(t.raw())[t.nbytes() - 1];
      } catch (const llmkit::Error&) {  // dtypes llmkit does not compute in
      }
    }
  } catch (const llmkit::Error&) {
  }
  return 0;
}
