// Weights from a GGUF file or a Hugging Face folder, in the GGUF layout (see weights.h).
#include "llmkit/models/weights.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::models {
namespace fs = std::filesystem;

namespace {

std::string lower_ext(const std::string& path) {
  std::string e = fs::path(path).extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

// Norm weights and biases are computed in F32 (as llama.cpp stores them); a checkpoint that keeps
// them in F16/BF16 gets them widened once at load (exact), not at every use.
void widen_vectors(std::map<std::string, Tensor>& tensors) {
  for (auto& [name, t] : tensors)
    if (t.rank() == 1 && is_float(t.dtype()) && t.dtype() != DType::kF32) t = cast_to(t, DType::kF32, name);
}

void check_shapes(const ModelConfig& cfg, const std::map<std::string, Tensor>& t) {
  cfg.check_tensor_shapes([&t](const std::string& name) -> std::optional<Shape> {
    auto it = t.find(name);
    return it == t.end() ? std::nullopt : std::optional<Shape>(it->second.shape());
  });
}

}  // namespace

Weights Weights::from_gguf(const std::string& path) {
  Weights w;
  w.path_ = path;
  w.gguf_ = std::make_shared<io::GgufFile>(io::GgufFile::open(path));
  w.cfg_ = ModelConfig::from_gguf(*w.gguf_);
  for (const auto& ti : w.gguf_->tensors()) w.tensors_.emplace(ti.name, w.gguf_->tensor(ti.name));
  widen_vectors(w.tensors_);
  check_shapes(w.cfg_, w.tensors_);
  return w;
}

void Weights::release_pages(const void* p, size_t n) const {
  if (gguf_) gguf_->release_pages(p, n);
}

bool Weights::is_file_view(const Tensor& t) const {
  return gguf_ && t.defined() && t.device().kind == DeviceKind::kCPU && gguf_->maps(t.raw(), t.nbytes());
}

Weights Weights::from_hf_folder(const std::string& dir) {
  auto folder = std::make_shared<io::HfFolder>(io::HfFolder::open(dir));
  Weights w;
  w.path_ = dir;
  w.cfg_ = ModelConfig::from_hf_config_json(folder->config_json());
  const ArchInfo& arch = arch_info(w.cfg_.family);
  for (const auto& hf_name : folder->tensor_names()) {
    if (hf_is_skipped(arch, hf_name)) continue;
    auto mapped = hf_to_gguf_name(arch, hf_name);
    LLMKIT_CHECK(mapped.has_value(), kUnsupported, "tensor '", hf_name, "' of '", dir, "' has no place in the ",
                 family_name(w.cfg_.family), " architecture; the checkpoint has weights llmkit does not know");
    LLMKIT_CHECK(!w.tensors_.count(mapped->name), kInvalidFile, "two tensors of '", dir, "' map to '", mapped->name, "'");
    Tensor t = folder->tensor(hf_name);
    if (t.rank() == 0) t = t.view(Shape{1});
    w.tensors_.emplace(mapped->name, apply_transform(mapped->transform, w.cfg_, t, /*to_gguf=*/true, hf_name));
  }
  widen_vectors(w.tensors_);
  check_shapes(w.cfg_, w.tensors_);
  w.keep_alive_ = folder;
  return w;
}

Weights Weights::open(const std::string& path) {
  std::error_code ec;
  LLMKIT_CHECK(fs::exists(path, ec), kNotFound, "model '", path, "' does not exist");
  if (fs::is_directory(path, ec)) return from_hf_folder(path);
  const std::string ext = lower_ext(path);
  if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".pkl" || ext == ".ckpt")
    throw Error(ErrorCode::kUnsupported,
                str_cat("'", path, "' is a PyTorch pickle checkpoint; llmkit never loads pickle files (they can run code)"),
                "convert it to safetensors (transformers: model.save_pretrained(dir, safe_serialization=True)) and pass the folder");
  if (ext == ".safetensors")
    throw Error(ErrorCode::kInvalidArgument, str_cat("'", path, "' is one safetensors file, without its config.json"),
                "pass the Hugging Face folder that holds it (config.json + *.safetensors), or a GGUF file");
  return from_gguf(path);
}

const Tensor* Weights::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Tensor Weights::require(const std::string& name, const Shape& shape) const {
  const Tensor* t = find(name);
  LLMKIT_CHECK(t != nullptr, kInvalidFile, "model '", path_, "' lacks tensor '", name, "'");
  LLMKIT_CHECK(t->shape() == shape, kInvalidFile, "model '", path_, "': tensor '", name, "' has shape ",
               t->shape().str(), " but the hyper-parameters need ", shape.str());
  return *t;
}

std::optional<Tensor> Weights::optional(const std::string& name, const Shape& shape) const {
  if (!find(name)) return std::nullopt;
  return require(name, shape);
}

uint64_t Weights::n_params() const {
  uint64_t n = 0;
  for (const auto& [name, t] : tensors_) n += static_cast<uint64_t>(t.numel());
  return n;
}

std::string Weights::chat_template() const {
  if (gguf_) return gguf_->get_string("tokenizer.chat_template").value_or("");
  namespace fs = std::filesystem;
  const fs::path dir(path_);
  std::error_code ec;
  if (fs::exists(dir / "chat_template.jinja", ec))
    return io::read_text_file(io::confine_to_folder(path_, "chat_template.jinja"), 4u << 20);
  if (!fs::exists(dir / "tokenizer_config.json", ec)) return "";
  const nlohmann::json tc = nlohmann::json::parse(
      io::read_text_file(io::confine_to_folder(path_, "tokenizer_config.json"), 64u << 20), nullptr, false);
  if (!tc.is_object() || !tc.contains("chat_template")) return "";
  const nlohmann::json& t = tc["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array())
    for (const auto& e : t)
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e["template"].is_string())
        return e["template"].get<std::string>();
  return "";
}

}  // namespace llmkit::models
