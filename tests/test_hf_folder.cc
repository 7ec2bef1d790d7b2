// HfFolder: discovery of a Hugging Face model folder and every folder case of RELIABILITY.md
// (shard names confined to the folder, pickle refused with advice, Python code and auto_map
// reported as ignored and never run).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "llmkit/io/hf_folder.h"

namespace llmkit::io {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path p;
  explicit TempDir(const std::string& name)
      : p(fs::temp_directory_path() / ("llmkit_hf_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~TempDir() { fs::remove_all(p); }
  std::string str() const { return p.string(); }
};

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

const char* kConfig = R"({"model_type": "llama", "hidden_size": 8})";

void write_weights(const fs::path& path, const std::vector<std::string>& names) {
  fs::create_directories(path.parent_path());
  SafetensorsWriter w;
  for (const auto& n : names) w.add_tensor(n, Tensor::zeros({2}, DType::kF32));
  w.write(path.string());
}

template <typename F>
void expect_error(F&& f, ErrorCode code, const std::string& needle) {
  try {
    f();
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE((std::string(e.what()) + " " + e.hint()).find(needle), std::string::npos) << e.what() << " / " << e.hint();
  }
}

std::string index_json(const std::vector<std::pair<std::string, std::string>>& map) {
  std::ostringstream s;  // (string operator+ chains trip a GCC 12 -Wrestrict false positive)
  s << R"({"metadata": {"total_size": 0}, "weight_map": {)";
  for (size_t k = 0; k < map.size(); ++k) s << (k ? "," : "") << '"' << map[k].first << "\": \"" << map[k].second << '"';
  s << "}}";
  return s.str();
}

TEST(HfFolder, ReadsTheReferenceWrittenTinyLlama) {
  HfFolder h = HfFolder::open(std::string(LLMKIT_TESTDATA_DIR) + "/hf/tiny-llama");
  EXPECT_NE(h.config_json().find("\"llama\""), std::string::npos);
  EXPECT_FALSE(h.tokenizer_json_path().empty());
  EXPECT_FALSE(h.tokenizer_config_path().empty());
  EXPECT_FALSE(h.generation_config_path().empty());
  EXPECT_EQ(h.shards().size(), 1u);
  EXPECT_EQ(h.tensor_names().size(), 21u);
  Tensor q = h.tensor("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(q.dtype(), DType::kBF16);
  EXPECT_EQ(q.shape(), Shape({32, 32}));
  EXPECT_TRUE(h.ignored().empty());
}

TEST(HfFolder, ShardedWithIndex) {
  TempDir d("sharded");
  write(d.p / "config.json", kConfig);
  write_weights(d.p / "model-00001-of-00002.safetensors", {"a.weight", "b.weight"});
  write_weights(d.p / "model-00002-of-00002.safetensors", {"c.weight"});
  write(d.p / "model.safetensors.index.json",
        index_json({{"a.weight", "model-00001-of-00002.safetensors"}, {"b.weight", "model-00001-of-00002.safetensors"},
                    {"c.weight", "model-00002-of-00002.safetensors"}}));
  HfFolder h = HfFolder::open(d.str());
  EXPECT_EQ(h.shards().size(), 2u);
  EXPECT_EQ(h.tensor_names(), (std::vector<std::string>{"a.weight", "b.weight", "c.weight"}));
  EXPECT_EQ(&h.shard_of("c.weight"), &h.shards()[1]);
  EXPECT_EQ(h.tensor_bytes(), 24u);
}

TEST(HfFolder, IndexDisagreesWithShards) {
  TempDir d("disagree");
  write(d.p / "config.json", kConfig);
  write_weights(d.p / "s1.safetensors", {"a.weight"});
  write_weights(d.p / "s2.safetensors", {"b.weight"});
  write(d.p / "model.safetensors.index.json", index_json({{"a.weight", "s1.safetensors"}, {"b.weight", "s1.safetensors"}}));
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "does not contain it");
  write(d.p / "model.safetensors.index.json", index_json({{"a.weight", "s1.safetensors"}, {"b.weight", "s1.safetensors"}, {"x", "s2.safetensors"}}));
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "the index places it in 's1.safetensors'");
}

TEST(HfFolder, ShardNameWithDotDotIsRefused) {
  TempDir d("dotdot");
  write(d.p / "config.json", kConfig);
  write_weights(d.p.parent_path() / ("llmkit_hf_outside_" + std::to_string(::getpid()) + ".safetensors"), {"a.weight"});
  write(d.p / "model.safetensors.index.json",
        index_json({{"a.weight", "../llmkit_hf_outside_" + std::to_string(::getpid()) + ".safetensors"}}));
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "contains '..'");
  fs::remove(d.p.parent_path() / ("llmkit_hf_outside_" + std::to_string(::getpid()) + ".safetensors"));
}

TEST(HfFolder, AbsoluteShardNameIsRefused) {
  TempDir d("abs");
  write(d.p / "config.json", kConfig);
  write(d.p / "model.safetensors.index.json", index_json({{"a.weight", "/etc/passwd"}}));
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "absolute path");
}

TEST(HfFolder, SymlinkLeavingTheFolderIsRefused) {
  TempDir d("symlink");
  TempDir outside("symlink_target");
  write(d.p / "config.json", kConfig);
  write_weights(outside.p / "w.safetensors", {"a.weight"});
  fs::create_symlink(outside.p / "w.safetensors", d.p / "model.safetensors");
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "outside the folder");
  // A symlink to config.json outside is refused the same way.
  TempDir d2("symlink_cfg");
  write(outside.p / "config.json", kConfig);
  fs::create_symlink(outside.p / "config.json", d2.p / "config.json");
  expect_error([&] { HfFolder::open(d2.str()); }, ErrorCode::kInvalidFile, "outside the folder");
}

TEST(HfFolder, SymlinkInsideTheFolderAndHubCacheLayoutAreAccepted) {
  TempDir d("inside");
  write(d.p / "config.json", kConfig);
  write_weights(d.p / "real" / "w.safetensors", {"a.weight"});
  fs::create_symlink(d.p / "real" / "w.safetensors", d.p / "model.safetensors");
  EXPECT_EQ(HfFolder::open(d.str()).tensor_names().size(), 1u);
  // huggingface_hub: models--org--name/snapshots/REV/file -> ../../blobs/HASH
  TempDir hub("hub");
  fs::path repo = hub.p / "models--org--tiny";
  write_weights(repo / "blobs" / "abc123", {"a.weight"});
  write(repo / "blobs" / "cfg456", kConfig);
  fs::create_directories(repo / "snapshots" / "rev1");
  fs::create_symlink("../../blobs/abc123", repo / "snapshots" / "rev1" / "model.safetensors");
  fs::create_symlink("../../blobs/cfg456", repo / "snapshots" / "rev1" / "config.json");
  EXPECT_EQ(HfFolder::open((repo / "snapshots" / "rev1").string()).tensor_names().size(), 1u);
}

TEST(HfFolder, PickleOnlyIsRefusedWithAdvice) {
  TempDir d("pickle");
  write(d.p / "config.json", kConfig);
  write(d.p / "pytorch_model.bin", "PK\x03\x04 pretend pickle");
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kUnsupported, "safe_serialization=True");
}

TEST(HfFolder, PythonFilesAutoMapAndPickleNextToSafetensorsAreIgnored) {
  TempDir d("ignored");
  write(d.p / "config.json", R"({"model_type": "llama", "auto_map": {"AutoModel": "modeling_evil.Model"}})");
  write(d.p / "modeling_evil.py", "import os; os.system('touch /tmp/llmkit_pwned')\n");
  write(d.p / "pytorch_model.bin", "pickle");
  write_weights(d.p / "model.safetensors", {"a.weight"});
  HfFolder h = HfFolder::open(d.str());
  ASSERT_EQ(h.ignored().size(), 3u);
  std::string all;
  for (const auto& s : h.ignored()) all += s + "\n";
  EXPECT_NE(all.find("auto_map"), std::string::npos);
  EXPECT_NE(all.find("modeling_evil.py"), std::string::npos);
  EXPECT_NE(all.find("pickle"), std::string::npos);
  EXPECT_FALSE(fs::exists("/tmp/llmkit_pwned"));
}

TEST(HfFolder, MissingPieces) {
  TempDir d("missing");
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kNotFound, "no config.json");
  write(d.p / "config.json", kConfig);
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kNotFound, "no *.safetensors");
  write(d.p / "model.safetensors.index.json", index_json({{"a.weight", "missing.safetensors"}}));
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kNotFound, "does not exist");
  write(d.p / "model.safetensors.index.json", "{not json");
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "not valid JSON");
  write(d.p / "config.json", "[1,");
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "not valid JSON");
  expect_error([&] { HfFolder::open((d.p / "nope").string()); }, ErrorCode::kNotFound, "not a folder");
}

TEST(HfFolder, TensorInTwoShards) {
  TempDir d("twice");
  write(d.p / "config.json", kConfig);
  write_weights(d.p / "a.safetensors", {"x.weight"});
  write_weights(d.p / "b.safetensors", {"x.weight"});
  expect_error([&] { HfFolder::open(d.str()); }, ErrorCode::kInvalidFile, "appears in two shards");
}

}  // namespace
}  // namespace llmkit::io
