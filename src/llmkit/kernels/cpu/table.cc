// The SIMD kernel table and SIMD target selection. cpu_table() points at the Highway kernels of
// gemm.cc and elementwise.cc, which dispatch at run time (HWY_DYNAMIC_DISPATCH) to the best target
// of this CPU. set_cpu_target() narrows Highway's supported set with SetSupportedTargetsForTest so
// tests and the op harness can run every target; Highway's own list of targets shrinks with that
// mock, so the full list is captured once, before any mock, and cpu_targets() returns it.
// Quantized weights: matmul forwards to cpu::quant_matmul when it supports the type, else it
// dequantizes weight tiles with ref::dequantize_row and runs the F32 kernels (see cpu_kernels.h).
#include <hwy/targets.h>

#include "llmkit/base/check.h"
#include "llmkit/kernels/cpu/cpu_kernels.h"
#include "llmkit/kernels/kernel_table.h"

namespace llmkit {

const KernelTable& cpu_table() {
  static const KernelTable t = {
      .name = "cpu",
      .matmul = cpu::matmul,
      .matmul_bf16 = cpu::matmul_bf16,
      .gemm = cpu::gemm,
      .add = cpu::add,
      .mul = cpu::mul,
      .scale = cpu::scale,
      .silu = cpu::silu,
      .gelu = cpu::gelu,
      .gelu_backward = cpu::gelu_backward,
      .swiglu = cpu::swiglu,
      .swiglu_backward = cpu::swiglu_backward,
      .adamw = cpu::adamw,
      .logsumexp_rows = cpu::logsumexp_rows,
      .xent_grad_rows = cpu::xent_grad_rows,
      .rmsnorm = cpu::rmsnorm,
      .rmsnorm_backward = cpu::rmsnorm_backward,
      .layernorm = cpu::layernorm,
      .layernorm_backward = cpu::layernorm_backward,
      .rope_apply = cpu::rope_apply,
      .softmax = cpu::softmax,
      .attention = cpu::attention,
      .attention_backward = cpu::attention_backward,
      .paged_attention = cpu::paged_attention,
      .paged_kv_write = cpu::paged_kv_write,
  };
  return t;
}

namespace {

// Compiled-and-supported targets, best first, as seen before any SetSupportedTargetsForTest.
// Initialised on first use of any target helper; a mock set by someone else before that would
// narrow it, so the helpers below reset the mock first.
const std::vector<int64_t>& all_targets() {
  static const std::vector<int64_t> targets = [] {
    hwy::SetSupportedTargetsForTest(0);
    return hwy::SupportedAndGeneratedTargets();
  }();
  return targets;
}

}  // namespace

std::vector<std::string> cpu_targets() {
  std::vector<std::string> out;
  for (int64_t t : all_targets()) out.push_back(hwy::TargetName(t));
  return out;
}

void set_cpu_target(const std::string& name) {
  for (int64_t t : all_targets()) {
    if (name == hwy::TargetName(t)) {
      hwy::SetSupportedTargetsForTest(t);
      return;
    }
  }
  throw Error(ErrorCode::kInvalidArgument,
              str_cat("SIMD target '", name, "' is not compiled in or not supported by this CPU; see cpu_targets()"));
}

void reset_cpu_target() {
  (void)all_targets();  // capture the full list before it could ever be narrowed
  hwy::SetSupportedTargetsForTest(0);
}

std::string current_cpu_target() {
  (void)all_targets();
  auto targets = hwy::SupportedAndGeneratedTargets();  // best first, honours set_cpu_target
  return targets.empty() ? std::string("none") : std::string(hwy::TargetName(targets.front()));
}

}  // namespace llmkit
