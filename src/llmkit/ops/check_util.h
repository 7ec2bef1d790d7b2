// Internal helpers of the ops layer: argument validation that turns bad user input into a typed
// llmkit::Error naming the op, the argument, its shape and the fix, and the gradient-output convention
// of ops.h (null = unwanted, undefined = allocate zeros, defined = accumulate).
#pragma once

#include "llmkit/base/check.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit::ops::detail {

// A contiguous F32 CPU tensor with t's values (t itself when already so).
inline Tensor f32_in(const Tensor& t, const char* op, const char* arg) {
  LLMKIT_CHECK(t.defined(), kInvalidArgument, op, ": argument '", arg, "' is an undefined tensor");
  LLMKIT_CHECK(t.device().kind == DeviceKind::kCPU, kUnsupported, op, ": '", arg, "' is on ", t.device().str(),
               "; only CPU tensors are supported by these ops, move it with to(Device::cpu())");
  LLMKIT_CHECK(t.dtype() == DType::kF32, kInvalidArgument, op, ": '", arg, "' must be f32, got ", t.str(),
               "; convert it with ops::to_f32");
  return t.contiguous();
}

inline Tensor i32_in(const Tensor& t, const char* op, const char* arg) {
  LLMKIT_CHECK(t.defined() && t.dtype() == DType::kI32 && t.device().kind == DeviceKind::kCPU, kInvalidArgument,
               op, ": '", arg, "' must be an i32 CPU tensor, got ", t.defined() ? t.str() : "undefined");
  return t.contiguous();
}

inline void same_shape(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  LLMKIT_CHECK(a.shape() == b.shape(), kInvalidArgument, op, ": '", an, "' ", a.shape().str(), " and '", bn, "' ",
               b.shape().str(), " must have the same shape");
}

inline void last_dim(const Tensor& t, int64_t d, const char* op, const char* arg, const char* what) {
  LLMKIT_CHECK(t.rank() >= 1 && t.dim(-1) == d, kInvalidArgument, op, ": '", arg, "' ", t.shape().str(),
               " must end in ", what, " = ", d);
}

// Resolves a gradient output of `shape`: nullptr if unwanted; allocates zeros if undefined; checks a
// caller-provided buffer (accumulated into).
inline float* grad_out(Tensor* g, const Shape& shape, const char* op, const char* arg) {
  if (!g) return nullptr;
  if (!g->defined()) {
    *g = Tensor::zeros(shape, DType::kF32);
  } else {
    LLMKIT_CHECK(g->dtype() == DType::kF32 && g->is_contiguous() && g->shape().numel() == shape.numel(),
                 kInvalidArgument, op, ": gradient '", arg, "' ", g->str(), " must be a contiguous f32 tensor of ",
                 shape.str(), " (or undefined to allocate one)");
  }
  return g->data<float>();
}

// As grad_out, for a kernel that can overwrite instead of accumulate: an undefined g is allocated
// uninitialised and *overwrite set (no zero fill, no read of zeros); else *overwrite = false.
inline float* grad_out_or_fresh(Tensor* g, const Shape& shape, const char* op, const char* arg, bool* overwrite) {
  *overwrite = g && !g->defined();
  if (*overwrite) {
    *g = Tensor::empty(shape, DType::kF32);
    return g->data<float>();
  }
  return grad_out(g, shape, op, arg);
}

}  // namespace llmkit::ops::detail
