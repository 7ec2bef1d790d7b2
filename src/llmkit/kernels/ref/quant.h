// Reference (scalar) quantization for every block type of the tensor core. These functions are the
// spec: byte-exact with ggml's quantize_row_*_ref / dequantize_row_* (checked against the numpy
// implementation of the PyPI `gguf` package on committed fixtures), and the oracle for the SIMD
// kernels in kernels/cpu. Kernels never throw: callers validate sizes (n % block_size == 0).
#pragma once

#include <cstdint>

#include "llmkit/tensor/dtype.h"

namespace llmkit::ref {

// x[n] floats -> n / block_size(t) blocks of type t at y. t may also be F32/F16/BF16 (conversion).
void quantize_row(DType t, const float* x, void* y, int64_t n);
// n / block_size(t) blocks of type t at x -> y[n] floats.
void dequantize_row(DType t, const void* x, float* y, int64_t n);

// Dot product of one weight row of type t (n values) with float activations x[n]: the reference
// dequantizes and accumulates in float in index order.
float dot_row(DType t, const void* w, const float* x, int64_t n);

// Rows interleaved by 8 (dtype.h, the *_R8 types). base is Q4_0, Q4_1 or Q8_0.
// Rows [8 g0, 8 g1) of a [N, K] base-layout tensor at `rows` -> the same groups of the R8 layout at
// `out` (both pointers at the tensor's start; N % 8 == 0 and K % 32 == 0, checked by the caller).
void pack_r8(DType base, const void* rows, void* out, int64_t K, int64_t g0, int64_t g1);
// Row n of a [N, K] R8-layout tensor at `packed` -> its row_bytes(base, K) bytes in the base layout.
void unpack_r8_row(DType base, const void* packed, int64_t n, int64_t K, void* row);

}  // namespace llmkit::ref
