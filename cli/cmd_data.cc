// `llmkit data prepare -i CORPUS -o DIR [-m MODEL] [--field text] [--val-fraction F] [--seed S]
// [--shard-tokens N]`: tokenize a text/JSONL corpus into token shards for training, with a
// progress line (bytes read, MB/s, ETA).
#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "commands.h"
#include "llmkit/data.h"

namespace llmkit::cli {

int run_data_prepare(const DataPrepareOptions& in) {
  DataPrepareOptions opt = in;
  if (opt.tokenizer.empty()) opt.tokenizer = default_model_path();
  const bool tty = isatty(fileno(stderr));
  const auto t0 = std::chrono::steady_clock::now();
  int last_pct = -1;
  opt.progress = [&](uint64_t done, uint64_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int pct = total ? static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total)) : 100;
    const double mbs = s > 0 ? static_cast<double>(done) / 1e6 / s : 0.0;
    const double eta = done > 0 && done < total ? s * static_cast<double>(total - done) / static_cast<double>(done) : 0.0;
    if (tty) {
      const int width = 30, filled = pct * width / 100;
      std::fprintf(stderr, "\r[%.*s%*s] %3d%%  %.1f / %.1f MB  %.1f MB/s  ETA %.0f s ", filled,
                   "==============================", width - filled, "", pct, static_cast<double>(done) / 1e6,
                   static_cast<double>(total) / 1e6, mbs, eta);
      if (done >= total) std::fprintf(stderr, "\n");
    } else if (pct / 10 != last_pct / 10 || done >= total) {
      std::fprintf(stderr, "data: %d%% (%.1f of %.1f MB, %.1f MB/s)\n", pct, static_cast<double>(done) / 1e6,
                   static_cast<double>(total) / 1e6, mbs);
    }
    last_pct = pct;
  };
  const DataPrepareResult r = prepare_data(opt);
  std::printf("%s: %lld documents (%lld validation, %lld blank skipped) -> %lld train tokens in %d shard(s), %lld "
              "validation tokens in %d shard(s), uint%d, separator id %d; %.1f s, %.1f MB/s\n",
              opt.out_dir.c_str(), static_cast<long long>(r.documents), static_cast<long long>(r.val_documents),
              static_cast<long long>(r.skipped_empty), static_cast<long long>(r.train_tokens), r.train_shards,
              static_cast<long long>(r.val_tokens), r.val_shards, r.token_bytes * 8, r.separator, r.seconds,
              r.seconds > 0 ? static_cast<double>(r.input_bytes) / 1e6 / r.seconds : 0.0);
  return kExitOk;
}

}  // namespace llmkit::cli
