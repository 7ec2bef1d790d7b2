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

namespace {

// The pieces of row r's block inside a block of an R8 group: (offset in the base block, offset in
// the group's block, length). One table for pack and unpack, so they are inverses by construction.
struct R8Piece {
  int src, dst, len;
};
int r8_pieces(DType base, int r, R8Piece* p) {
  const int i = r % 4, half = r / 4;
  switch (base) {
    case DType::kQ4_0:  // d, qs[16]
      p[0] = {0, 2 * r, 2};
      p[1] = {2, 16 + 32 * i + 16 * half, 16};
      return 2;
    case DType::kQ4_1:  // d, m, qs[16]
      p[0] = {0, 2 * r, 2};
      p[1] = {2, 16 + 2 * r, 2};
      p[2] = {4, 32 + 32 * i + 16 * half, 16};
      return 3;
    case DType::kQ8_0:  // d, qs[32]
      p[0] = {0, 2 * r, 2};
      p[1] = {2, 16 + 64 * i + 16 * half, 16};
      p[2] = {18, 16 + 64 * i + 32 + 16 * half, 16};
      return 3;
    default:
      LLMKIT_ASSERT(false, "rows interleaved by 8: ", dtype_name(base), " has no R8 layout");
      return 0;
  }
}

}  // namespace

void pack_r8(DType base, const void* rows, void* out, int64_t K, int64_t g0, int64_t g1) {
  const size_t kb = static_cast<size_t>(type_size(base)), rb = row_bytes(base, K);
  const int64_t nb = K / block_size(base);
  const auto* src = static_cast<const uint8_t*>(rows);
  auto* dst = static_cast<uint8_t*>(out);
  for (int r = 0; r < 8; ++r) {
    R8Piece p[3];
    const int np = r8_pieces(base, r, p);
    for (int64_t g = g0; g < g1; ++g) {
      const uint8_t* row = src + static_cast<size_t>(8 * g + r) * rb;
      uint8_t* group = dst + static_cast<size_t>(8 * g) * rb;
      for (int64_t b = 0; b < nb; ++b)
        for (int j = 0; j < np; ++j)
          std::memcpy(group + static_cast<size_t>(b) * 8 * kb + p[j].dst, row + static_cast<size_t>(b) * kb + p[j].src,
                      static_cast<size_t>(p[j].len));
    }
  }
}

void unpack_r8_row(DType base, const void* packed, int64_t n, int64_t K, void* row) {
  const size_t kb = static_cast<size_t>(type_size(base)), rb = row_bytes(base, K);
  const int64_t nb = K / block_size(base);
  const uint8_t* group = static_cast<const uint8_t*>(packed) + static_cast<size_t>(n / 8 * 8) * rb;
  R8Piece p[3];
  const int np = r8_pieces(base, static_cast<int>(n % 8), p);
  auto* out = static_cast<uint8_t*>(row);
  for (int64_t b = 0; b < nb; ++b)
    for (int j = 0; j < np; ++j)
      std::memcpy(out + static_cast<size_t>(b) * kb + p[j].src, group + static_cast<size_t>(b) * 8 * kb + p[j].dst,
                  static_cast<size_t>(p[j].len));
}

}  // namespace llmkit::ref
