// `llmkit serve` in-process on a free loopback port, driven over HTTP with cpp-httplib's client:
// health and models, greedy chat, streaming chunks (valid JSON, concatenating to the non-streamed
// text), 4 concurrent greedy requests equal to the same requests one at a time, and the server
// cases of RELIABILITY.md (status codes and OpenAI-style JSON error bodies, 429 when full,
// cancellation on disconnect, auth). Needs the default model (skipped when not installed).
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "llmkit/models/transformer.h"
#include "llmkit/serve.h"
#include "llmkit/tokenizer.h"

namespace llmkit {
namespace {

using nlohmann::json;

std::string default_model() {
  const char* home = std::getenv("LLMKIT_HOME");
  std::string dir = home ? std::string(home) + "/models" : std::string(std::getenv("HOME")) + "/.cache/llmkit/models";
  return dir + "/SmolLM2-135M-Instruct-Q4_1.gguf";
}

// A server on its own thread; stopped and joined on destruction.
struct Running {
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;
  explicit Running(ServeOptions o) {
    o.model = default_model();
    o.port = 0;
    server = Server::create(o);
    port = server->bind();
    thread = std::thread([this] { server->run(); });
  }
  ~Running() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    return c;
  }
  nlohmann::json health() const {
    auto c = client();
    auto r = c.Get("/health");
    return r ? nlohmann::json::parse(r->body) : nlohmann::json();
  }
  // Polls /health for up to ~3 s until no slot is processing and nothing is queued.
  bool wait_idle() const {
    for (int i = 0; i < 300; ++i) {
      const nlohmann::json h = health();
      if (h["slots_processing"] == 0 && h["queue"] == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(default_model())) return;
    ServeOptions o;
    o.parallel = 4;
    o.ctx_size = 512;
    // Small, so a longer prompt is prefilled in several chunks interleaved with the others' decodes.
    // Every row's logits are independent of what shares its pass (the int8 kernels and attention
    // are batch invariant: quant_i8.h, kernels/cpu/attention.cc), which is what makes "concurrent
    // == one at a time" exact; tests/test_serve_load.py checks it at the default batch size.
    o.batch_size = 16;
    o.queue_size = 16;
    server_ = new Running(o);
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (!server_) GTEST_SKIP() << "default model not installed (scripts/setup)";
  }
  static json post(const std::string& path, const json& body, int expect_status = 200) {
    auto c = server_->client();
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << "no response";
    if (!r) return json();
    EXPECT_EQ(r->status, expect_status) << r->body;
    json j = json::parse(r->body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r->body;
    return j;
  }
  static Running* server_;
};
Running* Serve::server_ = nullptr;

json chat_body(const std::string& user, int max_tokens = 32) {
  return {{"model", "SmolLM2-135M-Instruct-Q4_1"},
          {"messages", json::array({{{"role", "user"}, {"content", user}}})},
          {"temperature", 0},
          {"max_tokens", max_tokens}};
}

// Parses an SSE body: the JSON of every "data:" event before "[DONE]"; fails if [DONE] is missing.
std::vector<json> sse_events(const std::string& body) {
  std::vector<json> out;
  bool done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event at " << pos;
    if (end == std::string::npos) break;
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind(":", 0) == 0) continue;  // an SSE comment (keep-alive)
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    std::string data = ev.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    EXPECT_FALSE(done) << "event after [DONE]";
    json j = json::parse(data, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "chunk is not valid JSON: " << data;
    out.push_back(j);
  }
  EXPECT_TRUE(done) << "no data: [DONE]";
  return out;
}

// Completions with logprobs: the first token's logprob and its alternatives equal log_softmax of
// the model's own logits for the prompt (Transformer::forward, independent of the server), greedy
// picks the top alternative at every step, the tokens spell the text, and n = 2 greedy choices agree.
TEST_F(Serve, CompletionLogprobsMatchTheModel) {
  const std::string prompt = "The capital of France is";
  json j = post("/v1/completions", {{"prompt", prompt}, {"temperature", 0}, {"max_tokens", 6}, {"logprobs", 3}, {"n", 2}});
  ASSERT_EQ(j["choices"].size(), 2u) << j.dump();
  const json& lp = j["choices"][0]["logprobs"];
  ASSERT_TRUE(lp.is_object()) << j.dump();
  const std::string text = j["choices"][0]["text"];
  EXPECT_EQ(j["choices"][1]["text"], text);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["usage"]["completion_tokens"].get<int64_t>(), 2 * static_cast<int64_t>(lp["tokens"].size()));
  std::string spelled;
  for (size_t i = 0; i < lp["tokens"].size(); ++i) {
    spelled += lp["tokens"][i].get<std::string>();
    const float got = lp["token_logprobs"][i];
    EXPECT_LE(got, 0.0f);
    float best = -1e30f;
    for (auto& [tok, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<float>());
    EXPECT_FLOAT_EQ(got, best) << "greedy token " << i << " is not the top alternative";
    EXPECT_EQ(lp["text_offset"][i].get<size_t>(), spelled.size() - lp["tokens"][i].get<std::string>().size());
  }
  EXPECT_EQ(spelled, text);

  auto model = models::Transformer::load(default_model());
  model->set_kv_dtype(DType::kF16);  // as the server's default --kv-type
  Tokenizer tok = Tokenizer::load(default_model());
  std::vector<int32_t> ids = tok.encode(prompt, true);
  models::KVCache cache = model->new_cache(64);
  Tensor logits = model->forward(ids, cache, 1);
  const float* l = logits.data<float>();
  const int64_t V = logits.dim(-1);
  double mx = -1e30, z = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(l[i]));
  for (int64_t i = 0; i < V; ++i) z += std::exp(l[i] - mx);
  std::vector<int64_t> order(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) order[static_cast<size_t>(i)] = i;
  std::partial_sort(order.begin(), order.begin() + 3, order.end(), [&](int64_t a, int64_t b) { return l[a] > l[b]; });
  for (int r = 0; r < 3; ++r) {
    const std::string t = tok.token_bytes(static_cast<int32_t>(order[static_cast<size_t>(r)]));
    ASSERT_TRUE(lp["top_logprobs"][0].contains(t)) << "alternative " << r << " '" << t << "' missing: " << lp["top_logprobs"][0].dump();
    EXPECT_NEAR(lp["top_logprobs"][0][t].get<double>(), l[order[static_cast<size_t>(r)]] - mx - std::log(z), 1e-4);
  }
  EXPECT_EQ(lp["tokens"][0], tok.token_bytes(static_cast<int32_t>(order[0])));
}

// logit_bias +100 on one token makes greedy decoding emit only it; -100 on the greedy first token
// changes the first token.
TEST_F(Serve, LogitBiasSteersSampling) {
  json j = post("/v1/completions", {{"prompt", "Hello"}, {"temperature", 0}, {"max_tokens", 4}, {"logprobs", 0},
                                    {"logit_bias", {{"330", 100}}}});
  for (const json& t : j["choices"][0]["logprobs"]["tokens"]) EXPECT_EQ(t, j["choices"][0]["logprobs"]["tokens"][0]);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(Tokenizer::load(default_model()).encode(j["choices"][0]["logprobs"]["tokens"][0].get<std::string>(), false),
            std::vector<int32_t>{330});
  json base = post("/v1/completions", {{"prompt", "Hello"}, {"temperature", 0}, {"max_tokens", 1}, {"logprobs", 0}});
  const std::string first = base["choices"][0]["logprobs"]["tokens"][0];
  const std::vector<int32_t> ids = Tokenizer::load(default_model()).encode(first, false);
  ASSERT_EQ(ids.size(), 1u) << first;
  json banned = post("/v1/completions", {{"prompt", "Hello"}, {"temperature", 0}, {"max_tokens", 1}, {"logprobs", 0},
                                         {"logit_bias", {{std::to_string(ids[0]), -100}}}});
  EXPECT_NE(banned["choices"][0]["logprobs"]["tokens"][0], first);
}

// Chat, n = 3 sampled choices with a seed, streamed with logprobs: every choice ends once, its
// logprob tokens spell its streamed text, the choices differ (seed + i each), and the same request
// unstreamed gives the same three texts.
TEST_F(Serve, StreamedChoicesWithLogprobs) {
  json body = chat_body("Write one word about the sea.", 12);
  body["temperature"] = 1.0;
  body["top_p"] = 1.0;
  body["seed"] = 1234;
  body["n"] = 3;
  body["logprobs"] = true;
  body["top_logprobs"] = 2;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto c = server_->client();
  auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  std::map<int, std::string> text, spelled;
  std::map<int, int> finishes, n_tokens;
  int64_t usage = -1;
  for (const json& ev : sse_events(r->body)) {
    if (ev.contains("usage") && ev["usage"].is_object()) usage = ev["usage"]["completion_tokens"];
    for (const json& ch : ev["choices"]) {
      const int i = ch["index"];
      if (ch["delta"].contains("content")) text[i] += ch["delta"]["content"].get<std::string>();
      if (ch["logprobs"].is_object()) {
        for (const json& t : ch["logprobs"]["content"]) {
          spelled[i] += t["token"].get<std::string>();
          EXPECT_EQ(t["top_logprobs"].size(), 2u);
          EXPECT_LE(t["logprob"].get<double>(), 0.0);
          ++n_tokens[i];
        }
      }
      if (!ch["finish_reason"].is_null()) ++finishes[i];
    }
  }
  ASSERT_EQ(finishes.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(finishes[i], 1) << i;
    EXPECT_EQ(spelled[i], text[i]) << i;
  }
  EXPECT_EQ(usage, n_tokens[0] + n_tokens[1] + n_tokens[2]);
  EXPECT_FALSE(text[0] == text[1] && text[1] == text[2]) << "three seeds gave one text: " << text[0];

  body["stream"] = false;
  body.erase("stream_options");
  json full = post("/v1/chat/completions", body);
  ASSERT_EQ(full["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(full["choices"][i]["message"]["content"], text[i]) << i;
    EXPECT_EQ(full["choices"][i]["logprobs"]["content"].size(), static_cast<size_t>(n_tokens[i])) << i;
  }
  // Without a seed, two identical sampled requests differ (the server draws a seed per request).
  body.erase("seed");
  body["n"] = 1;
  body["max_tokens"] = 24;
  json a = post("/v1/chat/completions", body), b = post("/v1/chat/completions", body);
  EXPECT_NE(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
}

TEST_F(Serve, HealthAndModels) {
  auto c = server_->client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  json hj = json::parse(h->body);
  EXPECT_EQ(hj["status"], "ok");
  EXPECT_EQ(hj["slots"], 4);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  json mj = json::parse(m->body);
  EXPECT_EQ(mj["object"], "list");
  ASSERT_EQ(mj["data"].size(), 1u);
  EXPECT_EQ(mj["data"][0]["id"], "SmolLM2-135M-Instruct-Q4_1");
}

// /metrics: Prometheus text whose counters move by exactly what two requests did.
std::map<std::string, double> scrape(const Running& server) {
  auto c = server.client();
  auto r = c.Get("/metrics");
  EXPECT_TRUE(r);
  std::map<std::string, double> m;
  if (!r) return m;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    m[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return m;
}

// Prefix caching: a repeated prompt reuses every whole 16-token page of it but the one holding its
// last token (that token is fed to get logits) from the pages the first request left cached, and
// the reply is the same as computed from scratch; the next turn of the conversation reuses the
// previous turn's prompt and reply.
TEST_F(Serve, PrefixCacheReusesAFinishedRequestsTokens) {
  const json body = chat_body("Prefix cache check: name a fruit that is yellow.", 12);
  auto before = scrape(*server_);
  json first = post("/v1/chat/completions", body);
  const int64_t n_prompt = first["usage"]["prompt_tokens"];
  // Gauges follow at the end of the scheduler's step; counters are final with the response.
  auto settled = [&] {
    auto m = scrape(*server_);
    for (int i = 0; i < 50 && (m["llmkit_running_sequences"] != 0 || m["llmkit_kv_blocks_used"] != 0); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      m = scrape(*server_);
    }
    return m;
  };
  auto mid = settled();
  // At most the chat template's default system prompt is shared with earlier requests.
  EXPECT_LT(mid["llmkit_prefix_cache_hit_tokens_total"] - before["llmkit_prefix_cache_hit_tokens_total"], n_prompt - 16);
  EXPECT_GE(mid["llmkit_kv_blocks_cached"], n_prompt / 16);
  EXPECT_EQ(mid["llmkit_kv_blocks_used"], 0);
  json again = post("/v1/chat/completions", body);
  EXPECT_EQ(again["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
  auto after = settled();
  EXPECT_EQ(after["llmkit_prefix_cache_hit_tokens_total"] - mid["llmkit_prefix_cache_hit_tokens_total"],
            (n_prompt - 1) / 16 * 16);
  EXPECT_GT(after["llmkit_prefix_cache_hit_rate"], 0);
  EXPECT_EQ(after["llmkit_kv_cache_positions_used"], 0);
  EXPECT_EQ(after["llmkit_kv_blocks_used"], 0);

  json turn2 = body;
  turn2["messages"].push_back({{"role", "assistant"}, {"content", first["choices"][0]["message"]["content"]}});
  turn2["messages"].push_back({{"role", "user"}, {"content", "And a red one?"}});
  json second = post("/v1/chat/completions", turn2);
  auto last = scrape(*server_);
  EXPECT_GE(last["llmkit_prefix_cache_hit_tokens_total"] - after["llmkit_prefix_cache_hit_tokens_total"], n_prompt / 16 * 16)
      << "the second turn did not reuse the first turn's tokens";
  EXPECT_FALSE(second["choices"][0]["message"]["content"].get<std::string>().empty());
}

// Prefix sharing among running requests: the n choices of one request compute the prompt once
// (the others wait a step for its pages and share them, read-only), and their replies are those of
// the same prompt computed alone. Every page comes back afterwards.
TEST_F(Serve, ConcurrentChoicesShareThePromptsPages) {
  std::string question = "Now name a colour.";
  for (int i = 0; i < 12; ++i) question += " Here is sentence number " + std::to_string(i) + " of a long postscript.";
  // A system prompt of its own: no page of this prompt was published by another test.
  json body = chat_body(question, 6);
  body["messages"].insert(body["messages"].begin(), json{{"role", "system"}, {"content", "Sharing test: be brief."}});
  json body3 = body;
  body3["n"] = 3;
  auto before = scrape(*server_);
  json three = post("/v1/chat/completions", body3);
  ASSERT_EQ(three["choices"].size(), 3u);
  json single = post("/v1/chat/completions", body);  // greedy: every choice must equal it
  const int64_t n_prompt = single["usage"]["prompt_tokens"];
  EXPECT_EQ(three["usage"]["prompt_tokens"], n_prompt);  // counted once, as OpenAI does
  ASSERT_GT(n_prompt, 128);
  for (const auto& c : three["choices"]) EXPECT_EQ(c["message"]["content"], single["choices"][0]["message"]["content"]);
  auto after = scrape(*server_);
  for (int i = 0; i < 50 && (after["llmkit_running_sequences"] != 0 || after["llmkit_kv_blocks_used"] != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    after = scrape(*server_);
  }
  // Two of the three choices, then the single request, found the prompt's pages published.
  EXPECT_EQ(after["llmkit_prefix_cache_hit_tokens_total"] - before["llmkit_prefix_cache_hit_tokens_total"],
            3 * ((n_prompt - 1) / 16 * 16));
  EXPECT_EQ(after["llmkit_kv_blocks_used"], 0);
  EXPECT_EQ(after["llmkit_kv_cache_positions_used"], 0);
}

TEST_F(Serve, MetricsCountRequestsTokensAndLatencies) {
  const auto before = scrape(*server_);
  ASSERT_TRUE(before.count("llmkit_generation_tokens_total"));
  int64_t prompt = 0, completion = 0, sampled = 0, length = 0, stop = 0;
  for (const char* q : {"Write a long story about a dragon.", "Count from one to one hundred."}) {
    json r = post("/v1/chat/completions", chat_body(q, 8));
    prompt += r["usage"]["prompt_tokens"].get<int64_t>();
    const int64_t n = r["usage"]["completion_tokens"].get<int64_t>();
    completion += n;
    // "stop" without stop strings: the end-of-turn token was sampled (and not counted as output).
    const bool eos = r["choices"][0]["finish_reason"] == "stop";
    (eos ? stop : length) += 1;
    sampled += n + (eos ? 1 : 0);
  }
  // Counters are final when the response arrives; gauges follow at the end of the scheduler's step.
  auto after = scrape(*server_);
  for (int i = 0; i < 50 && (after["llmkit_running_sequences"] != 0 || after["llmkit_kv_cache_positions_used"] != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = scrape(*server_);
  }
  auto delta = [&](const std::string& k) {
    EXPECT_TRUE(after.count(k)) << k;
    return after.at(k) - (before.count(k) ? before.at(k) : 0.0);
  };
  EXPECT_GT(completion, 0);
  EXPECT_EQ(delta("llmkit_generation_tokens_total"), completion);
  EXPECT_EQ(delta("llmkit_prompt_tokens_total"), prompt);
  EXPECT_EQ(delta("llmkit_requests_total{reason=\"length\"}"), length);
  EXPECT_EQ(delta("llmkit_requests_total{reason=\"stop\"}"), stop);
  EXPECT_EQ(delta("llmkit_time_to_first_token_seconds_count"), 2);
  EXPECT_EQ(delta("llmkit_inter_token_latency_seconds_count"), sampled - 2);
  EXPECT_GT(delta("llmkit_time_to_first_token_seconds_sum"), 0);
  EXPECT_EQ(after.at("llmkit_running_sequences"), 0);
  EXPECT_EQ(after.at("llmkit_kv_cache_positions_used"), 0);  // every page back: free or cached
  EXPECT_EQ(after.at("llmkit_kv_blocks_used"), 0);
  EXPECT_EQ(after.at("llmkit_kv_blocks_total"), 4 * 512 / 16);
  EXPECT_EQ(after.at("llmkit_kv_blocks_free") + after.at("llmkit_kv_blocks_cached"), 4 * 512 / 16);
  // Buckets are cumulative and end at the count.
  double prev = 0;
  for (const char* le : {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"}) {
    const double v = after.at(std::string("llmkit_inter_token_latency_seconds_bucket{le=\"") + le + "\"}");
    EXPECT_GE(v, prev) << le;
    prev = v;
  }
  EXPECT_EQ(prev, after.at("llmkit_inter_token_latency_seconds_count"));
}

// /v1/embeddings on a decoder: the mean-pooled, normalised last hidden state of each input.
std::vector<float> floats_of(const json& e) {
  std::vector<float> v;
  for (const auto& x : e) v.push_back(x.get<float>());
  return v;
}
double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return ab / std::sqrt(aa * bb);
}
std::vector<float> from_base64(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    const int v = val(c);
    if (v < 0) break;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

TEST_F(Serve, DecoderEmbeddings) {
  json r = post("/v1/embeddings", {{"input", json::array({"hello world", "hello world", "a different sentence, 中文 🎉"})}});
  ASSERT_EQ(r["object"], "list");
  ASSERT_EQ(r["data"].size(), 3u);
  std::vector<std::vector<float>> v;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r["data"][i]["index"], i);
    v.push_back(floats_of(r["data"][i]["embedding"]));
    ASSERT_EQ(v.back().size(), 576u);  // SmolLM2's d_model
    double n2 = 0;
    for (float x : v.back()) n2 += double(x) * x;
    EXPECT_NEAR(n2, 1.0, 1e-5);
  }
  EXPECT_EQ(v[0], v[1]);
  EXPECT_LT(cosine(v[0], v[2]), 0.999);
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 4);
  // One input alone equals the same input in a list; base64 (what the openai client asks for) is
  // the same floats, little-endian.
  json one = post("/v1/embeddings", {{"input", "a different sentence, 中文 🎉"}, {"encoding_format", "base64"}});
  ASSERT_EQ(one["data"].size(), 1u);
  EXPECT_EQ(from_base64(one["data"][0]["embedding"].get<std::string>()), v[2]);
  // Bad requests name the field.
  struct Case { json body; const char* param; };
  const Case bad[] = {{json::object(), "input"},
                      {{{"input", ""}}, "input"},
                      {{{"input", json::array()}}, "input"},
                      {{{"input", json::array({1, -5})}}, "input"},
                      {{{"input", json::array({json::array({1, 2}), json::array({49152})})}}, "input[1]"},
                      {{{"input", "x"}, {"dimensions", 8}}, "dimensions"},
                      {{{"input", "x"}, {"encoding_format", "int8"}}, "encoding_format"},
                      {{{"input", "x"}, {"model", "gpt-4"}}, "model"}};
  for (const Case& c : bad) {
    json e = post("/v1/embeddings", c.body, 400);
    EXPECT_EQ(e["error"]["param"], c.param) << c.body.dump() << " -> " << e.dump();
  }
}

TEST_F(Serve, GreedyChatCompletion) {
  json r = post("/v1/chat/completions", chat_body("What is the capital of France?"));
  EXPECT_EQ(r["object"], "chat.completion");
  ASSERT_EQ(r["choices"].size(), 1u);
  const std::string text = r["choices"][0]["message"]["content"];
  // The words themselves are not pinned: the answer of a 135M Q4_1 model to this prompt sits on a
  // near-tie that the CPU matmul path of the prefill (integer kernel below 32 rows, F32 GEMM from
  // 32) decides. Greedy must be deterministic and well-formed.
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  const std::string finish = r["choices"][0]["finish_reason"];
  EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
  json again = post("/v1/chat/completions", chat_body("What is the capital of France?"));
  EXPECT_EQ(again["choices"][0]["message"]["content"], text);
  EXPECT_TRUE(r["id"].is_string() && r["id"] != again["id"]);
  const json& u = r["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 10);
  EXPECT_GT(u["completion_tokens"].get<int>(), 0);
  EXPECT_EQ(u["total_tokens"].get<int>(), u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
}

TEST_F(Serve, CompletionStopsAtStopStringAndLength) {
  json r = post("/v1/completions", {{"prompt", "The capital of France is"}, {"temperature", 0}, {"max_tokens", 16}, {"stop", {"."}}});
  EXPECT_EQ(r["object"], "text_completion");
  const std::string text = r["choices"][0]["text"];
  EXPECT_EQ(text.find('.'), std::string::npos) << text;
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  json l = post("/v1/completions", {{"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 5}});
  EXPECT_EQ(l["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(l["usage"]["completion_tokens"], 5);
}

TEST_F(Serve, StreamingChunksConcatenateToTheNonStreamedText) {
  // Chinese and emoji in the prompt: every chunk must still be valid UTF-8 JSON.
  for (const std::string prompt : {"Write a haiku about the sea.", "Say hello in Chinese (你好) with an emoji 🌊."}) {
    json body = chat_body(prompt, 48);
    json whole = post("/v1/chat/completions", body);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    auto c = server_->client();
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
    std::vector<json> ev = sse_events(r->body);
    ASSERT_GE(ev.size(), 3u);
    EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
    std::string text, finish;
    for (const json& e : ev) {
      EXPECT_EQ(e["object"], "chat.completion.chunk");
      EXPECT_EQ(e["id"], ev[0]["id"]);
      if (e["choices"].empty()) continue;
      const json& d = e["choices"][0]["delta"];
      if (d.contains("content")) text += d["content"].get<std::string>();
      if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
    }
    EXPECT_EQ(text, whole["choices"][0]["message"]["content"].get<std::string>());
    EXPECT_EQ(finish, whole["choices"][0]["finish_reason"].get<std::string>());
    // include_usage: the last chunk has no choices and the usage.
    ASSERT_TRUE(ev.back().contains("usage"));
    EXPECT_TRUE(ev.back()["choices"].empty());
    EXPECT_EQ(ev.back()["usage"], whole["usage"]);
  }
}

TEST_F(Serve, ConcurrentGreedyRequestsEqualSequential) {
  // Mixed prompt lengths; the longest is prefilled in several --batch-size chunks while others decode.
  std::string long_prompt = "Here is a list of fruits:";
  for (int i = 0; i < 12; ++i) long_prompt += " apple, banana, cherry, date, elderberry, fig, grape,";
  const std::vector<std::string> prompts = {"The capital of France is", "def fibonacci(n):", long_prompt,
                                            "Once upon a time, in a small village,"};
  auto run = [](const std::string& p) {
    json r = post("/v1/completions", {{"prompt", p}, {"temperature", 0}, {"max_tokens", 24}});
    return r["choices"][0]["text"].get<std::string>();
  };
  std::vector<std::string> one_at_a_time;
  for (const auto& p : prompts) one_at_a_time.push_back(run(p));
  std::vector<std::string> together(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) threads.emplace_back([&, i] { together[i] = run(prompts[i]); });
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_FALSE(one_at_a_time[i].empty());
    EXPECT_EQ(together[i], one_at_a_time[i]) << "prompt " << i;
  }
}

TEST_F(Serve, SeededSamplingIsReproducible) {
  json body = {{"prompt", "My favourite colour is"}, {"temperature", 1.0}, {"top_p", 0.9}, {"seed", 42}, {"max_tokens", 12},
               {"presence_penalty", 0.5}, {"frequency_penalty", 0.5}};
  json a = post("/v1/completions", body);
  json b = post("/v1/completions", body);
  EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]);
}

// Every bad request: 400 with {"error": {"message", "type", "param", "code"}} naming the field.
TEST_F(Serve, BadRequestsGet400NamingTheField) {
  struct Case {
    const char* path;
    std::string body;
    const char* param;  // expected error.param ("" = null)
  };
  const std::string chat = "/v1/chat/completions", cmpl = "/v1/completions";
  std::string deep(200, '[');
  std::vector<Case> cases = {
      {chat.c_str(), "{not json", ""},
      {chat.c_str(), "[1, 2]", ""},
      {chat.c_str(), "{\"messages\": [{\"role\": \"user\", \"content\": \"\\u00e9\"}], \"x\": \"\xff\xfe\"}", ""},
      {chat.c_str(), "{\"messages\": " + deep, ""},
      {chat.c_str(), R"({"model": "SmolLM2-135M-Instruct-Q4_1"})", "messages"},
      {chat.c_str(), R"({"messages": "hi"})", "messages"},
      {chat.c_str(), R"({"messages": []})", "messages"},
      {chat.c_str(), R"({"messages": [{"role": "wizard", "content": "hi"}]})", "messages[0].role"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"})", "model"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "n": 17})", "n"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "n": -1})", "n"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5})", "max_tokens"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e300})", "max_tokens"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "10"})", "max_tokens"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000})", "max_tokens"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "temperature": 3})", "temperature"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})", "temperature"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "top_p": 1.5})", "top_p"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "presence_penalty": -3})", "presence_penalty"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "frequency_penalty": 2.5})", "frequency_penalty"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "seed": 1.5})", "seed"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "stop": 7})", "stop"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", 1]})", "stop[1]"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"})", "stream"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": 1})", "logprobs"},
      {chat.c_str(), R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
      {cmpl.c_str(), R"({"prompt": "hi", "logprobs": 6})", "logprobs"},
      {cmpl.c_str(), R"({"prompt": ""})", "prompt"},
      {cmpl.c_str(), R"({"prompt": 42})", "prompt"},
      {cmpl.c_str(), R"({"prompt": [1, 2, 99999999]})", "prompt"},
      {cmpl.c_str(), R"({"prompt": "hi", "max_tokens": 600})", "max_tokens"},
  };
  // A prompt longer than the context (512 tokens).
  std::string huge = "{\"prompt\": \"";
  for (int i = 0; i < 400; ++i) huge += "one two three ";
  huge += "\"}";
  cases.push_back({cmpl.c_str(), huge, "prompt"});

  auto c = server_->client();
  for (const Case& k : cases) {
    auto r = c.Post(k.path, k.body, "application/json");
    ASSERT_TRUE(r) << k.body.substr(0, 80);
    EXPECT_EQ(r->status, 400) << k.body.substr(0, 80) << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r->body;
    ASSERT_TRUE(j.contains("error")) << r->body;
    const json& e = j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r->body;
    EXPECT_EQ(e["type"], "invalid_request_error");
    EXPECT_TRUE(e.contains("code"));
    if (*k.param) EXPECT_EQ(e["param"], k.param) << k.body.substr(0, 80) << " -> " << r->body;
    else EXPECT_TRUE(e["param"].is_null()) << r->body;
  }
  // The server is still fine afterwards.
  json ok = post("/v1/chat/completions", chat_body("Hi", 4));
  EXPECT_EQ(ok["usage"]["completion_tokens"].get<int>() <= 4, true);
}

TEST_F(Serve, HugeBodyAndUnknownRouteGetJsonErrors) {
  auto c = server_->client();
  std::string big = "{\"prompt\": \"" + std::string(3 << 20, 'a') + "\"}";
  auto r = c.Post("/v1/completions", big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_FALSE(json::parse(r->body, nullptr, false).is_discarded()) << r->body;
  auto n = c.Get("/v1/nothing");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->status, 404);
  EXPECT_TRUE(json::parse(n->body, nullptr, false).contains("error"));
}

// One slot, no queue: a second request while one runs is answered 429 at once; a streaming client
// that hangs up frees its slot within a step.
TEST(ServeLimits, FullQueueGets429AndDisconnectFreesTheSlot) {
  if (!std::filesystem::exists(default_model())) GTEST_SKIP() << "default model not installed (scripts/setup)";
  ServeOptions o;
  o.parallel = 1;
  o.queue_size = 0;
  o.ctx_size = 1024;
  o.batch_size = 64;
  Running s(o);

  std::atomic<int> chunks{0};
  std::thread streamer([&] {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    req.body = json{{"prompt", "Count: 1, 2, 3,"}, {"temperature", 0}, {"max_tokens", 900}, {"stream", true}}.dump();
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      if (std::string(d, n).find("data: {") == std::string::npos) return true;  // a keep-alive
      return ++chunks < 5;  // then hang up
    };
    c.send(req);
  });
  for (int i = 0; i < 3000 && chunks.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (chunks.load() == 0) {
    streamer.join();
    FAIL() << "no stream chunk within 30 s";
  }
  {
    auto c = s.client();
    auto r = c.Post("/v1/completions", json{{"prompt", "Hello"}, {"max_tokens", 4}}.dump(), "application/json");
    ASSERT_TRUE(r);
    if (chunks.load() < 5) {  // still streaming: the one slot is taken
      EXPECT_EQ(r->status, 429) << r->body;
      json e = json::parse(r->body, nullptr, false);
      ASSERT_FALSE(e.is_discarded());
      EXPECT_TRUE(e["error"]["message"].is_string());
    }
  }
  streamer.join();
  // The disconnected stream is cancelled: the slot is idle again long before 900 tokens.
  EXPECT_TRUE(s.wait_idle()) << s.health().dump();
  EXPECT_LT(s.health()["tokens_generated"].get<int>(), 200);
  auto c = s.client();
  auto r = c.Post("/v1/completions", json{{"prompt", "Hello"}, {"max_tokens", 4}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

// n > 1: a client that hangs up cancels every choice (all their slots idle at once), and a request
// whose n choices do not all fit is answered 429 without leaving any choice running.
TEST(ServeLimits, ChoicesAreCancelledTogether) {
  if (!std::filesystem::exists(default_model())) GTEST_SKIP() << "default model not installed (scripts/setup)";
  ServeOptions o;
  o.parallel = 3;
  o.queue_size = 0;
  o.ctx_size = 1024;
  o.batch_size = 64;
  Running s(o);
  std::atomic<int> chunks{0};
  std::thread streamer([&] {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    req.body = json{{"prompt", "Count: 1, 2, 3,"}, {"temperature", 0.7}, {"n", 3}, {"max_tokens", 900}, {"stream", true}}.dump();
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
      if (std::string(d, n).find("data: {") == std::string::npos) return true;
      return ++chunks < 6;
    };
    c.send(req);
  });
  streamer.join();
  ASSERT_GE(chunks.load(), 6);
  EXPECT_TRUE(s.wait_idle()) << s.health().dump();
  EXPECT_LT(s.health()["tokens_generated"].get<int>(), 3 * 100);

  auto c = s.client();
  auto r = c.Post("/v1/completions", json{{"prompt", "Hello"}, {"n", 5}, {"max_tokens", 4}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_TRUE(s.wait_idle()) << s.health().dump();
  auto ok = c.Post("/v1/completions", json{{"prompt", "Hello"}, {"n", 3}, {"max_tokens", 4}}.dump(), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(json::parse(ok->body)["choices"].size(), 3u);
}

// A streaming client that hangs up while its request waits in the queue never gets a slot.
TEST(ServeLimits, DisconnectWhileQueuedNeverRuns) {
  if (!std::filesystem::exists(default_model())) GTEST_SKIP() << "default model not installed (scripts/setup)";
  ServeOptions o;
  o.parallel = 1;
  o.queue_size = 1;
  o.ctx_size = 1024;
  Running s(o);
  auto stream = [&](const std::string& prompt, int max_tokens, std::function<bool(const std::string&)> on_data) {
    auto c = s.client();
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    req.body = json{{"prompt", prompt}, {"temperature", 0}, {"max_tokens", max_tokens}, {"stream", true}}.dump();
    req.content_receiver = [on_data](const char* d, size_t n, uint64_t, uint64_t) { return on_data(std::string(d, n)); };
    c.send(req);
  };
  std::atomic<bool> release{false};
  std::atomic<int> first_chunks{0};
  // A: holds the only slot until released (then hangs up).
  std::thread a([&] {
    stream("Count: 1, 2, 3,", 900, [&](const std::string& d) {
      if (d.find("data: {") != std::string::npos) ++first_chunks;  // running (not a keep-alive)
      return !release.load();
    });
  });
  for (int i = 0; i < 3000 && first_chunks.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // B: queued behind A; hangs up at its first keep-alive, before it could run.
  std::atomic<bool> b_saw_data{false};
  std::thread b([&] {
    stream("Hello there", 8, [&](const std::string& d) {
      if (d.find("data: {") != std::string::npos) b_saw_data = true;
      return false;
    });
  });
  b.join();
  // A hang-up is noticed when a write fails: the keep-alive after the client closed usually still
  // succeeds (the peer answers it with a reset), the next one fails, so give it two keep-alives.
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  const int64_t prompt_tokens_before = s.health()["prompt_tokens"].get<int64_t>();
  release = true;
  a.join();
  EXPECT_TRUE(s.wait_idle()) << s.health().dump();
  const json h = s.health();
  EXPECT_FALSE(b_saw_data.load());
  // B was never admitted: no prompt tokens were counted after it left.
  EXPECT_EQ(h["prompt_tokens"].get<int64_t>(), prompt_tokens_before) << h.dump();
}

// An encoder model (all-MiniLM-L6-v2 as scripts/setup installs it) serves /v1/embeddings equal to
// sentence-transformers' (mean pooling + normalisation, truncation at max_seq_length 256) to 1e-4
// in cosine, on the fixture of tools/gen_embedding_fixture.py; completions get a 400 pointing there.
TEST(ServeEmbeddings, MiniLmMatchesSentenceTransformers) {
  const std::string dir = std::filesystem::path(default_model()).parent_path().string() + "/all-MiniLM-L6-v2";
  if (!std::filesystem::exists(dir + "/model.safetensors")) GTEST_SKIP() << "all-MiniLM-L6-v2 not installed (scripts/setup)";
  std::ifstream f(std::string(LLMKIT_TESTDATA_DIR) + "/models/minilm_sentence_transformers.json");
  ASSERT_TRUE(f) << "fixture missing: run tools/gen_embedding_fixture.py";
  const json ref = json::parse(f);
  ServeOptions o;
  o.model = dir;
  o.port = 0;
  auto server = Server::create(o);
  const int port = server->bind();
  std::thread t([&] { server->run(); });
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  auto r = c.Post("/v1/embeddings", json{{"input", ref["sentences"]}}.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["data"].size(), ref["embeddings"].size());
  for (size_t i = 0; i < ref["embeddings"].size(); ++i) {
    const std::vector<float> got = floats_of(j["data"][i]["embedding"]), want = floats_of(ref["embeddings"][i]);
    ASSERT_EQ(got.size(), 384u);
    EXPECT_GE(cosine(got, want), 1.0 - 1e-4) << ref["sentences"][i];
    double max_d = 0;
    for (size_t k = 0; k < got.size(); ++k) max_d = std::max(max_d, double(std::fabs(got[k] - want[k])));
    EXPECT_LE(max_d, 1e-3) << ref["sentences"][i];
    std::printf("sentence %zu: cosine %.8f, max |d| %.2e\n", i, cosine(got, want), max_d);
  }
  auto comp = c.Post("/v1/completions", R"({"prompt": "hi"})", "application/json");
  ASSERT_TRUE(comp);
  EXPECT_EQ(comp->status, 400);
  EXPECT_NE(comp->body.find("/v1/embeddings"), std::string::npos) << comp->body;
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_NE(c.Get("/metrics")->body.find("llmkit_embedding_inputs_total 5"), std::string::npos);
  server->stop();
  t.join();
}

// --kv-type takes f16 or f32; anything else is refused before the model loads, naming the value.
TEST(ServeLimits, KvTypeIsCheckedByName) {
  ServeOptions o;
  o.model = default_model();
  o.kv_type = "q8_0";
  try {
    Server::create(o);
    ADD_FAILURE() << "no error for --kv-type q8_0";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("--kv-type 'q8_0'"), std::string::npos) << e.what();
  }
}

TEST(ServeLimits, ApiKeyGuardsV1Routes) {
  if (!std::filesystem::exists(default_model())) GTEST_SKIP() << "default model not installed (scripts/setup)";
  ServeOptions o;
  o.parallel = 1;
  o.ctx_size = 256;
  o.api_key = "sk-test-123";
  Running s(o);
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  for (const char* auth : {"", "Bearer wrong", "Bearer sk-test-12", "Bearer sk-test-1234", "sk-test-123"}) {
    httplib::Headers hd;
    if (*auth) hd.emplace("Authorization", auth);
    auto r = c.Get("/v1/models", hd);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << auth;
    json e = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(e.is_discarded());
    EXPECT_EQ(e["error"]["code"], "invalid_api_key");
  }
  httplib::Headers ok = {{"Authorization", "Bearer sk-test-123"}};
  auto m = c.Get("/v1/models", ok);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  auto p = c.Post("/v1/completions", ok, json{{"prompt", "Hi"}, {"max_tokens", 2}}.dump(), "application/json");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->status, 200) << p->body;
}

}  // namespace
}  // namespace llmkit
