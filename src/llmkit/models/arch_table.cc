// The architecture table (see arch_table.h) and the HF <-> GGUF name matcher.
#include "llmkit/models/arch_table.h"

#include <string_view>

#include "llmkit/base/check.h"

namespace llmkit::models {
namespace {

using T = Transform;

// clang-format off
const std::vector<ArchInfo> kArchTable = {
  {ArchFamily::kLlama, "llama", {"llama", "mistral", "mixtral"},
   {"LlamaForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"}, nullptr,
   {{"model.embed_tokens", "token_embd"},
    {"model.layers.{N}.input_layernorm", "blk.{N}.attn_norm"},
    {"model.layers.{N}.self_attn.q_proj", "blk.{N}.attn_q", T::kRopePermuteQ},
    {"model.layers.{N}.self_attn.k_proj", "blk.{N}.attn_k", T::kRopePermuteK},
    {"model.layers.{N}.self_attn.v_proj", "blk.{N}.attn_v"},
    {"model.layers.{N}.self_attn.o_proj", "blk.{N}.attn_output"},
    {"model.layers.{N}.post_attention_layernorm", "blk.{N}.ffn_norm"},
    {"model.layers.{N}.mlp.gate_proj", "blk.{N}.ffn_gate"},
    {"model.layers.{N}.mlp.up_proj", "blk.{N}.ffn_up"},
    {"model.layers.{N}.mlp.down_proj", "blk.{N}.ffn_down"},
    // Mixtral: llama.cpp's older per-expert layout (still loaded by llama.cpp), so every expert
    // matrix maps 1:1 and round trips exactly.
    {"model.layers.{N}.block_sparse_moe.gate", "blk.{N}.ffn_gate_inp"},
    {"model.layers.{N}.block_sparse_moe.experts.{E}.w1", "blk.{N}.ffn_gate.{E}"},
    {"model.layers.{N}.block_sparse_moe.experts.{E}.w3", "blk.{N}.ffn_up.{E}"},
    {"model.layers.{N}.block_sparse_moe.experts.{E}.w2", "blk.{N}.ffn_down.{E}"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"}},
   {"rotary_emb.inv_freq"}},

  {ArchFamily::kQwen2, "qwen2", {"qwen2"}, {"Qwen2ForCausalLM"}, nullptr,
   {{"model.embed_tokens", "token_embd"},
    {"model.layers.{N}.input_layernorm", "blk.{N}.attn_norm"},
    {"model.layers.{N}.self_attn.q_proj", "blk.{N}.attn_q"},
    {"model.layers.{N}.self_attn.k_proj", "blk.{N}.attn_k"},
    {"model.layers.{N}.self_attn.v_proj", "blk.{N}.attn_v"},
    {"model.layers.{N}.self_attn.o_proj", "blk.{N}.attn_output"},
    {"model.layers.{N}.post_attention_layernorm", "blk.{N}.ffn_norm"},
    {"model.layers.{N}.mlp.gate_proj", "blk.{N}.ffn_gate"},
    {"model.layers.{N}.mlp.up_proj", "blk.{N}.ffn_up"},
    {"model.layers.{N}.mlp.down_proj", "blk.{N}.ffn_down"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"}},
   {"rotary_emb.inv_freq"}},

  {ArchFamily::kGemma, "gemma", {"gemma"}, {"GemmaForCausalLM"}, nullptr,
   {{"model.embed_tokens", "token_embd"},
    {"model.layers.{N}.input_layernorm", "blk.{N}.attn_norm", T::kNormPlusOne},
    {"model.layers.{N}.self_attn.q_proj", "blk.{N}.attn_q"},
    {"model.layers.{N}.self_attn.k_proj", "blk.{N}.attn_k"},
    {"model.layers.{N}.self_attn.v_proj", "blk.{N}.attn_v"},
    {"model.layers.{N}.self_attn.o_proj", "blk.{N}.attn_output"},
    {"model.layers.{N}.post_attention_layernorm", "blk.{N}.ffn_norm", T::kNormPlusOne},
    {"model.layers.{N}.mlp.gate_proj", "blk.{N}.ffn_gate"},
    {"model.layers.{N}.mlp.up_proj", "blk.{N}.ffn_up"},
    {"model.layers.{N}.mlp.down_proj", "blk.{N}.ffn_down"},
    {"model.norm", "output_norm", T::kNormPlusOne},
    {"lm_head", "output"}},
   {"rotary_emb.inv_freq"}},

  {ArchFamily::kPhi3, "phi3", {"phi3"}, {"Phi3ForCausalLM"}, nullptr,
   {{"model.embed_tokens", "token_embd"},
    {"model.layers.{N}.input_layernorm", "blk.{N}.attn_norm"},
    {"model.layers.{N}.self_attn.qkv_proj", "blk.{N}.attn_qkv"},
    {"model.layers.{N}.self_attn.o_proj", "blk.{N}.attn_output"},
    {"model.layers.{N}.post_attention_layernorm", "blk.{N}.ffn_norm"},
    {"model.layers.{N}.mlp.gate_up_proj", "blk.{N}.ffn_up"},  // fused [gate; up], as llama.cpp keeps it
    {"model.layers.{N}.mlp.down_proj", "blk.{N}.ffn_down"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"}},
   {"rotary_emb.inv_freq"}},

  {ArchFamily::kGpt2, "gpt2", {"gpt2"}, {"GPT2LMHeadModel", "GPT2Model"}, "transformer.",
   {{"transformer.wte", "token_embd"},
    {"transformer.wpe", "position_embd"},
    {"transformer.h.{N}.ln_1", "blk.{N}.attn_norm"},
    {"transformer.h.{N}.attn.c_attn", "blk.{N}.attn_qkv", T::kTranspose},
    {"transformer.h.{N}.attn.c_proj", "blk.{N}.attn_output", T::kTranspose},
    {"transformer.h.{N}.ln_2", "blk.{N}.ffn_norm"},
    {"transformer.h.{N}.mlp.c_fc", "blk.{N}.ffn_up", T::kTranspose},
    {"transformer.h.{N}.mlp.c_proj", "blk.{N}.ffn_down", T::kTranspose},
    {"transformer.ln_f", "output_norm"},
    {"lm_head", "output"}},
   {".attn.bias", ".attn.masked_bias"}},

  {ArchFamily::kOpt, "opt", {"opt"}, {"OPTForCausalLM"}, nullptr,
   {{"model.decoder.embed_tokens", "token_embd"},
    {"model.decoder.embed_positions", "position_embd"},
    {"model.decoder.layers.{N}.self_attn_layer_norm", "blk.{N}.attn_norm"},
    {"model.decoder.layers.{N}.self_attn.q_proj", "blk.{N}.attn_q"},
    {"model.decoder.layers.{N}.self_attn.k_proj", "blk.{N}.attn_k"},
    {"model.decoder.layers.{N}.self_attn.v_proj", "blk.{N}.attn_v"},
    {"model.decoder.layers.{N}.self_attn.out_proj", "blk.{N}.attn_output"},
    {"model.decoder.layers.{N}.final_layer_norm", "blk.{N}.ffn_norm"},
    {"model.decoder.layers.{N}.fc1", "blk.{N}.ffn_up"},
    {"model.decoder.layers.{N}.fc2", "blk.{N}.ffn_down"},
    {"model.decoder.final_layer_norm", "output_norm"},
    {"lm_head", "output"}},
   {}},

  {ArchFamily::kBloom, "bloom", {"bloom"}, {"BloomForCausalLM", "BloomModel"}, "transformer.",
   {{"transformer.word_embeddings", "token_embd"},
    {"transformer.word_embeddings_layernorm", "token_embd_norm"},
    {"transformer.h.{N}.input_layernorm", "blk.{N}.attn_norm"},
    {"transformer.h.{N}.self_attention.query_key_value", "blk.{N}.attn_qkv", T::kQkvHeadsToBlocks},
    {"transformer.h.{N}.self_attention.dense", "blk.{N}.attn_output"},
    {"transformer.h.{N}.post_attention_layernorm", "blk.{N}.ffn_norm"},
    {"transformer.h.{N}.mlp.dense_h_to_4h", "blk.{N}.ffn_up"},
    {"transformer.h.{N}.mlp.dense_4h_to_h", "blk.{N}.ffn_down"},
    {"transformer.ln_f", "output_norm"},
    {"lm_head", "output"}},
   {}},

  {ArchFamily::kGptNeoX, "gptneox", {"gpt_neox"}, {"GPTNeoXForCausalLM"}, nullptr,
   {{"gpt_neox.embed_in", "token_embd"},
    {"gpt_neox.layers.{N}.input_layernorm", "blk.{N}.attn_norm"},
    {"gpt_neox.layers.{N}.attention.query_key_value", "blk.{N}.attn_qkv", T::kQkvHeadsToBlocks},
    {"gpt_neox.layers.{N}.attention.dense", "blk.{N}.attn_output"},
    {"gpt_neox.layers.{N}.post_attention_layernorm", "blk.{N}.ffn_norm"},
    {"gpt_neox.layers.{N}.mlp.dense_h_to_4h", "blk.{N}.ffn_up"},
    {"gpt_neox.layers.{N}.mlp.dense_4h_to_h", "blk.{N}.ffn_down"},
    {"gpt_neox.final_layer_norm", "output_norm"},
    {"embed_out", "output"}},
   {".attention.bias", ".attention.masked_bias", "rotary_emb.inv_freq"}},

  {ArchFamily::kBert, "bert", {"bert"}, {"BertModel", "BertForMaskedLM"}, "bert.",
   {{"bert.embeddings.word_embeddings", "token_embd"},
    {"bert.embeddings.position_embeddings", "position_embd"},
    {"bert.embeddings.token_type_embeddings", "token_types"},
    {"bert.embeddings.LayerNorm", "token_embd_norm"},
    {"bert.encoder.layer.{N}.attention.self.query", "blk.{N}.attn_q"},
    {"bert.encoder.layer.{N}.attention.self.key", "blk.{N}.attn_k"},
    {"bert.encoder.layer.{N}.attention.self.value", "blk.{N}.attn_v"},
    {"bert.encoder.layer.{N}.attention.output.dense", "blk.{N}.attn_output"},
    {"bert.encoder.layer.{N}.attention.output.LayerNorm", "blk.{N}.attn_output_norm"},
    {"bert.encoder.layer.{N}.intermediate.dense", "blk.{N}.ffn_up"},
    {"bert.encoder.layer.{N}.output.dense", "blk.{N}.ffn_down"},
    {"bert.encoder.layer.{N}.output.LayerNorm", "blk.{N}.layer_output_norm"}},
   {"embeddings.position_ids", "pooler.", "cls."}},

  {ArchFamily::kT5, "t5", {"t5"}, {"T5ForConditionalGeneration"}, nullptr,
   {{"shared", "token_embd"},
    {"encoder.block.{N}.layer.0.SelfAttention.q", "enc.blk.{N}.attn_q"},
    {"encoder.block.{N}.layer.0.SelfAttention.k", "enc.blk.{N}.attn_k"},
    {"encoder.block.{N}.layer.0.SelfAttention.v", "enc.blk.{N}.attn_v"},
    {"encoder.block.{N}.layer.0.SelfAttention.o", "enc.blk.{N}.attn_o"},
    {"encoder.block.{N}.layer.0.SelfAttention.relative_attention_bias", "enc.blk.{N}.attn_rel_b"},
    {"encoder.block.{N}.layer.0.layer_norm", "enc.blk.{N}.attn_norm"},
    {"encoder.block.{N}.layer.1.DenseReluDense.wi", "enc.blk.{N}.ffn_up", T::kNone, 0},
    {"encoder.block.{N}.layer.1.DenseReluDense.wi_0", "enc.blk.{N}.ffn_gate"},
    {"encoder.block.{N}.layer.1.DenseReluDense.wi_1", "enc.blk.{N}.ffn_up", T::kNone, 1},
    {"encoder.block.{N}.layer.1.DenseReluDense.wo", "enc.blk.{N}.ffn_down"},
    {"encoder.block.{N}.layer.1.layer_norm", "enc.blk.{N}.ffn_norm"},
    {"encoder.final_layer_norm", "enc.output_norm"},
    {"decoder.block.{N}.layer.0.SelfAttention.q", "dec.blk.{N}.attn_q"},
    {"decoder.block.{N}.layer.0.SelfAttention.k", "dec.blk.{N}.attn_k"},
    {"decoder.block.{N}.layer.0.SelfAttention.v", "dec.blk.{N}.attn_v"},
    {"decoder.block.{N}.layer.0.SelfAttention.o", "dec.blk.{N}.attn_o"},
    {"decoder.block.{N}.layer.0.SelfAttention.relative_attention_bias", "dec.blk.{N}.attn_rel_b"},
    {"decoder.block.{N}.layer.0.layer_norm", "dec.blk.{N}.attn_norm"},
    {"decoder.block.{N}.layer.1.EncDecAttention.q", "dec.blk.{N}.cross_attn_q"},
    {"decoder.block.{N}.layer.1.EncDecAttention.k", "dec.blk.{N}.cross_attn_k"},
    {"decoder.block.{N}.layer.1.EncDecAttention.v", "dec.blk.{N}.cross_attn_v"},
    {"decoder.block.{N}.layer.1.EncDecAttention.o", "dec.blk.{N}.cross_attn_o"},
    {"decoder.block.{N}.layer.1.layer_norm", "dec.blk.{N}.cross_attn_norm"},
    {"decoder.block.{N}.layer.2.DenseReluDense.wi", "dec.blk.{N}.ffn_up", T::kNone, 0},
    {"decoder.block.{N}.layer.2.DenseReluDense.wi_0", "dec.blk.{N}.ffn_gate"},
    {"decoder.block.{N}.layer.2.DenseReluDense.wi_1", "dec.blk.{N}.ffn_up", T::kNone, 1},
    {"decoder.block.{N}.layer.2.DenseReluDense.wo", "dec.blk.{N}.ffn_down"},
    {"decoder.block.{N}.layer.2.layer_norm", "dec.blk.{N}.ffn_norm"},
    {"decoder.final_layer_norm", "dec.output_norm"},
    {"lm_head", "output"}},
   {"encoder.embed_tokens.", "decoder.embed_tokens."}},
};
// clang-format on

// Matches `name` against `pat`, where {N} and {E} each match one or more digits. The digits
// captured are stored in caps[0] ({N}) and caps[1] ({E}).
bool match(std::string_view pat, std::string_view name, std::string caps[2]) {
  size_t i = 0, j = 0;
  while (i < pat.size()) {
    if (pat.compare(i, 3, "{N}") == 0 || pat.compare(i, 3, "{E}") == 0) {
      size_t start = j;
      while (j < name.size() && name[j] >= '0' && name[j] <= '9' && j - start < 6) ++j;
      if (j == start || (j - start > 1 && name[start] == '0')) return false;  // no leading zeros: one spelling per index
      caps[pat[i + 1] == 'N' ? 0 : 1] = std::string(name.substr(start, j - start));
      i += 3;
      continue;
    }
    if (j >= name.size() || pat[i] != name[j]) return false;
    ++i;
    ++j;
  }
  return j == name.size();
}

std::string fill(std::string_view pat, const std::string caps[2]) {
  std::string out;
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat.compare(i, 3, "{N}") == 0) { out += caps[0]; i += 2; }
    else if (pat.compare(i, 3, "{E}") == 0) { out += caps[1]; i += 2; }
    else out += pat[i];
  }
  return out;
}

// Splits "x.weight" into ("x", ".weight"); only .weight and .bias are mapped.
bool split_suffix(const std::string& name, std::string_view* base, std::string_view* suffix) {
  for (std::string_view s : {std::string_view(".weight"), std::string_view(".bias")}) {
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      *base = std::string_view(name).substr(0, name.size() - s.size());
      *suffix = s;
      return true;
    }
  }
  return false;
}

}  // namespace

const char* transform_name(Transform t) {
  switch (t) {
    case Transform::kNone: return "none";
    case Transform::kRopePermuteQ: return "rope_permute_q";
    case Transform::kRopePermuteK: return "rope_permute_k";
    case Transform::kQkvHeadsToBlocks: return "qkv_heads_to_blocks";
    case Transform::kTranspose: return "transpose";
    case Transform::kNormPlusOne: return "norm_plus_one";
  }
  return "?";
}

const std::vector<ArchInfo>& arch_table() { return kArchTable; }

const ArchInfo& arch_info(ArchFamily f) {
  for (const auto& a : kArchTable)
    if (a.family == f) return a;
  LLMKIT_ASSERT(false, "family ", static_cast<int>(f), " missing from the architecture table");
  return kArchTable[0];
}

const ArchInfo* arch_from_hf(const std::string& model_type, const std::vector<std::string>& architectures) {
  for (const auto& a : kArchTable)
    for (const char* t : a.hf_model_types)
      if (model_type == t) return &a;
  for (const auto& a : kArchTable)
    for (const char* name : a.hf_architectures)
      for (const auto& want : architectures)
        if (want == name) return &a;
  return nullptr;
}

const ArchInfo* arch_from_gguf(const std::string& general_architecture) {
  for (const auto& a : kArchTable)
    if (general_architecture == a.gguf_arch) return &a;
  return nullptr;
}

std::optional<MappedName> hf_to_gguf_name(const ArchInfo& a, const std::string& hf_name) {
  std::string_view base, suffix;
  if (!split_suffix(hf_name, &base, &suffix)) return std::nullopt;
  std::string caps[2];
  std::string with_prefix;
  if (a.hf_optional_prefix && base.rfind(a.hf_optional_prefix, 0) != 0) with_prefix = std::string(a.hf_optional_prefix) + std::string(base);
  for (const auto& e : a.tensors) {
    if (match(e.hf, base, caps) || (!with_prefix.empty() && match(e.hf, with_prefix, caps)))
      return MappedName{fill(e.gguf, caps) + std::string(suffix), e.transform};
  }
  return std::nullopt;
}

std::optional<MappedName> gguf_to_hf_name(const ArchInfo& a, const std::string& gguf_name, bool gated_mlp) {
  std::string_view base, suffix;
  if (!split_suffix(gguf_name, &base, &suffix)) return std::nullopt;
  std::string caps[2];
  for (const auto& e : a.tensors) {
    if (e.when_gated >= 0 && (e.when_gated == 1) != gated_mlp) continue;
    if (match(e.gguf, base, caps)) return MappedName{fill(e.hf, caps) + std::string(suffix), e.transform};
  }
  return std::nullopt;
}

bool hf_is_skipped(const ArchInfo& a, const std::string& hf_name) {
  for (const char* s : a.hf_skip)
    if (hf_name.find(s) != std::string::npos) return true;
  return false;
}

}  // namespace llmkit::models
