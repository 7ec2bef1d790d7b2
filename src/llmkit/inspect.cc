// inspect_model(): a summary of a model file for people (llmkit inspect) and programs.
#include "llmkit/inspect.h"

#include <filesystem>

#include "llmkit/base/check.h"
#include "llmkit/io/gguf.h"

namespace llmkit {

InspectReport inspect_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LLMKIT_CHECK(fs::exists(path, ec), kNotFound, "model '", path, "' does not exist");
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".pkl" || ext == ".ckpt")
    throw Error(ErrorCode::kUnsupported,
                str_cat("'", path, "' is a pickle checkpoint; llmkit never loads pickle files because they can run code"),
                "convert it to safetensors in a trusted Python environment (transformers: save_pretrained(..., "
                "safe_serialization=True)), then use the folder");
  if (fs::is_directory(path, ec))
    throw Error(ErrorCode::kUnsupported, str_cat("'", path, "' is a folder; Hugging Face folders are not readable yet"),
                "pass a .gguf file");

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

}  // namespace llmkit
