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
  bool has_seed = false;               // "seed" given (else the server draws one)
  std::vector<std::string> stop;
  std::vector<std::pair<int32_t, float>> logit_bias;  // token id -> bias in [-100, 100], added to the logits
  int n = 1;                           // choices, 1..kMaxChoices
  int top_logprobs = -1;               // -1: no logprobs; chat: "logprobs": true + "top_logprobs" (0..20);
                                       // completions: "logprobs": 0..5
};
constexpr int kMaxChoices = 16;

// Throws ApiError (status 400) for malformed JSON, too deep nesting, a wrong type, an out-of-range
// number, an empty prompt, or a feature not supported (tools, echo, suffix, best_of > 1).
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

// One generated token's logprob, as text: `token` its bytes (token_bytes), `top` the most likely
// alternatives at that step, most likely first.
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};
// The "logprobs" object of a choice. Chat: {"content": [{token, logprob, bytes, top_logprobs:
// [{token, logprob, bytes}]}], "refusal": null}. Completions: {tokens, token_logprobs,
// top_logprobs: [{token: logprob}], text_offset}, offsets counted in bytes of the completion from
// *text_offset, which advances (so stream chunks continue where the last one ended).
nlohmann::json logprobs_json(bool chat, const std::vector<LogprobEntry>& entries, int64_t* text_offset);

struct Choice {
  std::string text, finish_reason;
  bool logprobs = false;              // requested: "logprobs" is an object, else null
  std::vector<LogprobEntry> entries;
};
// The whole non-streamed response: choices[i] has index i.
nlohmann::json full_response(const ResponseMeta& m, const std::vector<Choice>& choices, int64_t n_prompt,
                             int64_t n_completion);
nlohmann::json full_response(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                             int64_t n_prompt, int64_t n_completion);
// One stream chunk of choice `index`: a piece of text (finish_reason empty), or the last one
// (finish_reason set). Chat's first chunk carries the role (role_chunk). `logprobs`, when given,
// is the choice's "logprobs" value for this chunk's tokens.
nlohmann::json stream_chunk(const ResponseMeta& m, const std::string& text, const std::string& finish_reason,
                            bool role_chunk = false, int index = 0, const nlohmann::json* logprobs = nullptr);
nlohmann::json usage_chunk(const ResponseMeta& m, int64_t n_prompt, int64_t n_completion);

}  // namespace llmkit::serve
