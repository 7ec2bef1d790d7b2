// Scalar F16 and BF16 conversions, bit-exact with IEEE 754 round-to-nearest-even (what F16C
// hardware and numpy's float16 do) and with ggml's BF16 rounding (NaN kept quiet). These are the
// reference; SIMD kernels convert in bulk and are tested against them.
#pragma once

#include <cstdint>
#include <cstring>

namespace llmkit {

inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t out;
  if (exp == 0) {
    if (mant == 0) {
      out = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400) == 0);
      out = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 0x1f) {
    out = sign | 0x7f800000u | mant << 13;
  } else {
    out = sign | (exp + 112) << 23 | mant << 13;
  }
  return f32_from_bits(out);
}

inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00 | (ax > 0x7f800000 ? (0x200 | ((ax >> 13) & 0x3ff)) : 0));
  }
  if (ax >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);  // rounds to >= 65520: Inf
  if (ax < 0x38800000) {  // result is subnormal or zero (|f| < 2^-14)
    if (ax < 0x33000000) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1 ... align to half subnormal ulp 2^-24
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ax - 0x38000000;  // rebias exponent 127 -> 15
  uint32_t lsb = (r >> 13) & 1;
  r += 0xfff + lsb;
  return static_cast<uint16_t>(sign | (r >> 13));
}

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

}  // namespace llmkit
