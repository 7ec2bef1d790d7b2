// Reference matmul y[M,N] = x[M,K] . w[N,K]^T for every weight dtype, the BF16 mixed-precision variant,
// and both backward products. Weights that are not F32 are converted one row at a time into a
// thread-local scratch row (grown once), so the loop order and the float accumulation order are the same
// for every dtype: sum_k x[m,k] * w[n,k] for k = 0..K-1, in float.
#include <cstring>
#include <vector>

#include "llmkit/kernels/ref/ops.h"
#include "llmkit/tensor/half.h"

namespace llmkit::ref {
namespace {

// A float32 view of weight row n: the row itself for F32, else a converted copy in thread-local scratch.
const float* weight_row(const void* w, DType wt, int64_t n, int64_t K, std::vector<float>& scratch) {
  if (wt == DType::kF32) return static_cast<const float*>(w) + n * K;
  if (static_cast<int64_t>(scratch.size()) < K) scratch.resize(static_cast<size_t>(K));
  weight_row_f32(w, wt, n, K, scratch.data());
  return scratch.data();
}

thread_local std::vector<float> t_row;

}  // namespace

void matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K) {
  // Loop n outermost so that a quantized row is dequantized once, not M times.
  for (int64_t n = 0; n < N; ++n) {
    const float* wr = weight_row(w, wt, n, K, t_row);
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += xr[k] * wr[k];
      y[m * N + n] = acc;
    }
  }
}

void matmul_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += bf16_to_f32(x[m * K + k]) * bf16_to_f32(w[n * K + k]);
      y[m * N + n] = acc;
    }
  }
}

void gemm(const GemmArgs& g) {
  auto value = [&](const void* p, DType t, int64_t i) {
    float v;
    switch (t) {
      case DType::kF16: v = f16_to_f32(static_cast<const uint16_t*>(p)[i]); break;
      case DType::kBF16: v = bf16_to_f32(static_cast<const uint16_t*>(p)[i]); break;
      default: v = static_cast<const float*>(p)[i]; break;
    }
    return g.bf16 ? bf16_to_f32(f32_to_bf16(v)) : v;
  };
  for (int64_t m = 0; m < g.M; ++m) {
    for (int64_t n = 0; n < g.N; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < g.K; ++k)
        acc += value(g.a, g.at, g.a_t ? k * g.lda + m : m * g.lda + k) *
               value(g.b, g.bt, g.b_kn ? k * g.ldb + n : n * g.ldb + k);
      float& c = g.c[m * g.ldc + n];
      c = g.accumulate ? c + acc : acc;
    }
  }
}

// dL/dx[m,k] = sum_n dy[m,n] w[n,k]. Accumulated n-outer so each weight row is converted once; the
// per-element order over n is still ascending.
void matmul_backward_x(const float* dy, const void* w, DType wt, float* dx, int64_t M, int64_t N, int64_t K) {
  for (int64_t n = 0; n < N; ++n) {
    const float* wr = weight_row(w, wt, n, K, t_row);
    for (int64_t m = 0; m < M; ++m) {
      const float g = dy[m * N + n];
      if (g == 0.0f) continue;
      float* dxr = dx + m * K;
      for (int64_t k = 0; k < K; ++k) dxr[k] += g * wr[k];
    }
  }
}

// dL/dw[n,k] = sum_m dy[m,n] x[m,k].
void matmul_backward_w(const float* dy, const float* x, float* dw, int64_t M, int64_t N, int64_t K,
                       int64_t n_begin, int64_t n_end) {
  for (int64_t n = n_begin; n < (n_end < 0 ? N : n_end); ++n) {
    float* dwr = dw + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float g = dy[m * N + n];
      if (g == 0.0f) continue;
      const float* xr = x + m * K;
      for (int64_t k = 0; k < K; ++k) dwr[k] += g * xr[k];
    }
  }
}

}  // namespace llmkit::ref
