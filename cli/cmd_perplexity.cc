// `llmkit perplexity -m MODEL -f TEXT [--ctx-size N] [--chunks K]` with a progress line.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/eval.h"
#include "llmkit/llm.h"

namespace llmkit::cli {

int run_perplexity(const std::string& model, const std::string& file, int ctx, int chunks, int threads) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, "cannot read text file '" + file + "'", "pass an existing file with -f");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  set_threads(threads);
  PerplexityOptions opt;
  opt.n_ctx = ctx;
  opt.max_chunks = chunks;
  const bool tty = isatty(fileno(stderr));
  opt.progress = [tty](int64_t done, int64_t total, double ppl) {
    if (tty) {
      const int width = 30, filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\r[%.*s%*s] %lld/%lld chunks, ppl %.4f", filled, "==============================",
                   width - filled, "", static_cast<long long>(done), static_cast<long long>(total), ppl);
      if (done == total) std::fprintf(stderr, "\n");
    } else {
      std::fprintf(stderr, "chunk %lld/%lld: ppl %.4f\n", static_cast<long long>(done), static_cast<long long>(total), ppl);
    }
  };
  PerplexityResult r = perplexity(model.empty() ? default_model_path() : model, text, opt);
  std::printf("perplexity %.4f  (%lld chunks of %d tokens, %lld scored of %lld, %.1f s, %.1f tokens/s)\n", r.perplexity,
              static_cast<long long>(r.n_chunks), ctx, static_cast<long long>(r.n_scored),
              static_cast<long long>(r.n_tokens), r.seconds, r.n_chunks * ctx / r.seconds);
  return kExitOk;
}

}  // namespace llmkit::cli
