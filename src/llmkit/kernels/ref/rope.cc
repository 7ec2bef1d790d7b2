// Reference rotary position embedding (Su et al. 2021) with the context-extension schemes of HF
// transformers' modeling_rope_utils.py (linear, NTK-aware, YaRN, Llama-3), and ALiBi slopes.
// Frequencies are computed in double once per model; angles pos * inv_freq are formed in double so the
// reference stays exact at long positions (a float angle at pos 1e5 is off by ~1e-2 rad).
#include <cmath>

#include "llmkit/kernels/ref/ops.h"

namespace llmkit::ref {
namespace {

constexpr double kPi = 3.14159265358979323846;

// YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension", sec. 3.2; HF
// _compute_yarn_parameters): the dimension whose wavelength makes `n_rot` full turns over the original
// context. Dims below `low` keep their frequency (extrapolate), above `high` are interpolated by
// 1/factor, with a linear ramp in between.
double yarn_correction_dim(double n_rot, double dim, double base, double orig_ctx) {
  return dim * std::log(orig_ctx / (n_rot * 2.0 * kPi)) / (2.0 * std::log(base));
}

}  // namespace

void rope_freqs(const RopeConfig& cfg, int64_t rot_dims, float* inv_freq, float* mscale) {
  const int64_t half = rot_dims / 2;
  const double dim = static_cast<double>(rot_dims);
  double base = cfg.theta;
  *mscale = 1.0f;
  if (cfg.scaling == RopeScaling::kNtk) {
    // NTK-aware scaling (bloc97, r/LocalLLaMA 2023; HF "dynamic" evaluated at the scaled length):
    // stretch the base so the lowest frequency is interpolated by `factor` while the highest is kept:
    // base' = base * factor^(dim / (dim - 2)).
    base = base * std::pow(static_cast<double>(cfg.factor), dim / (dim - 2.0));
  }
  for (int64_t i = 0; i < half; ++i) {
    const double f = 1.0 / std::pow(base, static_cast<double>(2 * i) / dim);  // theta^(-2i/d)
    double out = f;
    switch (cfg.scaling) {
      case RopeScaling::kNone:
      case RopeScaling::kNtk:
        break;
      case RopeScaling::kLinear:  // position interpolation (Chen et al. 2023): pos / factor
        out = f / cfg.factor;
        break;
      case RopeScaling::kYarn: {
        const double orig = static_cast<double>(cfg.original_ctx);
        double low = std::floor(yarn_correction_dim(cfg.beta_fast, dim, cfg.theta, orig));
        double high = std::ceil(yarn_correction_dim(cfg.beta_slow, dim, cfg.theta, orig));
        if (low < 0) low = 0;
        if (high > dim - 1) high = dim - 1;
        if (low == high) high += 0.001;  // HF linear_ramp_factor: avoid a division by zero
        double ramp = (static_cast<double>(i) - low) / (high - low);
        ramp = ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp);
        const double extrapolation = 1.0 - ramp;  // 1 for high-frequency dims
        out = f / cfg.factor * (1.0 - extrapolation) + f * extrapolation;
        break;
      }
      case RopeScaling::kLlama3: {
        // Llama 3.1 (Meta, HF _compute_llama3_parameters): wavelengths longer than
        // orig_ctx/low_freq_factor are divided by factor, shorter than orig_ctx/high_freq_factor kept,
        // and a smooth interpolation between the two.
        const double orig = static_cast<double>(cfg.original_ctx);
        const double low_wavelen = orig / cfg.low_freq_factor;
        const double high_wavelen = orig / cfg.high_freq_factor;
        const double wavelen = 2.0 * kPi / f;
        if (wavelen > low_wavelen) {
          out = f / cfg.factor;
        } else if (wavelen >= high_wavelen) {
          const double smooth = (orig / wavelen - cfg.low_freq_factor) / (cfg.high_freq_factor - cfg.low_freq_factor);
          out = (1.0 - smooth) * f / cfg.factor + smooth * f;
        }
        break;
      }
    }
    if (!cfg.freq_factors.empty()) out /= static_cast<double>(cfg.freq_factors[static_cast<size_t>(i)]);
    inv_freq[i] = static_cast<float>(out);
  }
  // YaRN attention temperature: sqrt(1/t) = 0.1 ln(s) + 1 (paper eq. 22; HF get_mscale) scales cos/sin,
  // i.e. both q and k, so the logits scale by mscale^2.
  if (cfg.scaling == RopeScaling::kYarn && cfg.factor > 1.0f)
    *mscale = static_cast<float>(0.1 * std::log(static_cast<double>(cfg.factor)) + 1.0);
}

namespace {

// cos and sin of one angle pos * f (see rope_cos_sin).
inline void angle_cs(int32_t pos, float f, float mscale, float sign, float* c, float* s) {
  const double angle = static_cast<double>(pos) * f;
  *c = static_cast<float>(std::cos(angle)) * mscale;
  *s = sign * static_cast<float>(std::sin(angle)) * mscale;
}

// Pair i of one head: (y0, y1) = (x0 c - x1 s, x0 s + x1 c), or += with accumulate.
inline void rotate_pair(const float* xh, float* yh, int64_t i, int64_t half, float c, float s, bool neox,
                        bool accumulate) {
  const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
  const float x0 = xh[i0], x1 = xh[i1];
  const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
  if (accumulate) {
    yh[i0] += y0;
    yh[i1] += y1;
  } else {
    yh[i0] = y0;
    yh[i1] = y1;
  }
}

// Dimensions past rot_dims pass through (are added with accumulate).
inline void pass_through(const float* xh, float* yh, int64_t rot_dims, int64_t head_dim, bool accumulate) {
  for (int64_t j = rot_dims; j < head_dim; ++j) yh[j] = accumulate ? yh[j] + xh[j] : xh[j];
}

// Applies the rotation by `sign` * angle to every head of every token; `accumulate` selects y += R x.
void rotate(const float* x, float* y, const int32_t* pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
            int64_t rot_dims, const float* inv_freq, float mscale, RopeStyle style, float sign, bool accumulate) {
  const int64_t half = rot_dims / 2;
  const bool neox = style == RopeStyle::kNeoX;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      float c, s;
      angle_cs(pos[t], inv_freq[i], mscale, sign, &c, &s);
      for (int64_t h = 0; h < n_heads; ++h) {
        const int64_t o = (t * n_heads + h) * head_dim;
        rotate_pair(x + o, y + o, i, half, c, s, neox, accumulate);
      }
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t o = (t * n_heads + h) * head_dim;
      pass_through(x + o, y + o, rot_dims, head_dim, accumulate);
    }
  }
}

}  // namespace

// (y0, y1) = (x0 c - x1 s, x0 s + x1 c), c = cos(pos f_i) m, s = sin(pos f_i) m.
void rope(const float* x, float* y, const int32_t* pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          int64_t rot_dims, const float* inv_freq, float mscale, RopeStyle style) {
  rotate(x, y, pos, n_tokens, n_heads, head_dim, rot_dims, inv_freq, mscale, style, 1.0f, false);
}

void rope_backward(const float* dy, float* dx, const int32_t* pos, int64_t n_tokens, int64_t n_heads,
                   int64_t head_dim, int64_t rot_dims, const float* inv_freq, float mscale, RopeStyle style) {
  rotate(dy, dx, pos, n_tokens, n_heads, head_dim, rot_dims, inv_freq, mscale, style, -1.0f, true);
}

void rope_cos_sin(const int32_t* pos, int64_t n_tokens, int64_t rot_dims, const float* inv_freq, float mscale,
                  float sign, float* c, float* s) {
  const int64_t half = rot_dims / 2;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < half; ++i) angle_cs(pos[t], inv_freq[i], mscale, sign, c + t * half + i, s + t * half + i);
}

void rope_apply(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate) {
  const int64_t half = rot_dims / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t o = (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) rotate_pair(x + o, y + o, i, half, c[t * half + i], s[t * half + i], neox, accumulate);
      pass_through(x + o, y + o, rot_dims, head_dim, accumulate);
    }
  }
}

// Press et al. 2022, sec. 3: slopes form the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power
// of two. Otherwise BLOOM takes the slopes of the closest smaller power of two, then every other slope
// of the next power of two (2^(-4/n2), 2^(-12/n2), ...) for the remaining heads.
void alibi_slopes(int64_t n_heads, float* slopes) {
  int64_t p2 = 1;
  while (p2 * 2 <= n_heads) p2 *= 2;
  const double base = std::pow(2.0, -8.0 / static_cast<double>(p2));
  for (int64_t h = 0; h < p2 && h < n_heads; ++h) slopes[h] = static_cast<float>(std::pow(base, static_cast<double>(h + 1)));
  if (p2 < n_heads) {
    const double extra = std::pow(2.0, -4.0 / static_cast<double>(p2));
    for (int64_t h = p2; h < n_heads; ++h)
      slopes[h] = static_cast<float>(std::pow(extra, static_cast<double>(2 * (h - p2) + 1)));
  }
}

}  // namespace llmkit::ref
