// The OpenAI request parser and response builders of the server (src/llmkit/serve/api.h) without a
// model or a socket, so these checks run everywhere: defaults, every field's type and range, the
// error body shape, the JSON depth pre-check, and the response / stream chunk formats.
#include <algorithm>
#include <cmath>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "llmkit/serve/api.h"
#include "llmkit/serve/scheduler.h"

namespace llmkit::serve {
namespace {

using nlohmann::json;

ApiLimits limits() {
  ApiLimits l;
  l.n_vocab = 1000;
  l.max_tokens = 4096;
  return l;
}

std::string param_of_error(const std::string& body, bool chat) {
  try {
    parse_request(body, chat, limits());
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_FALSE(e.message.empty());
    return e.param.empty() ? "<none>" : e.param;
  }
  return "<accepted>";
}

TEST(ServeApi, ChatDefaultsAreOpenAIs) {
  ApiRequest r = parse_request(R"({"model": "m", "messages": [{"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}]})", true, limits());
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.max_tokens, -1);
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
}

TEST(ServeApi, AllParametersParse) {
  ApiRequest r = parse_request(R"({"prompt": "x", "max_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": -3,
      "stop": ["a", "bc"], "presence_penalty": 1.5, "frequency_penalty": -0.5, "n": 1, "stream": true,
      "stream_options": {"include_usage": true}, "top_k": 5, "logprobs": false, "user": "u"})", false, limits());
  EXPECT_EQ(r.prompt, "x");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(r.sampling.presence_penalty, 1.5f);
  EXPECT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.sampling.top_k, 5);
  ApiRequest ids = parse_request(R"({"prompt": [1, 2, 999], "stop": "\n", "max_tokens": 3.0, "top_p": 0})", false, limits());
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{1, 2, 999}));
  EXPECT_EQ(ids.stop, (std::vector<std::string>{"\n"}));
  EXPECT_EQ(ids.max_tokens, 3);
  EXPECT_EQ(ids.sampling.temperature, 0.0f);  // top_p 0: the top token only
  // null means "not given", as the OpenAI clients send it.
  ApiRequest nulls = parse_request(R"({"prompt": "x", "max_tokens": null, "stop": null, "temperature": null})", false, limits());
  EXPECT_EQ(nulls.max_tokens, -1);
}

TEST(ServeApi, EveryBadFieldIsNamed) {
  const std::string m = R"("messages": [{"role": "user", "content": "hi"}])";
  struct Case {
    std::string body;
    bool chat;
    const char* param;
  };
  const Case cases[] = {
      {"", true, "<none>"},
      {"{", true, "<none>"},
      {"null", true, "<none>"},
      {"\"text\"", true, "<none>"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}", true, "<none>"},  // invalid UTF-8
      {std::string(100, '[') + std::string(100, ']'), true, "<none>"},
      {"{}", true, "messages"},
      {R"({"messages": {}})", true, "messages"},
      {R"({"messages": [1]})", true, "messages[0]"},
      {R"({"messages": [{"content": "x"}]})", true, "messages[0].role"},
      {R"({"messages": [{"role": "user"}]})", true, "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", true, "messages[0].content[0].type"},
      {R"({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})", true, "messages[0].content[0].text"},
      {"{" + m + R"(, "model": 5})", true, "model"},
      {"{" + m + R"(, "n": 0})", true, "n"},
      {"{" + m + R"(, "n": 17})", true, "n"},
      {"{" + m + R"(, "n": 1e100})", true, "n"},
      {"{" + m + R"(, "max_tokens": 0})", true, "max_tokens"},
      {"{" + m + R"(, "max_tokens": 5000})", true, "max_tokens"},
      {"{" + m + R"(, "max_tokens": 18446744073709551615})", true, "max_tokens"},
      {"{" + m + R"(, "max_completion_tokens": -1})", true, "max_completion_tokens"},
      {"{" + m + R"(, "max_tokens": 2.5})", true, "max_tokens"},
      {"{" + m + R"(, "max_tokens": true})", true, "max_tokens"},
      {"{" + m + R"(, "temperature": -0.1})", true, "temperature"},
      {"{" + m + R"(, "temperature": [1]})", true, "temperature"},
      {"{" + m + R"(, "top_p": -1})", true, "top_p"},
      {"{" + m + R"(, "top_k": 1001})", true, "top_k"},
      {"{" + m + R"(, "presence_penalty": 2.01})", true, "presence_penalty"},
      {"{" + m + R"(, "frequency_penalty": "1"})", true, "frequency_penalty"},
      {"{" + m + R"(, "seed": "42"})", true, "seed"},
      {"{" + m + R"(, "stop": ""})", true, "stop"},
      {"{" + m + R"(, "stop": [""]})", true, "stop[0]"},
      {"{" + m + R"(, "stop": {"a": 1}})", true, "stop"},
      {"{" + m + R"(, "stop": ["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]})", true, "stop"},
      {"{" + m + R"(, "stream": 1})", true, "stream"},
      {"{" + m + R"(, "stream_options": true})", true, "stream_options"},
      {"{" + m + R"(, "stream_options": {"include_usage": "yes"}})", true, "stream_options.include_usage"},
      {"{" + m + R"(, "logprobs": 2})", true, "logprobs"},
      {"{" + m + R"(, "top_logprobs": 2})", true, "top_logprobs"},  // without "logprobs": true
      {"{" + m + R"(, "logprobs": true, "top_logprobs": 21})", true, "top_logprobs"},
      {R"({"prompt": "x", "logprobs": true})", false, "logprobs"},
      {R"({"prompt": "x", "logprobs": 6})", false, "logprobs"},
      {R"({"prompt": "x", "top_logprobs": 2})", false, "top_logprobs"},
      {"{" + m + R"(, "tools": []})", true, "tools"},
      {R"({})", false, "prompt"},
      {R"({"prompt": ""})", false, "prompt"},
      {R"({"prompt": [""]})", false, "prompt"},
      {R"({"prompt": ["a", "b"]})", false, "prompt"},
      {R"({"prompt": [1, -1]})", false, "prompt"},
      {R"({"prompt": [1, 1000]})", false, "prompt"},
      {R"({"prompt": [1, 2.5]})", false, "prompt"},
      {R"({"prompt": {"text": "x"}})", false, "prompt"},
      {R"({"prompt": "x", "echo": true})", false, "echo"},
      {R"({"prompt": "x", "best_of": 2})", false, "best_of"},
      {R"({"prompt": "x", "suffix": "y"})", false, "suffix"},
  };
  for (const Case& c : cases) EXPECT_EQ(param_of_error(c.body, c.chat), c.param) << c.body.substr(0, 120);
}

TEST(ServeApi, ChoicesAndLogprobsParse) {
  const std::string m = R"("messages": [{"role": "user", "content": "hi"}])";
  ApiRequest a = parse_request("{" + m + R"(, "n": 3, "logprobs": true, "top_logprobs": 5})", true, limits());
  EXPECT_EQ(a.n, 3);
  EXPECT_EQ(a.top_logprobs, 5);
  EXPECT_FALSE(a.has_seed);
  ApiRequest b = parse_request("{" + m + R"(, "logprobs": true, "seed": 7})", true, limits());
  EXPECT_EQ(b.top_logprobs, 0);
  EXPECT_TRUE(b.has_seed);
  EXPECT_EQ(parse_request("{" + m + R"(, "logprobs": false})", true, limits()).top_logprobs, -1);
  EXPECT_EQ(parse_request("{" + m + "}", true, limits()).top_logprobs, -1);
  EXPECT_EQ(parse_request(R"({"prompt": "x", "logprobs": 3})", false, limits()).top_logprobs, 3);
  EXPECT_EQ(parse_request(R"({"prompt": "x", "logprobs": 0})", false, limits()).top_logprobs, 0);
  EXPECT_EQ(parse_request(R"({"prompt": "x", "n": 16})", false, limits()).n, 16);
  ApiRequest lb = parse_request(R"({"prompt": "x", "logit_bias": {"5": -100, "17": 2.5}})", false, limits());
  std::sort(lb.logit_bias.begin(), lb.logit_bias.end());
  EXPECT_EQ(lb.logit_bias, (std::vector<std::pair<int32_t, float>>{{5, -100.0f}, {17, 2.5f}}));
  for (const char* bad : {R"({"prompt": "x", "logit_bias": [1]})", R"({"prompt": "x", "logit_bias": {"a": 1}})",
                          R"({"prompt": "x", "logit_bias": {"-1": 1}})", R"({"prompt": "x", "logit_bias": {"5": 101}})",
                          R"({"prompt": "x", "logit_bias": {"5": "1"}})", R"({"prompt": "x", "logit_bias": {"99999999999": 1}})"}) {
    try {
      parse_request(bad, false, limits());
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      EXPECT_EQ(e.param.rfind("logit_bias", 0), 0u) << e.param;
    }
  }
}

// log_softmax by hand on 4 logits: exp sums to 1, the top list is sorted, ties go to the lower id.
TEST(ServeApi, TokenLogprobIsLogSoftmaxOfRawLogits) {
  const float logits[4] = {1.0f, 3.0f, 3.0f, -2.0f};
  TokenLogprob lp;
  token_logprob(logits, 4, 0, 3, &lp);
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  EXPECT_NEAR(lp.logprob, 1.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_EQ(lp.top[2].first, 0);
  EXPECT_NEAR(lp.top[0].second, 3.0 - std::log(z), 1e-6);
  double total = 0;
  token_logprob(logits, 4, 3, 4, &lp);
  for (const auto& t : lp.top) total += std::exp(static_cast<double>(t.second));
  EXPECT_NEAR(total, 1.0, 1e-6);
  token_logprob(logits, 4, 3, 0, &lp);
  EXPECT_TRUE(lp.top.empty());
}

TEST(ServeApi, LogprobsJsonInBothFormats) {
  std::vector<LogprobEntry> e = {{"Hi", -0.5f, {{"Hi", -0.5f}, {"Hey", -1.5f}}}, {"\xe4\xbd", -0.1f, {}}};
  int64_t off = 0;
  json c = logprobs_json(true, e, &off);
  ASSERT_EQ(c["content"].size(), 2u);
  EXPECT_EQ(c["content"][0]["token"], "Hi");
  EXPECT_FLOAT_EQ(c["content"][0]["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(c["content"][0]["bytes"], json::array({72, 105}));
  EXPECT_EQ(c["content"][0]["top_logprobs"][1]["token"], "Hey");
  EXPECT_EQ(c["content"][1]["bytes"], json::array({0xe4, 0xbd}));  // half a character: the bytes say so
  EXPECT_TRUE(c["refusal"].is_null());
  EXPECT_FALSE(json::parse(dump(c), nullptr, false).is_discarded());
  off = 10;
  json t = logprobs_json(false, e, &off);
  EXPECT_EQ(t["tokens"][0], "Hi");
  EXPECT_FLOAT_EQ(t["token_logprobs"][1].get<float>(), -0.1f);
  EXPECT_FLOAT_EQ(t["top_logprobs"][0]["Hey"].get<float>(), -1.5f);
  EXPECT_EQ(t["text_offset"], json::array({10, 12}));
  EXPECT_EQ(off, 14);

  ResponseMeta meta{"chatcmpl-1", "m", 123, true};
  json full = full_response(meta, {Choice{"a", "stop", true, e}, Choice{"b", "length", true, {}}}, 3, 4);
  ASSERT_EQ(full["choices"].size(), 2u);
  EXPECT_EQ(full["choices"][1]["index"], 1);
  EXPECT_EQ(full["choices"][1]["message"]["content"], "b");
  EXPECT_EQ(full["choices"][0]["logprobs"]["content"].size(), 2u);
  EXPECT_EQ(full["usage"]["total_tokens"], 7);
  json lj = logprobs_json(true, e, &off);
  json chunk = stream_chunk(meta, "x", "", false, 1, &lj);
  EXPECT_EQ(chunk["choices"][0]["index"], 1);
  EXPECT_EQ(chunk["choices"][0]["logprobs"]["content"].size(), 2u);
  EXPECT_TRUE(full_response(meta, "a", "stop", 1, 1)["choices"][0]["logprobs"].is_null());
}

TEST(ServeApi, DepthCheckIgnoresBracketsInStrings) {
  EXPECT_FALSE(json_too_deep(R"({"a": "[[[[[[[[[[[[[[[[[[[[", "b": "\"[[[["})", 3));
  EXPECT_TRUE(json_too_deep("[[[[", 3));
  EXPECT_FALSE(json_too_deep("[[[]]]", 3));
}

TEST(ServeApi, ErrorBodyAndChunksAreOpenAIShaped) {
  json e = json::parse(error_body(ApiError{400, "bad", "invalid_request_error", "top_p", "invalid_value"}));
  EXPECT_EQ(e["error"]["message"], "bad");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "top_p");
  EXPECT_EQ(e["error"]["code"], "invalid_value");
  json n = json::parse(error_body(ApiError{429, "busy", "rate_limit_error", "", ""}));
  EXPECT_TRUE(n["error"]["param"].is_null());
  EXPECT_TRUE(n["error"]["code"].is_null());

  ResponseMeta meta{"chatcmpl-1", "m", 123, true};
  json full = full_response(meta, "hello", "stop", 3, 2);
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(full["usage"]["total_tokens"], 5);
  json role = stream_chunk(meta, "", "", true);
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  json last = stream_chunk(meta, "", "length");
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  json usage = usage_chunk(meta, 3, 2);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  ResponseMeta text_meta{"cmpl-1", "m", 123, false};
  EXPECT_EQ(stream_chunk(text_meta, "abc", "")["choices"][0]["text"], "abc");
  EXPECT_EQ(stream_chunk(text_meta, "abc", "")["object"], "text_completion");
  // Invalid UTF-8 never leaves the server: dump() replaces it.
  std::string out = dump(json{{"t", std::string("a\xff" "b")}});
  EXPECT_FALSE(json::parse(out, nullptr, false).is_discarded()) << out;
}

}  // namespace
}  // namespace llmkit::serve
