// Dense GEMM/GEMV throughput of cpu_table() next to OpenBLAS in the same binary, same sizes, same
// thread counts: y[M,N] = x[M,K] . w[N,K]^T (cblas_sgemm RowMajor, NoTrans x, Trans w). Counters:
// GFLOPS = 2*M*N*K per second (1e9); for GEMV (M=1) also GB/s of weight bytes streamed, to hold
// against bench_membw's read bandwidth. BF16 compares matmul_bf16 with cblas_sbgemm (declared in
// OpenBLAS's header since 0.3.10) when the library exports it; Debian's 0.3.21 does not, and then
// BF16 is held against sgemm on the same sizes.
// Run: build-simd/bench/bench_gemm [--benchmark_format=json] (see docs/BENCHMARKS.md).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/kernels/ref/ops.h"
#include "llmkit/tensor/half.h"

#if LLMKIT_BENCH_OPENBLAS
#include <cblas.h>
#endif

namespace {

using llmkit::DType;

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& f : v) f = u(rng);
  return v;
}

std::vector<uint16_t> to_bits(const std::vector<float>& v, DType t) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = t == DType::kF16 ? llmkit::f32_to_f16(v[i]) : llmkit::f32_to_bf16(v[i]);
  return out;
}

void set_counters(benchmark::State& st, int64_t M, int64_t N, int64_t K, double weight_bytes) {
  st.counters["GFLOPS"] = benchmark::Counter(2e-9 * static_cast<double>(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
  if (M == 1) st.counters["GBps_w"] = benchmark::Counter(1e-9 * weight_bytes, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: M, N, K, threads, weight dtype (0 F32, 1 F16, 2 BF16).
void BM_llmkit_matmul(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(3)));
  const DType wt = st.range(4) == 0 ? DType::kF32 : st.range(4) == 1 ? DType::kF16 : DType::kBF16;
  auto x = random_floats(M * K, 1), wf = random_floats(N * K, 2);
  std::vector<uint16_t> wh = wt == DType::kF32 ? std::vector<uint16_t>() : to_bits(wf, wt);
  const void* w = wt == DType::kF32 ? static_cast<const void*>(wf.data()) : static_cast<const void*>(wh.data());
  std::vector<float> y(static_cast<size_t>(M * N));
  const auto& t = llmkit::cpu_table();
  for (auto _ : st) {
    t.matmul(x.data(), w, wt, y.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, M, N, K, static_cast<double>(N * K) * (wt == DType::kF32 ? 4 : 2));
  st.SetLabel(llmkit::current_cpu_target());
}

void BM_llmkit_matmul_bf16(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(3)));
  auto x = to_bits(random_floats(M * K, 1), DType::kBF16), w = to_bits(random_floats(N * K, 2), DType::kBF16);
  std::vector<float> y(static_cast<size_t>(M * N));
  const auto& t = llmkit::cpu_table();
  for (auto _ : st) {
    t.matmul_bf16(x.data(), w.data(), y.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, M, N, K, static_cast<double>(N * K) * 2);
}

// The three products of a training step through cpu_table().gemm, F32 or BF16 compute (GemmArgs::bf16):
// forward y = x . w^T (x [T, K], w [N, K]), dx = dy . w, dw = dy^T . x, with T tokens.
// Args: T, N, K, threads, product (0 forward, 1 dx, 2 dw), compute (0 F32, 1 BF16 from F32 operands).
void BM_llmkit_train_gemm(benchmark::State& st) {
  const int64_t T = st.range(0), N = st.range(1), K = st.range(2), product = st.range(4);
  const bool bf16 = st.range(5) == 1;
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(3)));
  auto x = random_floats(T * K, 1), w = random_floats(N * K, 2), dy = random_floats(T * N, 3);
  std::vector<float> c(static_cast<size_t>(product == 2 ? N * K : T * std::max(N, K)));
  llmkit::ref::GemmArgs g;
  g.bf16 = bf16;
  if (product == 0) {
    g.M = T, g.N = N, g.K = K, g.a = x.data(), g.lda = K, g.b = w.data(), g.ldb = K, g.ldc = N;
  } else if (product == 1) {
    g.M = T, g.N = K, g.K = N, g.a = dy.data(), g.lda = N, g.b = w.data(), g.ldb = K, g.b_kn = true, g.ldc = K;
  } else {
    g.M = N, g.N = K, g.K = T, g.a = dy.data(), g.lda = N, g.a_t = true, g.b = x.data(), g.ldb = K, g.b_kn = true;
    g.ldc = K;
  }
  g.c = c.data();
  const auto& t = llmkit::cpu_table();
  for (auto _ : st) {
    t.gemm(g);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, T, N, K, 0);
}

#if LLMKIT_BENCH_OPENBLAS
void BM_openblas_sgemm(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  openblas_set_num_threads(static_cast<int>(st.range(3)));
  auto x = random_floats(M * K, 1), w = random_floats(N * K, 2);
  std::vector<float> y(static_cast<size_t>(M * N));
  for (auto _ : st) {
    if (M == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.0f, w.data(),
                  static_cast<int>(K), x.data(), 1, 0.0f, y.data(), 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N),
                  static_cast<int>(K), 1.0f, x.data(), static_cast<int>(K), w.data(), static_cast<int>(K), 0.0f,
                  y.data(), static_cast<int>(N));
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, M, N, K, static_cast<double>(N * K) * 4);
}

#if LLMKIT_BENCH_SBGEMM
void BM_openblas_sbgemm(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  openblas_set_num_threads(static_cast<int>(st.range(3)));
  auto x = to_bits(random_floats(M * K, 1), DType::kBF16), w = to_bits(random_floats(N * K, 2), DType::kBF16);
  std::vector<float> y(static_cast<size_t>(M * N));
  for (auto _ : st) {
    cblas_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N),
                 static_cast<int>(K), 1.0f, x.data(), static_cast<int>(K), w.data(), static_cast<int>(K), 0.0f,
                 y.data(), static_cast<int>(N));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, M, N, K, static_cast<double>(N * K) * 2);
}
#endif  // LLMKIT_BENCH_SBGEMM
#endif  // LLMKIT_BENCH_OPENBLAS

// The GEMM shapes of the brief: square 512/1024, a small-model projection (128 tokens, d_ff 1536,
// d_model 576) and a larger one; GEMV shapes are decode (M=1) projections of a 4096-wide model.
void gemm_args(benchmark::internal::Benchmark* b) {
  for (int th : {1, 2}) {
    b->Args({512, 512, 512, th})->Args({1024, 1024, 1024, th})->Args({128, 1536, 576, th})->Args({512, 2048, 2048, th});
  }
  b->ArgNames({"M", "N", "K", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
void gemm_args_dtype(benchmark::internal::Benchmark* b) {
  for (int dt : {0, 1, 2}) {
    for (int th : {1, 2}) {
      b->Args({512, 512, 512, th, dt})->Args({1024, 1024, 1024, th, dt})->Args({128, 1536, 576, th, dt});
      b->Args({512, 2048, 2048, th, dt});
    }
  }
  b->ArgNames({"M", "N", "K", "threads", "wtype"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
// SmolLM2-135M's projections over a 512-token prompt micro-batch (q/o, k/v, gate/up, down), F16
// weights: the shapes behind `llmkit bench -p 512` on the F16 file.
void model_args(benchmark::internal::Benchmark* b) {
  for (int th : {1, 2}) {
    b->Args({512, 576, 576, th, 1})->Args({512, 192, 576, th, 1})->Args({512, 1536, 576, th, 1});
    b->Args({512, 576, 1536, th, 1});
  }
  b->ArgNames({"M", "N", "K", "threads", "wtype"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
// SmolLM2-135M's training products at batch 4 x 256 (T = 1024 tokens): q/o, k/v, gate/up, down and
// the tied head (N = 49152); then GPT-2-124M's: attn output, fused qkv, MLP up, MLP down and the tied
// head (N = 50257); 2 threads, each product in F32 and BF16 compute.
void train_args(benchmark::internal::Benchmark* b) {
  for (const auto& nk : {std::pair<int, int>{576, 576}, {192, 576}, {960, 576}, {1536, 576}, {3072, 576}, {576, 1536}, {49152, 576},
                         {768, 768}, {2304, 768}, {3072, 768}, {768, 3072}, {50257, 768}}) {
    for (int product : {0, 1, 2}) {
      for (int bf16 : {0, 1}) b->Args({1024, nk.first, nk.second, 2, product, bf16});
    }
  }
  b->ArgNames({"T", "N", "K", "threads", "product", "bf16"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
void gemv_args(benchmark::internal::Benchmark* b) {
  for (int dt : {0, 1, 2}) {
    for (int th : {1, 2}) b->Args({1, 4096, 4096, th, dt})->Args({4, 4096, 4096, th, dt})->Args({16, 4096, 4096, th, dt});
  }
  b->ArgNames({"M", "N", "K", "threads", "wtype"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
void gemv_args_blas(benchmark::internal::Benchmark* b) {
  for (int th : {1, 2}) b->Args({1, 4096, 4096, th})->Args({4, 4096, 4096, th})->Args({16, 4096, 4096, th});
  b->ArgNames({"M", "N", "K", "threads"})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_llmkit_matmul)->Apply(gemm_args_dtype);
BENCHMARK(BM_llmkit_matmul)->Name("BM_llmkit_model")->Apply(model_args);
BENCHMARK(BM_llmkit_matmul)->Name("BM_llmkit_gemv")->Apply(gemv_args);
BENCHMARK(BM_llmkit_matmul_bf16)->Apply(gemm_args);
BENCHMARK(BM_llmkit_train_gemm)->Apply(train_args);
#if LLMKIT_BENCH_OPENBLAS
BENCHMARK(BM_openblas_sgemm)->Apply(gemm_args);
BENCHMARK(BM_openblas_sgemm)->Name("BM_openblas_gemv")->Apply(gemv_args_blas);
#if LLMKIT_BENCH_SBGEMM
BENCHMARK(BM_openblas_sbgemm)->Apply(gemm_args);
#endif
#endif

}  // namespace

// Records the SIMD target and the OpenBLAS build in the output's context block.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("llmkit_cpu_target", llmkit::current_cpu_target());
#if LLMKIT_BENCH_OPENBLAS
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
