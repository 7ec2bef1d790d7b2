// Public API: the OpenAI-compatible HTTP server behind `llmkit serve`. One model, one scheduler
// thread that owns it and batches every running request into one forward pass per step
// (continuous batching, chunked prefill), and an HTTP thread pool that parses, validates and
// streams. The routes: GET /health, GET /metrics (Prometheus), GET /v1/models,
// POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings (mean-pooled, normalised
// last hidden state). An encoder model (BERT-style sentence embedder, e.g. all-MiniLM-L6-v2)
// serves embeddings only: no scheduler, completions answer 400.
// Everything a client sends is untrusted: a bad request gets a 400 with an OpenAI-style JSON error
// naming the field, a full queue a 429, and nothing a client sends may crash the process.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace llmkit {

struct ServeOptions {
  std::string model;                 // GGUF file or Hugging Face folder (with a tokenizer)
  std::string model_name;            // the id clients pass as "model"; "" = the file name without extension
  std::string host = "127.0.0.1";    // loopback only unless asked
  int port = 8080;                   // 0 = any free port (see Server::bind)
  int parallel = 4;                  // slots: sequences decoded together, each with its own KV cache
  int64_t ctx_size = 0;              // positions per slot; 0 = the model's, at most 4096
  int64_t batch_size = 512;          // most tokens in one forward pass (prefill chunks + decodes)
  std::string kv_type = "f16";       // KV cache values: "f16" (half the memory and attention reads) or "f32"
  int queue_size = 64;               // requests waiting for a slot; beyond that: 429
  int64_t max_body_bytes = 2 << 20;  // request body limit (413 beyond)
  int max_json_depth = 32;           // nesting limit of request JSON
  int64_t max_tokens_limit = 1 << 20;
  std::string api_key;               // "" = no auth; else "Authorization: Bearer KEY" on /v1/*
  int read_timeout_s = 30;           // slow clients are dropped after this
  bool verbose = false;              // one log line per request on stderr
};

class Server {
 public:
  // Loads the model and tokenizer and starts the scheduler thread. Throws llmkit::Error.
  static std::unique_ptr<Server> create(const ServeOptions& options);
  ~Server();
  // Binds host:port (port 0: a free one); returns the port. Throws llmkit::Error when it cannot.
  int bind();
  // Serves until stop() (blocking). bind() first.
  void run();
  // Stops accepting, cancels running requests; run() returns. Safe from any thread.
  void stop();
  const std::string& model_name() const;
  // True for an encoder model: /v1/embeddings only, no generation slots.
  bool embeddings_only() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmkit
