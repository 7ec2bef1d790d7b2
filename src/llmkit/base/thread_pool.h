// A persistent thread pool tuned for low-latency decode: workers are created once and wait on a
// generation counter (spinning briefly, then sleeping in a futex via std::atomic::wait), so
// dispatching one op costs well under a microsecond of overhead when the workers are hot and no
// thread is ever created per op. The calling thread always takes part.
//
// The shares of a task (the tid of fn(tid, n_threads)) are claimed, not assigned: the caller and
// every worker that joins take tids from a counter until none is left, and the caller then waits
// only for the workers that joined. A worker the OS has descheduled (the other vCPU busy with
// another process) therefore costs nothing: the caller runs its share and goes on, and the late
// worker finds the task closed. With fixed assignment every op of a decode step waited a
// scheduler time slice for such a worker (SmolLM2 decode on 2 threads fell from ~120 to ~5
// tokens/s while another process kept one of the 2 vCPUs busy).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace llmkit {

// A non-owning reference to a callable, so dispatch never allocates.
template <typename Sig>
class FunctionRef;
template <typename R, typename... A>
class FunctionRef<R(A...)> {
 public:
  template <typename F>
  FunctionRef(F& f) : obj_(&f), call_([](void* o, A... a) -> R { return (*static_cast<F*>(o))(a...); }) {}
  R operator()(A... a) const { return call_(obj_, a...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

class ThreadPool {
 public:
  // n_threads counts the caller; 0 means "all hardware threads".
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(tid, n_threads) once for each tid in [0, n_threads), on the caller and the workers
  // (a thread may run several tids one after the other; never two at once), and returns when all
  // have finished. Called from inside a pool task, it runs fn(0, 1) inline.
  void run(FunctionRef<void(int, int)> fn);

  // Runs fn(share, n_shares) once for each share in [0, n_shares), the shares claimed one at a
  // time by the caller and the workers that join (inline, in order, when called from a pool task
  // or on a one-thread pool): with more shares than threads, a thread that is
  // slowed (a vCPU preempted by the hypervisor, another process) takes fewer of them instead of
  // holding every other thread at the end of the op.
  void run(FunctionRef<void(int, int)> fn, int n_shares);

  // Splits [0, n) into contiguous ranges of at least `grain` items and calls fn(begin, end).
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t max_chunks = (n + grain - 1) / grain;
    if (n_threads_ == 1 || max_chunks == 1 || in_worker()) {
      fn(int64_t{0}, n);
      return;
    }
    // kSharesPerThread contiguous ranges per thread, claimed dynamically (see run()).
    const int64_t parts = std::min<int64_t>(max_chunks, int64_t{n_threads_} * kSharesPerThread);
    auto body = [&](int share, int) {
      int64_t b = n * share / parts, e = n * (share + 1) / parts;
      fn(b, e);
    };
    run(body, static_cast<int>(parts));
  }

  // As parallel_for, but one contiguous range per thread (still claimed dynamically, so a slowed
  // thread's range is run by whoever is free): for streaming ops (decode's matrix x vector), where
  // every range boundary restarts the stream's prefetching.
  template <typename F>
  void parallel_for_streaming(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t max_chunks = (n + grain - 1) / grain;
    if (n_threads_ == 1 || max_chunks == 1 || in_worker()) {
      fn(int64_t{0}, n);
      return;
    }
    const int64_t parts = std::min<int64_t>(max_chunks, n_threads_);
    auto body = [&](int share, int) { fn(n * share / parts, n * (share + 1) / parts); };
    run(body, static_cast<int>(parts));
  }

  // As parallel_for_streaming, for ops whose fn may run any sub-range (no per-call setup worth
  // keeping whole): each thread runs its own contiguous range front to back in pieces of `piece`
  // items, and a thread that finishes takes pieces from the back of a range still running, so
  // neither waits out the other's slower range (serving batches' int8 matmuls: the caller had
  // waited ~8 us per task for the worker's half).
  template <typename F>
  void parallel_for_balanced(int64_t n, int64_t grain, int64_t piece, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t max_chunks = (n + grain - 1) / grain;
    constexpr int kMaxParts = 64;
    if (n_threads_ == 1 || max_chunks == 1 || in_worker() || n_threads_ > kMaxParts || n >= (int64_t{1} << 31)) {
      parallel_for_streaming(n, grain, fn);
      return;
    }
    const int parts = static_cast<int>(std::min<int64_t>(max_chunks, n_threads_));
    piece = std::max<int64_t>(piece, grain);
    // Range p as (begin | end << 32): the owner takes pieces from the front, others from the back.
    std::atomic<uint64_t> ranges[kMaxParts];
    for (int p = 0; p < parts; ++p)
      ranges[p].store(static_cast<uint64_t>(n * p / parts) | static_cast<uint64_t>(n * (p + 1) / parts) << 32,
                      std::memory_order_relaxed);
    auto take = [&](int p, bool front, int64_t* b, int64_t* e) {
      uint64_t r = ranges[p].load(std::memory_order_relaxed);
      for (;;) {
        const int64_t lo = static_cast<int64_t>(r & 0xffffffffu), hi = static_cast<int64_t>(r >> 32);
        if (lo >= hi) return false;
        // A thief takes at most half of what is left, so the two finish together.
        const int64_t k = front ? std::min(piece, hi - lo) : std::min(piece, std::max<int64_t>(1, (hi - lo) / 2));
        const uint64_t next = front ? static_cast<uint64_t>(lo + k) | static_cast<uint64_t>(hi) << 32
                                    : static_cast<uint64_t>(lo) | static_cast<uint64_t>(hi - k) << 32;
        if (ranges[p].compare_exchange_weak(r, next, std::memory_order_relaxed)) {
          *b = front ? lo : hi - k;
          *e = front ? lo + k : hi;
          return true;
        }
      }
    };
    auto body = [&](int share, int) {
      int64_t b, e;
      while (take(share, true, &b, &e)) fn(b, e);
      for (int i = 1; i < parts; ++i)
        while (take((share + i) % parts, false, &b, &e)) fn(b, e);
    };
    run(body, parts);
  }

  // The process-wide pool used by ops; its size is set by set_global_threads() or LLMKIT_THREADS.
  static ThreadPool& global();
  static void set_global_threads(int n_threads);
  static bool in_worker();

 private:
  void worker_loop(int tid);

  // Claims and runs tids of the current task until none is left.
  void run_shares();

  static constexpr int kSharesPerThread = 4;
  int n_threads_;
  int n_shares_ = 0;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  // (generation & 0xffffffff) << 32 | closed << 31 | workers joined: a worker joins the task of
  // the generation it saw only while that task is open; the caller closes it when no tid is left.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> next_tid_{0};
  std::atomic<int> done_{0};  // joined workers that have finished
  std::atomic<bool> stop_{false};
  FunctionRef<void(int, int)>* task_ = nullptr;
};

}  // namespace llmkit
