// `llmkit run` (complete a prompt once) and `llmkit chat` (interactive, multi-turn, with the
// model's chat template). Ctrl-C stops the current reply; at the prompt it ends the chat.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <random>
#include <string>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/llm.h"

namespace llmkit::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) { g_interrupted.store(true); }

void install_sigint() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocked read at the prompt returns, so Ctrl-C there exits
  sigaction(SIGINT, &sa, nullptr);
}

GenerationParams to_params(const Sampling& s) {
  GenerationParams p;
  p.max_tokens = s.n_predict;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  p.min_p = s.min_p;
  p.repeat_penalty = s.repeat_penalty;
  p.presence_penalty = s.presence_penalty;
  p.frequency_penalty = s.frequency_penalty;
  p.seed = s.seed >= 0 ? static_cast<uint64_t>(s.seed) : std::random_device{}();
  p.stop = s.stop;
  return p;
}

StreamCallbacks printing_callbacks() {
  StreamCallbacks cb;
  cb.on_text = [](const std::string& t) {
    std::fwrite(t.data(), 1, t.size(), stdout);
    std::fflush(stdout);
    return true;
  };
  cb.should_stop = [] { return g_interrupted.load(); };
  return cb;
}

void print_stats(const Completion& c) {
  std::fprintf(stderr, "\n[%lld prompt tokens (%lld reused) in %.2f s, %lld tokens in %.2f s = %.1f tokens/s, %s]\n",
               static_cast<long long>(c.prompt_tokens), static_cast<long long>(c.prompt_tokens_reused),
               c.prefill_seconds, static_cast<long long>(c.completion_tokens), c.decode_seconds,
               c.decode_seconds > 0 ? c.completion_tokens / c.decode_seconds : 0.0, c.finish_reason.c_str());
}

}  // namespace

int run_generate(const Sampling& s, bool chat) {
  const std::string path = s.model.empty() ? default_model_path() : s.model;
  set_threads(s.threads);
  std::unique_ptr<LLM> llm;
  try {
    llm = LLM::load(path, s.ctx);
  } catch (const Error& e) {
    if (s.model.empty() && e.code() == ErrorCode::kNotFound)
      throw Error(ErrorCode::kNotFound, std::string("the default model is not installed (") + e.what() + ")",
                  "run scripts/setup, or pass a GGUF file with -m");
    throw;
  }
  install_sigint();
  const GenerationParams params = to_params(s);
  const StreamCallbacks cb = printing_callbacks();

  if (!chat) {
    std::string prompt = s.prompt;
    if (prompt == "-") prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
    Completion c = llm->complete(prompt, params, cb);
    std::printf("\n");
    if (s.verbose) print_stats(c);
    return kExitOk;
  }

  std::vector<ChatMessage> history;
  if (!s.system.empty()) history.push_back({"system", s.system});
  auto answer = [&](const std::string& user) {
    history.push_back({"user", user});
    g_interrupted.store(false);
    Completion c = llm->chat(history, params, cb);
    std::printf("\n");
    if (s.verbose) print_stats(c);
    history.push_back({"assistant", c.text});
    if (c.finish_reason == "context_full")
      std::fprintf(stderr, "[the context is full; type /reset to start over]\n");
  };
  if (!s.prompt.empty()) {
    answer(s.prompt);
    return kExitOk;
  }
  std::fprintf(stderr, "llmkit chat: %s\nType a message; /reset starts over, /exit or Ctrl-D quits, Ctrl-C stops a reply.\n",
               llm->describe().c_str());
  std::string line;
  while (true) {
    std::fprintf(stderr, "\n> ");
    std::fflush(stderr);
    g_interrupted.store(false);
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.clear();
      if (!s.system.empty()) history.push_back({"system", s.system});
      llm->reset();
      std::fprintf(stderr, "[conversation reset]\n");
      continue;
    }
    if (line.empty()) continue;
    answer(line);
  }
  std::fprintf(stderr, "\n");
  return kExitOk;
}

}  // namespace llmkit::cli
