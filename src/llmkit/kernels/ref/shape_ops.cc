// Reference embedding lookup (dense and quantized tables) and its scatter-add backward, and the
// conversion of a row of any dtype to float32 that matmul and embedding share.
#include <cstring>
#include <vector>

#include "llmkit/kernels/ref/ops.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/tensor/half.h"

namespace llmkit::ref {

void to_f32(const void* x, DType t, float* y, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(static_cast<const uint16_t*>(x)[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(static_cast<const uint16_t*>(x)[i]);
      return;
    default:
      dequantize_row(t, x, y, n);
  }
}

void weight_row_f32(const void* w, DType t, int64_t n, int64_t K, float* y) {
  if (is_r8(t)) {
    thread_local std::vector<uint8_t> row;
    const DType base = r8_base(t);
    row.resize(row_bytes(base, K));
    unpack_r8_row(base, w, n, K, row.data());
    dequantize_row(base, row.data(), y, K);
    return;
  }
  to_f32(static_cast<const char*>(w) + static_cast<size_t>(n) * row_bytes(t, K), t, y, K);
}

void embedding(const void* table, DType dt, const int32_t* ids, float* y, int64_t n_tokens, int64_t d) {
  for (int64_t t = 0; t < n_tokens; ++t) weight_row_f32(table, dt, ids[t], d, y + t * d);
}

void embedding_backward(const int32_t* ids, const float* dy, float* dtable, int64_t n_tokens, int64_t d) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* row = dtable + static_cast<int64_t>(ids[t]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += dy[t * d + j];
  }
}

}  // namespace llmkit::ref
