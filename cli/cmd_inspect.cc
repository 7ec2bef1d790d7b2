// `llmkit inspect FILE`: architecture, hyper-parameters, tensor table, tokenizer, chat template.
#include <cstdio>
#include <map>
#include <string>

#include "commands.h"
#include "llmkit/inspect.h"

namespace llmkit::cli {

namespace {
std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", b / double(1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  return buf;
}
}  // namespace

int run_inspect(const std::string& path, bool all_tensors) {
  InspectReport r = inspect_model(path);
  std::printf("file          %s\nformat        %s\narchitecture  %s\n", r.path.c_str(), r.format.c_str(),
              r.architecture.c_str());
  if (!r.name.empty()) std::printf("name          %s\n", r.name.c_str());
  std::printf("parameters    %.2f M\nsize          %s (tensor data %s)\n", r.n_params / 1e6,
              human_bytes(r.file_bytes).c_str(), human_bytes(r.tensor_bytes).c_str());
  std::printf("\nhyper-parameters\n");
  for (const auto& [k, v] : r.hyperparameters) std::printf("  %-36s %s\n", k.c_str(), v.c_str());
  std::printf("\ntokenizer\n");
  for (const auto& [k, v] : r.tokenizer) std::printf("  %-36s %s\n", k.c_str(), v.c_str());
  if (!r.other.empty()) {
    std::printf("\nother metadata\n");
    for (const auto& [k, v] : r.other) std::printf("  %-36s %s\n", k.c_str(), v.c_str());
  }
  std::map<std::string, std::pair<int, uint64_t>> by_type;
  for (const auto& t : r.tensors) {
    by_type[t.dtype].first++;
    by_type[t.dtype].second += t.bytes;
  }
  std::printf("\ntensors       %zu (", r.tensors.size());
  bool first = true;
  for (const auto& [type, cb] : by_type) {
    std::printf("%s%d %s, %s", first ? "" : "; ", cb.first, type.c_str(), human_bytes(cb.second).c_str());
    first = false;
  }
  std::printf(")\n");
  size_t shown = 0;
  for (const auto& t : r.tensors) {
    if (!all_tensors && shown >= 12 && r.tensors.size() > 14) {
      std::printf("  ... %zu more (--all to list every tensor)\n", r.tensors.size() - shown);
      break;
    }
    std::string shape = "[";
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(t.shape[i]);
    shape += "]";
    std::printf("  %-40s %-7s %-18s %s\n", t.name.c_str(), t.dtype.c_str(), shape.c_str(), human_bytes(t.bytes).c_str());
    ++shown;
  }
  if (!r.chat_template.empty()) std::printf("\nchat template\n%s\n", r.chat_template.c_str());
  return kExitOk;
}

}  // namespace llmkit::cli
