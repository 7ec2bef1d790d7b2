// Dispatch of the reference quantization API (ref/quant.h) over every element type: plain float
// conversions (F32/F16/BF16 via half.h, round-to-nearest-even like ggml's GGML_FP32_TO_FP16), the
// GGUF block quants (quant_legacy.cc, quant_k.cc) and NF4/FP8 (quant_other.cc); plus dot_row, the
// float oracle of quantized matmul. Sizes are the caller's to validate: kernels never throw.
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/kernels/ref/quant_impl.h"

namespace llmkit::ref {

using namespace quant_detail;  // NOLINT: the per-type rows are this file's vocabulary.

void quantize_row(DType t, const float* x, void* y, int64_t n) {
  LLMKIT_DASSERT(n % block_size(t) == 0);
  switch (t) {
    case DType::kF32: std::memcpy(y, x, static_cast<size_t>(n) * 4); return;
    case DType::kF16: for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(y)[i] = f32_to_f16(x[i]); return;
    case DType::kBF16: for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(y)[i] = f32_to_bf16(x[i]); return;
    case DType::kQ4_0: quantize_q4_0(x, static_cast<BlockQ4_0*>(y), n); return;
    case DType::kQ4_1: quantize_q4_1(x, static_cast<BlockQ4_1*>(y), n); return;
    case DType::kQ5_0: quantize_q5_0(x, static_cast<BlockQ5_0*>(y), n); return;
    case DType::kQ5_1: quantize_q5_1(x, static_cast<BlockQ5_1*>(y), n); return;
    case DType::kQ8_0: quantize_q8_0(x, static_cast<BlockQ8_0*>(y), n); return;
    case DType::kQ8_1: quantize_q8_1(x, static_cast<BlockQ8_1*>(y), n); return;
    case DType::kQ2_K: quantize_q2_k(x, static_cast<BlockQ2_K*>(y), n); return;
    case DType::kQ3_K: quantize_q3_k(x, static_cast<BlockQ3_K*>(y), n); return;
    case DType::kQ4_K: quantize_q4_k(x, static_cast<BlockQ4_K*>(y), n); return;
    case DType::kQ5_K: quantize_q5_k(x, static_cast<BlockQ5_K*>(y), n); return;
    case DType::kQ6_K: quantize_q6_k(x, static_cast<BlockQ6_K*>(y), n); return;
    case DType::kQ8_K: quantize_q8_k(x, static_cast<BlockQ8_K*>(y), n); return;
    case DType::kNF4: quantize_nf4(x, static_cast<BlockNF4*>(y), n); return;
    case DType::kF8_E4M3: for (int64_t i = 0; i < n; ++i) static_cast<uint8_t*>(y)[i] = f32_to_fp8_e4m3(x[i]); return;
    case DType::kF8_E5M2: for (int64_t i = 0; i < n; ++i) static_cast<uint8_t*>(y)[i] = f32_to_fp8_e5m2(x[i]); return;
    default: break;
  }
  LLMKIT_ASSERT(false, "quantize_row: ", dtype_name(t), " is not a float or quantized type");
}

void dequantize_row(DType t, const void* x, float* y, int64_t n) {
  LLMKIT_DASSERT(n % block_size(t) == 0);
  switch (t) {
    case DType::kF32: std::memcpy(y, x, static_cast<size_t>(n) * 4); return;
    case DType::kF16: for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(static_cast<const uint16_t*>(x)[i]); return;
    case DType::kBF16: for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(static_cast<const uint16_t*>(x)[i]); return;
    case DType::kQ4_0: dequantize_q4_0(static_cast<const BlockQ4_0*>(x), y, n); return;
    case DType::kQ4_1: dequantize_q4_1(static_cast<const BlockQ4_1*>(x), y, n); return;
    case DType::kQ5_0: dequantize_q5_0(static_cast<const BlockQ5_0*>(x), y, n); return;
    case DType::kQ5_1: dequantize_q5_1(static_cast<const BlockQ5_1*>(x), y, n); return;
    case DType::kQ8_0: dequantize_q8_0(static_cast<const BlockQ8_0*>(x), y, n); return;
    case DType::kQ8_1: dequantize_q8_1(static_cast<const BlockQ8_1*>(x), y, n); return;
    case DType::kQ2_K: dequantize_q2_k(static_cast<const BlockQ2_K*>(x), y, n); return;
    case DType::kQ3_K: dequantize_q3_k(static_cast<const BlockQ3_K*>(x), y, n); return;
    case DType::kQ4_K: dequantize_q4_k(static_cast<const BlockQ4_K*>(x), y, n); return;
    case DType::kQ5_K: dequantize_q5_k(static_cast<const BlockQ5_K*>(x), y, n); return;
    case DType::kQ6_K: dequantize_q6_k(static_cast<const BlockQ6_K*>(x), y, n); return;
    case DType::kQ8_K: dequantize_q8_k(static_cast<const BlockQ8_K*>(x), y, n); return;
    case DType::kNF4: dequantize_nf4(static_cast<const BlockNF4*>(x), y, n); return;
    case DType::kF8_E4M3: for (int64_t i = 0; i < n; ++i) y[i] = fp8_e4m3_to_f32(static_cast<const uint8_t*>(x)[i]); return;
    case DType::kF8_E5M2: for (int64_t i = 0; i < n; ++i) y[i] = fp8_e5m2_to_f32(static_cast<const uint8_t*>(x)[i]); return;
    default: break;
  }
  LLMKIT_ASSERT(false, "dequantize_row: ", dtype_name(t), " is not a float or quantized type");
}

// Dequantizes one block (or 256 plain values) at a time into a stack buffer; float accumulation in
// index order, so the result is a deterministic function of the bytes.
float dot_row(DType t, const void* w, const float* x, int64_t n) {
  const int64_t bs = block_size(t);
  const int64_t chunk = bs == 1 ? 256 : bs;
  const size_t chunk_bytes = row_bytes(t, chunk);
  float buf[256];
  float acc = 0.0f;
  const auto* wb = static_cast<const uint8_t*>(w);
  for (int64_t i = 0; i < n; i += chunk, wb += chunk_bytes) {
    const int64_t len = n - i < chunk ? n - i : chunk;
    dequantize_row(t, wb, buf, len);
    for (int64_t j = 0; j < len; ++j) acc += buf[j] * x[i + j];
  }
  return acc;
}

}  // namespace llmkit::ref
