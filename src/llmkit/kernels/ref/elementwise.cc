// Reference element-wise ops and activations with their derivatives. Each backward reads the forward
// INPUT (not the output) and accumulates into dx, so a caller never needs to keep activations twice.
// Formulas: SiLU/GELU (Hendrycks & Gimpel 2016), SwiGLU/GeGLU (Shazeer 2020).
#include <cmath>

#include "llmkit/kernels/ref/ops.h"

namespace llmkit::ref {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;   // 1/sqrt(2 pi)
constexpr float kGeluC = 0.044715f;

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu1(float x) { return x * sigmoid(x); }
// d/dx x s(x) = s(x) (1 + x (1 - s(x)))
inline float dsilu1(float x) {
  float s = sigmoid(x);
  return s * (1.0f + x * (1.0f - s));
}
inline float gelu1(float x, bool tanh_approx) {
  if (tanh_approx) return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kGeluC * x * x * x)));
  return 0.5f * x * (1.0f + std::erf(x * kInvSqrt2));
}
inline float dgelu1(float x, bool tanh_approx) {
  if (tanh_approx) {
    float u = kSqrt2OverPi * (x + kGeluC * x * x * x);
    float t = std::tanh(u);
    float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
  }
  // Phi(x) + x phi(x)
  return 0.5f * (1.0f + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(-0.5f * x * x);
}

}  // namespace

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}
void mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}
void scale(const float* a, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * s;
}
void add_bias(const float* x, const float* b, float* y, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) y[r * d + j] = x[r * d + j] + b[j];
}
void add_bias_backward_b(const float* dy, float* db, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < d; ++j) db[j] += dy[r * d + j];
}
void mul_backward(const float* a, const float* b, const float* dy, float* da, float* db, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (da) da[i] += dy[i] * b[i];
    if (db) db[i] += dy[i] * a[i];
  }
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu1(x[i]);
}
void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * dsilu1(x[i]);
}
void gelu(const float* x, float* y, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu1(x[i], tanh_approx);
}
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * dgelu1(x[i], tanh_approx);
}
void relu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
void relu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = silu1(gate[i]) * up[i];
}
void adamw(const AdamWStep& a, float* p, const float* g, float* m, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * a.grad_scale;
    m[i] = m[i] + (1.0f - a.b1) * (gi - m[i]);  // torch lerp_ (weight < 0.5)
    v[i] = v[i] * a.b2 + (1.0f - a.b2) * gi * gi;
    const float denom = std::sqrt(v[i]) / a.bc2_sqrt + a.eps;
    p[i] = p[i] * a.keep + -a.step_size * (m[i] / denom);
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (dgate) dgate[i] += dy[i] * up[i] * dsilu1(gate[i]);
    if (dup) dup[i] += dy[i] * silu1(gate[i]);
  }
}
void geglu(const float* gate, const float* up, float* y, int64_t n, bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) y[i] = gelu1(gate[i], tanh_approx) * up[i];
}
void geglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n,
                    bool tanh_approx) {
  for (int64_t i = 0; i < n; ++i) {
    if (dgate) dgate[i] += dy[i] * up[i] * dgelu1(gate[i], tanh_approx);
    if (dup) dup[i] += dy[i] * gelu1(gate[i], tanh_approx);
  }
}

}  // namespace llmkit::ref
