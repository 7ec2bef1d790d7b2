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

}  // namespace llmkit::ref
