// A persistent thread pool tuned for low-latency decode: workers are created once and wait on a
// generation counter (spinning briefly, then sleeping in a futex via std::atomic::wait), so
// dispatching one op costs well under a microsecond of overhead when the workers are hot and no
// thread is ever created per op. The calling thread always takes part as thread 0.
#pragma once

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

  // Runs fn(tid, n_threads) once on each of the pool's threads (tid 0 is the caller) and returns
  // when all have finished. Called from inside a pool task, it runs fn(0, 1) inline.
  void run(FunctionRef<void(int, int)> fn);

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
    auto body = [&](int tid, int nth) {
      int64_t parts = nth < max_chunks ? nth : max_chunks;
      if (tid >= parts) return;
      int64_t b = n * tid / parts, e = n * (tid + 1) / parts;
      fn(b, e);
    };
    run(body);
  }

  // The process-wide pool used by ops; its size is set by set_global_threads() or LLMKIT_THREADS.
  static ThreadPool& global();
  static void set_global_threads(int n_threads);
  static bool in_worker();

 private:
  void worker_loop(int tid);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  FunctionRef<void(int, int)>* task_ = nullptr;
};

}  // namespace llmkit
