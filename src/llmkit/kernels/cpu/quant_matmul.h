// SIMD matmul with block-quantized weights: y[M,N] = x[M,K] . w[N,K]^T where each row of w is
// K/block_size blocks of type wt. Like ggml, activations are first quantized per row to Q8_0
// (legacy quants) or Q8_K (k-quants) and the block dot products run in integer arithmetic; the
// result therefore differs from ref::dot_row by the activation quantization error, which the op
// harness bounds per dtype. Runs on ThreadPool::global(); the chosen Highway target is used.
#pragma once

#include <cstdint>

#include "llmkit/tensor/dtype.h"

namespace llmkit::cpu {

bool quant_matmul_supported(DType wt);
void quant_matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K);

}  // namespace llmkit::cpu
