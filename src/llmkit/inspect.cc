// The model-file half of the public API: inspect_model() (a summary of a GGUF file, a Hugging
// Face folder or a .safetensors file, for `llmkit inspect` and programs) and
// convert_model_files() (the public face of models/convert.h, for `llmkit convert`). Both live in
// this one glue file so cli/ sees only include/llmkit/.
#include "llmkit/inspect.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/convert.h"
#include "llmkit/io/gguf.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/models/convert.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/random_init.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void add_tensors(const io::SafetensorsFile& f, InspectReport& r) {
  for (const auto& ti : f.tensors()) {
    r.tensors.push_back({ti.name, lower(io::st_dtype_name(ti.dtype)), ti.shape, ti.end - ti.begin});
    r.tensor_bytes += ti.end - ti.begin;
    uint64_t n = 1;
    for (auto d : ti.shape) n *= static_cast<uint64_t>(d);
    r.n_params += n;
  }
}

void add_config(const models::ModelConfig& c, InspectReport& r) {
  auto kv = [&](const char* k, const std::string& v) { r.hyperparameters.emplace_back(k, v); };
  kv("family", models::family_name(c.family));
  kv("n_layers", std::to_string(c.n_layers));
  if (c.n_encoder_layers) kv("n_encoder_layers", std::to_string(c.n_encoder_layers));
  kv("d_model", std::to_string(c.d_model));
  kv("n_heads", std::to_string(c.n_heads));
  kv("n_kv_heads", std::to_string(c.n_kv_heads));
  kv("head_dim", std::to_string(c.head_dim));
  kv("d_ff", std::to_string(c.d_ff));
  kv("n_vocab", std::to_string(c.n_vocab));
  kv("n_ctx", std::to_string(c.n_ctx));
  kv("norm", str_cat(models::norm_kind_name(c.norm), " eps=", c.norm_eps));
  kv("position", models::position_kind_name(c.position));
  if (c.position == models::PositionKind::kRopeNeox || c.position == models::PositionKind::kRopeGptj)
    kv("rope", str_cat("theta=", c.rope_theta, " partial=", c.partial_rotary, " scaling=", models::rope_scaling_name(c.rope_scaling.kind)));
  kv("activation", str_cat(models::activation_name(c.act), c.gated_mlp ? " (gated)" : ""));
  kv("tied_embeddings", c.tied_embeddings ? "true" : "false");
  if (c.sliding_window) kv("sliding_window", std::to_string(c.sliding_window));
  if (c.n_experts) kv("experts", str_cat(c.n_experts, " (", c.n_experts_used, " used)"));
}

InspectReport inspect_hf_folder(const std::string& path) {
  io::HfFolder h = io::HfFolder::open(path);
  InspectReport r;
  r.path = path;
  r.format = str_cat("Hugging Face folder (", h.shards().size(), " safetensors file", h.shards().size() == 1 ? "" : "s", ")");
  r.name = fs::path(path).lexically_normal().filename().string();
  auto cfg = models::ModelConfig::from_hf_config_json(h.config_json());
  r.architecture = str_cat(models::family_name(cfg.family), " (", cfg.hf_model_type, ", ", cfg.hf_architecture, ")");
  add_config(cfg, r);
  for (const auto& s : h.shards()) {
    add_tensors(s, r);
    r.file_bytes += s.file_size();
  }
  for (const auto& s : h.ignored()) r.other.emplace_back("ignored", s);
  if (!h.tokenizer_json_path().empty()) {
    std::string text = io::read_text_file(h.tokenizer_json_path());
    r.file_bytes += text.size();
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("model") && j["model"].is_object()) {
      const auto& m = j["model"];
      r.tokenizer.emplace_back("model", m.value("type", "?"));
      if (m.contains("vocab")) r.tokenizer.emplace_back("vocab", std::to_string(m["vocab"].size()));
      if (m.contains("merges")) r.tokenizer.emplace_back("merges", std::to_string(m["merges"].size()));
    } else {
      r.tokenizer.emplace_back("tokenizer.json", "not valid JSON");
    }
    if (j.is_object() && j.contains("added_tokens")) r.tokenizer.emplace_back("added_tokens", std::to_string(j["added_tokens"].size()));
  } else {
    r.tokenizer.emplace_back("tokenizer.json", "absent");
  }
  if (!h.tokenizer_config_path().empty()) {
    auto tc = nlohmann::json::parse(io::read_text_file(h.tokenizer_config_path()), nullptr, false);
    if (tc.is_object()) {
      for (const char* k : {"bos_token", "eos_token", "pad_token", "unk_token"}) {
        if (!tc.contains(k)) continue;
        const auto& v = tc[k];
        if (v.is_string()) r.tokenizer.emplace_back(k, v.get<std::string>());
        else if (v.is_object() && v.contains("content") && v["content"].is_string()) r.tokenizer.emplace_back(k, v["content"].get<std::string>());
      }
      if (tc.contains("chat_template") && tc["chat_template"].is_string()) r.chat_template = tc["chat_template"].get<std::string>();
    }
  }
  if (fs::exists(fs::path(path) / "chat_template.jinja"))
    r.chat_template = io::read_text_file(io::confine_to_folder(path, "chat_template.jinja"), 4u << 20);
  return r;
}

InspectReport inspect_gguf(const std::string& path) {
  io::GgufFile f = io::GgufFile::open(path);
  InspectReport r;
  r.path = path;
  r.format = str_cat("GGUF v", f.version());
  r.file_bytes = f.file_size();
  r.architecture = f.get_string("general.architecture").value_or("(unknown)");
  r.name = f.get_string("general.name").value_or("");
  const std::string arch_prefix = r.architecture + ".";
  for (const auto& [key, value] : f.metadata()) {
    if (key == "tokenizer.chat_template") {
      r.chat_template = value.s;
    } else if (key.rfind(arch_prefix, 0) == 0) {
      r.hyperparameters.emplace_back(key.substr(arch_prefix.size()), value.summary(80));
    } else if (key.rfind("tokenizer.", 0) == 0) {
      r.tokenizer.emplace_back(key.substr(10), value.summary(80));
    } else if (key != "general.architecture" && key != "general.name") {
      r.other.emplace_back(key, value.summary(80));
    }
  }
  for (const auto& ti : f.tensors()) {
    r.tensors.push_back({ti.name, dtype_name(ti.dtype), ti.shape.vec(), ti.bytes});
    r.tensor_bytes += ti.bytes;
    r.n_params += static_cast<uint64_t>(ti.shape.numel());
  }
  return r;
}

}  // namespace

InspectReport inspect_model(const std::string& path) {
  std::error_code ec;
  LLMKIT_CHECK(fs::exists(path, ec), kNotFound, "model '", path, "' does not exist");
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".pkl" || ext == ".ckpt")
    throw Error(ErrorCode::kUnsupported,
                str_cat("'", path, "' is a pickle checkpoint; llmkit never loads pickle files because they can run code"),
                "convert it to safetensors in a trusted Python environment (transformers: save_pretrained(..., "
                "safe_serialization=True)), then use the folder");
  if (fs::is_directory(path, ec)) return inspect_hf_folder(path);
  if (ext == ".safetensors") {
    io::SafetensorsFile f = io::SafetensorsFile::open(path);
    InspectReport r;
    r.path = path;
    r.format = "safetensors";
    r.architecture = "(a tensor file; no config)";
    r.file_bytes = f.file_size();
    for (const auto& [k, v] : f.metadata()) r.other.emplace_back(k, v.size() > 80 ? v.substr(0, 80) + "..." : v);
    add_tensors(f, r);
    return r;
  }
  return inspect_gguf(path);
}

ConvertSummary convert_model_files(const std::string& input, const std::string& output, const std::string& type,
                                   const std::function<void(uint64_t, uint64_t)>& progress) {
  models::ConvertOptions opt;
  if (!type.empty()) {
    auto t = dtype_from_name(type);
    LLMKIT_CHECK(t.has_value(), kInvalidArgument, "--type '", type, "' is not a type; use f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k");
    opt.type = *t;
  }
  opt.progress = progress;
  models::ConvertReport rep = models::convert_model(input, output, opt);
  return {rep.direction, rep.architecture, rep.n_tensors, rep.bytes_in, rep.bytes_out, rep.files, rep.notes};
}

ConvertSummary random_model_file(const std::string& config_json, const std::string& output, const std::string& type,
                                 uint64_t seed, const std::function<void(uint64_t, uint64_t)>& progress) {
  std::optional<DType> t;
  if (!type.empty()) {
    t = dtype_from_name(type);
    LLMKIT_CHECK(t.has_value(), kInvalidArgument, "--type '", type, "' is not a type; use f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k");
  }
  models::ConvertReport r = models::random_init_gguf(config_json, output, t, seed, progress);
  ConvertSummary s;
  s.direction = r.direction;
  s.architecture = r.architecture;
  s.n_tensors = r.n_tensors;
  s.bytes_in = r.bytes_in;
  s.bytes_out = r.bytes_out;
  s.files = r.files;
  s.notes = r.notes;
  return s;
}

}  // namespace llmkit
