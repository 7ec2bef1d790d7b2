// The OpenAI request and response formats: parse and validate a request body (every field typed
// and range-checked, an ApiError naming the field otherwise) and build the JSON responses and
// stream chunks. No HTTP and no model here, so all of it is testable and fuzzable on its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/chat_template.h"
#include "llmkit/runtime/sampler.h"

namespace llmkit::serve {

// An error answered to the client: status and OpenAI's {"error": {message, type, param, code}}.
struct ApiError {
  int status = 400;
  std::string message, type = "invalid_request_error", param, code;
};
std::string error_body(const ApiError& e);

struct ApiLimits {
  int max_json_depth = 32;
  int64_t max_tokens = 1 << 20;
  int64_t n_vocab = 0;        // token ids in a prompt must be below this
  size_t max_stops = 16, max_stop_bytes = 1024, max_messages = 4096;
};

struct ApiRequest {
  bool chat = false;
  bool stream = false, include_usage = false;
  std::string model;
  std::vector<ChatMessage> messages;   // chat
  std::string prompt;                  // completions, as text
  std::vector<int32_t> prompt_ids;     // completions, as token ids (used when non-empty)
  int64_t max_tokens = -1;             // -1: until the context is full
  runtime::SamplingParams sampling;
  std::vector<std::string> stop;
};

// Throws ApiError (status 400) for malformed JSON, too deep nesting, a wrong type, an out-of-range
// number, an empty prompt, or a feature not supported yet (n > 1, logprobs).
ApiRequest parse_request(const std::string& body, bool chat, const ApiLimits& limits);

// POST /v1/embeddings: "input" is a string, a list of strings, a list of token ids, or a list of
// lists of token ids (OpenAI's four forms); "encoding_format" "float" (default) or "base64"
// (little-endian float32 bytes, what the openai Python client asks for). At most max_inputs inputs.
struct EmbeddingsRequest {
  std::string model;
  std::vector<std::string> texts;                // the string forms
  std::vector<std::vector<int32_t>> token_ids;   // the token forms (texts empty then)
  bool base64 = false;
};
EmbeddingsRequest parse_embeddings_request(const std::string& body, const ApiLimits& limits, size_t max_inputs = 2048);
// {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}], "model", "usage"}.
nlohmann::json embeddings_response(const std::string& model, const std::vector<std::vector<float>>& vectors,
                                   bool base64, int64_t n_tokens);
std::string base64_encode(const void* data, size_t n);

// True when `body` nests arrays/objects deeper than max_depth (checked before parsing, so a
// hostile body never reaches the recursive parser).
bool json_too_deep(const std::string& body, int max_depth);

// Serializes with invalid UTF-8 replaced by U+FFFD, so every string sent is valid UTF-8.
std::string dump(const nlohmann::json& j);

struct ResponseMeta {
  std::string id, model;
  int64_t created = 0;
  bool chat = false;
};
nlohmann::json usage_json(int64_t n_prompt, int64_t n_completion);
// The whole non-streamed response.
nlohmann::json full_response(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                             int64_t n_prompt, int64_t n_completion);
// One stream chunk: a piece of text (finish_reason empty), or the last one (finish_reason set).
// Chat's first chunk carries the role (role_chunk).
nlohmann::json stream_chunk(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                            bool role_chunk = false);
nlohmann::json usage_chunk(const ResponseMeta& m, int64_t n_prompt, int64_t n_completion);

}  // namespace llmkit::serve
