// `llmkit bench`: prompt-processing and decode speed of the transformer; see llmkit/bench.h for
// what each test measures and why it mirrors llama-bench.
#include "llmkit/bench.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/models/transformer.h"

namespace llmkit {
namespace {

uint64_t splitmix64(uint64_t x) {  // Steele, Lea & Flood 2014; the public-domain constants of SplittableRandom
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// 134.5M, 1.2B, 37.8K (as llama-bench names model sizes).
std::string si_count(uint64_t n) {
  const double x = static_cast<double>(n);
  char buf[32];
  if (x >= 1e9) std::snprintf(buf, sizeof buf, "%.1fB", x / 1e9);
  else if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", x / 1e6);
  else std::snprintf(buf, sizeof buf, "%.1fK", x / 1e3);
  return buf;
}

// "llama 134.5M q4_1": the weight type holding the most bytes among the 2-D tensors names the file,
// as llama.cpp's file type does (token_embd may differ, e.g. q8_0 in a q4_1 file).
std::string describe(const models::Weights& w, uint64_t n_params) {
  std::map<DType, uint64_t> bytes;
  for (const auto& [name, t] : w.all())
    if (t.rank() == 2) bytes[t.dtype()] += t.nbytes();
  DType main = DType::kF32;
  uint64_t best = 0;
  for (const auto& [dt, b] : bytes)
    if (b > best) best = b, main = dt;
  return str_cat(models::family_name(w.config().family), " ", si_count(n_params), " ", dtype_name(main));
}

void summarize(BenchRow& r) {
  double sum = 0;
  for (double s : r.samples) sum += s;
  r.mean = sum / static_cast<double>(r.samples.size());
  double ss = 0;
  for (double s : r.samples) ss += (s - r.mean) * (s - r.mean);
  r.stddev = r.samples.size() > 1 ? std::sqrt(ss / static_cast<double>(r.samples.size() - 1)) : 0.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<int32_t> bench_tokens(uint64_t seed, int64_t n, int64_t n_vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    ids[static_cast<size_t>(i)] = static_cast<int32_t>(splitmix64(seed + static_cast<uint64_t>(i)) % static_cast<uint64_t>(n_vocab));
  return ids;
}

std::vector<BenchRow> bench(const BenchOptions& opt) {
  LLMKIT_CHECK(opt.n_prompt >= 0 && opt.n_gen >= 0 && opt.n_prompt + opt.n_gen > 0, kInvalidArgument,
               "bench: -p ", opt.n_prompt, " and -n ", opt.n_gen, " must be >= 0 and not both 0");
  LLMKIT_CHECK(opt.reps >= 1, kInvalidArgument, "bench: -r ", opt.reps, " must be >= 1");
  LLMKIT_CHECK(!opt.threads.empty(), kInvalidArgument, "bench: give at least one thread count with -t");
  auto model = models::Transformer::load(opt.model);
  const models::ModelConfig& cfg = model->config();
  LLMKIT_CHECK(cfg.decoder, kUnsupported, "bench: model '", opt.model, "' is an encoder (",
               models::family_name(cfg.family), "); bench measures next-token models");
  if (opt.ubatch > 0) model->set_ubatch(opt.ubatch);
  LLMKIT_CHECK(opt.kv_type == "f32" || opt.kv_type == "f16", kInvalidArgument, "bench: --kv-type '", opt.kv_type,
               "' is not a KV cache type; use f32 or f16");
  model->set_kv_dtype(opt.kv_type == "f16" ? DType::kF16 : DType::kF32);
  const int64_t n_ctx = opt.n_prompt + opt.n_gen;
  LLMKIT_CHECK(n_ctx <= cfg.n_ctx, kInvalidArgument, "bench: -p ", opt.n_prompt, " + -n ", opt.n_gen,
               " = ", n_ctx, " positions exceed the model's context of ", cfg.n_ctx);
  const std::vector<int32_t> ids = bench_tokens(opt.seed, std::max(opt.n_prompt, opt.n_gen), cfg.n_vocab);
  uint64_t size = 0;
  for (const auto& [name, t] : model->weights().all()) size += t.nbytes();
  const uint64_t n_params = model->weights().n_params();
  const std::string desc = describe(model->weights(), n_params);
  models::KVCache cache = model->new_cache(n_ctx);
  const uint64_t kv_bytes = cache.pages->nbytes();
  uint64_t file_bytes = 0;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(opt.model, ec)) {
    for (const auto& e : fs::recursive_directory_iterator(opt.model, ec))
      if (e.is_regular_file(ec)) file_bytes += e.file_size(ec);
  } else {
    file_bytes = fs::file_size(opt.model, ec);
  }
  auto peak_rss = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<uint64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
  };

  auto run_pp = [&] {
    cache.n_past = 0;
    const std::vector<int32_t> prompt(ids.begin(), ids.begin() + opt.n_prompt);
    const auto t0 = std::chrono::steady_clock::now();
    model->forward(prompt, cache, 1);
    return static_cast<double>(opt.n_prompt) / seconds_since(t0);
  };
  auto run_tg = [&] {
    cache.n_past = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < opt.n_gen; ++i) model->forward({ids[static_cast<size_t>(i)]}, cache, 1);
    return static_cast<double>(opt.n_gen) / seconds_since(t0);
  };

  std::vector<BenchRow> rows;
  for (int threads : opt.threads) {
    LLMKIT_CHECK(threads >= 0, kInvalidArgument, "bench: thread count ", threads, " must be >= 0 (0 = all cores)");
    ThreadPool::set_global_threads(threads);
    const int used = ThreadPool::global().size();
    for (int test = 0; test < 2; ++test) {
      const int64_t n = test == 0 ? opt.n_prompt : opt.n_gen;
      if (n == 0) continue;
      BenchRow r;
      r.model = desc;
      r.size_bytes = size;
      r.n_params = n_params;
      r.threads = used;
      r.test = str_cat(test == 0 ? "pp" : "tg", n);
      r.n_tokens = n;
      auto run = [&] { return test == 0 ? run_pp() : run_tg(); };
      run();  // warm-up
      for (int k = 0; k < opt.reps; ++k) r.samples.push_back(run());
      summarize(r);
      r.file_bytes = file_bytes;
      r.kv_cache_bytes = kv_bytes;
      r.peak_rss_bytes = peak_rss();
      rows.push_back(std::move(r));
    }
  }
  return rows;
}

std::string bench_table(const std::vector<BenchRow>& rows) {
  std::string out = "| model | size | params | threads | test | t/s |\n| --- | ---: | ---: | ---: | ---: | ---: |\n";
  char buf[256];
  for (const BenchRow& r : rows) {
    const double mib = static_cast<double>(r.size_bytes) / (1024.0 * 1024.0);
    std::snprintf(buf, sizeof buf, "| %s | %.2f MiB | %.2f M | %d | %s | %.2f ± %.2f |\n", r.model.c_str(), mib,
                  static_cast<double>(r.n_params) / 1e6, r.threads, r.test.c_str(), r.mean, r.stddev);
    out += buf;
  }
  return out;
}

std::string bench_json(const std::vector<BenchRow>& rows, const BenchOptions& opt) {
  nlohmann::json j;
  j["model_path"] = opt.model;
  j["n_prompt"] = opt.n_prompt;
  j["n_gen"] = opt.n_gen;
  j["reps"] = opt.reps;
  j["seed"] = opt.seed;
  j["rows"] = nlohmann::json::array();
  for (const BenchRow& r : rows) {
    j["rows"].push_back({{"model", r.model}, {"size_bytes", r.size_bytes}, {"n_params", r.n_params},
                         {"threads", r.threads}, {"test", r.test}, {"n_tokens", r.n_tokens},
                         {"samples", r.samples}, {"mean", r.mean}, {"stddev", r.stddev},
                         {"file_bytes", r.file_bytes}, {"kv_cache_bytes", r.kv_cache_bytes},
                         {"peak_rss_bytes", r.peak_rss_bytes}});
  }
  return j.dump(2) + "\n";
}

}  // namespace llmkit
