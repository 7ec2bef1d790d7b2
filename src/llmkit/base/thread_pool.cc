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

namespace {
constexpr uint64_t kClosed = uint64_t{1} << 31;
constexpr uint64_t kJoinedMask = kClosed - 1;
}  // namespace

void ThreadPool::run_shares() {
  for (int s; (s = next_tid_.fetch_add(1, std::memory_order_relaxed)) < n_shares_;) (*task_)(s, n_shares_);
}

void ThreadPool::run(FunctionRef<void(int, int)> fn) {
  if (n_threads_ == 1 || t_in_worker) {
    bool was = t_in_worker;
    t_in_worker = true;
    fn(0, 1);
    t_in_worker = was;
    return;
  }
  run(fn, n_threads_);
}

void ThreadPool::run(FunctionRef<void(int, int)> fn, int n_shares) {
  if (n_shares <= 0) return;
  if (n_threads_ == 1 || t_in_worker || n_shares == 1) {
    bool was = t_in_worker;
    t_in_worker = true;
    for (int s = 0; s < n_shares; ++s) fn(s, n_shares);
    t_in_worker = was;
    return;
  }
  // Every worker that joined the previous task has finished (we waited for it), so nobody reads
  // these while they change.
  task_ = &fn;
  n_shares_ = n_shares;
  next_tid_.store(0, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
  ticket_.store((gen & 0xffffffffu) << 32, std::memory_order_release);
  generation_.store(gen, std::memory_order_release);
  generation_.notify_all();
  t_in_worker = true;
  run_shares();
  t_in_worker = false;
  const int joined = static_cast<int>(ticket_.fetch_or(kClosed, std::memory_order_acq_rel) & kJoinedMask);
  for (int i = 0;; ++i) {
    const int d = done_.load(std::memory_order_acquire);
    if (d == joined) break;
    if (i < kSpinIters) {
      cpu_relax();
    } else {
      done_.wait(d, std::memory_order_acquire);
    }
  }
  task_ = nullptr;
}

void ThreadPool::worker_loop(int) {
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
    // Join the task of generation g if it is still open; a closed or newer one is not ours.
    uint64_t t = ticket_.load(std::memory_order_acquire);
    bool joined = false;
    while ((t >> 32) == (g & 0xffffffffu) && !(t & kClosed)) {
      if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    run_shares();
    done_.fetch_add(1, std::memory_order_acq_rel);
    done_.notify_one();
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
