// ModelConfig <-> GGUF metadata: the "<arch>.*" hyper-parameter keys of llama.cpp
// (gguf-py constants.py, "Keys.LLM / Keys.Attention / Keys.Rope"). Structural flags that GGUF
// does not state come from the family's defaults (family_defaults); what llama.cpp has no key for
// (llama3 / NTK rope scaling parameters, the OPT position offset) is written under "llmkit.*".
#include <cmath>
#include <limits>

#include "llmkit/base/check.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/model_config.h"

namespace llmkit::models {
namespace {

// double -> float without undefined behaviour: out-of-range values become +-inf, which validate()
// then rejects with the field's name (a plain cast of 1e300 to float is UB).
float narrow(double d) {
  if (d > 3.4028234663852886e38) return std::numeric_limits<float>::infinity();
  if (d < -3.4028234663852886e38) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

using io::GgufFile;
using io::GgufValue;

[[noreturn]] void bad_key(const GgufFile& f, const std::string& key, const std::string& why) {
  throw Error(ErrorCode::kInvalidFile, str_cat("invalid GGUF '", f.name(), "': metadata \"", key, "\" ", why),
              "the file is corrupt or was written by an incompatible converter; convert the model again");
}

int64_t get_i(const GgufFile& f, const std::string& key, std::optional<int64_t> def = std::nullopt) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (!def) bad_key(f, key, "is missing");
    return *def;
  }
  if (v->type == io::GgufType::kArray) {
    // Per-layer values (some converters write arrays): accept only if every layer agrees.
    if (v->arr.empty()) bad_key(f, key, "is an empty array");
    auto first = v->arr[0].as_int();
    for (const auto& e : v->arr)
      if (!first || e.as_int() != first)
        throw Error(ErrorCode::kUnsupported, str_cat("GGUF '", f.name(), "': per-layer \"", key, "\" values differ; llmkit needs one value"));
    return *first;
  }
  auto x = v->as_int();
  if (!x) bad_key(f, key, str_cat("must be an integer, not ", gguf_type_name(v->type)));
  if (*x > (int64_t{1} << 40) || *x < -(int64_t{1} << 40)) bad_key(f, key, str_cat("= ", *x, " is out of range"));
  return *x;
}

double get_f(const GgufFile& f, const std::string& key, double def) {
  const GgufValue* v = f.find(key);
  if (!v) return def;
  auto x = v->as_number();
  if (!x) bad_key(f, key, str_cat("must be a number, not ", gguf_type_name(v->type)));
  return *x;
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  auto arch_name = f.get_string("general.architecture");
  if (!arch_name)
    throw Error(ErrorCode::kInvalidFile, str_cat("GGUF '", f.name(), "' has no general.architecture string"),
                "convert the model again with a current converter");
  const ArchInfo* info = arch_from_gguf(*arch_name);
  if (!info)
    throw Error(ErrorCode::kUnsupported, str_cat("GGUF '", f.name(), "' architecture \"", *arch_name, "\" is not one llmkit runs"),
                "supported: llama, qwen2, gemma, phi3, gpt2, opt, bloom, gptneox, bert, t5");
  ModelConfig c = family_defaults(info->family);
  const std::string p = std::string(info->gguf_arch) + ".";
  c.n_layers = get_i(f, p + "block_count");
  if (c.family == ArchFamily::kT5) c.n_encoder_layers = get_i(f, p + "encoder.block_count", c.n_layers);
  c.d_model = get_i(f, p + "embedding_length");
  c.n_heads = get_i(f, p + "attention.head_count");
  c.n_kv_heads = get_i(f, p + "attention.head_count_kv", c.n_heads);
  c.head_dim = get_i(f, p + "attention.key_length", c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.d_ff = get_i(f, p + "feed_forward_length");
  c.n_ctx = get_i(f, p + "context_length", 2048);
  // The vocabulary size: the key if present, else the token list, else the embedding rows.
  if (f.find(p + "vocab_size")) c.n_vocab = get_i(f, p + "vocab_size");
  else if (const GgufValue* toks = f.find("tokenizer.ggml.tokens"); toks && toks->type == io::GgufType::kArray)
    c.n_vocab = static_cast<int64_t>(toks->arr.size());
  else if (const auto* emb = f.find_tensor("token_embd.weight"); emb && emb->shape.rank() == 2)
    c.n_vocab = emb->shape[0];
  const std::string eps_key = c.norm == NormKind::kRmsNorm ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";
  c.norm_eps = narrow(get_f(f, p + eps_key, c.norm_eps));
  c.rope_theta = narrow(get_f(f, p + "rope.freq_base", c.rope_theta));
  if (c.position == PositionKind::kRopeNeox || c.position == PositionKind::kRopeGptj) {
    int64_t dims = get_i(f, p + "rope.dimension_count", static_cast<int64_t>(std::lround(c.head_dim * c.partial_rotary)));
    if (c.head_dim > 0) c.partial_rotary = static_cast<float>(dims) / static_cast<float>(c.head_dim);
  }
  if (auto t = f.get_string(p + "rope.scaling.type")) {
    if (*t == "linear") c.rope_scaling.kind = RopeScalingKind::kLinear;
    else if (*t == "yarn") c.rope_scaling.kind = RopeScalingKind::kYarn;
    else if (*t != "none") throw Error(ErrorCode::kUnsupported, str_cat("GGUF rope.scaling.type \"", *t, "\" is not supported"));
  }
  if (auto t = f.get_string("llmkit.rope.scaling.type")) {
    if (*t == "llama3") c.rope_scaling.kind = RopeScalingKind::kLlama3;
    else if (*t == "dynamic") c.rope_scaling.kind = RopeScalingKind::kNtk;
  }
  if (c.rope_scaling.kind != RopeScalingKind::kNone) {
    // Llama-3 / dynamic-NTK parameters live under llmkit.* (llama.cpp would read an arch-prefixed
    // factor without a type as linear scaling); files from before that rule used the arch keys.
    const bool own = c.rope_scaling.kind == RopeScalingKind::kLlama3 || c.rope_scaling.kind == RopeScalingKind::kNtk;
    const std::string sp = own && f.find("llmkit.rope.scaling.factor") ? "llmkit." : p;
    c.rope_scaling.factor = narrow(get_f(f, sp + "rope.scaling.factor", 1.0));
    c.rope_scaling.original_n_ctx = get_i(f, sp + "rope.scaling.original_context_length", 0);
    c.rope_scaling.low_freq_factor = narrow(get_f(f, "llmkit.rope.scaling.low_freq_factor", 1.0));
    c.rope_scaling.high_freq_factor = narrow(get_f(f, "llmkit.rope.scaling.high_freq_factor", 4.0));
    c.rope_scaling.beta_fast = narrow(get_f(f, p + "rope.scaling.yarn_beta_fast", 32.0));
    c.rope_scaling.beta_slow = narrow(get_f(f, p + "rope.scaling.yarn_beta_slow", 1.0));
  }
  c.sliding_window = get_i(f, p + "attention.sliding_window", 0);
  c.n_experts = get_i(f, p + "expert_count", 0);
  c.n_experts_used = get_i(f, p + "expert_used_count", 0);
  if (c.family == ArchFamily::kLlama && c.n_experts > 0) c.hf_model_type = "mixtral", c.hf_architecture = "MixtralForCausalLM";
  else if (c.family == ArchFamily::kLlama && c.sliding_window > 0) c.hf_model_type = "mistral", c.hf_architecture = "MistralForCausalLM";
  if (c.position == PositionKind::kRelativeBias) c.n_rel_buckets = get_i(f, p + "attention.relative_buckets_count", c.n_rel_buckets);
  c.position_offset = get_i(f, "llmkit.position_offset", c.position_offset);
  // Tensors decide what metadata cannot: a separate output matrix means untied embeddings; q/k/v
  // biases present means the attention has biases (Qwen2-like LLaMA variants).
  if (c.decoder && c.family != ArchFamily::kBert) c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  if (c.family == ArchFamily::kLlama) {
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.o_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
    c.mlp_bias = f.find_tensor("blk.0.ffn_up.bias") != nullptr;
  }
  if (c.family == ArchFamily::kT5) c.gated_mlp = f.find_tensor("enc.blk.0.ffn_gate.weight") != nullptr;
  if (c.family == ArchFamily::kT5 && c.gated_mlp) c.act = Activation::kGeluTanh;
  if (c.family == ArchFamily::kGemma) c.embedding_scale = std::sqrt(static_cast<float>(c.d_model));
  auto token_id = [&](const char* key) {
    auto v = f.get_int(key);
    return v ? *v : -1;
  };
  if (c.family != ArchFamily::kT5) c.bos_token_id = token_id("tokenizer.ggml.bos_token_id");
  c.eos_token_id = token_id("tokenizer.ggml.eos_token_id");
  c.pad_token_id = token_id("tokenizer.ggml.padding_token_id");
  c.validate();
  c.check_tensor_shapes([&](const std::string& name) -> std::optional<Shape> {
    const auto* ti = f.find_tensor(name);
    return ti ? std::optional<Shape>(ti->shape) : std::nullopt;
  });
  return c;
}

void ModelConfig::to_gguf(io::GgufWriter& w) const {
  const ArchInfo& info = arch_info(family);
  const std::string p = std::string(info.gguf_arch) + ".";
  auto u32 = [&](const std::string& k, int64_t v) { w.set(p + k, GgufValue::from_u32(static_cast<uint32_t>(v))); };
  auto f32 = [&](const std::string& k, float v) { w.set(p + k, GgufValue::from_f32(v)); };
  w.set("general.architecture", GgufValue::from_string(info.gguf_arch));
  u32("context_length", n_ctx);
  u32("embedding_length", d_model);
  u32("block_count", n_layers);
  if (family == ArchFamily::kT5) u32("encoder.block_count", n_encoder_layers);
  u32("feed_forward_length", d_ff);
  u32("attention.head_count", n_heads);
  u32("attention.head_count_kv", n_kv_heads);
  u32("vocab_size", n_vocab);
  if (head_dim * n_heads != d_model || family == ArchFamily::kT5) {
    u32("attention.key_length", head_dim);
    u32("attention.value_length", head_dim);
  }
  f32(norm == NormKind::kRmsNorm ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon", norm_eps);
  if (position == PositionKind::kRopeNeox || position == PositionKind::kRopeGptj) {
    f32("rope.freq_base", rope_theta);
    u32("rope.dimension_count", std::lround(head_dim * partial_rotary));
  }
  switch (rope_scaling.kind) {
    case RopeScalingKind::kNone: break;
    case RopeScalingKind::kLinear: w.set(p + "rope.scaling.type", GgufValue::from_string("linear")); break;
    case RopeScalingKind::kYarn:
      w.set(p + "rope.scaling.type", GgufValue::from_string("yarn"));
      f32("rope.scaling.yarn_beta_fast", rope_scaling.beta_fast);
      f32("rope.scaling.yarn_beta_slow", rope_scaling.beta_slow);
      break;
    case RopeScalingKind::kNtk: case RopeScalingKind::kLlama3:
      // llama.cpp has no key for these: it bakes Llama-3 scaling into a rope_freqs tensor (writers
      // add it: rope_freq_factors()) and reads an arch-prefixed rope.scaling.factor without a type as
      // *linear* scaling, so every parameter goes under llmkit.* where llama.cpp does not look.
      w.set("llmkit.rope.scaling.type", GgufValue::from_string(rope_scaling_name(rope_scaling.kind)));
      w.set("llmkit.rope.scaling.low_freq_factor", GgufValue::from_f32(rope_scaling.low_freq_factor));
      w.set("llmkit.rope.scaling.high_freq_factor", GgufValue::from_f32(rope_scaling.high_freq_factor));
      w.set("llmkit.rope.scaling.factor", GgufValue::from_f32(rope_scaling.factor));
      if (rope_scaling.original_n_ctx)
        w.set("llmkit.rope.scaling.original_context_length", GgufValue::from_u32(static_cast<uint32_t>(rope_scaling.original_n_ctx)));
      break;
  }
  if (rope_scaling.kind == RopeScalingKind::kLinear || rope_scaling.kind == RopeScalingKind::kYarn) {
    f32("rope.scaling.factor", rope_scaling.factor);
    if (rope_scaling.original_n_ctx) u32("rope.scaling.original_context_length", rope_scaling.original_n_ctx);
  }
  if (sliding_window > 0) u32("attention.sliding_window", sliding_window);
  if (n_experts > 0) {
    u32("expert_count", n_experts);
    u32("expert_used_count", n_experts_used);
  }
  if (position == PositionKind::kRelativeBias) u32("attention.relative_buckets_count", n_rel_buckets);
  if (family == ArchFamily::kBert) w.set(p + "attention.causal", GgufValue::from_bool(false));
  if (position_offset != 0) w.set("llmkit.position_offset", GgufValue::from_u32(static_cast<uint32_t>(position_offset)));
  if (bos_token_id >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::from_u32(static_cast<uint32_t>(bos_token_id)));
  if (eos_token_id >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::from_u32(static_cast<uint32_t>(eos_token_id)));
  if (pad_token_id >= 0) w.set("tokenizer.ggml.padding_token_id", GgufValue::from_u32(static_cast<uint32_t>(pad_token_id)));
}

}  // namespace llmkit::models
