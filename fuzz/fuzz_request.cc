// libFuzzer target: the server's OpenAI request parser (serve::parse_request) on arbitrary bodies,
// as chat and as completions, and the error body it produces. Any input must parse or throw
// serve::ApiError (status 400); whatever is parsed must serialize back to valid JSON.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "llmkit/serve/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  const std::string body(reinterpret_cast<const char*>(data), size);
  llmkit::serve::ApiLimits limits;
  limits.n_vocab = 50000;
  for (bool chat : {true, false}) {
    try {
      llmkit::serve::ApiRequest r = llmkit::serve::parse_request(body, chat, limits);
      nlohmann::json j = {{"prompt", r.prompt}, {"stop", r.stop}};
      for (const auto& m : r.messages) j["m"].push_back(m.content);
      (void)llmkit::serve::dump(j);
    } catch (const llmkit::serve::ApiError& e) {
      if (e.status != 400) __builtin_trap();
      (void)llmkit::serve::error_body(e);
    }
  }
  return 0;
}
