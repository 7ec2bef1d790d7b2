// Persistent worker threads; see thread_pool.h for the design.
#include "llmkit/base/thread_pool.h"

#include <cstdlib>
#include <memory>
#include <mutex>

#include "llmkit/base/check.h"

namespace llmkit {
namespace {

thread_local bool t_in_worker = false;

// Spin iterations before sleeping. ~2^14 pause-free loads is a few microseconds: long enough to
// catch the next op of a decode step, short enough not to burn a core between requests.
constexpr int kSpinIters = 1 << 14;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::mutex g_pool_mu;
std::unique_ptr<ThreadPool> g_pool;
int g_requested = 0;

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads <= 0) n_threads = 1;
  n_threads_ = n_threads;
  workers_.reserve(n_threads_ - 1);
  for (int t = 1; t < n_threads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

bool ThreadPool::in_worker() { return t_in_worker; }

void ThreadPool::run(FunctionRef<void(int, int)> fn) {
  if (n_threads_ == 1 || t_in_worker) {
    bool was = t_in_worker;
    t_in_worker = true;
    fn(0, 1);
    t_in_worker = was;
    return;
  }
  task_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  t_in_worker = true;
  fn(0, n_threads_);
  t_in_worker = false;
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
    if (i < kSpinIters) {
      cpu_relax();
    } else {
      int p = pending_.load(std::memory_order_acquire);
      if (p != 0) pending_.wait(p, std::memory_order_acquire);
    }
  }
  task_ = nullptr;
}

void ThreadPool::worker_loop(int tid) {
  t_in_worker = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g;
    int i = 0;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (i++ < kSpinIters) {
        cpu_relax();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    (*task_)(tid, n_threads_);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

ThreadPool& ThreadPool::global() {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (!g_pool) {
    int n = g_requested;
    if (n <= 0) {
      if (const char* env = std::getenv("LLMKIT_THREADS")) n = std::atoi(env);
    }
    g_pool = std::make_unique<ThreadPool>(n);
  }
  return *g_pool;
}

void ThreadPool::set_global_threads(int n_threads) {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  LLMKIT_CHECK(n_threads >= 0 && n_threads <= 1024, kInvalidArgument, "thread count ", n_threads,
               " is out of range; use 1..1024 (0 = all cores)");
  g_requested = n_threads;
  if (g_pool && (n_threads == 0 ? true : g_pool->size() != n_threads)) g_pool.reset();
}

}  // namespace llmkit
