// Perplexity, chunked exactly as llama.cpp's perplexity tool (see llmkit/eval.h).
#include <cmath>

#include "llmkit/base/check.h"
#include "llmkit/base/timer.h"
#include "llmkit/eval.h"
#include "llmkit/models/transformer.h"
#include "llmkit/tokenizer.h"

namespace llmkit {

PerplexityResult perplexity(const std::string& model_path, const std::string& text, const PerplexityOptions& opt) {
  LLMKIT_CHECK(opt.n_ctx >= 16 && opt.n_ctx <= (1 << 20), kInvalidArgument, "perplexity context ", opt.n_ctx,
               " is out of range; use 16 .. 1048576");
  LLMKIT_CHECK(opt.max_chunks >= 0, kInvalidArgument, "max_chunks ", opt.max_chunks, " must be >= 0");
  auto model = models::Transformer::load(model_path);
  Tokenizer tok = Tokenizer::load(model_path);
  LLMKIT_CHECK(opt.n_ctx <= model->config().n_ctx, kInvalidArgument, "context ", opt.n_ctx, " exceeds the model's ",
               model->config().n_ctx);
  const std::vector<int32_t> probe = tok.encode("", true);
  const bool add_bos = tok.bos_id() && !probe.empty() && probe.front() == *tok.bos_id();
  const std::vector<int32_t> tokens = tok.encode(text, true);
  const int64_t n_ctx = opt.n_ctx;
  int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  LLMKIT_CHECK(n_chunks >= 1, kInvalidArgument, "the text has ", tokens.size(), " tokens, fewer than one chunk of ",
               n_ctx, "; give a longer text or a smaller --ctx-size");
  if (opt.max_chunks > 0 && opt.max_chunks < n_chunks) n_chunks = opt.max_chunks;

  PerplexityResult r;
  r.n_tokens = static_cast<int64_t>(tokens.size());
  r.n_chunks = n_chunks;
  Timer timer;
  models::KVCache cache = model->new_cache(n_ctx);
  const int64_t first = n_ctx / 2;
  double nll = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = *tok.bos_id();
    cache.n_past = 0;
    Tensor logits = model->forward(chunk, cache, n_ctx);  // [n_ctx, n_vocab]
    const int64_t V = logits.dim(1);
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const float* row = logits.data<float>() + j * V;
      float mx = row[0];
      for (int64_t v = 1; v < V; ++v) mx = std::max(mx, row[v]);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - mx));
      const int32_t next = tokens[static_cast<size_t>(c * n_ctx + j + 1)];
      nll += -(static_cast<double>(row[next] - mx) - std::log(sum));
      ++r.n_scored;
    }
    r.chunk_ppl.push_back(std::exp(nll / static_cast<double>(r.n_scored)));
    if (opt.progress) opt.progress(c + 1, n_chunks, r.chunk_ppl.back());
  }
  r.mean_nll = nll / static_cast<double>(r.n_scored);
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = timer.seconds();
  return r;
}

}  // namespace llmkit
