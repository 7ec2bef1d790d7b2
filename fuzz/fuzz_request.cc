// libFuzzer target: the server's OpenAI request parsers (serve::parse_request as chat and as
// completions, serve::parse_embeddings_request) on arbitrary bodies, and the error body they produce. Any input must parse or throw
// serve::ApiError (status 400); whatever is parsed must serialize back to valid JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
  try {  // POST /v1/embeddings
    llmkit::serve::EmbeddingsRequest r = llmkit::serve::parse_embeddings_request(body, limits, 64);
    if (r.texts.size() + r.token_ids.size() == 0 || r.texts.size() + r.token_ids.size() > 64) __builtin_trap();
    for (const auto& ids : r.token_ids)
      for (int32_t id : ids)
        if (id < 0 || id >= limits.n_vocab) __builtin_trap();
    std::vector<std::vector<float>> v(r.texts.size() + r.token_ids.size(), std::vector<float>(3, 0.5f));
    (void)llmkit::serve::dump(llmkit::serve::embeddings_response(r.model, v, r.base64, 1));
  } catch (const llmkit::serve::ApiError& e) {
    if (e.status != 400) __builtin_trap();
  }
  return 0;
}
