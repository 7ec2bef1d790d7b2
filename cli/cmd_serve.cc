// `llmkit serve`: the OpenAI-compatible HTTP server (include/llmkit/serve.h). Prints the address,
// then serves until SIGINT / SIGTERM.
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <string>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/llm.h"
#include "llmkit/serve.h"

namespace llmkit::cli {
namespace {
Server* g_server = nullptr;
extern "C" void on_stop_signal(int) {
  // Server::stop() only sets flags and shuts the listening socket down.
  if (g_server) g_server->stop();
}
}  // namespace

int run_serve(const ServeFlags& f) {
  ServeOptions o;
  o.model = f.model.empty() ? default_model_path() : f.model;
  o.model_name = f.model_name;
  o.host = f.host;
  o.port = f.port;
  o.parallel = f.parallel;
  o.ctx_size = f.ctx;
  o.batch_size = f.batch_size;
  o.kv_type = f.kv_type;
  o.queue_size = f.queue;
  o.api_key = f.api_key;
  o.verbose = f.verbose;
  if (o.api_key.empty())
    if (const char* k = std::getenv("LLMKIT_API_KEY")) o.api_key = k;
  set_threads(f.threads);
  std::unique_ptr<Server> server;
  try {
    server = Server::create(o);
  } catch (const Error& e) {
    if (f.model.empty() && e.code() == ErrorCode::kNotFound)
      throw Error(ErrorCode::kNotFound, std::string("the default model is not installed (") + e.what() + ")",
                  "run scripts/setup, or pass a GGUF file with -m");
    throw;
  }
  const int port = server->bind();
  g_server = server.get();
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const std::string what = server->embeddings_only() ? "embeddings only" : std::to_string(o.parallel) + " slots";
  std::printf("llmkit serve: %s on http://%s:%d (%s%s)\n", server->model_name().c_str(), o.host.c_str(), port,
              what.c_str(), o.api_key.empty() ? "" : ", API key required");
  std::fflush(stdout);
  server->run();
  g_server = nullptr;
  return kExitOk;
}

}  // namespace llmkit::cli
