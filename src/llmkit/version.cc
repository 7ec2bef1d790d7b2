// Version and build information.
#include "llmkit/version.h"

#include "llmkit/base/check.h"
#include "llmkit/kernels/kernel_table.h"
#ifdef LLMKIT_WITH_CUDA
#include "llmkit/kernels/cuda/cuda_backend.h"
#endif

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

void init() {
#ifdef LLMKIT_WITH_CUDA
  static const int n_gpus = cuda::register_backend();
  (void)n_gpus;
#endif
}

}  // namespace llmkit
