// `llmkit logits -m MODEL --input IN.safetensors --out OUT.safetensors`: a parity tool.
#include <cstdio>

#include "commands.h"
#include "llmkit/eval.h"
#include "llmkit/llm.h"

namespace llmkit::cli {

int run_logits(const std::string& model, const std::string& in, const std::string& out, int threads) {
  set_threads(threads);
  LogitsFileResult r = logits_file(model.empty() ? default_model_path() : model, in, out, [](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rrow %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  });
  std::printf("wrote %s float32 [%lld, %lld, %lld] to %s (%.2f s)\n", r.output_name.c_str(), static_cast<long long>(r.batch),
              static_cast<long long>(r.tokens), static_cast<long long>(r.width), out.c_str(), r.seconds);
  return kExitOk;
}

}  // namespace llmkit::cli
