// This machine's memory bandwidth, measured with the same toolchain and thread pool as the
// kernels: the ceiling for memory-bound decode (a quantized GEMV can go no faster than reading
// its weight bytes once). Three STREAM-like kernels over buffers far larger than L3 (32 MiB here):
//   read:  sum of a 512 MiB float buffer (SIMD, 4 accumulators)     bytes = 512 MiB
//   copy:  b = a over 2 x 256 MiB                                    bytes = read + write
//   triad: a = b + s*c over 3 x 256 MiB                              bytes = 2 reads + 1 write
// As in STREAM, write-allocate traffic (reading the destination line before writing it) is not
// counted, so copy/triad understate what the bus moves by up to 1/2 and 1/3. GB/s are 1e9 bytes.
// Threads split the buffer with ThreadPool::global() (persistent; set_global_threads per case).
// Kernels are Highway code compiled per target and dispatched at run time like the library's.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>

#include "llmkit/base/thread_pool.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench_membw.cc"  // found via bench/ on the include path
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace membw {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float SumRange(const float* a, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    s0 = hn::Add(s0, hn::Load(d, a + i));
    s1 = hn::Add(s1, hn::Load(d, a + i + L));
    s2 = hn::Add(s2, hn::Load(d, a + i + 2 * L));
    s3 = hn::Add(s3, hn::Load(d, a + i + 3 * L));
  }
  float s = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) s += a[i];
  return s;
}

void TriadRange(float* a, const float* b, const float* c, float s, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto vs = hn::Set(d, s);
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::Store(hn::MulAdd(vs, hn::Load(d, c + i), hn::Load(d, b + i)), d, a + i);
  for (; i < n; ++i) a[i] = b[i] + s * c[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace membw
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace membw {
HWY_EXPORT(SumRange);
HWY_EXPORT(TriadRange);

constexpr int64_t kMiB = int64_t{1} << 20;

// Buffers are allocated and touched once per process (first-touch page faults out of the timing).
float* buffer(int which, int64_t n) {
  static hwy::AlignedFreeUniquePtr<float[]> bufs[3];
  static int64_t sizes[3] = {0, 0, 0};
  if (sizes[which] < n) {
    bufs[which] = hwy::AllocateAligned<float>(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) bufs[which][i] = static_cast<float>(i & 1023) * 1e-3f;
    sizes[which] = n;
  }
  return bufs[which].get();
}

// Chunks are multiples of 4096 floats so every thread's range stays vector- and page-aligned.
constexpr int64_t kChunk = 4096;

void set_gbps(benchmark::State& st, double bytes) {
  st.counters["GBps"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_read(benchmark::State& st) {
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(0)));
  const int64_t n = 512 * kMiB / 4;
  const float* a = buffer(0, n);
  float partial[64] = {};
  for (auto _ : st) {
    auto body = [&](int tid, int nth) {
      const int64_t chunks = n / kChunk, b = chunks * tid / nth * kChunk, e = chunks * (tid + 1) / nth * kChunk;
      partial[tid * 16 % 64] = HWY_DYNAMIC_DISPATCH(SumRange)(a + b, e - b);
    };
    llmkit::ThreadPool::global().run(body);
    benchmark::DoNotOptimize(partial);
  }
  set_gbps(st, static_cast<double>(n) * 4);
}

void BM_copy(benchmark::State& st) {
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(0)));
  const int64_t n = 256 * kMiB / 4;
  const float* a = buffer(0, n);
  float* b = buffer(1, n);
  for (auto _ : st) {
    auto body = [&](int tid, int nth) {
      const int64_t chunks = n / kChunk, lo = chunks * tid / nth * kChunk, hi = chunks * (tid + 1) / nth * kChunk;
      std::memcpy(b + lo, a + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    };
    llmkit::ThreadPool::global().run(body);
    benchmark::ClobberMemory();
  }
  set_gbps(st, static_cast<double>(n) * 4 * 2);
}

void BM_triad(benchmark::State& st) {
  llmkit::ThreadPool::set_global_threads(static_cast<int>(st.range(0)));
  const int64_t n = 256 * kMiB / 4;
  float* a = buffer(0, n);
  const float* b = buffer(1, n);
  const float* c = buffer(2, n);
  for (auto _ : st) {
    auto body = [&](int tid, int nth) {
      const int64_t chunks = n / kChunk, lo = chunks * tid / nth * kChunk, hi = chunks * (tid + 1) / nth * kChunk;
      HWY_DYNAMIC_DISPATCH(TriadRange)(a + lo, b + lo, c + lo, 0.5f, hi - lo);
    };
    llmkit::ThreadPool::global().run(body);
    benchmark::ClobberMemory();
  }
  set_gbps(st, static_cast<double>(n) * 4 * 3);
}

BENCHMARK(BM_read)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_copy)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_triad)->Arg(1)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace membw

BENCHMARK_MAIN();
#endif  // HWY_ONCE
