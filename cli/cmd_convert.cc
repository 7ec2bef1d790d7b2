// `llmkit convert IN OUT [--type T]`: Hugging Face folder <-> GGUF, with a progress bar on stderr
// (redrawn in place on a terminal; a plain percentage line every 10% otherwise, so logs stay short).
#include <chrono>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "commands.h"
#include "llmkit/convert.h"

namespace llmkit::cli {
namespace {

class Progress {
 public:
  Progress() : tty_(isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}
  void operator()(uint64_t done, uint64_t total) {
    if (total == 0) return;
    const int pct = static_cast<int>(done * 100 / total);
    if (tty_) {
      if (pct == last_) return;
      const int width = 40, fill = pct * width / 100;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      std::fprintf(stderr, "\r[%.*s%*s] %3d%%  %.1f / %.1f MiB  %.0fs", fill, "########################################",
                   width - fill, "", pct, done / 1048576.0, total / 1048576.0, secs);
      if (pct == 100) std::fputc('\n', stderr);
    } else {
      if (pct / 10 == last_ / 10 && last_ >= 0) return;
      std::fprintf(stderr, "convert: %d%%\n", pct / 10 * 10);
    }
    last_ = pct;
    std::fflush(stderr);
  }

 private:
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  int last_ = -1;
};

}  // namespace

int run_convert(const std::string& in, const std::string& out, const std::string& type) {
  auto progress = std::make_shared<Progress>();
  ConvertSummary s = convert_model_files(in, out, type, [progress](uint64_t d, uint64_t t) { (*progress)(d, t); });
  std::printf("converted %s (%s, %zu tensors, %.1f MiB -> %.1f MiB)\n", s.direction.c_str(), s.architecture.c_str(),
              s.n_tensors, s.bytes_in / 1048576.0, s.bytes_out / 1048576.0);
  for (const auto& f : s.files) std::printf("  wrote %s\n", f.c_str());
  for (const auto& n : s.notes) std::printf("  note: %s\n", n.c_str());
  return kExitOk;
}

int run_random_init(const std::string& config_json, const std::string& out, const std::string& type, uint64_t seed) {
  auto progress = std::make_shared<Progress>();
  ConvertSummary s = random_model_file(config_json, out, type, seed, [progress](uint64_t d, uint64_t t) { (*progress)(d, t); });
  std::printf("wrote a random %s model (%zu tensors, %.1f MiB, seed %llu)\n", s.architecture.c_str(), s.n_tensors,
              s.bytes_out / 1048576.0, static_cast<unsigned long long>(seed));
  for (const auto& f : s.files) std::printf("  wrote %s\n", f.c_str());
  for (const auto& n : s.notes) std::printf("  note: %s\n", n.c_str());
  return kExitOk;
}

}  // namespace llmkit::cli
