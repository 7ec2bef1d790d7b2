// Ops for the activations (SiLU, GELU erf/tanh, ReLU) and the gated units SwiGLU/GeGLU (Shazeer 2020),
// forward and backward. SiLU, GELU (both directions) and SwiGLU forward dispatch through the kernel
// table; the rest are reference-only until a SIMD kernel exists.
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ops {
using detail::f32_in;
using detail::grad_out;

const char* act_name(Act a) {
  switch (a) {
    case Act::kSilu: return "silu";
    case Act::kGeluErf: return "gelu";
    case Act::kGeluTanh: return "gelu_tanh";
    case Act::kRelu: return "relu";
  }
  return "?";
}

Tensor activation(Act a, const Tensor& x_) {
  Tensor x = f32_in(x_, act_name(a), "x");
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  const int64_t n = x.numel();
  if (!n) return y;
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  switch (a) {
    case Act::kSilu: active_table().silu(xp, yp, n); break;
    case Act::kGeluErf: active_table().gelu(xp, yp, n, false); break;
    case Act::kGeluTanh: active_table().gelu(xp, yp, n, true); break;
    case Act::kRelu: ref::relu(xp, yp, n); break;
  }
  return y;
}

void activation_backward(Act a, const Tensor& x_, const Tensor& dy_, Tensor* dx) {
  Tensor x = f32_in(x_, "activation_backward", "x"), dy = f32_in(dy_, "activation_backward", "dy");
  detail::same_shape(x, dy, "activation_backward", "x", "dy");
  float* g = grad_out(dx, x.shape(), "activation_backward", "dx");
  if (!g) return;
  const int64_t n = x.numel();
  switch (a) {
    case Act::kSilu: ref::silu_backward(x.data<float>(), dy.data<float>(), g, n); break;
    case Act::kGeluErf: active_table().gelu_backward(x.data<float>(), dy.data<float>(), g, n, false); break;
    case Act::kGeluTanh: active_table().gelu_backward(x.data<float>(), dy.data<float>(), g, n, true); break;
    case Act::kRelu: ref::relu_backward(x.data<float>(), dy.data<float>(), g, n); break;
  }
}

Tensor glu(Act a, const Tensor& gate_, const Tensor& up_) {
  LLMKIT_CHECK(a != Act::kRelu, kUnsupported, "glu: ReGLU is not implemented; use SiLU (SwiGLU) or GELU (GeGLU)");
  Tensor gate = f32_in(gate_, "glu", "gate"), up = f32_in(up_, "glu", "up");
  detail::same_shape(gate, up, "glu", "gate", "up");
  Tensor y = Tensor::empty(gate.shape(), DType::kF32);
  const int64_t n = y.numel();
  if (!n) return y;
  if (a == Act::kSilu)
    active_table().swiglu(gate.data<float>(), up.data<float>(), y.data<float>(), n);
  else
    ref::geglu(gate.data<float>(), up.data<float>(), y.data<float>(), n, a == Act::kGeluTanh);
  return y;
}

void glu_backward(Act a, const Tensor& gate_, const Tensor& up_, const Tensor& dy_, Tensor* dgate, Tensor* dup) {
  LLMKIT_CHECK(a != Act::kRelu, kUnsupported, "glu_backward: ReGLU is not implemented");
  Tensor gate = f32_in(gate_, "glu_backward", "gate"), up = f32_in(up_, "glu_backward", "up");
  Tensor dy = f32_in(dy_, "glu_backward", "dy");
  detail::same_shape(gate, up, "glu_backward", "gate", "up");
  detail::same_shape(gate, dy, "glu_backward", "gate", "dy");
  float* gg = grad_out(dgate, gate.shape(), "glu_backward", "dgate");
  float* gu = grad_out(dup, up.shape(), "glu_backward", "dup");
  const int64_t n = gate.numel();
  if (a == Act::kSilu)
    active_table().swiglu_backward(gate.data<float>(), up.data<float>(), dy.data<float>(), gg, gu, n);
  else
    ref::geglu_backward(gate.data<float>(), up.data<float>(), dy.data<float>(), gg, gu, n, a == Act::kGeluTanh);
}

}  // namespace llmkit::ops
