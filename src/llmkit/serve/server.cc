// The HTTP front of `llmkit serve` (cpp-httplib's server, one thread per connection from its pool):
// authenticates, parses and validates each request (api.h), tokenizes it, hands it to the
// scheduler and streams or returns what comes back. See include/llmkit/serve.h.
#include "llmkit/serve.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <random>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "llmkit/base/check.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/models/transformer.h"
#include "llmkit/serve/api.h"
#include "llmkit/serve/scheduler.h"
#include "llmkit/tokenizer.h"

namespace llmkit {

using nlohmann::json;
using serve::ApiError;

namespace {

// The web chat page (chat.html, embedded by CMake): plain HTML/JS/CSS, no external assets.
constexpr char kChatPage[] =
#include "chat_page.inc"
    ;

// Compares every byte whatever the first difference, so timing reveals nothing about the key.
bool constant_time_equal(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(serve::error_body(e), "application/json");
}

std::string sse(const json& j) { return "data: " + serve::dump(j) + "\n\n"; }

}  // namespace

struct Server::Impl {
  ServeOptions opt;
  std::string name;
  std::unique_ptr<models::Transformer> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string chat_template, bos, eos;
  std::unique_ptr<serve::Scheduler> scheduler;
  httplib::Server http;
  serve::ApiLimits limits;
  std::atomic<uint64_t> next_id{1};
  // Seeds of requests that give none: splitmix64 over a counter started from the OS's entropy
  // (atomic, so concurrent requests never share one; std::random_device is not thread-safe).
  std::atomic<uint64_t> seed_state{(static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()};
  uint64_t fresh_seed() {
    uint64_t z = seed_state.fetch_add(0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t created = static_cast<int64_t>(std::time(nullptr));

  // Embeddings: encoders (BERT-style sentence models) serve only these; decoders serve them too,
  // taking compute_mu between the scheduler's steps.
  std::mutex compute_mu;
  int64_t embed_max_tokens = 0;  // encoders: inputs are truncated to this (sentence-transformers' max_seq_length)
  std::atomic<int64_t> embed_requests{0}, embed_inputs{0}, embed_tokens{0};

  void routes();
  void completion(const httplib::Request& req, httplib::Response& res, bool chat);
  void embeddings(const httplib::Request& req, httplib::Response& res);
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
  if (impl_->scheduler) impl_->scheduler->shutdown();
}

const std::string& Server::model_name() const { return impl_->name; }
bool Server::embeddings_only() const { return impl_->scheduler == nullptr; }

std::unique_ptr<Server> Server::create(const ServeOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->opt = o;
  LLMKIT_CHECK(o.parallel >= 1 && o.parallel <= 256, kInvalidArgument, "--parallel ", o.parallel, " must be in [1, 256]");
  LLMKIT_CHECK(o.queue_size >= 0 && o.queue_size <= 1 << 16, kInvalidArgument, "--queue ", o.queue_size, " must be in [0, 65536]");
  LLMKIT_CHECK(o.max_body_bytes >= 1024, kInvalidArgument, "body limit ", o.max_body_bytes, " must be >= 1024");
  LLMKIT_CHECK(o.kv_type == "f16" || o.kv_type == "f32", kInvalidArgument, "--kv-type '", o.kv_type,
               "' is not a KV cache type; use f16 or f32");
  impl->model = models::Transformer::load(o.model);
  impl->model->set_kv_dtype(o.kv_type == "f16" ? DType::kF16 : DType::kF32);
  impl->tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(o.model));
  const auto& cfg = impl->model->config();
  LLMKIT_CHECK(impl->tokenizer->n_vocab() <= cfg.n_vocab, kInvalidFile, "the tokenizer of '", o.model, "' has ",
               impl->tokenizer->n_vocab(), " tokens but the model only ", cfg.n_vocab);
  impl->name = o.model_name.empty() ? std::filesystem::path(o.model).stem().string() : o.model_name;
  if (impl->name.empty()) impl->name = std::filesystem::path(o.model).parent_path().filename().string();
  impl->limits.max_json_depth = o.max_json_depth;
  impl->limits.max_tokens = o.max_tokens_limit;
  impl->limits.n_vocab = impl->tokenizer->n_vocab();
  impl->embed_max_tokens = cfg.n_ctx;
  if (impl->model->is_encoder()) {
    // A sentence-transformers folder says how long its inputs may be (all-MiniLM-L6-v2: 256).
    const std::filesystem::path sbert = std::filesystem::path(o.model) / "sentence_bert_config.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(sbert, ec)) {
      json c = json::parse(io::read_text_file(sbert.string(), 1u << 20), nullptr, false);
      if (c.is_object() && c.contains("max_seq_length") && c["max_seq_length"].is_number_integer())
        impl->embed_max_tokens = std::clamp<int64_t>(c["max_seq_length"].get<int64_t>(), 2, cfg.n_ctx);
    }
    impl->routes();  // embeddings only: no scheduler
    return std::unique_ptr<Server>(new Server(std::move(impl)));
  }
  impl->chat_template = impl->model->weights().chat_template();
  serve::SchedulerOptions so;
  if (auto b = impl->tokenizer->bos_id()) impl->bos = impl->tokenizer->piece(*b);
  if (auto e = impl->tokenizer->eos_id()) {
    impl->eos = impl->tokenizer->piece(*e);
    so.stop_tokens.push_back(*e);
  }
  // End-of-turn tokens of the common chat formats (ChatML, Llama-3, Gemma, Phi-3, DeepSeek), as llm.cc.
  for (const char* eot : {"<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<｜end▁of▁sentence｜>"})
    if (auto id = impl->tokenizer->token_to_id(eot))
      if (std::find(so.stop_tokens.begin(), so.stop_tokens.end(), *id) == so.stop_tokens.end()) so.stop_tokens.push_back(*id);
  int64_t n_ctx = o.ctx_size > 0 ? o.ctx_size : std::min<int64_t>(cfg.n_ctx, 4096);
  LLMKIT_CHECK(n_ctx <= cfg.n_ctx, kInvalidArgument, "--ctx-size ", n_ctx, " exceeds the ", cfg.n_ctx,
               " positions the model was trained for");
  so.n_slots = o.parallel;
  so.n_ctx = n_ctx;
  so.batch_size = o.batch_size;
  so.max_queue = static_cast<size_t>(o.queue_size);
  so.compute_mu = &impl->compute_mu;
  impl->scheduler = std::make_unique<serve::Scheduler>(*impl->model, *impl->tokenizer, so);
  impl->routes();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::bind() {
  int port = impl_->opt.port;
  bool ok = false;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(impl_->opt.host);
    ok = port > 0;
  } else {
    ok = impl_->http.bind_to_port(impl_->opt.host, port);
  }
  LLMKIT_CHECK(ok, kIo, "cannot listen on ", impl_->opt.host, ":", impl_->opt.port,
               " (address in use or not local?); pick another --port or --host");
  return port;
}

void Server::run() {
  // A client that hangs up mid-stream must cost an EPIPE, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  impl_->http.listen_after_bind();
}

void Server::stop() {
  if (impl_->http.is_running()) impl_->http.stop();
}

void Server::Impl::routes() {
  // Threads for connections: every slot and queue entry may hold one (streaming), plus a few for
  // /health and quick 4xx answers.
  const size_t n_threads = static_cast<size_t>(opt.parallel + opt.queue_size + 8);
  http.new_task_queue = [n_threads] { return new httplib::ThreadPool(n_threads); };
  http.set_payload_max_length(static_cast<size_t>(opt.max_body_bytes));
  http.set_read_timeout(opt.read_timeout_s, 0);
  http.set_write_timeout(opt.read_timeout_s, 0);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opt.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    const bool ok = auth.size() > prefix.size() && auth.compare(0, prefix.size(), prefix) == 0 &&
                    constant_time_equal(auth.substr(prefix.size()), opt.api_key);
    if (ok) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError{401, "missing or wrong API key; send 'Authorization: Bearer KEY'", "invalid_request_error",
                             "", "invalid_api_key"});
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (404, 413 body too large, 400 bad HTTP) get an OpenAI-style body too.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e{res.status, "HTTP " + std::to_string(res.status) + (res.status == 404 ? ": no such route" : ""),
               res.status == 404 ? "not_found_error" : "invalid_request_error", "", ""};
    if (res.status == 413) e.message = "the request body is larger than the server's limit";
    send_error(res, e);
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError{500, what, "server_error", "", ""});
  });

  // The chat page is public like /health; it asks for the API key itself when the server has one
  // (sent from the page as a Bearer header, kept in the browser's localStorage).
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(kChatPage, sizeof(kChatPage) - 1, "text/html; charset=utf-8");
  });
  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const serve::SchedulerStats s = scheduler ? scheduler->stats() : serve::SchedulerStats{};
    json j = {{"status", "ok"},      {"model", name},           {"slots", s.slots},
              {"slots_processing", s.running}, {"slots_idle", s.slots - s.running}, {"queue", s.waiting},
              {"steps", s.steps},    {"tokens_generated", s.tokens_generated}, {"prompt_tokens", s.prompt_tokens}};
    res.set_content(serve::dump(j), "application/json");
  });
  // Prometheus text format (version 0.0.4). Public like /health (no API key), as vLLM's and
  // llama.cpp's servers expose theirs. KV usage is in positions: the cache is one contiguous
  // block of --ctx-size positions per slot (no paging yet, so no block counts); the prefix cache
  // is per slot (a finished request's tokens stay in its slot for the next request sharing them).
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const serve::SchedulerStats s = scheduler ? scheduler->stats() : serve::SchedulerStats{};
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help) {
      out += str_cat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    };
    auto value = [&](const std::string& series, double v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, " %.17g\n", v);
      out += series + buf;
    };
    metric("llmkit_requests_total", "counter", "Requests that ended, by finish reason.");
    value("llmkit_requests_total{reason=\"stop\"}", static_cast<double>(s.finished_stop));
    value("llmkit_requests_total{reason=\"length\"}", static_cast<double>(s.finished_length));
    value("llmkit_requests_total{reason=\"cancelled\"}", static_cast<double>(s.finished_cancelled));
    value("llmkit_requests_total{reason=\"error\"}", static_cast<double>(s.finished_error));
    auto single = [&](const char* name, const char* type, const char* help, int64_t v) {
      metric(name, type, help);
      value(name, static_cast<double>(v));
    };
    single("llmkit_requests_rejected_total", "counter", "Requests answered 429 because the queue was full.", s.rejected);
    single("llmkit_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", s.prompt_tokens);
    single("llmkit_generation_tokens_total", "counter", "Tokens generated.", s.tokens_generated);
    single("llmkit_steps_total", "counter", "Forward passes of the scheduler.", s.steps);
    single("llmkit_queue_length", "gauge", "Requests waiting for a slot.", s.waiting);
    single("llmkit_running_sequences", "gauge", "Sequences in the running batch.", s.running);
    single("llmkit_batch_tokens", "gauge", "Token rows of the last forward pass (prompt chunks + decodes).", s.batch_tokens);
    single("llmkit_slots", "gauge", "Sequence slots (--parallel).", s.slots);
    single("llmkit_kv_cache_positions_used", "gauge", "KV cache positions filled by running sequences.",
           s.kv_positions_used);
    single("llmkit_kv_blocks_total", "gauge", "KV cache pages (16 positions each) in the pool.", s.kv_blocks_total);
    single("llmkit_kv_blocks_used", "gauge", "KV cache pages held by running sequences (a shared prefix page once).",
           s.kv_blocks_used);
    single("llmkit_kv_blocks_cached", "gauge",
           "KV cache pages held by no one that keep a finished request's prefix, reusable by a prompt that starts "
           "the same (evicted least recently used first).",
           s.kv_blocks_cached);
    single("llmkit_kv_blocks_free", "gauge", "KV cache pages free.", s.kv_blocks_free);
    single("llmkit_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens whose K/V were found in cached prefix pages instead of computed.", s.prefix_cache_hit_tokens);
    metric("llmkit_prefix_cache_hit_rate", "gauge", "Prefix-cache hit tokens / prompt tokens since start.");
    value("llmkit_prefix_cache_hit_rate",
          s.prompt_tokens > 0 ? static_cast<double>(s.prefix_cache_hit_tokens) / static_cast<double>(s.prompt_tokens) : 0.0);
    auto histogram = [&](const char* name, const char* help, const serve::LatencyHistogram& h) {
      metric(name, "histogram", help);
      uint64_t cum = 0;
      for (size_t i = 0; i < serve::LatencyHistogram::kN; ++i) {
        cum += h.counts[i];
        char le[32];
        std::snprintf(le, sizeof le, "%g", serve::LatencyHistogram::kBounds[i]);
        value(str_cat(name, "_bucket{le=\"", le, "\"}"), static_cast<double>(cum));
      }
      value(str_cat(name, "_bucket{le=\"+Inf\"}"), static_cast<double>(h.count));
      value(str_cat(name, "_sum"), h.sum);
      value(str_cat(name, "_count"), static_cast<double>(h.count));
    };
    single("llmkit_embedding_requests_total", "counter", "Embedding requests answered.", embed_requests.load());
    single("llmkit_embedding_inputs_total", "counter", "Inputs embedded.", embed_inputs.load());
    single("llmkit_embedding_tokens_total", "counter", "Tokens of embedded inputs.", embed_tokens.load());
    histogram("llmkit_time_to_first_token_seconds", "From the request's arrival to its first sampled token.", s.ttft);
    histogram("llmkit_inter_token_latency_seconds", "Between consecutive tokens of one request.", s.itl);
    res.set_content(out, "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "llmkit"},
              {"meta", {{"n_ctx", scheduler ? scheduler->options().n_ctx : embed_max_tokens}, {"n_vocab", model->config().n_vocab},
                        {"n_params", model->weights().n_params()}}}};
    res.set_content(serve::dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, true); });
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completion(req, res, false); });
  http.Post("/v1/embeddings", [this](const httplib::Request& req, httplib::Response& res) { embeddings(req, res); });
}

// Mean of the last hidden state over the input's tokens, scaled to unit length (sentence-
// transformers' mean pooling + Normalize, as all-MiniLM-L6-v2 is configured; for a decoder the
// same pooling of its final-normed hidden state).
void Server::Impl::embeddings(const httplib::Request& req, httplib::Response& res) {
  serve::EmbeddingsRequest r;
  std::vector<std::vector<int32_t>> inputs;
  try {
    r = serve::parse_embeddings_request(req.body, limits);
    if (!r.model.empty() && r.model != name)
      throw ApiError{400, "model '" + r.model + "' is not served here; this server serves '" + name + "' (GET /v1/models)",
                     "invalid_request_error", "model", "model_not_found"};
    inputs = std::move(r.token_ids);
    for (const std::string& t : r.texts) inputs.push_back(tokenizer->encode(t, true));
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto& ids = inputs[i];
      const std::string param = inputs.size() == 1 ? "input" : "input[" + std::to_string(i) + "]";
      if (ids.empty()) throw ApiError{400, "'" + param + "' is empty after tokenization", "invalid_request_error", param, "invalid_value"};
      if (static_cast<int64_t>(ids.size()) > embed_max_tokens) {
        if (!model->is_encoder())
          throw ApiError{400, "'" + param + "' has " + std::to_string(ids.size()) + " tokens; this model embeds at most " +
                                  std::to_string(embed_max_tokens), "invalid_request_error", param, "context_length_exceeded"};
        // As sentence-transformers truncates: the first tokens, then the closing one ([SEP]).
        const int32_t last = ids.back();
        ids.resize(static_cast<size_t>(embed_max_tokens - 1));
        ids.push_back(last);
      }
    }
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  std::vector<std::vector<float>> vectors;
  int64_t n_tokens = 0;
  try {
    std::lock_guard<std::mutex> lk(compute_mu);
    for (const auto& ids : inputs) {
      Tensor h = model->is_encoder() ? model->encode(ids) : model->hidden_states(ids);  // [n, d]
      const int64_t n = h.dim(0), d = h.dim(1);
      std::vector<double> sum(static_cast<size_t>(d), 0.0);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < d; ++c) sum[static_cast<size_t>(c)] += h.data<float>()[t * d + c];
      double norm = 0;
      for (double& x : sum) {
        x /= static_cast<double>(n);
        norm += x * x;
      }
      norm = std::sqrt(norm);
      std::vector<float> v(static_cast<size_t>(d));
      for (int64_t c = 0; c < d; ++c) v[static_cast<size_t>(c)] = static_cast<float>(norm > 0 ? sum[static_cast<size_t>(c)] / norm : 0.0);
      vectors.push_back(std::move(v));
      n_tokens += n;
    }
  } catch (const Error& e) {
    send_error(res, ApiError{400, e.what(), "invalid_request_error", "input", "invalid_value"});
    return;
  }
  embed_requests.fetch_add(1);
  embed_inputs.fetch_add(static_cast<int64_t>(vectors.size()));
  embed_tokens.fetch_add(n_tokens);
  res.set_content(serve::dump(serve::embeddings_response(name, vectors, r.base64, n_tokens)), "application/json");
}

void Server::Impl::completion(const httplib::Request& req, httplib::Response& res, bool chat) {
  serve::ApiRequest r;
  serve::GenRequest g;
  if (!scheduler) {
    send_error(res, ApiError{400, "model '" + name + "' is an encoder (" + models::family_name(model->config().family) +
                                      "): it makes embeddings, not text; use POST /v1/embeddings",
                             "invalid_request_error", "model", "model_not_supported"});
    return;
  }
  try {
    r = serve::parse_request(req.body, chat, limits);
    if (!r.model.empty() && r.model != name)
      throw ApiError{400, "model '" + r.model + "' is not served here; this server serves '" + name + "' (GET /v1/models)",
                     "invalid_request_error", "model", "model_not_found"};
    if (chat) {
      if (chat_template.empty())
        throw ApiError{400, "this model has no chat template; use /v1/completions", "invalid_request_error", "messages", "no_chat_template"};
      std::string text;
      try {
        text = render_chat_template(chat_template, r.messages, true, bos, eos);
      } catch (const Error& e) {
        throw ApiError{400, std::string("the chat template rejected the messages: ") + e.what(), "invalid_request_error", "messages", "invalid_value"};
      }
      g.prompt = tokenizer->encode(text, false);
    } else {
      g.prompt = r.prompt_ids.empty() ? tokenizer->encode(r.prompt, true) : r.prompt_ids;
    }
    const char* prompt_param = chat ? "messages" : "prompt";
    if (g.prompt.empty()) throw ApiError{400, "the prompt is empty after tokenization", "invalid_request_error", prompt_param, "invalid_value"};
    const int64_t n_ctx = scheduler->options().n_ctx;
    const auto n_prompt = static_cast<int64_t>(g.prompt.size());
    if (n_prompt >= n_ctx)
      throw ApiError{400, "the prompt has " + std::to_string(n_prompt) + " tokens but the context holds " + std::to_string(n_ctx) +
                         "; shorten it", "invalid_request_error", prompt_param, "context_length_exceeded"};
    if (r.max_tokens > 0 && n_prompt + r.max_tokens > n_ctx)
      throw ApiError{400, "the prompt (" + std::to_string(n_prompt) + " tokens) plus max_tokens (" + std::to_string(r.max_tokens) +
                         ") exceeds the context of " + std::to_string(n_ctx) + " tokens; lower max_tokens",
                     "invalid_request_error", "max_tokens", "context_length_exceeded"};
    g.max_tokens = r.max_tokens > 0 ? r.max_tokens : n_ctx - n_prompt;
    g.sampling = r.sampling;
    g.stop = r.stop;
    try {
      g.sampling.validate();
    } catch (const Error& e) {
      throw ApiError{400, e.what(), "invalid_request_error", "", "invalid_value"};
    }
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }

  // A request without a seed gets a fresh one, so that sampled replies differ between requests (as
  // OpenAI's do); choice i of n samples with seed + i, so n > 1 gives n different samples.
  if (!r.has_seed) g.sampling.seed = fresh_seed();
  g.top_logprobs = r.top_logprobs;
  g.logit_bias = r.logit_bias;
  std::vector<std::shared_ptr<serve::Job>> jobs;
  for (int i = 0; i < r.n; ++i) {
    serve::GenRequest gi = g;
    gi.sampling.seed = g.sampling.seed + static_cast<uint64_t>(i);
    auto job = std::make_shared<serve::Job>(std::move(gi));
    if (!scheduler->submit(job)) {
      for (auto& j : jobs) j->cancel();
      send_error(res, ApiError{429, "the server is busy: every slot is running and the queue is full" +
                                        std::string(r.n > 1 ? " (n > 1 takes one place per choice)" : "") + "; retry shortly",
                               "rate_limit_error", "", "server_busy"});
      return;
    }
    jobs.push_back(std::move(job));
  }
  serve::ResponseMeta meta;
  meta.chat = chat;
  meta.model = name;
  meta.created = static_cast<int64_t>(std::time(nullptr));
  char id[32];
  std::snprintf(id, sizeof id, "%s-%llx", chat ? "chatcmpl" : "cmpl", static_cast<unsigned long long>(next_id.fetch_add(1)));
  meta.id = id;
  const bool verbose = opt.verbose;
  auto log = [verbose, id = meta.id](const serve::Job& j, size_t index) {
    if (verbose)
      std::fprintf(stderr, "serve: %s[%zu] %lld prompt + %lld completion tokens, %s\n", id.c_str(), index,
                   static_cast<long long>(j.n_prompt), static_cast<long long>(j.n_completion), j.finish_reason.c_str());
  };
  const Tokenizer* tok = tokenizer.get();
  auto entries_of = [tok](const std::vector<serve::TokenLogprob>& lps) {
    std::vector<serve::LogprobEntry> out;
    for (const serve::TokenLogprob& lp : lps) {
      serve::LogprobEntry e{tok->token_bytes(lp.id), lp.logprob, {}};
      for (const auto& [tid, v] : lp.top) e.top.emplace_back(tok->token_bytes(tid), v);
      out.push_back(std::move(e));
    }
    return out;
  };
  const bool want_logprobs = r.top_logprobs >= 0;

  if (!r.stream) {
    std::vector<serve::Choice> choices;
    int64_t n_prompt = 0, n_completion = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::string text;
      std::vector<serve::TokenLogprob> lps;
      while (!jobs[i]->wait(&text, std::chrono::milliseconds(200), &lps)) {
      }
      log(*jobs[i], i);
      if (!jobs[i]->error.empty()) {
        for (auto& j : jobs) j->cancel();
        send_error(res, ApiError{500, jobs[i]->error, "server_error", "", ""});
        return;
      }
      choices.push_back({std::move(text), jobs[i]->finish_reason, want_logprobs, entries_of(lps)});
      n_prompt = jobs[i]->n_prompt;  // the prompt counts once, as OpenAI counts it
      n_completion += jobs[i]->n_completion;
    }
    res.set_content(serve::dump(serve::full_response(meta, choices, n_prompt, n_completion)), "application/json");
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  // The state of one stream across calls of the content provider. While a request waits in the
  // queue or in a long prefill, an SSE comment (": keep-alive", which SSE clients skip) goes out
  // every second: writing is how a hang-up is noticed, so a client that leaves while queued is
  // dropped before it takes a slot.
  struct StreamState {
    std::vector<std::shared_ptr<serve::Job>> jobs;
    std::vector<bool> ended;
    std::vector<int64_t> offsets;  // completions' text_offset, per choice
    bool started = false;
    std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
    void cancel_all() {
      for (auto& j : jobs) j->cancel();
    }
  };
  auto st = std::make_shared<StreamState>();
  st->jobs = jobs;
  st->ended.assign(jobs.size(), false);
  st->offsets.assign(jobs.size(), 0);
  const bool include_usage = r.include_usage;
  res.set_chunked_content_provider(
      "text/event-stream",
      [st, meta, include_usage, want_logprobs, entries_of, log](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          st->last_write = std::chrono::steady_clock::now();
          if (!sink.write(s.data(), s.size())) {
            st->cancel_all();
            return false;
          }
          return true;
        };
        const size_t n = st->jobs.size();
        if (!st->started) {
          st->started = true;
          for (size_t i = 0; i < n && meta.chat; ++i)
            if (!write(sse(serve::stream_chunk(meta, "", "", true, static_cast<int>(i))))) return false;
        }
        // Wait for news on any choice: on the first one still running, briefly when there are several.
        size_t first = 0;
        while (first < n && st->ended[first]) ++first;
        bool any = false;
        for (size_t i = first; i < n && !any; ++i) any = !st->ended[i] && st->jobs[i]->ready();
        if (!any) st->jobs[first]->wait_ready(std::chrono::milliseconds(n > 1 ? 20 : 100));
        if (!sink.is_writable()) {
          st->cancel_all();
          return false;
        }
        bool wrote = false;
        for (size_t i = first; i < n; ++i) {
          if (st->ended[i]) continue;
          serve::Job& job = *st->jobs[i];
          std::string text;
          std::vector<serve::TokenLogprob> lps;
          const bool done = job.wait(&text, std::chrono::milliseconds(0), want_logprobs ? &lps : nullptr);
          const int index = static_cast<int>(i);
          if (!text.empty() || !lps.empty()) {
            json lj;
            if (want_logprobs) lj = serve::logprobs_json(meta.chat, entries_of(lps), &st->offsets[i]);
            if (!write(sse(serve::stream_chunk(meta, text, "", false, index, want_logprobs ? &lj : nullptr)))) return false;
            wrote = true;
          }
          if (!done) continue;
          log(job, i);
          if (!job.error.empty()) {
            st->cancel_all();
            write(sse(json::parse(serve::error_body(ApiError{500, job.error, "server_error", "", ""}))));
            write("data: [DONE]\n\n");
            sink.done();
            return true;
          }
          if (!write(sse(serve::stream_chunk(meta, "", job.finish_reason, false, index)))) return false;
          st->ended[i] = true;
          wrote = true;
        }
        if (std::find(st->ended.begin(), st->ended.end(), false) != st->ended.end()) {
          if (!wrote && std::chrono::steady_clock::now() - st->last_write > std::chrono::seconds(1))
            return write(": keep-alive\n\n");
          return true;
        }
        if (include_usage) {
          int64_t n_completion = 0;
          for (auto& j : st->jobs) n_completion += j->n_completion;
          if (!write(sse(serve::usage_chunk(meta, st->jobs[0]->n_prompt, n_completion)))) return false;
        }
        write("data: [DONE]\n\n");
        sink.done();
        return true;
      },
      [st](bool success) {
        if (!success) st->cancel_all();
      });
}

}  // namespace llmkit
