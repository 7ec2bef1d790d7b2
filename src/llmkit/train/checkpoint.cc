// Training checkpoints; see checkpoint.h.
#include "llmkit/train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/io/atomic_write.h"
#include "llmkit/io/safetensors.h"

namespace llmkit::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kPrefix = "step-";
constexpr size_t kDigits = 9;

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%09lld", static_cast<long long>(step));
  return buf;
}

// "step-000000123" -> 123; -1 for any other name.
int64_t parse_step(const std::string& name) {
  if (name.size() != std::strlen(kPrefix) + kDigits || name.rfind(kPrefix, 0) != 0) return -1;
  int64_t v = 0;
  for (size_t i = std::strlen(kPrefix); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

void copy_into(const Tensor& src, Tensor& dst, const std::string& what) {
  LLMKIT_CHECK(src.dtype() == DType::kF32 && src.numel() == dst.numel(), kInvalidFile, "checkpoint tensor '", what,
               "' has ", src.numel(), " ", dtype_name(src.dtype()), " values; the model expects ", dst.numel(), " F32");
  std::memcpy(dst.data<float>(), src.data<float>(), static_cast<size_t>(dst.numel()) * sizeof(float));
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t step = parse_step(e.path().filename().string());
    if (step >= 0 && e.is_directory() && fs::exists(e.path() / "state.json")) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  return all.empty() ? std::string() : all.back();
}

std::string save_checkpoint(const std::string& dir, ag::ParamStore& params, const CheckpointState& st, int keep) {
  LLMKIT_CHECK(params.allocated(), kInvalidArgument, "save_checkpoint: the parameter store is not allocated");
  LLMKIT_CHECK(st.step >= 0 && st.step < 1000000000, kInvalidArgument, "checkpoint step ", st.step, " is out of range");
  LLMKIT_CHECK(keep >= 0, kInvalidArgument, "--keep ", keep, " must be >= 0 (0 keeps every checkpoint)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  LLMKIT_CHECK(fs::is_directory(dir), kIo, "cannot create the checkpoint folder '", dir, "': ", ec.message());
  // Partial saves of earlier runs (killed mid-save) go first.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".step-", 0) == 0 && n.size() > 10 && n.compare(n.size() - 4, 4, ".tmp") == 0) fs::remove_all(e.path(), ec);
  }
  const fs::path final_path = fs::path(dir) / step_name(st.step);
  std::string tmp_name = step_name(st.step);
  tmp_name.insert(0, 1, '.');
  tmp_name.append(".tmp");
  const fs::path tmp = fs::path(dir) / tmp_name;
  LLMKIT_CHECK(!fs::exists(final_path), kInvalidArgument, "checkpoint ", final_path.string(),
               " exists already; remove it or save under another step");
  try {
    fs::create_directory(tmp);
    io::SafetensorsWriter model;
    model.set_metadata("format", "llmkit-checkpoint-v1");
    for (const auto& e : params.entries()) model.add_tensor(e.name, e.var.value());
    model.write((tmp / "model.safetensors").string());
    io::SafetensorsWriter opt;
    opt.add_tensor("m", params.m());
    opt.add_tensor("v", params.v());
    opt.write((tmp / "optimizer.safetensors").string());
    json j;
    j["format"] = "llmkit-checkpoint-v1";
    j["step"] = st.step;
    j["optimizer_steps"] = params.step_count();
    j["data"] = {{"seed", st.data.seed}, {"epoch", st.data.epoch}, {"cursor", st.data.cursor}};
    j["rng"] = st.rng;
    j["lr"] = st.lr;
    j["loss_scale"] = st.loss_scale;
    j["scale_good_steps"] = st.scale_good_steps;
    json cfg = json::parse(st.config_json, nullptr, false);
    j["config"] = cfg.is_discarded() ? json(st.config_json) : cfg;
    io::write_text_atomically((tmp / "state.json").string(), j.dump(2) + "\n");
    io::fsync_dir(tmp.string());
    fs::rename(tmp, final_path, ec);
    LLMKIT_CHECK(!ec, kIo, "cannot commit checkpoint ", final_path.string(), ": ", ec.message());
    io::fsync_dir(dir);
  } catch (...) {
    std::error_code ec2;
    fs::remove_all(tmp, ec2);
    throw;
  }
  if (keep > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i], ec);
  }
  return final_path.string();
}

CheckpointState load_checkpoint(const std::string& path, ag::ParamStore& params) {
  LLMKIT_CHECK(params.allocated(), kInvalidArgument, "load_checkpoint: the parameter store is not allocated");
  const fs::path p(path);
  std::ifstream in(p / "state.json");
  LLMKIT_CHECK(in.good(), kNotFound, "'", path, "' is not a checkpoint (no state.json)");
  json j = json::parse(in, nullptr, false);
  LLMKIT_CHECK(!j.is_discarded() && j.is_object() && j.value("format", "") == "llmkit-checkpoint-v1", kInvalidFile,
               (p / "state.json").string(), " is not an llmkit checkpoint state");
  auto model = io::SafetensorsFile::open((p / "model.safetensors").string());
  for (const auto& e : params.entries()) {
    LLMKIT_CHECK(model.find_tensor(e.name) != nullptr, kInvalidFile, "checkpoint ", path, " has no tensor '", e.name,
                 "' (saved from another model?)");
    Tensor dst = e.var.value();
    copy_into(model.tensor(e.name), dst, e.name);
  }
  auto opt = io::SafetensorsFile::open((p / "optimizer.safetensors").string());
  copy_into(opt.tensor("m"), params.m(), "m");
  copy_into(opt.tensor("v"), params.v(), "v");
  params.set_step_count(j.value("optimizer_steps", int64_t{0}));
  CheckpointState st;
  st.step = j.value("step", int64_t{0});
  const json& d = j["data"];
  st.data.seed = d.value("seed", uint64_t{0});
  st.data.epoch = d.value("epoch", int64_t{0});
  st.data.cursor = d.value("cursor", int64_t{0});
  st.rng = j.value("rng", uint64_t{0});
  st.lr = j.value("lr", 0.0);
  st.loss_scale = j.value("loss_scale", 1.0);
  st.scale_good_steps = j.value("scale_good_steps", int64_t{0});
  st.config_json = j.contains("config") ? j["config"].dump() : "{}";
  return st;
}

}  // namespace llmkit::train
