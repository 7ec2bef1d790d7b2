// Placeholder: reference quantization lands with the quant work.
#include "llmkit/kernels/ref/quant.h"

#include "llmkit/base/check.h"

namespace llmkit::ref {
void quantize_row(DType t, const float*, void*, int64_t) { LLMKIT_ASSERT(false, "quantize ", dtype_name(t), " not built yet"); }
void dequantize_row(DType t, const void*, float*, int64_t) { LLMKIT_ASSERT(false, "dequantize ", dtype_name(t), " not built yet"); }
float dot_row(DType t, const void*, const float*, int64_t) { LLMKIT_ASSERT(false, "dot ", dtype_name(t), " not built yet"); }
}  // namespace llmkit::ref
