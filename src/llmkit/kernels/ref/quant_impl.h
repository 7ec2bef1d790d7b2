// Private to kernels/ref/quant*.cc: the per-type quantize/dequantize rows that ref/quant.cc
// dispatches on, and the small numeric helpers whose exact behaviour the ggml byte layouts depend
// on. `k` is the number of float values of the row (a multiple of the type's block size).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "llmkit/tensor/dtype.h"
#include "llmkit/tensor/half.h"

namespace llmkit::ref::quant_detail {

// ggml's nearest_int: round-half-to-even through the 1.5*2^23 trick (valid for |f| <= 2^22).
// Not the same as lroundf (which rounds halves away from zero), and bit-exactness depends on it.
inline int nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// Legacy quants (block 32): quant_legacy.cc.
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t k);
void quantize_q4_1(const float* x, BlockQ4_1* y, int64_t k);
void quantize_q5_0(const float* x, BlockQ5_0* y, int64_t k);
void quantize_q5_1(const float* x, BlockQ5_1* y, int64_t k);
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t k);
void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t k);
void dequantize_q4_0(const BlockQ4_0* x, float* y, int64_t k);
void dequantize_q4_1(const BlockQ4_1* x, float* y, int64_t k);
void dequantize_q5_0(const BlockQ5_0* x, float* y, int64_t k);
void dequantize_q5_1(const BlockQ5_1* x, float* y, int64_t k);
void dequantize_q8_0(const BlockQ8_0* x, float* y, int64_t k);
void dequantize_q8_1(const BlockQ8_1* x, float* y, int64_t k);

// k-quants (super-block 256): quant_k.cc.
void quantize_q2_k(const float* x, BlockQ2_K* y, int64_t k);
void quantize_q3_k(const float* x, BlockQ3_K* y, int64_t k);
void quantize_q4_k(const float* x, BlockQ4_K* y, int64_t k);
void quantize_q5_k(const float* x, BlockQ5_K* y, int64_t k);
void quantize_q6_k(const float* x, BlockQ6_K* y, int64_t k);
void quantize_q8_k(const float* x, BlockQ8_K* y, int64_t k);
void dequantize_q2_k(const BlockQ2_K* x, float* y, int64_t k);
void dequantize_q3_k(const BlockQ3_K* x, float* y, int64_t k);
void dequantize_q4_k(const BlockQ4_K* x, float* y, int64_t k);
void dequantize_q5_k(const BlockQ5_K* x, float* y, int64_t k);
void dequantize_q6_k(const BlockQ6_K* x, float* y, int64_t k);
void dequantize_q8_k(const BlockQ8_K* x, float* y, int64_t k);

// The 6-bit (scale, min) pair j of a Q4_K/Q5_K super-block (12 packed bytes, ggml-common.h).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// The 16 signed 6-bit scales of a Q3_K super-block, unpacked (minus the +32 bias).
inline void unpack_q3_k_scales(const uint8_t* s, int8_t out[16]) {
  for (int j = 0; j < 16; ++j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
  }
}

// NF4 and FP8 (quant_other.cc).
extern const float kNF4Table[16];
void quantize_nf4(const float* x, BlockNF4* y, int64_t k);
void dequantize_nf4(const BlockNF4* x, float* y, int64_t k);
uint8_t f32_to_fp8_e4m3(float f);
uint8_t f32_to_fp8_e5m2(float f);
float fp8_e4m3_to_f32(uint8_t v);
float fp8_e5m2_to_f32(uint8_t v);

}  // namespace llmkit::ref::quant_detail
