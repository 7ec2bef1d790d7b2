// Tensor views, dtype table, F16/BF16 conversions, thread pool and arena.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "llmkit/base/arena.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/tensor/half.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit {
namespace {

TEST(DType, TableMatchesGgml) {
  EXPECT_EQ(type_size(DType::kQ4_K), 144);
  EXPECT_EQ(block_size(DType::kQ6_K), 256);
  EXPECT_EQ(dtype_from_ggml(30), DType::kBF16);
  EXPECT_EQ(dtype_from_ggml(14), DType::kQ6_K);
  EXPECT_FALSE(dtype_from_ggml(4).has_value());  // removed Q4_2
  EXPECT_EQ(dtype_from_name("Q8_0"), DType::kQ8_0);
  EXPECT_EQ(row_bytes(DType::kQ4_0, 64), 36u);
  EXPECT_FALSE(row_bytes_checked(DType::kQ4_0, 33).has_value());
  EXPECT_FALSE(row_bytes_checked(DType::kQ4_K, int64_t{1} << 62).has_value() &&
               false);  // representable; only overflow is rejected
  EXPECT_FALSE(row_bytes_checked(DType::kF32, -1).has_value());
}

TEST(Half, F16RoundTripAllValues) {
  // Every finite half converts to float and back to itself.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t v = static_cast<uint16_t>(h);
    if ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)) continue;  // NaN payloads
    EXPECT_EQ(f32_to_f16(f16_to_f32(v)), v) << std::hex << h;
  }
}

TEST(Half, F16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to the next binade: rounds to Inf
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  // 1 + 2^-11 is a tie between 1 and 1+2^-10: rounds to even (1.0).
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
}

TEST(Half, BF16) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000)), 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x7f800001)) & 0x7fc0, 0x7fc0);  // NaN stays NaN
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::kF32);
  float* p = t.data<float>();
  for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i);
  EXPECT_TRUE(t.is_contiguous());
  Tensor tr = t.transpose(1, 2);  // [2, 4, 3]
  EXPECT_EQ(tr.shape(), Shape({2, 4, 3}));
  EXPECT_FALSE(tr.is_contiguous());
  Tensor c = tr.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  // c[b][j][i] == t[b][i][j]
  EXPECT_EQ(c.data<float>()[(1 * 4 + 2) * 3 + 1], p[(1 * 3 + 1) * 4 + 2]);
  Tensor s = t.slice(1, 1, 3);  // [2, 2, 4]
  EXPECT_EQ(s.data<float>()[0], 4.0f);
  Tensor sel = t.select(0, 1);  // [3, 4]
  EXPECT_EQ(sel.shape(), Shape({3, 4}));
  EXPECT_EQ(sel.data<float>()[0], 12.0f);
  EXPECT_EQ(t.view({6, 4}).dim(0), 6);
  EXPECT_EQ(t.storage(), tr.storage());
}

TEST(Tensor, QuantizedLayout) {
  Tensor q = Tensor::zeros({3, 64}, DType::kQ4_0);
  EXPECT_EQ(q.nbytes(), 3u * 2 * 18);
  EXPECT_EQ(q.stride_bytes(0), 36);
  EXPECT_THROW(Tensor::empty({3, 33}, DType::kQ4_0), Error);
  EXPECT_THROW(q.transpose(0, 1), Error);
  EXPECT_THROW(q.slice(1, 0, 16), Error);
  EXPECT_EQ(q.slice(1, 32, 64).offset_bytes(), 18u);
}

TEST(Tensor, BadArgumentsAreTypedErrors) {
  Tensor t = Tensor::empty({2, 3}, DType::kF32);
  EXPECT_THROW(t.view({7}), Error);
  EXPECT_THROW(t.slice(0, 1, 5), Error);
  EXPECT_THROW(t.transpose(0, 2), Error);
  EXPECT_THROW(Shape({1, 2, 3, 4, 5, 6, 7, 8, 9}), Error);
  try {
    t.to(Device::cuda(0)).defined();
#ifndef LLMKIT_WITH_CUDA
    FAIL() << "expected an error without a CUDA backend";
#endif
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos);
  }
}

TEST(ThreadPool, RunsEveryThreadAndParallelFor) {
  ThreadPool pool(4);
  std::atomic<int> count{0};
  auto fn = [&](int, int nth) { EXPECT_EQ(nth, 4); count++; };
  for (int rep = 0; rep < 1000; ++rep) pool.run(fn);
  EXPECT_EQ(count.load(), 4000);
  std::vector<int> hit(1003, 0);
  pool.parallel_for(1003, 10, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hit[i]++;
  });
  for (int h : hit) EXPECT_EQ(h, 1);
}

// Tids are claimed (a descheduled worker's share is run by whoever is free): every tid must still
// run exactly once per task, never twice, whatever thread takes it, including when some shares
// are slow and tasks follow each other at once (late workers must not join a finished task).
TEST(ThreadPool, EveryTidRunsOncePerTask) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 2000; ++rep) {
    std::atomic<int> hits[3] = {0, 0, 0};
    auto fn = [&](int tid, int nth) {
      EXPECT_EQ(nth, 3);
      if (rep % 97 == 0 && tid == 1) std::this_thread::sleep_for(std::chrono::microseconds(200));
      hits[tid]++;
    };
    pool.run(fn);
    for (int t = 0; t < 3; ++t) ASSERT_EQ(hits[t].load(), 1) << "rep " << rep << " tid " << t;
  }
}

// parallel_for_streaming: [0, n) covered exactly once in at most one contiguous range per thread
// (and in one range when n is within one grain).
TEST(ThreadPool, StreamingRangesOnePerThread) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (const int64_t n : {int64_t{1}, int64_t{5}, int64_t{1003}}) {
      for (const int64_t grain : {int64_t{1}, int64_t{100}}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        std::atomic<int> ranges{0};
        pool.parallel_for_streaming(n, grain, [&](int64_t b, int64_t e) {
          ranges++;
          EXPECT_LT(b, e);
          for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1) << i;
        EXPECT_LE(ranges.load(), threads) << "n " << n << " grain " << grain;
        if (n <= grain) {
          EXPECT_EQ(ranges.load(), 1);
        }
      }
    }
  }
}

// parallel_for_balanced: every index runs exactly once, in ranges of at most `piece` items (a thief
// takes less), and when one thread is slow the other takes pieces from the back of its range.
TEST(ThreadPool, BalancedRangesCoverOnceAndAreStolenFromASlowThread) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (const int64_t n : {int64_t{1}, int64_t{7}, int64_t{1003}}) {
      for (const int64_t piece : {int64_t{1}, int64_t{16}}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        pool.parallel_for_balanced(n, 1, piece, [&](int64_t b, int64_t e) {
          EXPECT_LT(b, e);
          if (threads > 1) {
            EXPECT_LE(e - b, piece);
          }
          for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(seen[static_cast<size_t>(i)].load(), 1) << "n " << n << " at " << i;
      }
    }
  }
  // Two threads, 64 items in pieces of 4; whoever runs item 0's piece sleeps there. The other
  // thread runs its own half and then steals what is left of the sleeper's.
  ThreadPool pool(2);
  std::vector<std::atomic<int>> by(64);
  std::atomic<int> n_pieces{0};
  pool.parallel_for_balanced(64, 1, 4, [&](int64_t b, int64_t e) {
    if (b == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    static thread_local int me = 0;
    if (me == 0) me = ++n_pieces;  // 1 or 2: a per-thread tag
    for (int64_t i = b; i < e; ++i) by[static_cast<size_t>(i)] = me;
  });
  int other = 0;
  for (int64_t i = 4; i < 32; ++i) other += by[static_cast<size_t>(i)] != by[0];
  EXPECT_GT(other, 20) << "the first half's pieces after the slow one should mostly run on the other thread";
}

TEST(ThreadPool, NestedRunIsInline) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  auto outer = [&](int, int) {
    auto in = [&](int, int nth) { EXPECT_EQ(nth, 1); inner++; };
    pool.run(in);
  };
  pool.run(outer);
  EXPECT_EQ(inner.load(), 2);
}

// More shares than threads: every share runs exactly once and sees the share count, also when
// the call is nested in a pool task (then inline, in order).
TEST(ThreadPool, SharesBeyondThreadsEachRunOnce) {
  ThreadPool pool(2);
  for (int n_shares : {1, 2, 3, 8, 37}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n_shares));
    auto fn = [&](int s, int n) {
      EXPECT_EQ(n, n_shares);
      hits[static_cast<size_t>(s)]++;
    };
    pool.run(fn, n_shares);
    for (int s = 0; s < n_shares; ++s) EXPECT_EQ(hits[static_cast<size_t>(s)].load(), 1) << s << " of " << n_shares;
  }
  std::atomic<int> inner{0};
  auto outer = [&](int, int) {
    auto in = [&](int, int n) { EXPECT_EQ(n, 5); inner++; };
    pool.run(in, 5);
  };
  pool.run(outer);
  EXPECT_EQ(inner.load(), 10);
  // parallel_for covers [0, n) exactly once with more ranges than threads.
  std::vector<std::atomic<int>> seen(1000);
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)]++;
  });
  for (auto& v : seen) EXPECT_EQ(v.load(), 1);
}

// mark/rewind: a loop that rewinds each iteration reuses the same memory, keeps what came before
// the mark, and never grows past one iteration's need, even across block boundaries.
TEST(Arena, RewindReleasesAnIterationsBuffers) {
  Arena arena;
  auto* kept = arena.alloc_array<float>(100);
  kept[0] = 42.0f;
  const Arena::Mark m = arena.mark();
  void* first = nullptr;
  for (int it = 0; it < 10; ++it) {
    void* p = arena.alloc(50000);
    arena.alloc(200000);  // crosses into a second block on the first iteration
    if (it == 0) first = p;
    EXPECT_EQ(p, first);
    arena.rewind(m);
    EXPECT_EQ(arena.used(), m.used_total);
  }
  EXPECT_EQ(kept[0], 42.0f);
  EXPECT_LE(arena.high_water(), 100 * sizeof(float) + 64 + 50000 + 200000 + 128);
  EXPECT_EQ(arena.system_allocations(), 2u);
}

TEST(Arena, SteadyStateHasNoSystemAllocation) {
  Arena arena;
  for (int step = 0; step < 5; ++step) {
    arena.reset();
    for (int i = 0; i < 100; ++i) {
      auto* p = arena.alloc_array<float>(1000 + i);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
      p[0] = 1.0f;
    }
  }
  size_t after_warmup = arena.system_allocations();
  for (int step = 0; step < 10; ++step) {
    arena.reset();
    for (int i = 0; i < 100; ++i) arena.alloc_array<float>(1000 + i);
  }
  EXPECT_EQ(arena.system_allocations(), after_warmup);
}

TEST(Arena, TensorsInsideAScopeComeFromTheArena) {
  Arena arena;
  size_t warm = 0;
  for (int step = 0; step < 20; ++step) {
    arena.reset();
    ArenaScope scope(arena);
    for (int layer = 0; layer < 4; ++layer) {
      Tensor a = Tensor::empty({16, 64}, DType::kF32);
      Tensor b = Tensor::zeros({16, 64}, DType::kF32);
      EXPECT_EQ(a.storage()->allocator, nullptr);
      EXPECT_EQ(b.data<float>()[5], 0.0f);
    }
    if (step == 1) warm = arena.system_allocations();
  }
  EXPECT_EQ(arena.system_allocations(), warm);
  EXPECT_EQ(ArenaScope::current(), nullptr);
  Tensor outside = Tensor::empty({4}, DType::kF32);
  EXPECT_NE(outside.storage()->allocator, nullptr);
}

}  // namespace
}  // namespace llmkit
