// One batched decode step of the serving scheduler: B sequences, each with `ctx` positions already in
// the paged KV cache, feed one token each through one forward_batch (what continuous batching runs
// once every sequence is past its prompt). Tokens/s = B / step time; the ratio to B = 1 is the
// scheduler's ceiling for "aggregate decode at B streams vs one stream".
//
//   build/bench/bench_decode [--benchmark_filter=...]   (model: LLMKIT_BENCH_MODEL, default the
//   installed SmolLM2-135M-Instruct Q4_1; threads: LLMKIT_THREADS; LLMKIT_BENCH_KV=f16: an F16 KV cache)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/models/transformer.h"

namespace {

using llmkit::models::KVCache;
using llmkit::models::Transformer;

const Transformer* model() {
  static std::unique_ptr<Transformer> m = [] {
    const char* env = std::getenv("LLMKIT_BENCH_MODEL");
    const char* home = std::getenv("HOME");
    std::string path = env ? env : std::string(home ? home : ".") + "/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf";
    auto t = Transformer::load(path);
    const char* kv = std::getenv("LLMKIT_BENCH_KV");
    if (kv && std::string(kv) == "f16") t->set_kv_dtype(llmkit::DType::kF16);
    return t;
  }();
  return m.get();
}

void BM_DecodeStep(benchmark::State& state) {
  const int64_t B = state.range(0), ctx = state.range(1);
  const Transformer& m = *model();
  // One shared pool, as the scheduler has: sequence s owns pages [s * per, (s + 1) * per).
  const int64_t per = (ctx + 64 + llmkit::models::kKVPage - 1) / llmkit::models::kKVPage;
  auto pages = m.new_kv_pages(B * per);
  std::vector<KVCache> caches(static_cast<size_t>(B));
  std::vector<std::vector<int32_t>> prompt(static_cast<size_t>(B)), next(static_cast<size_t>(B));
  for (int64_t s = 0; s < B; ++s) {
    KVCache& c = caches[static_cast<size_t>(s)];
    c.pages = pages;
    c.n_ctx = per * llmkit::models::kKVPage;
    for (int64_t b = 0; b < per; ++b) c.blocks.push_back(static_cast<int32_t>(s * per + b));
    for (int64_t i = 0; i < ctx; ++i) prompt[static_cast<size_t>(s)].push_back(static_cast<int32_t>((i * 7 + s * 13) % 1000 + 100));
    next[static_cast<size_t>(s)] = {static_cast<int32_t>(200 + s)};
  }
  std::vector<Transformer::SeqBatch> pre, step;
  for (int64_t s = 0; s < B; ++s) {
    pre.push_back({&prompt[static_cast<size_t>(s)], &caches[static_cast<size_t>(s)], 1});
    step.push_back({&next[static_cast<size_t>(s)], &caches[static_cast<size_t>(s)], 1});
  }
  m.forward_batch(pre);
  for (auto _ : state) {
    for (auto& c : caches) c.n_past = ctx;  // every step decodes at the same depth
    benchmark::DoNotOptimize(m.forward_batch(step));
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(B), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_DecodeStep)
    ->ArgNames({"B", "ctx"})
    ->Args({1, 256})
    ->Args({4, 256})
    ->Args({8, 256})
    ->Args({16, 256})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
