// The subcommand table of the llmkit CLI. Each subcommand registers its flags on a CLI11 app and
// returns a runner; a subcommand that is not built yet says so and exits with kExitNotBuilt.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "llmkit/data.h"

namespace llmkit::cli {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;     // the command failed (bad file, I/O, ...): message on stderr
constexpr int kExitUsage = 2;     // unknown subcommand or flag, bad flag value
constexpr int kExitNotBuilt = 3;  // the subcommand exists in the plan but is not built yet

struct Command {
  const char* name;
  const char* summary;  // one line for `llmkit --help`
  // Adds the subcommand's flags; returns the function that runs it.
  std::function<std::function<int()>(CLI::App&)> setup;
};

// Flags shared by the generating subcommands (run, chat, serve).
struct Sampling {
  std::string model, prompt, system;
  int n_predict = 256, top_k = 40, threads = 0, ctx = 0;
  float temperature = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  long long seed = -1;
  bool verbose = false;
  std::vector<std::string> stop;
};

// Flags of `llmkit serve` (cmd_serve.cc).
struct ServeFlags {
  std::string model, model_name, host = "127.0.0.1", api_key, kv_type = "f16";
  int port = 8080, parallel = 4, ctx = 0, batch_size = 512, queue = 64, threads = 0;
  bool verbose = false;
};
// cmd_serve.cc in the llmkit-serve binary; cmd_serve_exec.cc (re-executes as llmkit-serve) in llmkit.
int run_serve(const ServeFlags& f);
// The command line main() was given (for the re-exec).
char** main_argv();

// Every subcommand, in the order `llmkit --help` lists them.
const std::vector<Command>& commands();

// Where models live: $LLMKIT_HOME/models, default ~/.cache/llmkit/models.
std::string models_dir();
std::string default_model_path();

int run_inspect(const std::string& path, bool all_tensors);
// run (chat = false) and chat (chat = true).
int run_generate(const Sampling& s, bool chat);
int run_perplexity(const std::string& model, const std::string& file, int ctx, int chunks, int threads);
int run_bench(const std::string& model, int p, int n, const std::vector<int>& threads, int reps, int ubatch,
              const std::string& kv_type, bool json);
int run_random_init(const std::string& config_json, const std::string& out, const std::string& type, uint64_t seed);
int run_logits(const std::string& model, const std::string& in, const std::string& out, int threads);
int run_data_prepare(const DataPrepareOptions& opt);  // cmd_data.cc
// cmd_train.cc: the config file and the flags given on the command line (name -> value text).
struct TrainCli {
  std::string config;
  std::vector<std::pair<std::string, std::string>> overrides;
};
int run_train(const TrainCli& c);

}  // namespace llmkit::cli
