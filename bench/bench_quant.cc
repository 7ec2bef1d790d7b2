// Quantized matrix x vector (decode, M = 1) throughput of cpu::quant_matmul: y[1,N] = x[1,K] .
// w[N,K]^T for the common GGUF weight types, at the shapes of a small model (576 x 1536, 1536 x 576:
// SmolLM2-135M's FFN) and a large one (2048 x 8192), on 1 and 2 threads. The counter GB/s is
// weight bytes read per second: decode is memory-bound, so compare it with the "Memory bandwidth"
// section of docs/BENCHMARKS.md. Results and the command line are in the "Quantized matrix x
// vector" section there.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <tuple>
#include <vector>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/cpu/quant_matmul.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/tensor/dtype.h"

namespace {
using llmkit::DType;

// Weights [N, K] of type t: 64 distinct quantized rows of N(0, 0.02) data, repeated (quantizing
// 16M values with the k-quant search takes seconds; the kernel's speed does not depend on values).
const std::vector<uint8_t>& weights(DType t, int64_t N, int64_t K) {
  static std::map<std::tuple<int, int64_t, int64_t>, std::vector<uint8_t>> cache;
  auto& w = cache[{static_cast<int>(t), N, K}];
  if (!w.empty()) return w;
  if (llmkit::is_r8(t)) {  // the rows-interleaved-by-8 layout the int8 kernel runs at load
    const auto& base = weights(llmkit::r8_base(t), N, K);
    w.resize(base.size());
    llmkit::ref::pack_r8(llmkit::r8_base(t), base.data(), w.data(), K, 0, N / 8);
    return w;
  }
  const size_t rb = llmkit::row_bytes(t, K);
  const int64_t distinct = N < 64 ? N : 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> row(K);
  w.resize(rb * N);
  for (int64_t n = 0; n < distinct; ++n) {
    for (auto& v : row) v = nd(rng);
    llmkit::ref::quantize_row(t, row.data(), w.data() + n * rb, K);
  }
  for (int64_t n = distinct; n < N; ++n) std::memcpy(w.data() + n * rb, w.data() + (n % distinct) * rb, rb);
  return w;
}

void BM_QuantMatVec(benchmark::State& st, DType t) {
  const int64_t N = st.range(0), K = st.range(1);
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(2)));
  const auto& w = weights(t, N, K);
  std::vector<float> x(K), y(N);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  for (auto _ : st) {
    llmkit::cpu::quant_matmul(x.data(), w.data(), t, y.data(), 1, N, K);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(w.size()) * 1e-9 * static_cast<double>(st.iterations()),
                                           benchmark::Counter::kIsRate);
}

// The same product over kCold distinct copies of the weights in turn (>= 0.25 GB in all, beyond
// the last-level cache): what decode of a model larger than the cache sees, every weight byte from
// DRAM once per token.
void BM_QuantMatVecCold(benchmark::State& st, DType t) {
  const int64_t N = st.range(0), K = st.range(1);
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(2)));
  const auto& w0 = weights(t, N, K);
  const size_t kCold = std::max<size_t>(24, (size_t{256} << 20) / w0.size());
  std::vector<std::vector<uint8_t>> copies(kCold, w0);
  std::vector<float> x(K), y(N);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  size_t i = 0;
  for (auto _ : st) {
    llmkit::cpu::matmul(x.data(), copies[i].data(), t, y.data(), 1, N, K);
    i = (i + 1) % kCold;
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GB/s"] = benchmark::Counter(static_cast<double>(w0.size()) * 1e-9 * static_cast<double>(st.iterations()),
                                           benchmark::Counter::kIsRate);
}
void cold_args(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2}) {
    b->Args({2048, 8192, threads})->Args({8192, 2048, threads});
    b->Args({1536, 576, threads})->Args({576, 1536, threads});  // SmolLM2-135M's FFN
  }
  b->ArgNames({"N", "K", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

// M activation rows (a serving batch of M decoding sequences) against one weight matrix: time per
// call and per row, to see how much of the weight work M rows share.
void BM_QuantMatBatch(benchmark::State& st, DType t) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(3)));
  const auto& w = weights(t, N, K);
  std::vector<float> x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  for (auto _ : st) {
    llmkit::cpu::quant_matmul(x.data(), w.data(), t, y.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["rows/s"] = benchmark::Counter(static_cast<double>(M) * static_cast<double>(st.iterations()),
                                             benchmark::Counter::kIsRate);
}
void batch_args(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int m : {1, 2, 4, 5, 8, 16, 64}) b->Args({m, 1536, 576, threads});
  // SmolLM2's tied output head (49152 x 576, Q8_0 in the Q4_1 GGUF) at serving batch sizes: 21% of a
  // serving step's multiply-adds, streamed from memory (28 MB at Q8_0) once per step.
  for (int m : {1, 8}) b->Args({m, 49152, 576, 2});
  b->ArgNames({"M", "N", "K", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

// K = 576 is not a multiple of the k-quant super-block (256), so Q4_K/Q6_K cannot store 1536 x 576
// (llama.cpp falls back to a legacy type for such tensors); k-quants skip that shape.
void shapes(benchmark::internal::Benchmark* b, bool k_quant) {
  for (int threads : {1, 2}) {
    for (auto [n, k] : {std::pair{576, 1536}, std::pair{1536, 576}, std::pair{2048, 8192}}) {
      if (!k_quant || k % 256 == 0) b->Args({n, k, threads});
    }
  }
  b->ArgNames({"N", "K", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
void args(benchmark::internal::Benchmark* b) { shapes(b, false); }
void args_k(benchmark::internal::Benchmark* b) { shapes(b, true); }

BENCHMARK_CAPTURE(BM_QuantMatVec, q4_0, DType::kQ4_0)->Apply(args);
BENCHMARK_CAPTURE(BM_QuantMatVec, q4_1, DType::kQ4_1)->Apply(args);
BENCHMARK_CAPTURE(BM_QuantMatVec, q8_0, DType::kQ8_0)->Apply(args);
BENCHMARK_CAPTURE(BM_QuantMatVecCold, q4_0, DType::kQ4_0)->Apply(cold_args);
BENCHMARK_CAPTURE(BM_QuantMatVecCold, q8_0, DType::kQ8_0)->Apply(cold_args);
BENCHMARK_CAPTURE(BM_QuantMatVecCold, f16, DType::kF16)->Apply(cold_args);
BENCHMARK_CAPTURE(BM_QuantMatBatch, q4_0, DType::kQ4_0)->Apply(batch_args);
BENCHMARK_CAPTURE(BM_QuantMatBatch, q4_1, DType::kQ4_1)->Apply(batch_args);
BENCHMARK_CAPTURE(BM_QuantMatBatch, q8_0, DType::kQ8_0)->Apply(batch_args);
BENCHMARK_CAPTURE(BM_QuantMatBatch, q4_1_r8, DType::kQ4_1_R8)->Apply(batch_args);
BENCHMARK_CAPTURE(BM_QuantMatBatch, q8_0_r8, DType::kQ8_0_R8)->Apply(batch_args);
BENCHMARK_CAPTURE(BM_QuantMatVec, q4_k, DType::kQ4_K)->Apply(args_k);
BENCHMARK_CAPTURE(BM_QuantMatVec, q6_k, DType::kQ6_K)->Apply(args_k);

}  // namespace

BENCHMARK_MAIN();
