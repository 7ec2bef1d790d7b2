// The SIMD kernel table and target selection (placeholder until the SIMD kernels land).
#include <hwy/targets.h>

#include "llmkit/base/check.h"
#include "llmkit/kernels/kernel_table.h"

namespace llmkit {

const KernelTable& cpu_table() {
  static const KernelTable t = {.name = "cpu"};
  return t;
}

std::vector<std::string> cpu_targets() {
  std::vector<std::string> out;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) out.push_back(hwy::TargetName(t));
  return out;
}

void set_cpu_target(const std::string& name) {
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    if (name == hwy::TargetName(t)) {
      hwy::SetSupportedTargetsForTest(t);
      return;
    }
  }
  throw Error(ErrorCode::kInvalidArgument, str_cat("SIMD target '", name, "' is not available on this CPU"));
}

void reset_cpu_target() { hwy::SetSupportedTargetsForTest(0); }

std::string current_cpu_target() {
  auto targets = hwy::SupportedAndGeneratedTargets();  // best first
  return targets.empty() ? std::string("none") : std::string(hwy::TargetName(targets.front()));
}

}  // namespace llmkit
