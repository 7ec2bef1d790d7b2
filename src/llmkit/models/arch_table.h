// The architecture table: one row per family, read top to bottom. Each row says which Hugging Face
// model_type / architectures and which GGUF general.architecture mean this family, and gives the
// family's tensor name map HF <-> GGUF (llama.cpp's names, gguf-py "tensor_mapping"), with the
// layout transform llama.cpp's convert_hf_to_gguf.py applies to some tensors:
//
//   kRopePermuteQ/K  LLaMA-family q_proj/k_proj rows: HF keeps each head's rotary pairs as
//                    (i, i + head_dim/2) ("rotate_half"); llama.cpp reorders the rows of each head
//                    to adjacent pairs (2i, 2i + 1): row (i*2 + j) of GGUF = row (j*head_dim/2 + i)
//                    of HF, per head (k uses n_kv_heads). A row permutation: exact both ways.
//   kQkvHeadsToBlocks BLOOM / GPT-NeoX fused query_key_value rows are [n_heads, 3, head_dim] in HF;
//                    llama.cpp stores [3, n_heads, head_dim] (q block, k block, v block). Exact.
//   kTranspose       GPT-2 Conv1D weights are [in, out] in HF; GGUF stores [out, in]. Exact.
//   kNormPlusOne     Gemma RMSNorm weights: HF stores w and computes x * (1 + w); llama.cpp stores
//                    1 + w in F32. Exact for BF16/F16 weights with |w| >= 2^-16 (1 + w then needs at
//                    most 24 significant bits); F32 weights can lose low bits (documented limit).
//
// Patterns use {N} for a layer index and {E} for an expert index; the ".weight"/".bias" suffix
// is carried over unchanged. Names that are buffers, not weights (causal masks, rotary caches,
// position ids), are listed in hf_skip and dropped by the converter.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "llmkit/models/model_config.h"

namespace llmkit::models {

enum class Transform : uint8_t { kNone, kRopePermuteQ, kRopePermuteK, kQkvHeadsToBlocks, kTranspose, kNormPlusOne };
const char* transform_name(Transform t);

struct TensorNamePair {
  const char* hf;    // "model.layers.{N}.self_attn.q_proj"
  const char* gguf;  // "blk.{N}.attn_q"
  Transform transform = Transform::kNone;
  int8_t when_gated = -1;  // -1 always; 1 only if the MLP is gated, 0 only if not (T5 wi vs wi_0/wi_1)
};

struct ArchInfo {
  ArchFamily family;
  const char* gguf_arch;                      // general.architecture
  std::vector<const char*> hf_model_types;    // config.json "model_type"
  std::vector<const char*> hf_architectures;  // config.json "architectures"
  const char* hf_optional_prefix;             // checkpoints saved with or without it ("transformer.")
  std::vector<TensorNamePair> tensors;
  std::vector<const char*> hf_skip;           // name suffixes that are buffers, not weights
};

const std::vector<ArchInfo>& arch_table();
const ArchInfo& arch_info(ArchFamily f);
// By config.json's model_type, then its architectures list. nullptr if unknown.
const ArchInfo* arch_from_hf(const std::string& model_type, const std::vector<std::string>& architectures);
const ArchInfo* arch_from_gguf(const std::string& general_architecture);

struct MappedName {
  std::string name;
  Transform transform = Transform::kNone;
};
// HF name -> GGUF name (nullopt: not in the table). Accepts names with or without the optional prefix.
std::optional<MappedName> hf_to_gguf_name(const ArchInfo& a, const std::string& hf_name);
// GGUF name -> HF name (with the optional prefix). nullopt: not in the table. `gated_mlp` picks
// between table rows that share a GGUF name (T5 "wi" vs "wi_1").
std::optional<MappedName> gguf_to_hf_name(const ArchInfo& a, const std::string& gguf_name, bool gated_mlp = true);
bool hf_is_skipped(const ArchInfo& a, const std::string& hf_name);

}  // namespace llmkit::models
