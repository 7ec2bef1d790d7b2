// ModelConfig <-> Hugging Face config.json, one block per family. Keys and defaults follow the
// transformers configuration classes (LlamaConfig, GPT2Config, ...): a key that is absent takes
// the transformers default, a key of the wrong JSON type is an error naming the key.
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

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

using Json = nlohmann::json;

[[noreturn]] void bad_key(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::kInvalidFile, str_cat("invalid config.json: \"", key, "\" ", why),
              "fix config.json, or use the one published with the model");
}

// Typed, checked access to config.json keys.
struct Cfg {
  const Json& j;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t i(const char* k, std::optional<int64_t> def = std::nullopt) const {
    if (!has(k)) {
      if (!def) bad_key(k, "is missing");
      return *def;
    }
    const Json& v = j[k];
    if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();  // eos lists (Llama 3.1)
    if (v.is_number_unsigned() && v.get<uint64_t>() > (uint64_t{1} << 40)) bad_key(k, str_cat("= ", v.dump(), " is too large"));
    if (!v.is_number_integer()) bad_key(k, str_cat("must be an integer, not ", v.dump().substr(0, 40)));
    return v.get<int64_t>();
  }
  double f(const char* k, double def) const {
    if (!has(k)) return def;
    if (!j[k].is_number()) bad_key(k, str_cat("must be a number, not ", j[k].dump().substr(0, 40)));
    return j[k].get<double>();
  }
  bool b(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) bad_key(k, str_cat("must be true or false, not ", j[k].dump().substr(0, 40)));
    return j[k].get<bool>();
  }
  std::string s(const char* k, const std::string& def) const {
    if (!has(k)) return def;
    if (!j[k].is_string()) bad_key(k, str_cat("must be a string, not ", j[k].dump().substr(0, 40)));
    return j[k].get<std::string>();
  }
};

Activation activation_from(const std::string& key, const std::string& name) {
  if (name == "silu" || name == "swish") return Activation::kSilu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" || name == "bloom_gelu" ||
      name == "gated-gelu")
    return Activation::kGeluTanh;
  if (name == "relu") return Activation::kRelu;
  throw Error(ErrorCode::kUnsupported, str_cat("config.json \"", key, "\" = \"", name, "\" is an activation llmkit does not have"),
              "supported: silu, gelu, gelu_new / gelu_pytorch_tanh, relu");
}

// The shortest decimal that reads back as the same float, so 1e-5f is written 1e-05 and not
// 9.999999747378752e-06 (nlohmann prints the double it is given in full).
double tidy(float f) {
  char buf[32];
  for (int p = 6; p <= 9; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, static_cast<double>(f));
    double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return f;
}

const char* hf_activation(Activation a) {
  switch (a) {
    case Activation::kSilu: return "silu";
    case Activation::kGelu: return "gelu";
    case Activation::kGeluTanh: return "gelu_pytorch_tanh";
    case Activation::kRelu: return "relu";
  }
  return "silu";
}

// Rope base, fraction and scaling. transformers >= 5 writes them together in "rope_parameters"
// ({"rope_theta", "rope_type", "factor", "partial_rotary_factor", ...}); older configs (most of the
// Hub) use top-level "rope_theta" / family keys and a "rope_scaling" object. Both are read.
void read_rope(const Json& j, ModelConfig& c) {
  const Json* r = nullptr;
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    r = &j["rope_parameters"];
    if (!r->is_object()) bad_key("rope_parameters", "must be an object or null");
    Cfg rp{*r};
    c.rope_theta = narrow(rp.f("rope_theta", c.rope_theta));
    c.partial_rotary = narrow(rp.f("partial_rotary_factor", c.partial_rotary));
  } else if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    r = &j["rope_scaling"];
    if (!r->is_object()) bad_key("rope_scaling", "must be an object or null");
  }
  if (r == nullptr) return;
  Cfg rc{*r};
  std::string type = rc.s("rope_type", rc.s("type", ""));
  if (type == "linear") c.rope_scaling.kind = RopeScalingKind::kLinear;
  else if (type == "dynamic") c.rope_scaling.kind = RopeScalingKind::kNtk;
  else if (type == "yarn") c.rope_scaling.kind = RopeScalingKind::kYarn;
  else if (type == "llama3") c.rope_scaling.kind = RopeScalingKind::kLlama3;
  else if (type == "default" || type.empty()) return;
  else
    throw Error(ErrorCode::kUnsupported, str_cat("config.json rope_scaling type \"", type, "\" is not supported"),
                "supported: linear, dynamic (NTK), yarn, llama3");
  c.rope_scaling.factor = narrow(rc.f("factor", 1.0));
  c.rope_scaling.original_n_ctx = rc.i("original_max_position_embeddings", 0);
  c.rope_scaling.low_freq_factor = narrow(rc.f("low_freq_factor", 1.0));
  c.rope_scaling.high_freq_factor = narrow(rc.f("high_freq_factor", 4.0));
  c.rope_scaling.beta_fast = narrow(rc.f("beta_fast", 32.0));
  c.rope_scaling.beta_slow = narrow(rc.f("beta_slow", 1.0));
}

// LLaMA, Mistral, Mixtral, Qwen2, Gemma, Phi-3: the LlamaConfig family of keys.
void read_llama_like(const Cfg& g, ModelConfig& c) {
  c.d_model = g.i("hidden_size");
  c.n_layers = g.i("num_hidden_layers");
  c.n_heads = g.i("num_attention_heads");
  c.n_kv_heads = g.i("num_key_value_heads", c.n_heads);
  c.head_dim = g.i("head_dim", c.n_heads > 0 ? c.d_model / c.n_heads : 0);
  c.d_ff = g.i("intermediate_size");
  c.n_vocab = g.i("vocab_size");
  c.n_ctx = g.i("max_position_embeddings", 2048);
  c.norm_eps = narrow(g.f("rms_norm_eps", c.norm_eps));
  c.rope_theta = narrow(g.f("rope_theta", 10000.0));
  c.partial_rotary = narrow(g.f("partial_rotary_factor", 1.0));
  c.tied_embeddings = g.b("tie_word_embeddings", c.tied_embeddings);
  if (c.family == ArchFamily::kGemma)
    c.act = activation_from("hidden_activation", g.s("hidden_activation", g.s("hidden_act", "gelu_pytorch_tanh")));
  else c.act = activation_from("hidden_act", g.s("hidden_act", "silu"));
  if (c.family == ArchFamily::kLlama) {
    c.qkv_bias = c.o_bias = g.b("attention_bias", false);
    c.mlp_bias = g.b("mlp_bias", false);
  }
  if (c.family == ArchFamily::kQwen2) {
    if (g.b("use_sliding_window", false)) c.sliding_window = g.i("sliding_window", 0);
  } else {
    c.sliding_window = g.i("sliding_window", 0);
  }
  c.n_experts = g.i("num_local_experts", 0);
  c.n_experts_used = c.n_experts > 0 ? g.i("num_experts_per_tok", 2) : 0;
  if (c.family == ArchFamily::kGemma) c.embedding_scale = std::sqrt(static_cast<float>(c.d_model));
  read_rope(g.j, c);
}

}  // namespace

namespace {
ModelConfig from_hf_config_json_unguarded(const std::string& text) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::kInvalidFile, str_cat("config.json is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) throw Error(ErrorCode::kInvalidFile, "config.json is not a JSON object");
  Cfg g{j};
  std::string model_type = g.s("model_type", "");
  std::vector<std::string> archs;
  if (j.contains("architectures") && j["architectures"].is_array())
    for (const auto& a : j["architectures"])
      if (a.is_string()) archs.push_back(a.get<std::string>());
  const ArchInfo* info = arch_from_hf(model_type, archs);
  if (!info)
    throw Error(ErrorCode::kUnsupported,
                str_cat("config.json model_type \"", model_type, "\" (architectures ", j.value("architectures", Json::array()).dump().substr(0, 80),
                        ") is not an architecture llmkit knows"),
                "supported model_type values: llama, mistral, mixtral, qwen2, gemma, phi3, gpt2, opt, bloom, gpt_neox, bert, t5");
  ModelConfig c = family_defaults(info->family);
  if (!model_type.empty()) c.hf_model_type = model_type;
  if (!archs.empty()) c.hf_architecture = archs[0];

  switch (c.family) {
    case ArchFamily::kLlama: case ArchFamily::kQwen2: case ArchFamily::kGemma: case ArchFamily::kPhi3:
      read_llama_like(g, c);
      break;
    case ArchFamily::kGpt2:
      c.d_model = g.i("n_embd");
      c.n_layers = g.i("n_layer");
      c.n_heads = c.n_kv_heads = g.i("n_head");
      c.d_ff = g.i("n_inner", 4 * c.d_model);
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("n_positions", 1024);
      c.norm_eps = narrow(g.f("layer_norm_epsilon", 1e-5));
      c.act = activation_from("activation_function", g.s("activation_function", "gelu_new"));
      c.tied_embeddings = g.b("tie_word_embeddings", true);
      break;
    case ArchFamily::kOpt:
      c.d_model = g.i("hidden_size");
      c.n_layers = g.i("num_hidden_layers");
      c.n_heads = c.n_kv_heads = g.i("num_attention_heads");
      c.d_ff = g.i("ffn_dim");
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("max_position_embeddings", 2048);
      c.act = activation_from("activation_function", g.s("activation_function", "relu"));
      c.qkv_bias = c.o_bias = c.mlp_bias = g.b("enable_bias", true);
      c.post_norm = !g.b("do_layer_norm_before", true);
      c.tied_embeddings = g.b("tie_word_embeddings", true);
      if (g.i("word_embed_proj_dim", c.d_model) != c.d_model)
        throw Error(ErrorCode::kUnsupported, "OPT with word_embed_proj_dim != hidden_size (project_in/out, e.g. opt-350m) is not supported");
      break;
    case ArchFamily::kBloom:
      c.d_model = g.has("n_embed") ? g.i("n_embed") : g.i("hidden_size");
      c.n_layers = g.i("n_layer");
      c.n_heads = c.n_kv_heads = g.i("n_head");
      c.d_ff = 4 * c.d_model;
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("seq_length", 2048);
      c.norm_eps = narrow(g.f("layer_norm_epsilon", 1e-5));
      c.tied_embeddings = g.b("tie_word_embeddings", true);
      break;
    case ArchFamily::kGptNeoX:
      c.d_model = g.i("hidden_size");
      c.n_layers = g.i("num_hidden_layers");
      c.n_heads = c.n_kv_heads = g.i("num_attention_heads");
      c.d_ff = g.i("intermediate_size");
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("max_position_embeddings", 2048);
      c.norm_eps = narrow(g.f("layer_norm_eps", 1e-5));
      c.partial_rotary = narrow(g.f("rotary_pct", 0.25));
      c.rope_theta = narrow(g.f("rotary_emb_base", 10000.0));
      c.parallel_residual = g.b("use_parallel_residual", true);
      c.act = activation_from("hidden_act", g.s("hidden_act", "gelu"));
      c.qkv_bias = c.o_bias = g.b("attention_bias", true);
      c.tied_embeddings = g.b("tie_word_embeddings", false);
      read_rope(j, c);
      break;
    case ArchFamily::kBert:
      c.d_model = g.i("hidden_size");
      c.n_layers = g.i("num_hidden_layers");
      c.n_heads = c.n_kv_heads = g.i("num_attention_heads");
      c.d_ff = g.i("intermediate_size");
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("max_position_embeddings", 512);
      c.norm_eps = narrow(g.f("layer_norm_eps", 1e-12));
      c.act = activation_from("hidden_act", g.s("hidden_act", "gelu"));
      c.n_token_types = g.i("type_vocab_size", 2);
      c.tied_embeddings = false;
      break;
    case ArchFamily::kT5: {
      c.d_model = g.i("d_model");
      c.n_encoder_layers = g.i("num_layers");
      c.n_layers = g.i("num_decoder_layers", c.n_encoder_layers);
      c.n_heads = c.n_kv_heads = g.i("num_heads");
      c.head_dim = g.i("d_kv");
      c.d_ff = g.i("d_ff");
      c.n_vocab = g.i("vocab_size");
      c.n_ctx = g.i("n_positions", 512);
      c.norm_eps = narrow(g.f("layer_norm_epsilon", 1e-6));
      c.n_rel_buckets = g.i("relative_attention_num_buckets", 32);
      c.rel_max_distance = g.i("relative_attention_max_distance", 128);
      std::string ff = g.s("feed_forward_proj", "relu");
      c.gated_mlp = ff.rfind("gated-", 0) == 0;
      c.act = activation_from("feed_forward_proj", c.gated_mlp ? ff.substr(6) == "gelu" ? "gelu_new" : ff.substr(6) : ff);
      // The decoder output is scaled by d_model^-0.5 exactly when the head is the shared embedding.
      // transformers 5 always writes tie_word_embeddings: true for T5 and states the head with
      // scale_decoder_outputs (false for FLAN-T5 / v1.1, whose lm_head is a separate matrix).
      c.tied_embeddings = g.has("scale_decoder_outputs") ? g.b("scale_decoder_outputs", true)
                                                               : g.b("tie_word_embeddings", true);
      c.bos_token_id = g.i("decoder_start_token_id", -1);
      break;
    }
  }
  if (c.head_dim == 0 && c.n_heads > 0) c.head_dim = c.d_model / c.n_heads;
  if (c.family != ArchFamily::kT5) c.bos_token_id = g.i("bos_token_id", -1);
  c.eos_token_id = g.i("eos_token_id", -1);
  c.pad_token_id = g.i("pad_token_id", -1);
  c.validate();
  return c;
}
}  // namespace

ModelConfig ModelConfig::from_hf_config_json(const std::string& text) {
  try {
    return from_hf_config_json_unguarded(text);
  } catch (const Json::exception& e) {  // a field of an unexpected JSON type deep in the file
    throw Error(ErrorCode::kInvalidFile, str_cat("config.json has a field of the wrong type: ", e.what()),
                "pass the config.json that came with the model");
  }
}

std::string ModelConfig::to_hf_config_json(const std::string& torch_dtype) const {
  nlohmann::ordered_json j;
  j["architectures"] = {hf_architecture};
  j["model_type"] = hf_model_type;
  auto rope_scaling_json = [&]() -> nlohmann::ordered_json {
    if (rope_scaling.kind == RopeScalingKind::kNone) return nullptr;
    nlohmann::ordered_json r = {{"rope_type", rope_scaling_name(rope_scaling.kind)}, {"factor", tidy(rope_scaling.factor)}};
    if (rope_scaling.original_n_ctx) r["original_max_position_embeddings"] = rope_scaling.original_n_ctx;
    if (rope_scaling.kind == RopeScalingKind::kLlama3)
      r["low_freq_factor"] = tidy(rope_scaling.low_freq_factor), r["high_freq_factor"] = tidy(rope_scaling.high_freq_factor);
    if (rope_scaling.kind == RopeScalingKind::kYarn) r["beta_fast"] = tidy(rope_scaling.beta_fast), r["beta_slow"] = tidy(rope_scaling.beta_slow);
    return r;
  };
  switch (family) {
    case ArchFamily::kLlama: case ArchFamily::kQwen2: case ArchFamily::kGemma: case ArchFamily::kPhi3:
      j["hidden_size"] = d_model, j["num_hidden_layers"] = n_layers, j["num_attention_heads"] = n_heads;
      j["num_key_value_heads"] = n_kv_heads, j["head_dim"] = head_dim, j["intermediate_size"] = d_ff;
      j["vocab_size"] = n_vocab, j["max_position_embeddings"] = n_ctx, j["rms_norm_eps"] = tidy(norm_eps);
      j["rope_theta"] = tidy(rope_theta), j["rope_scaling"] = rope_scaling_json();
      j["tie_word_embeddings"] = tied_embeddings;
      j[family == ArchFamily::kGemma ? "hidden_activation" : "hidden_act"] = hf_activation(act);
      if (partial_rotary != 1.0f) j["partial_rotary_factor"] = tidy(partial_rotary);
      if (family == ArchFamily::kLlama) j["attention_bias"] = qkv_bias, j["mlp_bias"] = mlp_bias;
      if (sliding_window > 0) {
        j["sliding_window"] = sliding_window;
        if (family == ArchFamily::kQwen2) j["use_sliding_window"] = true;
      }
      if (n_experts > 0) j["num_local_experts"] = n_experts, j["num_experts_per_tok"] = n_experts_used;
      break;
    case ArchFamily::kGpt2:
      j["n_embd"] = d_model, j["n_layer"] = n_layers, j["n_head"] = n_heads, j["n_inner"] = d_ff;
      j["vocab_size"] = n_vocab, j["n_positions"] = n_ctx, j["layer_norm_epsilon"] = tidy(norm_eps);
      j["activation_function"] = act == Activation::kGeluTanh ? "gelu_new" : hf_activation(act);
      j["tie_word_embeddings"] = tied_embeddings;
      break;
    case ArchFamily::kOpt:
      j["hidden_size"] = d_model, j["num_hidden_layers"] = n_layers, j["num_attention_heads"] = n_heads;
      j["ffn_dim"] = d_ff, j["vocab_size"] = n_vocab, j["max_position_embeddings"] = n_ctx;
      j["activation_function"] = hf_activation(act), j["enable_bias"] = qkv_bias;
      j["do_layer_norm_before"] = !post_norm, j["word_embed_proj_dim"] = d_model, j["tie_word_embeddings"] = tied_embeddings;
      break;
    case ArchFamily::kBloom:
      j["hidden_size"] = d_model, j["n_layer"] = n_layers, j["n_head"] = n_heads, j["vocab_size"] = n_vocab;
      j["seq_length"] = n_ctx, j["layer_norm_epsilon"] = tidy(norm_eps), j["tie_word_embeddings"] = tied_embeddings;
      break;
    case ArchFamily::kGptNeoX:
      j["hidden_size"] = d_model, j["num_hidden_layers"] = n_layers, j["num_attention_heads"] = n_heads;
      j["intermediate_size"] = d_ff, j["vocab_size"] = n_vocab, j["max_position_embeddings"] = n_ctx;
      j["layer_norm_eps"] = tidy(norm_eps), j["rotary_pct"] = tidy(partial_rotary), j["rotary_emb_base"] = tidy(rope_theta);
      j["use_parallel_residual"] = parallel_residual, j["hidden_act"] = hf_activation(act);
      j["attention_bias"] = qkv_bias, j["tie_word_embeddings"] = tied_embeddings, j["rope_scaling"] = rope_scaling_json();
      break;
    case ArchFamily::kBert:
      j["hidden_size"] = d_model, j["num_hidden_layers"] = n_layers, j["num_attention_heads"] = n_heads;
      j["intermediate_size"] = d_ff, j["vocab_size"] = n_vocab, j["max_position_embeddings"] = n_ctx;
      j["layer_norm_eps"] = tidy(norm_eps), j["hidden_act"] = hf_activation(act), j["type_vocab_size"] = n_token_types;
      break;
    case ArchFamily::kT5:
      j["d_model"] = d_model, j["num_layers"] = n_encoder_layers, j["num_decoder_layers"] = n_layers;
      j["num_heads"] = n_heads, j["d_kv"] = head_dim, j["d_ff"] = d_ff, j["vocab_size"] = n_vocab;
      j["n_positions"] = n_ctx, j["layer_norm_epsilon"] = tidy(norm_eps);
      j["relative_attention_num_buckets"] = n_rel_buckets, j["relative_attention_max_distance"] = rel_max_distance;
      j["feed_forward_proj"] = gated_mlp ? (act == Activation::kGeluTanh ? "gated-gelu" : str_cat("gated-", hf_activation(act)))
                                         : std::string(hf_activation(act));
      j["tie_word_embeddings"] = tied_embeddings;
      if (bos_token_id >= 0) j["decoder_start_token_id"] = bos_token_id;
      break;
  }
  if (bos_token_id >= 0 && family != ArchFamily::kT5) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

}  // namespace llmkit::models
