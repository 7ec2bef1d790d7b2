// Placeholder: SIMD quantized matmul lands with the quant work.
#include "llmkit/kernels/cpu/quant_matmul.h"

#include "llmkit/base/check.h"

namespace llmkit::cpu {
bool quant_matmul_supported(DType) { return false; }
void quant_matmul(const float*, const void*, DType wt, float*, int64_t, int64_t, int64_t) {
  LLMKIT_ASSERT(false, "quant_matmul ", dtype_name(wt), " not built yet");
}
}  // namespace llmkit::cpu
