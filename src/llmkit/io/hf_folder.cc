// HfFolder: discovery and confinement of a Hugging Face model folder (see hf_folder.h).
#include "llmkit/io/hf_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"

namespace llmkit::io {
namespace fs = std::filesystem;
namespace {

bool is_inside(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q)
    if (q == p.end() || *q != *r) return false;
  return true;
}

bool is_pickle(const fs::path& p) {
  std::string e = p.extension().string();
  return e == ".bin" || e == ".pt" || e == ".pth" || e == ".pkl" || e == ".ckpt";
}

}  // namespace

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(ErrorCode::kNotFound, str_cat("'", path, "' does not exist"));
  uint64_t n = fs::file_size(path, ec);
  if (ec) throw Error(ErrorCode::kIo, str_cat("cannot read '", path, "': ", ec.message()));
  if (n > max_bytes)
    throw Error(ErrorCode::kInvalidFile, str_cat("'", path, "' is ", n, " bytes; the cap for this file is ", max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, str_cat("cannot open '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string confine_to_folder(const std::string& dir, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidFile, str_cat("shard name '", name.substr(0, 200), "' in '", dir, "' ", why),
                 "a model folder may only name files inside itself; the index file is corrupt or malicious");
  };
  if (name.empty()) throw bad("is empty");
  if (name.find('\0') != std::string::npos || name.find('\\') != std::string::npos) throw bad("contains a NUL or backslash");
  fs::path rel(name);
  if (rel.is_absolute() || name[0] == '/') throw bad("is an absolute path");
  for (const auto& part : rel)
    if (part == "..") throw bad("contains '..'");
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) throw Error(ErrorCode::kNotFound, str_cat("folder '", dir, "' does not exist"));
  fs::path full = root / rel;
  if (!fs::exists(full, ec))
    throw Error(ErrorCode::kNotFound, str_cat("shard '", name, "' listed in '", dir, "' does not exist"),
                "download the missing shard, or check model.safetensors.index.json");
  fs::path real = fs::canonical(full, ec);
  if (ec) throw bad(str_cat("cannot be resolved: ", ec.message()));
  if (is_inside(root, real)) return real.string();
  // huggingface_hub cache: models--X/snapshots/REV/FILE -> models--X/blobs/HASH is the same repository.
  fs::path repo = root.parent_path().parent_path();
  if (root.parent_path().filename() == "snapshots" && repo.filename().string().rfind("models--", 0) == 0 &&
      is_inside(repo / "blobs", real))
    return real.string();
  throw bad(str_cat("is a symlink to '", real.string(), "', outside the folder"));
}

HfFolder HfFolder::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(ErrorCode::kNotFound, str_cat("'", dir, "' is not a folder"));
  HfFolder h;
  h.dir_ = dir;
  const fs::path d(dir);
  const std::string config = (d / "config.json").string();
  if (!fs::exists(config, ec))
    throw Error(ErrorCode::kNotFound, str_cat("'", dir, "' has no config.json, so it is not a Hugging Face model folder"),
                "download the whole repository (config.json, *.safetensors, tokenizer files)");
  h.config_json_ = read_text_file(confine_to_folder(dir, "config.json"), 16u << 20);
  try {
    auto cfg = nlohmann::json::parse(h.config_json_);
    if (cfg.is_object() && cfg.contains("auto_map"))
      h.ignored_.push_back("config.json auto_map (custom Python model code is never imported or run)");
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorCode::kInvalidFile, str_cat("'", config, "' is not valid JSON: ", e.what()));
  }
  auto optional_file = [&](const char* name, std::string* out) {
    if (fs::exists(d / name, ec)) *out = confine_to_folder(dir, name);
  };
  optional_file("tokenizer.json", &h.tokenizer_json_);
  optional_file("tokenizer_config.json", &h.tokenizer_config_);
  optional_file("generation_config.json", &h.generation_config_);

  bool has_pickle = false;
  for (const auto& e : fs::directory_iterator(d, ec)) {
    const fs::path& p = e.path();
    if (p.extension() == ".py") h.ignored_.push_back(p.filename().string() + " (Python code is never imported or run)");
    if (is_pickle(p)) has_pickle = true;
  }

  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;  // from the index
  const fs::path index = d / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text_file(confine_to_folder(dir, "model.safetensors.index.json"), 64u << 20));
    } catch (const nlohmann::json::exception& e) {
      throw Error(ErrorCode::kInvalidFile, str_cat("'", index.string(), "' is not valid JSON: ", e.what()));
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(ErrorCode::kInvalidFile, str_cat("'", index.string(), "' has no \"weight_map\" object"));
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw Error(ErrorCode::kInvalidFile, str_cat("'", index.string(), "': weight_map entry '", it.key(), "' is not a file name"));
      const std::string& file = it.value().get_ref<const std::string&>();
      weight_map[it.key()] = file;
      if (seen.insert(file).second) shard_names.push_back(file);
    }
  } else if (fs::exists(d / "model.safetensors", ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    // Some repositories name a single file differently (e.g. "adapter_model.safetensors" or a
    // consolidated file): take every *.safetensors at the top level, in name order.
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".safetensors") found.push_back(e.path().filename().string());
    std::sort(found.begin(), found.end());
    shard_names = found;
  }
  if (shard_names.empty()) {
    if (has_pickle)
      throw Error(ErrorCode::kUnsupported,
                  str_cat("'", dir, "' holds only pickle weights (*.bin / *.pt); llmkit never loads pickle files because "
                                    "unpickling can run arbitrary code"),
                  "convert them to safetensors in a trusted Python environment: "
                  "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, safe_serialization=True)");
    throw Error(ErrorCode::kNotFound, str_cat("'", dir, "' has no *.safetensors weights"),
                "download model.safetensors (or its shards and model.safetensors.index.json)");
  }
  if (has_pickle) h.ignored_.push_back("pickle weights (*.bin / *.pt): never loaded; the safetensors files are used");

  for (const auto& name : shard_names) {
    std::string path = confine_to_folder(dir, name);
    h.shards_.push_back(SafetensorsFile::open(path));
    const size_t k = h.shards_.size() - 1;
    for (const auto& ti : h.shards_[k].tensors()) {
      if (h.where_.count(ti.name))
        throw Error(ErrorCode::kInvalidFile, str_cat("tensor '", ti.name, "' appears in two shards of '", dir, "'"));
      if (!weight_map.empty()) {
        auto it = weight_map.find(ti.name);
        if (it == weight_map.end() || it->second != name)
          throw Error(ErrorCode::kInvalidFile,
                      str_cat("tensor '", ti.name, "' is in shard '", name, "' but the index ",
                              it == weight_map.end() ? std::string("does not list it") : "places it in '" + it->second + "'"));
      }
      h.where_[ti.name] = k;
      h.names_.push_back(ti.name);
    }
  }
  for (const auto& [tname, file] : weight_map)
    if (!h.where_.count(tname))
      throw Error(ErrorCode::kInvalidFile, str_cat("tensor '", tname, "' is listed in the index for '", file,
                                                   "' but that shard does not contain it"));
  return h;
}

const SafetensorsTensorInfo* HfFolder::find_tensor(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : shards_[it->second].find_tensor(name);
}

const SafetensorsFile& HfFolder::shard_of(const std::string& name) const {
  auto it = where_.find(name);
  LLMKIT_CHECK(it != where_.end(), kNotFound, "tensor '", name, "' is not in '", dir_, "'");
  return shards_[it->second];
}

uint64_t HfFolder::tensor_bytes() const {
  uint64_t n = 0;
  for (const auto& s : shards_)
    for (const auto& t : s.tensors()) n += t.end - t.begin;
  return n;
}

}  // namespace llmkit::io
