// `llmkit train --config run.json [flags]`: the training loop (src/llmkit/train/trainer.h) with a
// progress bar (step, loss, tokens/s, LR, ETA), the validation loss when it is computed, a memory
// estimate before the first step and the measured peak at the end. Config files (.json, .yaml,
// .toml) use the long flag names with '_' for '-' as keys (model, data, out, seq_len, lr, ...);
// flags given on the command line override the file.
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/train.h"

namespace llmkit::cli {

int run_train(const TrainCli& c) {
  nlohmann::json j = nlohmann::json::object();
  if (!c.config.empty()) j = nlohmann::json::parse(train_config_file_json(c.config));
  // Flags override the file; their text is a JSON number or boolean when it parses as one.
  for (const auto& [key, text] : c.overrides) {
    nlohmann::json v = nlohmann::json::parse(text, nullptr, false);
    j[key] = (!v.is_discarded() && (v.is_number() || v.is_boolean())) ? v : nlohmann::json(text);
  }
  TrainConfig cfg = train_config_from_json(j.dump());
  if (cfg.model.empty()) cfg.model = default_model_path();
  if (cfg.data.empty() || cfg.out.empty())
    throw Error(ErrorCode::kInvalidArgument,
                cfg.task == "sft" ? "fine-tuning needs a data file and a run folder" : "training needs a data folder and a run folder",
                cfg.task == "sft" ? "give --data FILE.jsonl (chats or Alpaca records) and --out DIR"
                                  : "give --data DIR (from `llmkit data prepare`) and --out DIR, or \"data\" and \"out\" in --config");
  const bool tty = isatty(fileno(stderr));
  const TrainPlan plan = plan_training(cfg);
  std::fprintf(stderr,
               "train: %s, %.1f M parameters; memory estimate %.0f MB (weights %.0f + gradients %.0f + AdamW %.0f + "
               "activations %.0f); %lld tokens per step\n",
               cfg.model.c_str(), static_cast<double>(plan.n_params) / 1e6, plan.total_bytes / 1e6, plan.weight_bytes / 1e6,
               plan.grad_bytes / 1e6, plan.optimizer_bytes / 1e6, plan.activation_bytes / 1e6,
               static_cast<long long>(plan.tokens_per_step));
  const TrainSummary s = run_training(cfg, [tty](const TrainProgress& p) {
    const int width = 24, filled = static_cast<int>(width * p.step / std::max<int64_t>(1, p.steps));
    char val[96] = "";
    if (std::isfinite(p.val_loss)) std::snprintf(val, sizeof val, " val %.4f", p.val_loss);
    if (p.skipped) std::snprintf(val + std::strlen(val), sizeof val - std::strlen(val), " [f16 overflow: skipped, scale %.0f]", p.loss_scale);
    const int eta = static_cast<int>(p.eta_s);
    if (tty)
      std::fprintf(stderr, "\r[%.*s%*s] step %lld/%lld loss %.4f%s lr %.2e |g| %.3f %.0f tok/s ETA %dm%02ds%s ", filled,
                   "========================", width - filled, "", static_cast<long long>(p.step),
                   static_cast<long long>(p.steps), p.loss, val, p.lr, p.grad_norm, p.tokens_per_s, eta / 60, eta % 60,
                   p.saved ? " [saved]" : "");
    else
      std::fprintf(stderr, "step %lld/%lld loss %.4f%s lr %.2e |g| %.3f %.0f tok/s ETA %dm%02ds%s\n",
                   static_cast<long long>(p.step), static_cast<long long>(p.steps), p.loss, val, p.lr, p.grad_norm,
                   p.tokens_per_s, eta / 60, eta % 60, p.saved ? " [saved]" : "");
    if (tty && p.step == p.steps) std::fprintf(stderr, "\n");
  });
  if (!s.data_note.empty()) std::printf("%s\n", s.data_note.c_str());
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("trained steps %lld..%lld in %.1f s: loss %.4f -> %.4f%s; peak RSS %.0f MB (estimate %.0f MB)\n",
              static_cast<long long>(s.start_step), static_cast<long long>(s.steps), s.seconds, s.first_loss, s.last_loss,
              std::isfinite(s.last_val_loss) ? (", validation " + std::to_string(s.last_val_loss)).c_str() : "",
              static_cast<double>(ru.ru_maxrss) / 1024.0, plan.total_bytes / 1e6);
  std::printf("checkpoint: %s\n", s.last_checkpoint.c_str());
  if (!s.export_gguf.empty()) std::printf("model: %s (run it: llmkit chat -m %s)\n", s.export_gguf.c_str(), s.export_gguf.c_str());
  return kExitOk;
}

}  // namespace llmkit::cli
