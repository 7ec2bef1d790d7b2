// The op harness, in the spirit of ggml's test-backend-ops: an op case is a closure that runs an op on
// fixed inputs under whatever backend is active; run_case() runs it on the reference, then on kCpu once
// per SIMD target of this machine (set_cpu_target), and compares every output with the reference by
// normalized MSE, sum (a - b)^2 / sum b^2, against a per-dtype bound. check_grad() checks an op's
// backward against central finite differences of the scalar L = sum(y * r) for a fixed random r,
// with L summed in double (the kernels are float32, so h is large enough, 1e-2, for float noise
// ~1e-6/h to stay far below the tolerance), and that a second backward accumulates (+=).
// LLMKIT_HARNESS_PERF=1 adds a timing line per op case and target.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/ops/ops.h"
#include "llmkit/tensor/half.h"

namespace llmkit::harness {

// ---- inputs --------------------------------------------------------------------------------------
inline Tensor rand_tensor(const Shape& shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(shape, DType::kF32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}
inline Tensor ids_tensor(const Shape& shape, uint32_t seed, int32_t lo, int32_t hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi - 1);
  Tensor t = Tensor::empty(shape, DType::kI32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<int32_t>()[i] = dist(rng);
  return t;
}
// An F32 tensor [rows, d] converted to dtype t (F16, BF16 or quantized via ref::quantize_row).
inline Tensor convert(const Tensor& x, DType t) {
  if (t == DType::kF32) return x;
  Tensor y = Tensor::empty(x.shape(), t);
  for (int64_t r = 0; r < x.rows(); ++r) {
    const float* src = x.data<float>() + r * x.dim(-1);
    if (t == DType::kF16 || t == DType::kBF16) {
      uint16_t* dst = static_cast<uint16_t*>(y.row_ptr(r));
      for (int64_t j = 0; j < x.dim(-1); ++j) dst[j] = t == DType::kF16 ? f32_to_f16(src[j]) : f32_to_bf16(src[j]);
    } else {
      ref::quantize_row(t, src, y.row_ptr(r), x.dim(-1));
    }
  }
  return y;
}

// ---- targets -------------------------------------------------------------------------------------
struct Target {
  std::string name;       // "ref", "cpu/AVX2"
  ops::Backend backend;
  std::string cpu_target; // empty for ref
};
inline std::vector<Target> all_targets() {
  std::vector<Target> out{{"ref", ops::Backend::kRef, ""}};
  for (const std::string& t : cpu_targets()) out.push_back({"cpu/" + t, ops::Backend::kCpu, t});
  return out;
}
class TargetScope {
 public:
  explicit TargetScope(const Target& t) : backend_(t.backend), simd_(!t.cpu_target.empty()) {
    if (simd_) set_cpu_target(t.cpu_target);
  }
  ~TargetScope() {
    if (simd_) reset_cpu_target();
  }
  TargetScope(const TargetScope&) = delete;
  TargetScope& operator=(const TargetScope&) = delete;

 private:
  ops::ScopedBackend backend_;
  bool simd_;
};

inline bool perf_mode() {
  const char* e = std::getenv("LLMKIT_HARNESS_PERF");
  return e && std::string(e) == "1";
}

// ---- forward cases -------------------------------------------------------------------------------
// Error bounds (NMSE) per weight/compute dtype. Float paths differ from the reference only by
// summation order (~1e-12 in practice); 1e-7 leaves room for FMA and tree sums over long rows.
// Quantized matmuls may quantize the activations too (ggml's q8 dot products), which ggml's harness
// bounds by 5e-4.
inline double nmse_bound(DType t) {
  if (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) return 1e-7;
  return 5e-4;
}

struct OpCase {
  std::string op;    // "matmul"
  std::string desc;  // "M=7 N=13 K=64 w=q4_0"
  double max_nmse = 1e-7;
  std::function<std::vector<Tensor>()> run;  // runs the op under the active backend
};

// NMSE of a against b (both F32, same shape); I32 outputs must match exactly (returns 0 or 1).
inline double nmse(const Tensor& a, const Tensor& b) {
  if (a.dtype() == DType::kI32) {
    for (int64_t i = 0; i < a.numel(); ++i)
      if (a.data<int32_t>()[i] != b.data<int32_t>()[i]) return 1.0;
    return 0.0;
  }
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    if (std::isnan(y) || (std::isinf(y) && x == y)) continue;
    num += (x - y) * (x - y);
    den += y * y;
  }
  return den > 0 ? num / den : num;
}

inline void time_case(const OpCase& c, const std::string& target) {
  c.run();  // warm up
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  int iters = 0;
  double elapsed = 0;
  do {
    c.run();
    ++iters;
    elapsed = std::chrono::duration<double>(clock::now() - t0).count();
  } while (elapsed < 0.05 && iters < 10000);
  std::printf("[perf] %-14s %-44s %-12s %10.2f us/call (%d iters)\n", c.op.c_str(), c.desc.c_str(), target.c_str(),
              1e6 * elapsed / iters, iters);
}

// Runs c on every target and compares with the reference. Returns the number of failures.
inline int run_case(const OpCase& c) {
  std::vector<Tensor> expected;
  {
    ops::ScopedBackend ref(ops::Backend::kRef);
    expected = c.run();
  }
  const bool perf = perf_mode();
  int failures = 0;
  for (const Target& t : all_targets()) {
    TargetScope scope(t);
    std::vector<Tensor> got = c.run();
    EXPECT_EQ(got.size(), expected.size()) << c.op << " " << c.desc << " on " << t.name;
    for (size_t i = 0; i < got.size() && i < expected.size(); ++i) {
      const bool shape_ok = got[i].shape() == expected[i].shape() && got[i].dtype() == expected[i].dtype();
      const double err = shape_ok ? nmse(got[i].contiguous(), expected[i].contiguous()) : INFINITY;
      if (!(err <= c.max_nmse)) {
        ++failures;
        ADD_FAILURE() << "op " << c.op << " [" << c.desc << "] output " << i << " on " << t.name << ": NMSE " << err
                      << " > bound " << c.max_nmse << " (got " << got[i].str() << ", ref " << expected[i].str() << ")";
      }
    }
    if (perf) time_case(c, t.name);
  }
  return failures;
}

// ---- gradient cases ------------------------------------------------------------------------------
struct GradCase {
  std::string op, desc;
  std::vector<Tensor> inputs;  // F32 (I32 inputs allowed when not in wrt)
  std::vector<int> wrt;        // inputs to differentiate
  std::function<Tensor(const std::vector<Tensor>&)> forward;
  // Accumulates dL/dinput into *grads[i] for i in wrt (grads[i] null otherwise), given dy.
  std::function<void(const std::vector<Tensor>&, const Tensor& dy, std::vector<Tensor*>& grads)> backward;
  double tol = 1e-2;  // max |analytic - numeric| / max(max |numeric|, 1e-2)
  double h = 1e-2;
};

inline double weighted_sum(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y.data<float>()[i]) * r.data<float>()[i];
  return s;
}

// Returns the worst relative error over all checked inputs (and records a gtest failure if > tol).
inline double check_grad(const GradCase& c) {
  ops::ScopedBackend ref(ops::Backend::kRef);
  std::vector<Tensor> in;
  for (const Tensor& t : c.inputs) in.push_back(t.clone());
  const Tensor y0 = c.forward(in).contiguous();
  const Tensor r = rand_tensor(y0.shape(), 12345);
  std::vector<Tensor> grads(in.size());
  std::vector<Tensor*> ptrs(in.size(), nullptr);
  for (int i : c.wrt) ptrs[i] = &grads[i];
  c.backward(in, r, ptrs);
  // Accumulation contract: a second backward into the same buffers doubles them.
  std::vector<Tensor> once;
  for (const Tensor& g : grads) once.push_back(g.defined() ? g.clone() : g);
  c.backward(in, r, ptrs);
  double worst = 0;
  for (int i : c.wrt) {
    Tensor& x = in[i];
    float* xp = x.data<float>();
    double max_num = 0, max_diff = 0, max_acc = 0;
    int64_t worst_at = -1;
    for (int64_t e = 0; e < x.numel(); ++e) {
      const float saved = xp[e];
      xp[e] = saved + static_cast<float>(c.h);
      const double lp = weighted_sum(c.forward(in).contiguous(), r);
      xp[e] = saved - static_cast<float>(c.h);
      const double lm = weighted_sum(c.forward(in).contiguous(), r);
      xp[e] = saved;
      const double num = (lp - lm) / (2 * c.h);
      const double ana = grads[i].defined() ? once[i].data<float>()[e] : 0.0;
      max_num = std::max(max_num, std::fabs(num));
      if (std::fabs(num - ana) > max_diff) { max_diff = std::fabs(num - ana); worst_at = e; }
      if (grads[i].defined())
        max_acc = std::max(max_acc, std::fabs(grads[i].data<float>()[e] - 2.0 * once[i].data<float>()[e]));
    }
    const double rel = max_diff / std::max(max_num, 1e-2);
    worst = std::max(worst, rel);
    EXPECT_LE(rel, c.tol) << "gradient of op " << c.op << " [" << c.desc << "] w.r.t. input " << i << " "
                          << x.shape().str() << ": max |analytic - numeric| = " << max_diff << " at element " << worst_at
                          << " (max |numeric| " << max_num << ")";
    EXPECT_LE(max_acc, 1e-5 * std::max(1.0, max_num))
        << "op " << c.op << " [" << c.desc << "] input " << i << ": a second backward did not accumulate (+=)";
  }
  return worst;
}

}  // namespace llmkit::harness
