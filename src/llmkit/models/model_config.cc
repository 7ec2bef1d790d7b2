// ModelConfig: enum names, per-family structural defaults, range validation and the check of a
// config against the tensors actually present. The readers and writers of config.json and GGUF
// metadata are in model_config_hf.cc and model_config_gguf.cc.
#include "llmkit/models/model_config.h"

#include <cmath>

#include "llmkit/base/check.h"

namespace llmkit::models {

const char* family_name(ArchFamily f) {
  switch (f) {
    case ArchFamily::kLlama: return "llama";
    case ArchFamily::kQwen2: return "qwen2";
    case ArchFamily::kGemma: return "gemma";
    case ArchFamily::kPhi3: return "phi3";
    case ArchFamily::kGpt2: return "gpt2";
    case ArchFamily::kOpt: return "opt";
    case ArchFamily::kBloom: return "bloom";
    case ArchFamily::kGptNeoX: return "gptneox";
    case ArchFamily::kBert: return "bert";
    case ArchFamily::kT5: return "t5";
  }
  return "?";
}
const char* norm_kind_name(NormKind k) { return k == NormKind::kRmsNorm ? "rmsnorm" : "layernorm"; }
const char* position_kind_name(PositionKind k) {
  switch (k) {
    case PositionKind::kRopeNeox: return "rope_neox";
    case PositionKind::kRopeGptj: return "rope_gptj";
    case PositionKind::kAlibi: return "alibi";
    case PositionKind::kLearned: return "learned";
    case PositionKind::kRelativeBias: return "relative_bias";
  }
  return "?";
}
const char* rope_scaling_name(RopeScalingKind k) {
  switch (k) {
    case RopeScalingKind::kNone: return "none";
    case RopeScalingKind::kLinear: return "linear";
    case RopeScalingKind::kNtk: return "dynamic";
    case RopeScalingKind::kYarn: return "yarn";
    case RopeScalingKind::kLlama3: return "llama3";
  }
  return "?";
}
const char* activation_name(Activation a) {
  switch (a) {
    case Activation::kSilu: return "silu";
    case Activation::kGelu: return "gelu";
    case Activation::kGeluTanh: return "gelu_tanh";
    case Activation::kRelu: return "relu";
  }
  return "?";
}

ModelConfig family_defaults(ArchFamily f) {
  ModelConfig c;
  c.family = f;
  switch (f) {
    case ArchFamily::kLlama:
      c.hf_model_type = "llama", c.hf_architecture = "LlamaForCausalLM";
      break;
    case ArchFamily::kQwen2:
      c.hf_model_type = "qwen2", c.hf_architecture = "Qwen2ForCausalLM";
      c.qkv_bias = true, c.norm_eps = 1e-6f;
      break;
    case ArchFamily::kGemma:
      c.hf_model_type = "gemma", c.hf_architecture = "GemmaForCausalLM";
      c.act = Activation::kGeluTanh, c.norm_weight_offset = 1.0f, c.tied_embeddings = true, c.norm_eps = 1e-6f;
      break;
    case ArchFamily::kPhi3:
      c.hf_model_type = "phi3", c.hf_architecture = "Phi3ForCausalLM";
      break;
    case ArchFamily::kGpt2:
      c.hf_model_type = "gpt2", c.hf_architecture = "GPT2LMHeadModel";
      c.norm = NormKind::kLayerNorm, c.norm_bias = true, c.position = PositionKind::kLearned;
      c.act = Activation::kGeluTanh, c.gated_mlp = false, c.qkv_bias = c.o_bias = c.mlp_bias = true;
      c.tied_embeddings = true;
      break;
    case ArchFamily::kOpt:
      c.hf_model_type = "opt", c.hf_architecture = "OPTForCausalLM";
      c.norm = NormKind::kLayerNorm, c.norm_bias = true, c.position = PositionKind::kLearned, c.position_offset = 2;
      c.act = Activation::kRelu, c.gated_mlp = false, c.qkv_bias = c.o_bias = c.mlp_bias = true;
      c.tied_embeddings = true;
      break;
    case ArchFamily::kBloom:
      c.hf_model_type = "bloom", c.hf_architecture = "BloomForCausalLM";
      c.norm = NormKind::kLayerNorm, c.norm_bias = true, c.position = PositionKind::kAlibi;
      c.act = Activation::kGeluTanh, c.gated_mlp = false, c.qkv_bias = c.o_bias = c.mlp_bias = true;
      c.tied_embeddings = true, c.embedding_norm = true;
      break;
    case ArchFamily::kGptNeoX:
      c.hf_model_type = "gpt_neox", c.hf_architecture = "GPTNeoXForCausalLM";
      c.norm = NormKind::kLayerNorm, c.norm_bias = true, c.partial_rotary = 0.25f, c.parallel_residual = true;
      c.act = Activation::kGelu, c.gated_mlp = false, c.qkv_bias = c.o_bias = c.mlp_bias = true;
      break;
    case ArchFamily::kBert:
      c.hf_model_type = "bert", c.hf_architecture = "BertModel";
      c.norm = NormKind::kLayerNorm, c.norm_bias = true, c.norm_eps = 1e-12f, c.post_norm = true;
      c.position = PositionKind::kLearned, c.act = Activation::kGelu, c.gated_mlp = false;
      c.qkv_bias = c.o_bias = c.mlp_bias = true, c.embedding_norm = true, c.n_token_types = 2;
      c.encoder = true, c.decoder = false;
      break;
    case ArchFamily::kT5:
      c.hf_model_type = "t5", c.hf_architecture = "T5ForConditionalGeneration";
      c.norm_eps = 1e-6f, c.position = PositionKind::kRelativeBias, c.n_rel_buckets = 32, c.rel_max_distance = 128;
      c.act = Activation::kRelu, c.gated_mlp = false, c.tied_embeddings = true, c.encoder = true;
      break;
  }
  return c;
}

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, "invalid model config: " + what,
              "the config.json or GGUF metadata is corrupt or inconsistent with the model; re-download or re-convert it");
}

void range(const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) bad(str_cat(field, " = ", v, " is out of range [", lo, ", ", hi, "]"));
}

bool is_rope(PositionKind p) { return p == PositionKind::kRopeNeox || p == PositionKind::kRopeGptj; }

}  // namespace

void ModelConfig::validate() const {
  range("n_layers", n_layers, 1, 1024);
  if (family == ArchFamily::kT5) range("n_encoder_layers", n_encoder_layers, 1, 1024);
  else range("n_encoder_layers", n_encoder_layers, 0, 0);
  range("d_model", d_model, 1, int64_t{1} << 20);
  range("n_heads", n_heads, 1, 4096);
  range("n_kv_heads", n_kv_heads, 1, 4096);
  if (n_kv_heads > n_heads) bad(str_cat("n_kv_heads ", n_kv_heads, " is larger than n_heads ", n_heads));
  if (n_heads % n_kv_heads != 0) bad(str_cat("n_heads ", n_heads, " is not divisible by n_kv_heads ", n_kv_heads));
  const bool gqa_family = family == ArchFamily::kLlama || family == ArchFamily::kQwen2 ||
                          family == ArchFamily::kGemma || family == ArchFamily::kPhi3;
  if (!gqa_family && n_kv_heads != n_heads)
    bad(str_cat("n_kv_heads ", n_kv_heads, " != n_heads ", n_heads, ", but ", family_name(family), " has no grouped-query attention"));
  range("head_dim", head_dim, 1, 4096);
  // Families whose config.json cannot state head_dim derive it as d_model / n_heads.
  if (!gqa_family && family != ArchFamily::kT5 && head_dim * n_heads != d_model)
    bad(str_cat("head_dim ", head_dim, " x n_heads ", n_heads, " != d_model ", d_model));
  range("d_ff", d_ff, 1, int64_t{1} << 22);
  range("n_vocab", n_vocab, 1, int64_t{1} << 24);
  range("n_ctx", n_ctx, 1, int64_t{1} << 24);
  if (!(norm_eps > 0.0f && norm_eps < 1.0f)) bad(str_cat("norm_eps ", norm_eps, " is not in (0, 1)"));
  if (!std::isfinite(embedding_scale) || embedding_scale <= 0.0f) bad(str_cat("embedding_scale ", embedding_scale, " is not positive"));
  if (is_rope(position)) {
    if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) bad(str_cat("rope_theta ", rope_theta, " is not a positive number"));
    if (!(partial_rotary > 0.0f && partial_rotary <= 1.0f)) bad(str_cat("partial_rotary ", partial_rotary, " is not in (0, 1]"));
    const double dims = head_dim * static_cast<double>(partial_rotary);
    if (std::fabs(dims - std::round(dims)) > 1e-3 || static_cast<int64_t>(std::round(dims)) % 2 != 0)
      bad(str_cat("partial_rotary ", partial_rotary, " x head_dim ", head_dim, " is not an even number of rotary dimensions"));
  }
  if (rope_scaling.kind != RopeScalingKind::kNone) {
    if (!(rope_scaling.factor > 0.0f) || !std::isfinite(rope_scaling.factor))
      bad(str_cat("rope_scaling.factor ", rope_scaling.factor, " is not a positive number"));
    range("rope_scaling.original_n_ctx", rope_scaling.original_n_ctx, 0, int64_t{1} << 24);
  }
  if (position == PositionKind::kRelativeBias) {
    range("n_rel_buckets", n_rel_buckets, 1, 4096);
    range("rel_max_distance", rel_max_distance, 1, int64_t{1} << 24);
  }
  range("position_offset", position_offset, 0, 1024);
  range("sliding_window", sliding_window, 0, int64_t{1} << 24);
  range("n_experts", n_experts, 0, 1024);
  if (n_experts > 0) range("n_experts_used", n_experts_used, 1, n_experts);
  else range("n_experts_used", n_experts_used, 0, 0);
  range("n_token_types", n_token_types, 0, 1024);
  for (auto [name, id] : {std::pair{"bos_token_id", bos_token_id}, {"eos_token_id", eos_token_id}, {"pad_token_id", pad_token_id}})
    if (id < -1 || id >= n_vocab) bad(str_cat(name, " ", id, " is outside the vocabulary of ", n_vocab, " tokens"));
}

void ModelConfig::check_tensor_shapes(const std::function<std::optional<Shape>(const std::string&)>& shape_of) const {
  auto expect = [&](const std::string& name, const Shape& want, bool required) {
    auto got = shape_of(name);
    if (!got) {
      if (required) bad(str_cat("tensor '", name, "' is missing (config: ", family_name(family), ", n_layers ", n_layers, ")"));
      return;
    }
    if (*got != want)
      throw Error(ErrorCode::kInvalidFile,
                  str_cat("tensor '", name, "' has shape ", got->str(), " but the config implies ", want.str()),
                  "config.json / GGUF metadata does not match the weights; use the config that came with them");
  };
  const int64_t q = n_heads * head_dim, kv = n_kv_heads * head_dim;
  expect("token_embd.weight", Shape{n_vocab, d_model}, true);
  if (!tied_embeddings && decoder) expect("output.weight", Shape{n_vocab, d_model}, true);

  // Layer count: every layer present, none beyond the config's count.
  struct Stack { const char* prefix; int64_t n; };
  std::vector<Stack> stacks;
  if (family == ArchFamily::kT5) stacks = {{"enc.blk.", n_encoder_layers}, {"dec.blk.", n_layers}};
  else stacks = {{"blk.", n_layers}};
  const char* marker = family == ArchFamily::kBert ? ".attn_output_norm.weight" : ".attn_norm.weight";
  for (const auto& s : stacks) {
    for (int64_t i = 0; i < s.n; ++i) {
      if (!shape_of(str_cat(s.prefix, i, marker)))
        bad(str_cat("n_layers is ", s.n, " but the weights have no layer ", i, " (tensor '", s.prefix, i, marker, "' is missing)"));
    }
    if (shape_of(str_cat(s.prefix, s.n, marker)))
      bad(str_cat("the weights have a layer ", s.n, " but n_layers is ", s.n, " (tensor '", s.prefix, s.n, marker, "')"));
  }
  for (const auto& s : stacks) {
    for (int64_t i = 0; i < s.n; ++i) {
      const std::string b = str_cat(s.prefix, i, ".");
      if (family == ArchFamily::kT5) {
        expect(b + "attn_q.weight", Shape{q, d_model}, true);
        expect(b + "attn_o.weight", Shape{d_model, q}, true);
        expect(b + "ffn_down.weight", Shape{d_model, d_ff}, true);
        continue;
      }
      if (family == ArchFamily::kPhi3 || family == ArchFamily::kGpt2 || family == ArchFamily::kBloom ||
          family == ArchFamily::kGptNeoX) {
        expect(b + "attn_qkv.weight", Shape{q + 2 * kv, d_model}, true);
      } else {
        expect(b + "attn_q.weight", Shape{q, d_model}, true);
        expect(b + "attn_k.weight", Shape{kv, d_model}, true);
        expect(b + "attn_v.weight", Shape{kv, d_model}, true);
      }
      expect(b + "attn_output.weight", Shape{d_model, q}, true);
      if (n_experts > 0) {
        expect(b + "ffn_gate_inp.weight", Shape{n_experts, d_model}, true);
        continue;
      }
      expect(b + "ffn_up.weight", Shape{family == ArchFamily::kPhi3 ? 2 * d_ff : d_ff, d_model}, true);
      if (gated_mlp && family != ArchFamily::kPhi3) expect(b + "ffn_gate.weight", Shape{d_ff, d_model}, true);
      expect(b + "ffn_down.weight", Shape{d_model, d_ff}, true);
    }
  }
}

std::vector<float> ModelConfig::rope_freq_factors() const {
  std::vector<float> out;
  if (rope_scaling.kind != RopeScalingKind::kLlama3) return out;
  const int64_t rot = static_cast<int64_t>(std::lround(head_dim * partial_rotary));
  const double pi = 3.14159265358979323846;
  const double low_wavelen = static_cast<double>(rope_scaling.original_n_ctx) / rope_scaling.low_freq_factor;
  const double high_wavelen = static_cast<double>(rope_scaling.original_n_ctx) / rope_scaling.high_freq_factor;
  for (int64_t i = 0; i < rot / 2; ++i) {
    const double freq = std::pow(static_cast<double>(rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(rot));
    const double wavelen = 2 * pi / freq;
    double f = 1.0;
    if (wavelen > low_wavelen) {
      f = rope_scaling.factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth = (static_cast<double>(rope_scaling.original_n_ctx) / wavelen - rope_scaling.low_freq_factor) /
                            (rope_scaling.high_freq_factor - rope_scaling.low_freq_factor);
      f = 1.0 / ((1.0 - smooth) / rope_scaling.factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

}  // namespace llmkit::models
