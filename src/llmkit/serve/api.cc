// OpenAI request parsing and response formatting; see api.h.
#include "llmkit/serve/api.h"

#include <cmath>
#include <limits>

namespace llmkit::serve {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError{400, message, "invalid_request_error", param, code};
}

const char* type_name(const json& v) { return v.type_name(); }

bool present(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

double get_number(const json& j, const char* key, double lo, double hi) {
  const json& v = j.at(key);
  if (!v.is_number()) bad(key, std::string("'") + key + "' must be a number, not " + type_name(v), "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(key, std::string("'") + key + "' is " + v.dump() + "; it must be in [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return x;
}

int64_t get_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json& v = j.at(key);
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(key, std::string("'") + key + "' is " + v.dump() + "; it must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::isfinite(v.get<double>()) && std::floor(v.get<double>()) == v.get<double>() &&
             std::fabs(v.get<double>()) < 9e15) {
    x = static_cast<int64_t>(v.get<double>());
  } else {
    bad(key, std::string("'") + key + "' must be an integer, not " + (v.is_number() ? v.dump() : type_name(v)), "invalid_type");
  }
  if (x < lo || x > hi)
    bad(key, std::string("'") + key + "' is " + std::to_string(x) + "; it must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

bool get_bool(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_boolean()) bad(key, std::string("'") + key + "' must be a boolean, not " + type_name(v), "invalid_type");
  return v.get<bool>();
}

// Message content: a string, or OpenAI's list of parts of which only {"type": "text"} is supported.
std::string content_text(const json& c, const std::string& param) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return "";
  if (!c.is_array()) bad(param, "'" + param + "' must be a string or a list of text parts, not " + type_name(c), "invalid_type");
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const json& part = c[i];
    const std::string p = param + "[" + std::to_string(i) + "]";
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad(p, "'" + p + "' must be an object with a string 'type'", "invalid_type");
    if (part["type"] != "text") bad(p + ".type", "only text content parts are supported, not '" + part["type"].get<std::string>() + "'");
    if (!part.contains("text") || !part["text"].is_string()) bad(p + ".text", "'" + p + ".text' must be a string", "invalid_type");
    out += part["text"].get<std::string>();
  }
  return out;
}

// The body as a JSON object, its nesting checked before the recursive parser sees it.
json parse_body(const std::string& body, const ApiLimits& limits) {
  if (json_too_deep(body, limits.max_json_depth))
    bad("", "the request JSON nests deeper than " + std::to_string(limits.max_json_depth) + " levels", "json_too_deep");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad("", "the request body is not valid JSON (UTF-8)", "invalid_json");
  if (!j.is_object()) bad("", std::string("the request body must be a JSON object, not ") + type_name(j), "invalid_type");
  return j;
}

// "model": optional, a string.
std::string model_of(const json& j) {
  if (!present(j, "model")) return "";
  if (!j.at("model").is_string()) bad("model", std::string("'model' must be a string, not ") + type_name(j.at("model")), "invalid_type");
  return j.at("model").get<std::string>();
}

}  // namespace

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return dump(json{{"error", err}});
}

bool json_too_deep(const std::string& body, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

ApiRequest parse_request(const std::string& body, bool chat, const ApiLimits& limits) {
  json j = parse_body(body, limits);

  ApiRequest r;
  r.chat = chat;
  // OpenAI's defaults: temperature 1, top_p 1, no top-k / min-p / repetition penalty.
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 1.0f;
  r.sampling.top_k = 0;
  r.sampling.min_p = 0.0f;
  r.sampling.repeat_penalty = 1.0f;
  r.sampling.repeat_last_n = -1;
  r.sampling.seed = std::random_device{}();

  r.model = model_of(j);
  if (chat) {
    if (!j.contains("messages")) bad("messages", "'messages' is required", "missing_required_parameter");
    const json& m = j["messages"];
    if (!m.is_array()) bad("messages", std::string("'messages' must be a list, not ") + type_name(m), "invalid_type");
    if (m.empty()) bad("messages", "'messages' is empty; give at least one message");
    if (m.size() > limits.max_messages) bad("messages", "more than " + std::to_string(limits.max_messages) + " messages");
    for (size_t i = 0; i < m.size(); ++i) {
      const std::string p = "messages[" + std::to_string(i) + "]";
      if (!m[i].is_object()) bad(p, "'" + p + "' must be an object", "invalid_type");
      if (!m[i].contains("role") || !m[i]["role"].is_string()) bad(p + ".role", "'" + p + ".role' must be a string", "invalid_type");
      std::string role = m[i]["role"].get<std::string>();
      if (role == "developer") role = "system";
      if (role != "system" && role != "user" && role != "assistant" && role != "tool")
        bad(p + ".role", "'" + p + ".role' is '" + role + "'; use system, user, assistant or tool");
      if (!m[i].contains("content")) bad(p + ".content", "'" + p + ".content' is required", "missing_required_parameter");
      r.messages.push_back({role, content_text(m[i]["content"], p + ".content")});
    }
  } else {
    if (!j.contains("prompt")) bad("prompt", "'prompt' is required", "missing_required_parameter");
    const json& p = j["prompt"];
    if (p.is_string()) {
      r.prompt = p.get<std::string>();
    } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
      r.prompt = p[0].get<std::string>();
    } else if (p.is_array() && !p.empty() && p[0].is_number()) {
      for (size_t i = 0; i < p.size(); ++i) {
        if (!p[i].is_number_integer() || p[i].get<int64_t>() < 0 || p[i].get<int64_t>() >= limits.n_vocab)
          bad("prompt", "'prompt[" + std::to_string(i) + "]' must be a token id in [0, " + std::to_string(limits.n_vocab) + ")");
        r.prompt_ids.push_back(static_cast<int32_t>(p[i].get<int64_t>()));
      }
    } else if (p.is_array() && p.size() > 1 && p[0].is_string()) {
      bad("prompt", "several prompts in one request are not supported yet; send one request per prompt");
    } else {
      bad("prompt", std::string("'prompt' must be a string or a list of token ids, not ") + type_name(p), "invalid_type");
    }
    if (r.prompt.empty() && r.prompt_ids.empty()) bad("prompt", "'prompt' is empty; give some text");
    if (present(j, "echo") && get_bool(j, "echo")) bad("echo", "'echo' is not supported yet");
    if (present(j, "best_of") && get_int(j, "best_of", 1, 1) != 1) bad("best_of", "best_of must be 1");
    if (present(j, "suffix")) bad("suffix", "'suffix' is not supported");
  }

  if (present(j, "stream")) r.stream = get_bool(j, "stream");
  if (present(j, "stream_options")) {
    const json& so = j["stream_options"];
    if (!so.is_object()) bad("stream_options", "'stream_options' must be an object", "invalid_type");
    if (present(so, "include_usage")) {
      if (!so["include_usage"].is_boolean())
        bad("stream_options.include_usage", "'stream_options.include_usage' must be a boolean", "invalid_type");
      r.include_usage = so["include_usage"].get<bool>();
    }
  }
  if (present(j, "n")) r.n = static_cast<int>(get_int(j, "n", 1, kMaxChoices));
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (present(j, key)) r.max_tokens = get_int(j, key, 1, limits.max_tokens);
  if (present(j, "temperature")) r.sampling.temperature = static_cast<float>(get_number(j, "temperature", 0, 2));
  if (present(j, "top_p")) {
    const double tp = get_number(j, "top_p", 0, 1);
    if (tp == 0) r.sampling.temperature = 0;  // the smallest nucleus: the top token
    else r.sampling.top_p = static_cast<float>(tp);
  }
  if (present(j, "top_k")) r.sampling.top_k = static_cast<int32_t>(get_int(j, "top_k", 0, limits.n_vocab > 0 ? limits.n_vocab : 1 << 20));
  if (present(j, "min_p")) r.sampling.min_p = static_cast<float>(get_number(j, "min_p", 0, 1));
  if (present(j, "presence_penalty")) r.sampling.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", -2, 2));
  if (present(j, "frequency_penalty")) r.sampling.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", -2, 2));
  r.has_seed = present(j, "seed");
  if (r.has_seed)
    r.sampling.seed = static_cast<uint64_t>(get_int(j, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  if (chat) {  // "logprobs": bool, "top_logprobs": 0..20 (only with logprobs: true, as OpenAI checks)
    const bool want = present(j, "logprobs") && get_bool(j, "logprobs");
    if (present(j, "top_logprobs")) {
      const auto k = static_cast<int>(get_int(j, "top_logprobs", 0, 20));
      if (!want) bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
      r.top_logprobs = k;
    } else if (want) {
      r.top_logprobs = 0;
    }
  } else {  // completions: "logprobs": 0..5 alternatives per token
    if (present(j, "logprobs") && !(j["logprobs"].is_boolean() && !j["logprobs"].get<bool>()))  // false: none
      r.top_logprobs = static_cast<int>(get_int(j, "logprobs", 0, 5));
    if (present(j, "top_logprobs")) bad("top_logprobs", "'top_logprobs' is a chat parameter; completions take \"logprobs\": N");
  }
  if (present(j, "logit_bias")) {  // {"token id": bias}, as OpenAI: ids as strings, bias in [-100, 100]
    const json& lb = j["logit_bias"];
    if (!lb.is_object()) bad("logit_bias", std::string("'logit_bias' must be an object of token id -> bias, not ") + type_name(lb), "invalid_type");
    if (lb.size() > 1024) bad("logit_bias", "'logit_bias' has more than 1024 entries");
    for (auto it = lb.begin(); it != lb.end(); ++it) {
      const std::string& key = it.key();
      const std::string param = "logit_bias." + key.substr(0, 32);
      int64_t id = -1;
      const bool digits = !key.empty() && key.size() <= 10 && key.find_first_not_of("0123456789") == std::string::npos;
      if (digits) id = std::stoll(key);
      if (!digits || id >= (limits.n_vocab > 0 ? limits.n_vocab : int64_t{1} << 31))
        bad(param, "'logit_bias' keys are token ids in [0, " + std::to_string(limits.n_vocab) + "); got '" + key.substr(0, 32) + "'");
      if (!it.value().is_number()) bad(param, "a logit bias must be a number", "invalid_type");
      const double v = it.value().get<double>();
      if (!(v >= -100 && v <= 100)) bad(param, "a logit bias must be in [-100, 100]");
      r.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(v));
    }
  }
  if (present(j, "tools") || present(j, "functions")) bad(present(j, "tools") ? "tools" : "functions", "tool calls are not supported yet");
  if (present(j, "stop")) {
    const json& s = j["stop"];
    auto add = [&](const json& v, const std::string& param) {
      if (!v.is_string()) bad(param, "'" + param + "' must be a string", "invalid_type");
      std::string t = v.get<std::string>();
      if (t.empty()) bad(param, "'" + param + "' is an empty stop string");
      if (t.size() > limits.max_stop_bytes) bad(param, "'" + param + "' is longer than " + std::to_string(limits.max_stop_bytes) + " bytes");
      r.stop.push_back(std::move(t));
    };
    if (s.is_string()) {
      add(s, "stop");
    } else if (s.is_array()) {
      if (s.size() > limits.max_stops) bad("stop", "more than " + std::to_string(limits.max_stops) + " stop strings");
      for (size_t i = 0; i < s.size(); ++i) add(s[i], "stop[" + std::to_string(i) + "]");
    } else {
      bad("stop", std::string("'stop' must be a string or a list of strings, not ") + type_name(s), "invalid_type");
    }
  }
  return r;
}

EmbeddingsRequest parse_embeddings_request(const std::string& body, const ApiLimits& limits, size_t max_inputs) {
  json j = parse_body(body, limits);
  EmbeddingsRequest r;
  r.model = model_of(j);
  if (present(j, "encoding_format")) {
    const json& f = j["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      bad("encoding_format", "'encoding_format' is " + f.dump() + "; use \"float\" or \"base64\"");
    r.base64 = f == "base64";
  }
  if (present(j, "dimensions")) bad("dimensions", "'dimensions' is not supported: the model's width is fixed", "unsupported_parameter");
  if (!present(j, "input")) bad("input", "'input' is required: a string, a list of strings, or token ids", "missing_required_parameter");
  const json& in = j["input"];
  auto ids_of = [&](const json& a, const std::string& param) {
    std::vector<int32_t> ids;
    for (const json& t : a) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || (limits.n_vocab > 0 && t.get<int64_t>() >= limits.n_vocab))
        bad(param, "'" + param + "' holds " + t.dump() + "; token ids must be integers in [0, " + std::to_string(limits.n_vocab) + ")");
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    if (ids.empty()) bad(param, "'" + param + "' is an empty list of token ids");
    return ids;
  };
  if (in.is_string()) {
    r.texts.push_back(in.get<std::string>());
  } else if (in.is_array() && !in.empty() && in[0].is_string()) {
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].is_string())
        bad("input", "'input[" + std::to_string(i) + "]' must be a string like the others, not " + type_name(in[i]), "invalid_type");
      r.texts.push_back(in[i].get<std::string>());
    }
  } else if (in.is_array() && !in.empty() && in[0].is_number()) {
    r.token_ids.push_back(ids_of(in, "input"));
  } else if (in.is_array() && !in.empty() && in[0].is_array()) {
    for (size_t i = 0; i < in.size(); ++i) {
      if (!in[i].is_array()) bad("input", "'input[" + std::to_string(i) + "]' must be a list of token ids", "invalid_type");
      r.token_ids.push_back(ids_of(in[i], "input[" + std::to_string(i) + "]"));
    }
  } else {
    bad("input", std::string("'input' must be a non-empty string, list of strings or token ids, not ") +
                     (in.is_array() ? "an empty list" : type_name(in)), "invalid_type");
  }
  for (size_t i = 0; i < r.texts.size(); ++i)
    if (r.texts[i].empty()) bad("input", "'input" + (in.is_string() ? std::string() : "[" + std::to_string(i) + "]") + "' is an empty string");
  const size_t n = r.texts.size() + r.token_ids.size();
  if (n > max_inputs) bad("input", "'input' has " + std::to_string(n) + " items; at most " + std::to_string(max_inputs) + " per request");
  return r;
}

std::string base64_encode(const void* data, size_t n) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t v = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) | (i + 2 < n ? uint32_t{p[i + 2]} : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < n ? kAlphabet[v & 63] : '=';
  }
  return out;
}

json embeddings_response(const std::string& model, const std::vector<std::vector<float>>& vectors, bool base64,
                         int64_t n_tokens) {
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    json e = {{"object", "embedding"}, {"index", i}};
    if (base64) e["embedding"] = base64_encode(vectors[i].data(), vectors[i].size() * sizeof(float));  // x86/ARM: little-endian
    else e["embedding"] = vectors[i];
    data.push_back(std::move(e));
  }
  return {{"object", "list"}, {"data", std::move(data)}, {"model", model},
          {"usage", {{"prompt_tokens", n_tokens}, {"total_tokens", n_tokens}}}};
}

json usage_json(int64_t n_prompt, int64_t n_completion) {
  return {{"prompt_tokens", n_prompt}, {"completion_tokens", n_completion}, {"total_tokens", n_prompt + n_completion}};
}

namespace {
json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}
}  // namespace

json logprobs_json(bool chat, const std::vector<LogprobEntry>& entries, int64_t* text_offset) {
  if (chat) {
    json content = json::array();
    for (const LogprobEntry& e : entries) {
      json top = json::array();
      for (const auto& [tok, lp] : e.top) top.push_back({{"token", tok}, {"logprob", lp}, {"bytes", bytes_of(tok)}});
      content.push_back({{"token", e.token}, {"logprob", e.logprob}, {"bytes", bytes_of(e.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}, {"refusal", nullptr}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& [tok, lp] : e.top)
      if (!top.contains(tok)) top[tok] = lp;  // two ids with the same text: the likelier one
    tops.push_back(top);
    offsets.push_back(*text_offset);
    *text_offset += static_cast<int64_t>(e.token.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json full_response(const ResponseMeta& m, const std::vector<Choice>& choices, int64_t n_prompt, int64_t n_completion) {
  json arr = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice& c = choices[i];
    int64_t offset = 0;
    json choice = {{"index", i}, {"finish_reason", c.finish_reason},
                   {"logprobs", c.logprobs ? logprobs_json(m.chat, c.entries, &offset) : json(nullptr)}};
    if (m.chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    arr.push_back(std::move(choice));
  }
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", "llmkit"},
          {"choices", std::move(arr)},
          {"usage", usage_json(n_prompt, n_completion)}};
}

json full_response(const ResponseMeta& m, const std::string& text, const std::string& finish_reason, int64_t n_prompt,
                   int64_t n_completion) {
  return full_response(m, std::vector<Choice>{Choice{text, finish_reason, false, {}}}, n_prompt, n_completion);
}

json stream_chunk(const ResponseMeta& m, const std::string& text, const std::string& finish_reason, bool role_chunk,
                  int index, const json* logprobs) {
  json choice = {{"index", index}, {"logprobs", logprobs ? *logprobs : json(nullptr)},
                 {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (m.chat) {
    json delta = json::object();
    if (role_chunk) delta["role"] = "assistant";
    if (role_chunk || !text.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", m.id},
          {"object", m.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", "llmkit"},
          {"choices", json::array({choice})}};
}

json usage_chunk(const ResponseMeta& m, int64_t n_prompt, int64_t n_completion) {
  json c = stream_chunk(m, "", "");
  c["choices"] = json::array();
  c["usage"] = usage_json(n_prompt, n_completion);
  return c;
}

}  // namespace llmkit::serve
