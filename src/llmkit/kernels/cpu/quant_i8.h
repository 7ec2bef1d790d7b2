// int8 matmul for the legacy block types Q4_0, Q4_1 and Q8_0 on x86 AVX2 and later: the weight
// levels stay 8-bit (u8 nibbles or i8) and meet 8-bit activations in vpmaddubsw, 32 products per
// instruction, where quant_matmul.cc widens both sides to int16 (16 per vpmaddwd). Used by
// cpu::quant_matmul for every M when the running target has it (i8_matmul_available()).
//
// Batch invariance: y[m, n] is computed by the same float operations whatever M is (only integer
// block sums, which are exact, are shared or scheduled differently between a decode step and a
// prompt batch), so a prompt's row equals the same row decoded alone, bit for bit, and a serving
// batch does not change any sequence's output.
#pragma once

#include <cstdint>

#include "llmkit/tensor/dtype.h"

namespace llmkit::cpu {

bool i8_matmul_supported(DType wt);  // Q4_0, Q4_1, Q8_0 and their rows-interleaved-by-8 layouts (*_R8)
bool i8_matmul_available();          // the dispatched SIMD target has the kernel (x86 AVX2+)
// y[M,N] = x[M,K] . w[N,K]^T; x rows quantized to Q8_0 levels as quant_matmul does.
void i8_matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K);

}  // namespace llmkit::cpu
