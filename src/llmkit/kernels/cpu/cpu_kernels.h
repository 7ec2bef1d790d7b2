// Entry points of the Highway SIMD kernels behind cpu_table(). Each one dispatches at run time to
// the best target of this CPU (or the one forced by set_cpu_target) via HWY_DYNAMIC_DISPATCH; the
// per-target code lives in gemm.cc (matmul) and elementwise.cc. Signatures and conventions are the
// KernelTable's (kernel_table.h): row-major, weights [N, K], never throw, no heap allocation per
// call once the thread-local scratch has grown.
#pragma once

#include <cstdint>

#include "llmkit/tensor/dtype.h"

namespace llmkit::ref {
struct AttentionParams;  // kernels/ref/ops.h
struct PagedAttentionParams;
struct GemmArgs;
struct AdamWStep;
}

namespace llmkit::cpu {

// y[M,N] = x[M,K] . w[N,K]^T. F32/F16/BF16 run the packed GEMM (M > kGemvMaxM) or the streaming
// GEMV path; quantized types go to cpu::quant_matmul when it supports them, else their rows are
// dequantized tile by tile with ref::dequantize_row and run through the same F32 kernels.
void matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K);
// BF16 x and w (raw bits), F32 accumulation: gemm_bf16 where available, else x is widened once
// into thread-local scratch (exact) and the BF16-weight matmul runs; every product of two BF16
// values is exact in F32.
void matmul_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K);

// ref::gemm's contract (F32/F16/BF16 B) on the packed GEMM of matmul: B panels are packed from
// either layout, a transposed A is packed a register tile at a time; parallel over N (or M).
// bf16 = true runs gemm_bf16 where available, else rounds the operands into F32 copies first.
void gemm(const ref::GemmArgs& g);
// The bf16 = true GEMM on AVX512_BF16 (VDPBF16PS), in gemm_bf16.cc: F32 or BF16 A and B, any layout
// of ref::GemmArgs. Available when the CPU has AVX512_BF16 and set_cpu_target allows AVX3_DL.
bool gemm_bf16_available();
void gemm_bf16(const ref::GemmArgs& g);

void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
void scale(const float* a, float s, float* y, int64_t n);
void silu(const float* x, float* y, int64_t n);
void swiglu(const float* gate, const float* up, float* y, int64_t n);
// GELU forward and backward (accumulating), threaded over n. The tanh form runs in SIMD as
// x sigmoid(2u) (0.5 (1 + tanh u) = sigmoid(2u)), within a few float ulps of ref::gelu; the erf
// form calls the reference.
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
// ref::rope_apply, bit for bit (no FMA contraction), both pair layouts in SIMD.
void rope_apply(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx);
// Threaded over n like swiglu.
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n);
// ref::adamw's contract, single-threaded; the same operations in the same order as the reference
// (separate multiplies and adds, IEEE sqrt and division), so the same bits.
void adamw(const ref::AdamWStep& a, float* p, const float* g, float* m, float* v, int64_t n);
// Single-threaded over the rows given (ref's contracts); float vector sums of exp within a row.
void logsumexp_rows(const float* x, int64_t rows, int64_t d, double* lse);
void xent_grad_rows(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t d,
                    int32_t ignore_index, double g, float* dx);
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset);
// Single-threaded over the rows given (ref's contracts); float vector sums within a row.
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows, int64_t d,
                      float eps, float w_offset);
void layernorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t d, float eps);
void layernorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int64_t rows,
                        int64_t d, float eps);
void softmax(float* x, int64_t rows, int64_t d);
// Attention forward with ref::attention's contract (kernels/ref/ops.h), in attention.cc.
void attention(const ref::AttentionParams& p, const float* q, const float* k, const float* v, float* o, float* lse);
// Attention over a paged KV cache with ref::paged_attention's contract, in attention.cc: the same
// arithmetic per query row as attention() (keys read from the transposed pages in place).
void paged_attention(const ref::PagedAttentionParams& p, const float* q, const void* k_pages, const void* v_pages,
                     float* o);
// ref::paged_kv_write, bit for bit; F16 caches convert 8 values per instruction (F16C) on x86.
void paged_kv_write(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim, int64_t pos0,
                    const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype);
// Attention backward with ref::attention_backward's contract, in attention.cc (SIMD when the forward's
// lse is given, else the reference).
void attention_backward(const ref::AttentionParams& p, const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv);

}  // namespace llmkit::cpu
