// Backend selection for the ops: a thread-local choice (default kCpu) and the merged kernel table of
// kCpu (SIMD entry where cpu_table() has one, reference otherwise).
#include "llmkit/ops/ops.h"

namespace llmkit::ops {
namespace {
thread_local Backend t_backend = Backend::kCpu;

template <typename F>
void fill(F& dst, F src) {
  if (!dst) dst = src;
}
}  // namespace

Backend current_backend() { return t_backend; }
const char* backend_name(Backend b) { return b == Backend::kRef ? "ref" : "cpu"; }

const KernelTable& active_table() {
  if (t_backend == Backend::kRef) return ref_table();
  // Rebuilt on each call (a handful of pointer copies) so that a table filled lazily by another thread
  // or a change of SIMD target is always seen.
  thread_local KernelTable merged;
  merged = cpu_table();
  const KernelTable& r = ref_table();
  fill(merged.matmul, r.matmul);
  fill(merged.matmul_bf16, r.matmul_bf16);
  fill(merged.add, r.add);
  fill(merged.mul, r.mul);
  fill(merged.scale, r.scale);
  fill(merged.silu, r.silu);
  fill(merged.swiglu, r.swiglu);
  fill(merged.rmsnorm, r.rmsnorm);
  fill(merged.softmax, r.softmax);
  fill(merged.attention, r.attention);
  fill(merged.adamw, r.adamw);
  fill(merged.gelu, r.gelu);
  fill(merged.gelu_backward, r.gelu_backward);
  fill(merged.rope_apply, r.rope_apply);
  fill(merged.paged_kv_write, r.paged_kv_write);
  return merged;
}

ScopedBackend::ScopedBackend(Backend b) : prev_(t_backend) { t_backend = b; }
ScopedBackend::~ScopedBackend() { t_backend = prev_; }

}  // namespace llmkit::ops
