// `llmkit bench -m MODEL [-p 512] [-n 128] [-t 1,2] [-r 5] [--ubatch-size 128] [--json]`: llama-bench's table (see
// llmkit/bench.h for what pp and tg measure).
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "llmkit/bench.h"

namespace llmkit::cli {

int run_bench(const std::string& model, int p, int n, const std::vector<int>& threads, int reps, int ubatch,
              const std::string& kv_type, bool json) {
  BenchOptions opt;
  opt.model = model.empty() ? default_model_path() : model;
  opt.n_prompt = p;
  opt.n_gen = n;
  if (!threads.empty()) opt.threads = threads;
  opt.reps = reps;
  opt.ubatch = ubatch;
  opt.kv_type = kv_type;
  const std::vector<BenchRow> rows = bench(opt);
  const std::string out = json ? bench_json(rows, opt) : bench_table(rows);
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

}  // namespace llmkit::cli
