// Reference RMSNorm, LayerNorm and softmax, forward and backward. Row statistics (mean of squares,
// mean, variance, softmax denominators) are accumulated in double: they are long sums that feed a
// rsqrt/exp, and the reference should not be the noisiest implementation in the comparison.
#include <cmath>
#include <limits>

#include "llmkit/kernels/ref/ops.h"

namespace llmkit::ref {

// y = x * r * (w + off), r = 1/sqrt(mean(x^2) + eps)   (Zhang & Sennrich 2019, eq. 4)
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float rs = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = xr[j] * rs * (w[j] + w_offset);
  }
}

// With g = w + off: dx_i = r g_i dy_i - r^3 x_i / d * sum_j dy_j g_j x_j ; dw_j += dy_j x_j r.
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                      int64_t d, float eps, float w_offset) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    double ss = 0.0, dot = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      ss += static_cast<double>(xr[j]) * xr[j];
      dot += static_cast<double>(dyr[j]) * (w[j] + w_offset) * xr[j];
    }
    const double rs = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    const double c = rs * rs * rs * dot / static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) {
      if (dx) dx[r * d + j] += static_cast<float>(rs * dyr[j] * (w[j] + w_offset) - c * xr[j]);
      if (dw) dw[j] += static_cast<float>(dyr[j] * xr[j] * rs);
    }
  }
}

void layernorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += xr[j];
    const double mu = s / static_cast<double>(d);
    double v = 0.0;
    for (int64_t j = 0; j < d; ++j) v += (xr[j] - mu) * (xr[j] - mu);
    const double rstd = 1.0 / std::sqrt(v / static_cast<double>(d) + eps);
    for (int64_t j = 0; j < d; ++j) {
      float xh = static_cast<float>((xr[j] - mu) * rstd);
      y[r * d + j] = xh * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
    }
  }
}

// xh = (x - mu) rstd, g = dy * w: dx = rstd (g - mean(g) - xh mean(g xh)); dw += dy xh; db += dy.
void layernorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                        int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    const float* dyr = dy + r * d;
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) s += xr[j];
    const double mu = s / static_cast<double>(d);
    double v = 0.0;
    for (int64_t j = 0; j < d; ++j) v += (xr[j] - mu) * (xr[j] - mu);
    const double rstd = 1.0 / std::sqrt(v / static_cast<double>(d) + eps);
    double mg = 0.0, mgx = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      double g = static_cast<double>(dyr[j]) * (w ? w[j] : 1.0f);
      mg += g;
      mgx += g * (xr[j] - mu) * rstd;
    }
    mg /= static_cast<double>(d);
    mgx /= static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) {
      const double xh = (xr[j] - mu) * rstd;
      const double g = static_cast<double>(dyr[j]) * (w ? w[j] : 1.0f);
      if (dx) dx[r * d + j] += static_cast<float>(rstd * (g - mg - xh * mgx));
      if (dw) dw[j] += static_cast<float>(dyr[j] * xh);
      if (db) db[j] += dyr[j];
    }
  }
}

void softmax(float* x, int64_t rows, int64_t d) { softmax_masked(x, rows, d, SoftmaxMask{}); }

void softmax_masked(float* x, int64_t rows, int64_t d, const SoftmaxMask& mask) {
  const int64_t n_q = mask.n_q > 0 ? mask.n_q : rows;
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * d;
    const int64_t g = r / n_q, pos = r % n_q + (d - n_q);
    int64_t end = d;  // keys [0, end) are visible
    if (mask.causal && pos + 1 < end) end = pos + 1;
    if (mask.key_len && mask.key_len[g] < end) end = mask.key_len[g];
    if (end < 0) end = 0;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < end; ++j) mx = xr[j] > mx ? xr[j] : mx;
    double sum = 0.0;
    for (int64_t j = 0; j < end; ++j) {
      xr[j] = std::exp(xr[j] - mx);
      sum += xr[j];
    }
    const float inv = sum > 0.0 ? static_cast<float>(1.0 / sum) : 0.0f;
    for (int64_t j = 0; j < end; ++j) xr[j] *= inv;
    for (int64_t j = end; j < d; ++j) xr[j] = 0.0f;
  }
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * d;
    const float* dyr = dy + r * d;
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(dyr[j]) * yr[j];
    for (int64_t j = 0; j < d; ++j) dx[r * d + j] += static_cast<float>(yr[j] * (dyr[j] - dot));
  }
}

}  // namespace llmkit::ref
