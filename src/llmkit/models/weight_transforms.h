// The tensor layout transforms of the architecture table (arch_table.h), applied HF -> GGUF
// (forward) and GGUF -> HF (inverse), plus the dtype cast the converter and loaders use.
//
// Row permutations (rope q/k, fused qkv) move whole rows, so they are exact for every dtype,
// block-quantized ones included. Transpose needs a plain dtype (F32/F16/BF16/ints). NormPlusOne
// computes in F32 and returns F32 (llama.cpp keeps norm weights in F32).
#pragma once

#include "llmkit/models/arch_table.h"
#include "llmkit/models/model_config.h"

namespace llmkit::models {

// Returns x itself (no copy) for Transform::kNone, otherwise a new CPU tensor. Throws
// Error(kInvalidFile) if the shape does not fit the transform (rows not n_heads x head_dim, ...).
Tensor apply_transform(Transform t, const ModelConfig& c, const Tensor& x, bool to_gguf, const std::string& name);

// Converts between F32/F16/BF16 and every quantized type by rows through F32 (ref::dequantize_row
// then ref::quantize_row). Returns x itself when the dtype already matches. Throws kInvalidArgument
// when the row length is not a multiple of the target's block size.
Tensor cast_to(const Tensor& x, DType to, const std::string& name);

}  // namespace llmkit::models
