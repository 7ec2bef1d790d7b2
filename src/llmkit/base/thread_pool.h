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
