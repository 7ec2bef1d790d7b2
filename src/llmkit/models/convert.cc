// convert_hf_to_gguf / convert_gguf_to_hf (see convert.h).
#include "llmkit/models/convert.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/io/atomic_write.h"
#include "llmkit/io/gguf.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/hf_tokenizer_gguf.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::models {
namespace fs = std::filesystem;
using io::GgufValue;

namespace {

// llama.cpp's llama_ftype for general.file_type (the "mostly" type of the file).
uint32_t file_type_of(std::optional<DType> t) {
  if (!t) return 1;  // unknown mix: MOSTLY_F16 is what readers assume for float files
  switch (*t) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ8_0: return 7;
    case DType::kQ4_K: return 14;  // Q4_K_S: every matrix Q4_K
    case DType::kQ5_K: return 16;  // Q5_K_S
    case DType::kQ6_K: return 18;
    case DType::kBF16: return 32;
    default: return 1;
  }
}

// Checked before any work, so a bad output path fails at once; the folder is created at the end.
void check_no_clobber_dir(const std::string& out_dir) {
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    LLMKIT_CHECK(fs::is_directory(out_dir, ec), kInvalidArgument, "output '", out_dir, "' exists and is not a folder");
    LLMKIT_CHECK(fs::is_empty(out_dir, ec), kInvalidArgument, "output folder '", out_dir,
                 "' is not empty; choose a new folder so no existing model is overwritten");
  }
}

void make_dir(const std::string& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  LLMKIT_CHECK(!ec, kIo, "cannot create folder '", out_dir, "': ", ec.message());
}

}  // namespace

bool valid_gguf_output_type(DType t) {
  switch (t) {
    case DType::kF32: case DType::kF16: case DType::kBF16: case DType::kQ8_0: case DType::kQ4_0:
    case DType::kQ4_1: case DType::kQ4_K: case DType::kQ5_K: case DType::kQ6_K: return true;
    default: return false;
  }
}
bool valid_hf_output_type(DType t) { return is_float(t); }

ConvertReport convert_hf_to_gguf(const std::string& in_dir, const std::string& out_path, const ConvertOptions& opt) {
  LLMKIT_CHECK(!opt.type || valid_gguf_output_type(*opt.type), kInvalidArgument, "--type ", dtype_name(*opt.type),
               " is not a GGUF output type (f32 f16 bf16 q8_0 q4_0 q4_1 q4_k q5_k q6_k)");
  io::HfFolder folder = io::HfFolder::open(in_dir);
  ModelConfig cfg = ModelConfig::from_hf_config_json(folder.config_json());
  const ArchInfo& arch = arch_info(cfg.family);
  ConvertReport rep;
  rep.direction = "hf->gguf";
  rep.architecture = family_name(cfg.family);
  for (const auto& s : folder.ignored()) rep.notes.push_back("ignored: " + s);

  io::GgufWriter w;
  cfg.to_gguf(w);
  std::string model_name = fs::path(in_dir).lexically_normal().filename().string();
  if (model_name.empty() || model_name == ".") model_name = fs::path(in_dir).lexically_normal().parent_path().filename().string();
  w.set("general.name", GgufValue::from_string(model_name));
  w.set("general.file_type", GgufValue::from_u32(file_type_of(opt.type)));
  w.set("general.quantization_version", GgufValue::from_u32(2));

  // Tensors: map names, undo nothing, apply llama.cpp's layout, then cast or quantize.
  std::vector<std::pair<std::string, Tensor>> out;
  std::map<std::string, Shape> shapes;
  const uint64_t total = folder.tensor_bytes();
  uint64_t done = 0;
  for (const auto& hf_name : folder.tensor_names()) {
    const auto* ti = folder.find_tensor(hf_name);
    done += ti->end - ti->begin;
    if (hf_is_skipped(arch, hf_name)) {
      rep.notes.push_back("skipped buffer '" + hf_name + "'");
      continue;
    }
    auto mapped = hf_to_gguf_name(arch, hf_name);
    if (!mapped)
      throw Error(ErrorCode::kUnsupported, str_cat("tensor '", hf_name, "' has no GGUF name for the ", family_name(cfg.family), " family"),
                  "the checkpoint has weights llmkit's architecture table does not know; nothing was written");
    if (shapes.count(mapped->name)) throw Error(ErrorCode::kInvalidFile, str_cat("two tensors map to GGUF name '", mapped->name, "'"));
    Tensor t = folder.tensor(hf_name);
    LLMKIT_CHECK(is_float(t.dtype()), kUnsupported, "tensor '", hf_name, "' is ", dtype_name(t.dtype()),
                 "; only F32/F16/BF16 weights are converted");
    if (t.rank() == 0) t = t.view(Shape{1});
    t = apply_transform(mapped->transform, cfg, t, /*to_gguf=*/true, hf_name);
    if (opt.type) {
      DType want = *opt.type;
      if (t.rank() <= 1) want = DType::kF32;
      else if (is_quantized(want) && t.dim(-1) % block_size(want) != 0) {
        rep.notes.push_back(str_cat("'", mapped->name, "' rows of ", t.dim(-1), " are not whole ", dtype_name(want), " blocks: stored as f16"));
        want = DType::kF16;
      }
      t = cast_to(t, want, hf_name);
    }
    shapes[mapped->name] = t.shape();
    out.emplace_back(mapped->name, t);
    if (opt.progress) opt.progress(done, total);
  }
  cfg.check_tensor_shapes([&](const std::string& n) -> std::optional<Shape> {
    auto it = shapes.find(n);
    return it == shapes.end() ? std::nullopt : std::optional<Shape>(it->second);
  });
  // llama.cpp applies Llama-3 RoPE scaling only through this tensor (see ModelConfig::to_gguf).
  const std::vector<float> rope_factors = cfg.rope_freq_factors();
  if (!rope_factors.empty() && !shapes.count("rope_freqs.weight"))
    out.emplace_back("rope_freqs.weight", Tensor::from_floats(rope_factors, Shape{static_cast<int64_t>(rope_factors.size())}));
  for (auto& [name, t] : out) {
    w.add_tensor(name, t);
    rep.bytes_out += t.nbytes();
  }

  auto read_opt = [](const std::string& path) { return path.empty() ? std::string() : io::read_text_file(path); };
  std::string chat_template_file;
  if (fs::exists(fs::path(in_dir) / "chat_template.jinja"))
    chat_template_file = io::read_text_file(io::confine_to_folder(in_dir, "chat_template.jinja"), 4u << 20);
  hf_tokenizer_to_gguf(read_opt(folder.tokenizer_json_path()), read_opt(folder.tokenizer_config_path()), chat_template_file,
                       cfg, w, &rep.notes);
  w.set("llmkit.hf.config_json", GgufValue::from_string(folder.config_json()));
  if (!folder.generation_config_path().empty())
    w.set("llmkit.hf.generation_config_json", GgufValue::from_string(read_opt(folder.generation_config_path())));
  w.write(out_path);
  rep.n_tensors = out.size();
  rep.bytes_in = total;
  rep.files.push_back(out_path);
  return rep;
}

ConvertReport convert_gguf_to_hf(const std::string& in_path, const std::string& out_dir, const ConvertOptions& opt) {
  LLMKIT_CHECK(!opt.type || valid_hf_output_type(*opt.type), kInvalidArgument, "--type ", dtype_name(*opt.type),
               " is not a Hugging Face output type: safetensors holds f32, f16 or bf16");
  check_no_clobber_dir(out_dir);
  io::GgufFile f = io::GgufFile::open(in_path);
  ModelConfig cfg = ModelConfig::from_gguf(f);
  const ArchInfo& arch = arch_info(cfg.family);
  ConvertReport rep;
  rep.direction = "gguf->hf";
  rep.architecture = family_name(cfg.family);

  io::SafetensorsWriter sw;
  sw.set_metadata("format", "pt");  // transformers refuses safetensors without it
  uint64_t total = 0, done = 0;
  for (const auto& ti : f.tensors()) total += ti.bytes;
  for (const auto& ti : f.tensors()) {
    done += ti.bytes;
    if (ti.name == "rope_freqs.weight") {
      rep.notes.push_back("skipped 'rope_freqs.weight' (llama.cpp's precomputed llama3 rope factors; config.json has rope_scaling)");
      continue;
    }
    auto mapped = gguf_to_hf_name(arch, ti.name, cfg.gated_mlp);
    if (!mapped)
      throw Error(ErrorCode::kUnsupported, str_cat("GGUF tensor '", ti.name, "' has no Hugging Face name for the ", family_name(cfg.family), " family"),
                  "nothing was written");
    Tensor t = f.tensor(ti.name);
    const DType want = opt.type ? *opt.type : (is_float(t.dtype()) ? t.dtype() : DType::kF32);
    if (!is_float(t.dtype())) t = cast_to(t, DType::kF32, ti.name);  // dequantize
    t = apply_transform(mapped->transform, cfg, t, /*to_gguf=*/false, ti.name);
    t = cast_to(t, want, ti.name);
    sw.add_tensor(mapped->name, t);
    rep.bytes_out += t.nbytes();
    if (opt.progress) opt.progress(done, total);
  }
  check_no_clobber_dir(out_dir);
  make_dir(out_dir);
  rep.files = sw.write_sharded(out_dir, opt.max_shard_bytes);
  const fs::path d(out_dir);
  auto config = f.get_string("llmkit.hf.config_json");
  const DType main_type = opt.type ? *opt.type : DType::kF32;
  const char* torch_dtype = main_type == DType::kF16 ? "float16" : main_type == DType::kBF16 ? "bfloat16" : "float32";
  io::write_text_atomically((d / "config.json").string(), config ? *config : cfg.to_hf_config_json(torch_dtype));
  rep.files.push_back("config.json");
  HfTokenizerFiles tok = gguf_tokenizer_to_hf(f, &rep.notes);
  if (!tok.tokenizer_json.empty()) {
    io::write_text_atomically((d / "tokenizer.json").string(), tok.tokenizer_json);
    rep.files.push_back("tokenizer.json");
  }
  io::write_text_atomically((d / "tokenizer_config.json").string(), tok.tokenizer_config_json);
  rep.files.push_back("tokenizer_config.json");
  if (auto g = f.get_string("llmkit.hf.generation_config_json")) {
    io::write_text_atomically((d / "generation_config.json").string(), *g);
    rep.files.push_back("generation_config.json");
  }
  rep.n_tensors = sw.size();
  rep.bytes_in = total;
  return rep;
}

ConvertReport convert_model(const std::string& in, const std::string& out, const ConvertOptions& opt) {
  std::error_code ec;
  LLMKIT_CHECK(fs::exists(in, ec), kNotFound, "input '", in, "' does not exist");
  if (fs::is_directory(in, ec)) return convert_hf_to_gguf(in, out, opt);
  return convert_gguf_to_hf(in, out, opt);
}

}  // namespace llmkit::models
