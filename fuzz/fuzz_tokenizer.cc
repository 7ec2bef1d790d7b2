// libFuzzer target: the tokenizer.json loader and the encode/decode paths of whatever tokenizer it
// builds, on arbitrary bytes. Any input must give a tokenizer or an llmkit::Error; a crash, a
// sanitizer report, a hang (regex backtracking) or a leak is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "llmkit/error.h"
#include "llmkit/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    llmkit::Tokenizer tok = llmkit::Tokenizer::from_json(json, "fuzz.tokenizer.json");
    static const char* kTexts[] = {"Hello, world! 123 4567", "中文 テキスト 🎉 \t\n  x", "\xff\xfe bad \xc3", ""};
    for (const char* text : kTexts) {
      auto ids = tok.encode(text, true);
      (void)tok.decode(ids, false);
      auto dec = tok.stream_decoder(true);
      for (int32_t id : ids) (void)dec.push(id);
      (void)dec.flush();
    }
    for (int32_t id : {-1, 0, 1, 2, 1 << 30}) (void)tok.piece(id);
  } catch (const llmkit::Error&) {
  }
  return 0;
}
