// Hugging Face model folders: config.json, model.safetensors or shards listed in
// model.safetensors.index.json, tokenizer.json, tokenizer_config.json (+ generation_config.json).
//
// A folder is untrusted like any file (docs/RELIABILITY): shard names from the index must stay in
// the folder (no "../", no absolute paths, no symlink whose target leaves the folder); pickle
// checkpoints (*.bin, *.pt, *.pth) are refused with advice to convert them to safetensors; Python
// files and config.json's "auto_map" (custom modelling code) are never imported or run, only
// reported in `ignored` so the user knows they were skipped.
//
// One exception to "symlinks stay inside": huggingface_hub's cache lays a snapshot out as
// models--ORG--NAME/snapshots/REV/FILE -> ../../blobs/HASH. A link into the blobs/ folder of the
// same models--* repository is accepted, because that folder is the repository.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "llmkit/io/safetensors.h"

namespace llmkit::io {

class HfFolder {
 public:
  // Discovers and validates the folder and maps every shard. Throws kNotFound (no folder, no
  // config.json, no weights), kUnsupported (pickle only), kInvalidFile (bad index, escaping shard
  // name, a tensor listed twice or missing from its shard).
  static HfFolder open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::string& config_json() const { return config_json_; }  // the text of config.json
  // Paths of the optional files; empty when absent.
  const std::string& tokenizer_json_path() const { return tokenizer_json_; }
  const std::string& tokenizer_config_path() const { return tokenizer_config_; }
  const std::string& generation_config_path() const { return generation_config_; }
  // Files found and deliberately not used (Python code, auto_map, pickle next to safetensors).
  const std::vector<std::string>& ignored() const { return ignored_; }

  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // Tensor names in shard order, then header order.
  const std::vector<std::string>& tensor_names() const { return names_; }
  const SafetensorsTensorInfo* find_tensor(const std::string& name) const;
  const SafetensorsFile& shard_of(const std::string& name) const;  // throws kNotFound
  Tensor tensor(const std::string& name) const { return shard_of(name).tensor(name); }
  uint64_t tensor_bytes() const;

 private:
  std::string dir_, config_json_, tokenizer_json_, tokenizer_config_, generation_config_;
  std::vector<std::string> ignored_;
  std::vector<SafetensorsFile> shards_;
  std::vector<std::string> names_;
  std::map<std::string, size_t> where_;
};

// Resolves `name` (from an index file) inside `dir`, refusing absolute paths, ".." components and
// symlinks that leave the folder. Returns the path to open. Throws Error(kInvalidFile).
std::string confine_to_folder(const std::string& dir, const std::string& name);

// Reads a whole small text file (config/tokenizer JSON), capped at max_bytes. Throws kNotFound/kIo/kInvalidFile.
std::string read_text_file(const std::string& path, uint64_t max_bytes = 256u << 20);

}  // namespace llmkit::io
