// The kernel table: one struct of function pointers per backend/SIMD target, so that the ops layer,
// the op harness and the benchmarks can run the same op on every implementation. ref_table() is the
// scalar oracle; cpu_table() dispatches at run time to the best Highway target of this CPU (tests
// switch target with set_cpu_target). A null entry in cpu_table() means "use the reference".
//
// Conventions: all pointers are contiguous row-major float32 unless stated; shapes are in the
// comments; weights are [N, K] (out, in) and matmul computes y[M,N] = x[M,K] . w[N,K]^T.
// Kernels never throw and never allocate on the heap per call (scratch comes from thread-local
// buffers sized once). Backward kernels sit next to their forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmkit/tensor/dtype.h"

namespace llmkit {
namespace ref {
struct AdamWStep;             // kernels/ref/ops.h
struct AttentionParams;       // kernels/ref/ops.h
struct GemmArgs;              // kernels/ref/ops.h
struct PagedAttentionParams;  // kernels/ref/ops.h
}

struct KernelTable {
  const char* name = "";

  // y[M,N] = x[M,K] . w[N,K]^T ; w rows of dtype wt (F32, F16, BF16 or any quantized type).
  void (*matmul)(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) = nullptr;
  // y[M,N] = x[M,K] . w[N,K]^T with BF16 inputs (raw uint16_t bits) and F32 accumulation/output:
  // the compute path of BF16 mixed-precision training.
  void (*matmul_bf16)(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K) = nullptr;
  // C (+)= op(A) . op(B) over strided operands (ref::GemmArgs, kernels/ref/ops.h): the backward
  // products of training. Multi-threaded on the CPU table.
  void (*gemm)(const ref::GemmArgs& g) = nullptr;
  // Element-wise over n values.
  void (*add)(const float* a, const float* b, float* y, int64_t n) = nullptr;
  void (*mul)(const float* a, const float* b, float* y, int64_t n) = nullptr;
  void (*scale)(const float* a, float s, float* y, int64_t n) = nullptr;
  void (*silu)(const float* x, float* y, int64_t n) = nullptr;
  // GELU, exact (erf) or tanh-approximated (ref::gelu / ref::gelu_backward's contracts; the
  // backward accumulates into dx).
  void (*gelu)(const float* x, float* y, int64_t n, bool tanh_approx) = nullptr;
  void (*gelu_backward)(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx) = nullptr;
  // y = silu(gate) * up
  void (*swiglu)(const float* gate, const float* up, float* y, int64_t n) = nullptr;
  // dgate += dy up silu'(gate), dup += dy silu(gate) (either may be null).
  void (*swiglu_backward)(const float* gate, const float* up, const float* dy, float* dgate, float* dup,
                          int64_t n) = nullptr;
  // AdamW update of n parameters (ref::adamw's contract, kernels/ref/ops.h); single-threaded, the
  // caller splits the parameters. The CPU kernel gives the reference's bits.
  void (*adamw)(const ref::AdamWStep& a, float* p, const float* g, float* m, float* v, int64_t n) = nullptr;
  // Cross-entropy row pieces (ref::logsumexp_rows / ref::xent_grad_rows); single-threaded, the ops
  // layer splits rows.
  void (*logsumexp_rows)(const float* x, int64_t rows, int64_t d, double* lse) = nullptr;
  void (*xent_grad_rows)(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t d,
                         int32_t ignore_index, double g, float* dx) = nullptr;
  // y[rows,d] = x / rms(x) * (w + w_offset); w_offset is 1 for Gemma-style norms, else 0.
  void (*rmsnorm)(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset) = nullptr;
  // The norms' other halves with ref::rmsnorm_backward / ref::layernorm / ref::layernorm_backward's
  // contracts (gradients accumulate; w, b and any gradient may be null where ref allows it);
  // single-threaded over the rows given, the ops layer splits rows.
  void (*rmsnorm_backward)(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                           int64_t d, float eps, float w_offset) = nullptr;
  void (*layernorm)(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t d,
                    float eps) = nullptr;
  void (*layernorm_backward)(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                             int64_t rows, int64_t d, float eps) = nullptr;
  // y[n_tokens, n_heads, head_dim] (+)= rotate(x) with the per-token cos/sin tables of
  // ref::rope_cos_sin (ref::rope_apply's contract; neox = rotated pairs (i, i + rot_dims/2), else
  // (2i, 2i + 1)); single-threaded, the ops layer splits tokens. The CPU kernel gives the
  // reference's bits.
  void (*rope_apply)(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                     int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate) = nullptr;
  // In-place row softmax of x[rows, d].
  void (*softmax)(float* x, int64_t rows, int64_t d) = nullptr;
  // o = softmax(scale q k^T + mask/bias) v and lse, for the heads and query rows p selects
  // (ref::attention's contract, kernels/ref/ops.h); single-threaded: the ops layer splits the work.
  void (*attention)(const ref::AttentionParams& p, const float* q, const float* k, const float* v, float* o,
                    float* lse) = nullptr;
  // Gradients of attention (ref::attention_backward's contract: accumulates into dq/dk/dv, any may be
  // null; lse from the forward, or null to recompute); single-threaded like attention.
  void (*attention_backward)(const ref::AttentionParams& p, const float* q, const float* k, const float* v,
                             const float* o, const float* lse, const float* dout, float* dq, float* dk,
                             float* dv) = nullptr;
  // Attention over a paged KV cache (ref::paged_attention's contract); single-threaded like attention.
  void (*paged_attention)(const ref::PagedAttentionParams& p, const float* q, const void* k_pages,
                          const void* v_pages, float* o) = nullptr;
  // Writes k, v [n, n_kv_heads, head_dim] of positions pos0 .. into their pages of an F32 or F16
  // paged cache (ref::paged_kv_write's contract; the CPU kernel gives the reference's bits).
  void (*paged_kv_write)(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim,
                         int64_t pos0, const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype) = nullptr;
};

const KernelTable& ref_table();
const KernelTable& cpu_table();

// SIMD targets compiled into this binary and supported by this CPU, best first ("AVX3", "AVX2",
// "EMU128", "NEON" ...). set_cpu_target() makes cpu_table() use that target only (tests, harness);
// reset_cpu_target() returns to the best one.
std::vector<std::string> cpu_targets();
void set_cpu_target(const std::string& name);
void reset_cpu_target();
std::string current_cpu_target();

}  // namespace llmkit
