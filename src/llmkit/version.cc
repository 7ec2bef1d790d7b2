// Version and build information.
#include "llmkit/version.h"

#include "llmkit/base/check.h"
#include "llmkit/kernels/kernel_table.h"

namespace llmkit {

const char* version() { return LLMKIT_VERSION; }

std::string build_info() {
  std::string targets;
  for (const auto& t : cpu_targets()) targets += (targets.empty() ? "" : ",") + t;
  return str_cat("llmkit ", LLMKIT_VERSION, " (", LLMKIT_BUILD_TYPE, "; SIMD targets on this CPU: ", targets,
#ifdef LLMKIT_WITH_CUDA
                 "; CUDA backend compiled",
#else
                 "; CPU only",
#endif
                 ")");
}

}  // namespace llmkit
