// Reference NF4 (QLoRA NormalFloat-4) and OCP FP8 (E4M3, E5M2) conversions. Neither exists in
// GGUF; both follow their papers/specs: NF4 = Dettmers et al. 2023, "QLoRA" (bitsandbytes
// layout: blocks of 64, f32 absmax, two 4-bit codes per byte, the first value in the high
// nibble); FP8 = "OCP 8-bit Floating Point Specification (OFP8)" rev 1.0 (E4M3: bias 7, no
// infinities, S.1111.111 is NaN, max 448; E5M2: bias 15, IEEE-like with Inf/NaN, max 57344).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "llmkit/kernels/ref/quant_impl.h"

namespace llmkit::ref::quant_detail {

// The 16 NF4 levels: quantiles of N(0,1) normalised to [-1, 1] with an exact zero (QLoRA, App. E).
const float kNF4Table[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

namespace {

// bitsandbytes' decision rule: the code is the number of midpoints strictly below v.
uint8_t nf4_code(float v) {
  static const auto mids = [] {
    std::array<float, 15> m{};
    for (int i = 0; i < 15; ++i) m[i] = static_cast<float>(0.5 * (static_cast<double>(kNF4Table[i]) + kNF4Table[i + 1]));
    return m;
  }();
  uint8_t q = 0;
  for (float m : mids) q = static_cast<uint8_t>(q + (v > m ? 1 : 0));
  return q;
}

// Round-to-nearest-even float -> FP8 with `mbits` mantissa bits and exponent bias `bias`, on the
// magnitude; returns the 7-bit code without sign, possibly past the largest finite (caller clamps).
uint32_t fp8_magnitude(float ax, int mbits, int bias) {
  const float min_normal = std::ldexp(1.0f, 1 - bias);
  if (ax < min_normal) {
    // Subnormal: multiples of 2^(1-bias-mbits); rounding up to 2^mbits gives the smallest normal's
    // code, so the code is just the rounded multiple. Scaling by a power of two is exact.
    return static_cast<uint32_t>(std::nearbyint(std::ldexp(ax, bias - 1 + mbits)));
  }
  uint32_t r = f32_bits(ax) - (static_cast<uint32_t>(127 - bias) << 23);
  const int drop = 23 - mbits;
  const uint32_t lsb = (r >> drop) & 1u;
  r += (1u << (drop - 1)) - 1u + lsb;
  return r >> drop;
}

}  // namespace

void quantize_nf4(const float* x, BlockNF4* y, int64_t k) {
  for (int64_t i = 0; i < k / 64; ++i, x += 64) {
    float absmax = 0.0f;
    for (int j = 0; j < 64; ++j) absmax = std::max(absmax, std::fabs(x[j]));
    const float inv = absmax > 0.0f ? 1.0f / absmax : 0.0f;
    y[i].absmax = absmax;
    for (int j = 0; j < 32; ++j) {
      y[i].qs[j] = static_cast<uint8_t>((nf4_code(x[2 * j] * inv) << 4) | nf4_code(x[2 * j + 1] * inv));
    }
  }
}

void dequantize_nf4(const BlockNF4* x, float* y, int64_t k) {
  for (int64_t i = 0; i < k / 64; ++i, y += 64) {
    for (int j = 0; j < 32; ++j) {
      y[2 * j] = kNF4Table[x[i].qs[j] >> 4] * x[i].absmax;
      y[2 * j + 1] = kNF4Table[x[i].qs[j] & 0xF] * x[i].absmax;
    }
  }
}

// E4M3: NaN -> 0x7F (signed); everything of magnitude past 448 (Inf included) saturates to 448.
uint8_t f32_to_fp8_e4m3(float f) {
  const uint32_t sign = (f32_bits(f) >> 24) & 0x80u;
  if (std::isnan(f)) return static_cast<uint8_t>(sign | 0x7F);
  const float ax = std::fabs(f);
  const uint32_t m = std::isinf(ax) ? 0x7Eu : std::min<uint32_t>(fp8_magnitude(ax, 3, 7), 0x7Eu);
  return static_cast<uint8_t>(sign | m);
}

// E5M2: NaN -> 0x7E (quiet), overflow rounds to Inf as in IEEE.
uint8_t f32_to_fp8_e5m2(float f) {
  const uint32_t sign = (f32_bits(f) >> 24) & 0x80u;
  if (std::isnan(f)) return static_cast<uint8_t>(sign | 0x7E);
  const float ax = std::fabs(f);
  const uint32_t m = std::isinf(ax) ? 0x7Cu : std::min<uint32_t>(fp8_magnitude(ax, 2, 15), 0x7Cu);
  return static_cast<uint8_t>(sign | m);
}

namespace {
float fp8_decode(uint8_t v, int mbits, int bias) {
  const int e = (v & 0x7F) >> mbits;
  const int mant = v & ((1 << mbits) - 1);
  const float mag = e == 0 ? std::ldexp(static_cast<float>(mant), 1 - bias - mbits)
                           : std::ldexp(static_cast<float>((1 << mbits) | mant), e - bias - mbits);
  return (v & 0x80) ? -mag : mag;
}
}  // namespace

float fp8_e4m3_to_f32(uint8_t v) {
  if ((v & 0x7F) == 0x7F) return (v & 0x80) ? -std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::quiet_NaN();
  return fp8_decode(v, 3, 7);
}

float fp8_e5m2_to_f32(uint8_t v) {
  if ((v & 0x7C) == 0x7C) {
    const float inf = std::numeric_limits<float>::infinity();
    if ((v & 0x03) != 0) return std::numeric_limits<float>::quiet_NaN();
    return (v & 0x80) ? -inf : inf;
  }
  return fp8_decode(v, 2, 15);
}

}  // namespace llmkit::ref::quant_detail
