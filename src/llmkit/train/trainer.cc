// The training loop; see trainer.h.
#include "llmkit/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <optional>
#include <sstream>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/io/atomic_write.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/convert.h"
#include "llmkit/models/weight_transforms.h"
#include "llmkit/tensor/device.h"
#include "llmkit/train/checkpoint.h"
#include "llmkit/train/data.h"
#include "llmkit/train/model.h"
#include "llmkit/train/sft.h"

namespace llmkit::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Point {
  int64_t step;
  double loss;
};

// A loss curve a person can look at: train loss as a line, validation loss as dots, axes with
// the step and loss ranges. Plain SVG, no external assets.
std::string loss_svg(const std::vector<Point>& train, const std::vector<Point>& val) {
  const double W = 640, H = 360, L = 60, R = 20, T = 20, B = 40;
  int64_t s0 = 0, s1 = 1;
  double lo = 1e300, hi = -1e300;
  for (const auto* v : {&train, &val})
    for (const Point& p : *v) {
      s1 = std::max(s1, p.step);
      lo = std::min(lo, p.loss);
      hi = std::max(hi, p.loss);
    }
  if (!(hi > lo)) lo -= 1, hi += 1;
  auto x = [&](int64_t s) { return L + (W - L - R) * static_cast<double>(s - s0) / static_cast<double>(s1 - s0); };
  auto y = [&](double v) { return T + (H - T - B) * (hi - v) / (hi - lo); };
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(1);
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" "
    << "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n"
    << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"black\"/>\n";
  o.precision(3);
  o << "<text x=\"" << L - 4 << "\" y=\"" << T + 4 << "\" text-anchor=\"end\">" << hi << "</text>\n"
    << "<text x=\"" << L - 4 << "\" y=\"" << H - B << "\" text-anchor=\"end\">" << lo << "</text>\n";
  o.precision(1);
  o << "<text x=\"" << L << "\" y=\"" << H - B + 16 << "\">" << s0 << "</text>\n"
    << "<text x=\"" << W - R << "\" y=\"" << H - B + 16 << "\" text-anchor=\"end\">" << s1 << "</text>\n"
    << "<text x=\"" << (W + L) / 2 << "\" y=\"" << H - 6 << "\" text-anchor=\"middle\">step</text>\n"
    << "<text x=\"14\" y=\"" << (H - B + T) / 2 << "\" transform=\"rotate(-90 14 " << (H - B + T) / 2
    << ")\" text-anchor=\"middle\">loss</text>\n";
  if (!train.empty()) {
    o << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
    for (const Point& p : train) o << x(p.step) << "," << y(p.loss) << " ";
    o << "\"/>\n";
  }
  for (const Point& p : val) o << "<circle cx=\"" << x(p.step) << "\" cy=\"" << y(p.loss) << "\" r=\"3\" fill=\"#d62728\"/>\n";
  o << "<text x=\"" << W - R - 150 << "\" y=\"" << T + 12 << "\" fill=\"#1f77b4\">train loss</text>\n"
    << "<text x=\"" << W - R - 70 << "\" y=\"" << T + 12 << "\" fill=\"#d62728\">validation</text>\n</svg>\n";
  return o.str();
}

std::vector<std::vector<int32_t>> rows(const std::vector<int32_t>& buf, int64_t batch, int64_t len) {
  std::vector<std::vector<int32_t>> r(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) r[static_cast<size_t>(b)].assign(buf.begin() + b * len, buf.begin() + (b + 1) * len);
  return r;
}

// out/export/hf (the source's config and tokenizer with the trained weights, in Hugging Face names
// and layout) and out/export/model.gguf converted from it.
std::string export_model(TrainModel& m, const std::string& source, const fs::path& out) {
  const fs::path dir = out / "export", tmp = out / "export.tmp", hf = tmp / "hf";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  if (fs::is_directory(source)) {
    fs::create_directories(hf);
    for (const auto& e : fs::directory_iterator(source)) {
      const std::string n = e.path().filename().string();
      if (e.is_regular_file() && n.find(".safetensors") == std::string::npos && n.find(".bin") == std::string::npos)
        fs::copy_file(e.path(), hf / n);
    }
  } else {
    models::ConvertOptions co;
    co.type = DType::kF32;
    models::convert_model(source, hf.string(), co);
    for (const auto& e : fs::directory_iterator(hf))
      if (e.path().filename().string().find(".safetensors") != std::string::npos) fs::remove(e.path());
  }
  const models::ModelConfig& cfg = m.config();
  const models::ArchInfo& arch = models::arch_info(cfg.family);
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  for (const auto& e : m.params().entries()) {
    const auto mapped = models::gguf_to_hf_name(arch, e.name, cfg.gated_mlp);
    LLMKIT_CHECK(mapped.has_value(), kUnsupported, "parameter '", e.name, "' has no Hugging Face name to export under");
    w.add_tensor(mapped->name, models::apply_transform(mapped->transform, cfg, e.var.value(), false, mapped->name).clone());
  }
  w.write((hf / "model.safetensors").string());
  models::convert_model(hf.string(), (tmp / "model.gguf").string(), models::ConvertOptions{});
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir);
  io::fsync_dir(out.string());
  return (dir / "model.gguf").string();
}

}  // namespace

double lr_at(const TrainOptions& o, int64_t step) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double lo = o.lr * o.min_lr_ratio;
  const int64_t span = std::max<int64_t>(1, o.steps - 1 - o.warmup);
  const double t = std::min(1.0, static_cast<double>(step - o.warmup) / static_cast<double>(span));
  if (o.schedule == "cosine") return lo + (o.lr - lo) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * t));
  if (o.schedule == "linear") return o.lr + (lo - o.lr) * t;
  return o.lr;
}

TrainResult train_model(const TrainOptions& o, const std::function<void(const StepInfo&)>& on_step) {
  LLMKIT_CHECK(o.seq_len >= 1 && o.batch >= 1 && o.grad_accum >= 1 && o.steps >= 1, kInvalidArgument,
               "seq_len (", o.seq_len, "), batch (", o.batch, "), grad_accum (", o.grad_accum, ") and steps (", o.steps,
               ") must all be >= 1");
  LLMKIT_CHECK(o.lr > 0 && std::isfinite(o.lr), kInvalidArgument, "--lr ", o.lr, " must be a positive number");
  LLMKIT_CHECK(o.warmup >= 0 && o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1, kInvalidArgument, "--warmup ", o.warmup,
               " must be >= 0 and --min-lr-ratio ", o.min_lr_ratio, " in [0, 1]");
  LLMKIT_CHECK(o.schedule == "cosine" || o.schedule == "linear" || o.schedule == "constant", kInvalidArgument,
               "--schedule '", o.schedule, "' must be cosine, linear or constant");
  LLMKIT_CHECK(o.clip >= 0 && o.eval_every >= 0 && o.save_every >= 0 && o.keep >= 0, kInvalidArgument,
               "--clip, --eval-every, --save-every and --keep must be >= 0");
  LLMKIT_CHECK(!o.out.empty(), kInvalidArgument, "no run folder given (--out)");
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out(o.out), ckdir = out / "checkpoints";
  fs::create_directories(out);

  // Every step allocates the same activation and gradient sizes: keep freed blocks for the next step
  // instead of returning them to the kernel and faulting in zeroed pages again (released at the end).
  struct CacheGuard {
    CacheGuard() { set_cpu_allocator_cache(std::getenv("LLMKIT_NO_ALLOC_CACHE") ? 0 : size_t{1} << 42); }
    ~CacheGuard() { set_cpu_allocator_cache(0); }
  } cache_guard;
  // The source weights are copied into the model's flat buffers; the file's mapping is dropped right
  // after (its pages would otherwise stay resident beside the copy: +4 bytes/parameter at F32).
  auto model = TrainModel::from_weights(models::Weights::open(o.model));
  model->set_recompute(o.recompute);
  ag::ParamStore& ps = model->params();
  LLMKIT_CHECK(o.optimizer == "adamw" || o.optimizer == "sgd", kInvalidArgument, "--optimizer '", o.optimizer,
               "' must be adamw or sgd");
  LLMKIT_CHECK(o.momentum >= 0 && o.momentum < 1, kInvalidArgument, "--momentum ", o.momentum, " must be in [0, 1)");
  LLMKIT_CHECK(o.task == "lm" || o.task == "sft", kInvalidArgument, "--task '", o.task,
               "' must be lm (next-token prediction on prepared data) or sft (chat/instruction JSONL)");
  LLMKIT_CHECK(o.seq_len <= model->config().n_ctx, kInvalidArgument, "--seq-len ", o.seq_len, " exceeds the model's ",
               model->config().n_ctx, " positions");
  const bool sft = o.task == "sft";
  std::string data_note;
  // The batch sources: windows of prepared token shards (lm), or packed SFT rows (sft).
  std::optional<TokenData> train_data, val_data;
  std::optional<BatchSampler> sampler;
  std::optional<SftSampler> sft_sampler;
  std::vector<TokenBatch> sft_val;
  bool can_eval = false;
  if (sft) {
    SftData sd = load_sft(o.data, o.model, o.seq_len, o.val_fraction, o.seed);
    const int32_t pad = 0;  // never attended to by a real token, never trained
    sft_sampler.emplace(pack_sft(sd.train, o.seq_len, pad), o.batch, o.seed);
    sft_val = pack_sft(sd.val, o.seq_len, pad);
    can_eval = o.eval_every > 0 && !sft_val.empty();
    data_note = str_cat("sft: ", sd.lines, " examples (", sd.train.size(), " train, ", sd.val.size(), " validation) in ",
                         sft_sampler->rows_per_epoch(), " packed rows of ", o.seq_len, " tokens; ", sd.trained_tokens,
                         " of ", sd.tokens, " tokens trained (assistant)",
                         sd.truncated ? str_cat("; ", sd.truncated, " examples cut to --seq-len") : std::string());
  } else {
    train_data.emplace(TokenData::open(o.data, "train"));
    LLMKIT_CHECK(train_data->n_vocab() <= model->config().n_vocab, kInvalidArgument, "the data was tokenized with a ",
                 train_data->n_vocab(), "-token vocabulary but the model has ", model->config().n_vocab,
                 " tokens: prepare the data with this model's tokenizer (-m)");
    sampler.emplace(*train_data, o.seq_len, o.batch, o.seed);
    val_data.emplace(TokenData::open(o.data, "val"));
    can_eval = o.eval_every > 0 && val_data->n_tokens() >= o.seq_len + 1;
  }
  std::vector<int32_t> buf(static_cast<size_t>(o.batch * (o.seq_len + 1)));
  auto next_loss = [&]() -> ag::Var {
    if (sft) return model->loss(sft_sampler->next());
    sampler->next(buf.data());
    return model->loss(rows(buf, o.batch, o.seq_len + 1));
  };
  auto data_state = [&] { return sft ? sft_sampler->state() : sampler->state(); };
  auto val_loss = [&]() -> double {
    ag::NoGrad ng;
    if (sft) {
      SftSampler vs(sft_val, o.batch, 0, /*shuffle=*/false);
      const int64_t n = std::max<int64_t>(1, std::min(o.eval_batches, vs.rows_per_epoch() / o.batch));
      double vsum = 0;
      for (int64_t i = 0; i < n; ++i) vsum += model->loss(vs.next()).value().data<float>()[0];
      return vsum / static_cast<double>(n);
    }
    BatchSampler vs(*val_data, o.seq_len, o.batch, 0, /*shuffle=*/false);
    const int64_t n = std::max<int64_t>(1, std::min(o.eval_batches, vs.windows_per_epoch() / o.batch));
    double vsum = 0;
    for (int64_t i = 0; i < n; ++i) {
      vs.next(buf.data());
      vsum += model->loss(rows(buf, o.batch, o.seq_len + 1)).value().data<float>()[0];
    }
    return vsum / static_cast<double>(n);
  };

  TrainResult r;
  r.data_note = data_note;
  for (const auto& e : ps.entries()) r.n_params += e.numel;
  std::vector<Point> train_pts, val_pts;
  double resumed_scale = 0;
  int64_t resumed_good_steps = 0;
  if (o.resume) {
    const std::string last = latest_checkpoint(ckdir.string());
    if (!last.empty()) {
      CheckpointState st = load_checkpoint(last, ps);
      resumed_scale = st.loss_scale;
      resumed_good_steps = st.scale_good_steps;
      if (sft)
        sft_sampler->restore(st.data);
      else
        sampler->restore(st.data);
      r.start_step = st.step;
      r.last_checkpoint = last;
    }
  }
  // Metrics of the steps this run keeps (a crashed run may have logged past its last checkpoint).
  const fs::path metrics = out / "metrics.jsonl";
  {
    std::vector<std::string> keep_lines;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || j.value("step", int64_t{0}) > r.start_step) continue;
      train_pts.push_back({j.value("step", int64_t{0}), j.value("loss", 0.0)});
      if (j.contains("val_loss")) val_pts.push_back({j.value("step", int64_t{0}), j["val_loss"].get<double>()});
      keep_lines.push_back(line);
    }
    std::string text;
    for (const auto& l : keep_lines) text += l + "\n";
    io::write_text_atomically(metrics.string(), text);
  }
  std::FILE* mf = std::fopen(metrics.string().c_str(), "a");
  LLMKIT_CHECK(mf != nullptr, kIo, "cannot append to ", metrics.string());

  ag::AdamWConfig acfg;
  acfg.beta1 = static_cast<float>(o.beta1);
  acfg.beta2 = static_cast<float>(o.beta2);
  acfg.eps = static_cast<float>(o.eps);
  acfg.weight_decay = static_cast<float>(o.weight_decay);
  const int64_t tokens_per_step = o.batch * o.seq_len * o.grad_accum;
  LLMKIT_CHECK(o.precision == "f32" || o.precision == "bf16" || o.precision == "f16", kInvalidArgument,
               "--precision '", o.precision, "' must be f32, bf16 or f16");
  const bool fp16 = o.precision == "f16";
  const DType compute_dtype = o.precision == "bf16" ? DType::kBF16 : fp16 ? DType::kF16 : DType::kF32;
  double loss_scale = fp16 ? o.loss_scale : 1.0;
  int64_t good_steps = 0;
  if (fp16 && resumed_scale > 0) {
    loss_scale = resumed_scale;
    good_steps = resumed_good_steps;
  }
  auto t_last = std::chrono::steady_clock::now();
  bool first = true;
  try {
    for (int64_t step = r.start_step; step < o.steps; ++step) {
      ps.zero_grad();
      double loss_sum = 0;
      bool overflow = false;
      {
        ag::ScopedCompute compute(compute_dtype);
        for (int64_t a = 0; a < o.grad_accum; ++a) {
          ag::Var loss = next_loss();
          const double lv = loss.value().data<float>()[0];
          if (!std::isfinite(lv) && fp16) {  // an F16 overflow in the forward: skip the step
            overflow = true;
            ag::Tape::current().clear();
            break;
          }
          LLMKIT_CHECK(std::isfinite(lv), kInvalidArgument, "step ", step + 1, ": the loss is ", lv,
                       "; lower --lr or raise --warmup (the last checkpoint is intact)");
          loss_sum += lv;
          const float k = static_cast<float>(loss_scale) / static_cast<float>(o.grad_accum);
          ag::backward(k != 1.0f ? ag::scale(loss, k) : loss);
        }
      }
      double norm = 0;
      if (fp16) {
        // Dynamic loss scaling (as torch.cuda.amp.GradScaler): gradients of loss x scale; inf/NaN
        // among them skips the step and halves the scale, else they are unscaled and the step
        // runs, and every scale_window good steps in a row double the scale.
        if (!overflow) {
          norm = ps.grad_norm();
          overflow = !std::isfinite(norm);
        }
        if (overflow) {
          ++r.skipped_steps;
          loss_scale *= 0.5;
          good_steps = 0;
          LLMKIT_CHECK(loss_scale >= 1.0, kInvalidArgument, "step ", step + 1, ": F16 overflows even with loss scale 1 ",
                       "(the values themselves exceed F16's range); use --precision bf16 or f32, or lower --lr");
          ps.zero_grad();
          norm = std::numeric_limits<double>::quiet_NaN();
        } else {
          ps.scale_grads(static_cast<float>(1.0 / loss_scale));
          if (++good_steps == o.scale_window) {
            loss_scale *= 2.0;
            good_steps = 0;
          }
        }
      }
      acfg.grad_scale = 1.0f;
      if (!overflow) {
        // AdamW applies the clipping factor as it reads each gradient (the same bits, one pass
        // fewer over the gradients); SGD clips them first.
        if (o.clip > 0 && o.optimizer == "sgd") {
          norm = ps.clip_grad_norm(o.clip);
        } else {
          norm = ps.grad_norm();
          if (o.clip > 0) acfg.grad_scale = ag::ParamStore::clip_factor(norm, o.clip);
        }
        LLMKIT_CHECK(std::isfinite(norm), kInvalidArgument, "step ", step + 1, ": the gradient norm is ", norm,
                     "; lower --lr or set --clip (the last checkpoint is intact)");
      }
      const double lr = lr_at(o, step);
      acfg.lr = static_cast<float>(lr);
      if (overflow) {
        // skipped: parameters and optimizer state unchanged
      } else if (o.optimizer == "sgd") {
        ag::SgdConfig sc;
        sc.lr = static_cast<float>(lr);
        sc.momentum = static_cast<float>(o.momentum);
        sc.weight_decay = static_cast<float>(o.weight_decay);
        ps.step_sgd(sc);
      } else {
        ps.step_adamw(acfg);
      }

      StepInfo si;
      si.step = step + 1;
      si.steps = o.steps;
      si.loss = loss_sum / static_cast<double>(o.grad_accum);
      si.lr = lr;
      si.grad_norm = norm;
      si.loss_scale = loss_scale;
      si.skipped = overflow;
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - t_last).count();
      t_last = now;
      si.tokens_per_s = dt > 0 ? static_cast<double>(tokens_per_step) / dt : 0;
      si.eta_s = dt * static_cast<double>(o.steps - step - 1);
      if (first) r.first_loss = si.loss, first = false;
      r.last_loss = si.loss;
      train_pts.push_back({si.step, si.loss});
      if (can_eval && (si.step % o.eval_every == 0 || si.step == o.steps)) {
        si.val_loss = val_loss();
        r.last_val_loss = si.val_loss;
        val_pts.push_back({si.step, si.val_loss});
      }
      json line = {{"step", si.step}, {"loss", si.loss}, {"lr", si.lr}, {"grad_norm", si.grad_norm},
                   {"tokens", si.step * tokens_per_step}, {"tokens_per_s", si.tokens_per_s}};
      if (std::isfinite(si.val_loss)) line["val_loss"] = si.val_loss;
      if (fp16) line["loss_scale"] = si.loss_scale;
      if (overflow) line["skipped"] = true;
      std::fprintf(mf, "%s\n", line.dump().c_str());
      std::fflush(mf);
      if ((o.save_every > 0 && si.step % o.save_every == 0) || si.step == o.steps) {
        CheckpointState st;
        st.step = si.step;
        st.data = data_state();
        st.lr = lr;
        st.loss_scale = loss_scale;
        st.scale_good_steps = good_steps;
        st.config_json = json{{"model", o.model}, {"data", o.data}, {"seq_len", o.seq_len}, {"batch", o.batch},
                              {"grad_accum", o.grad_accum}, {"steps", o.steps}, {"lr", o.lr}, {"schedule", o.schedule}}
                             .dump();
        r.last_checkpoint = save_checkpoint(ckdir.string(), ps, st, o.keep);
        const std::string svg = loss_svg(train_pts, val_pts);
        io::write_text_atomically((fs::path(r.last_checkpoint) / "loss.svg").string(), svg);
        io::write_text_atomically((out / "loss.svg").string(), svg);
        si.saved = true;
      }
      if (on_step) on_step(si);
    }
  } catch (...) {
    std::fclose(mf);
    throw;
  }
  std::fclose(mf);
  r.steps = o.steps;
  if (o.export_model) r.export_gguf = export_model(*model, o.model, out);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace llmkit::train

// ---- public API (include/llmkit/train.h) ----------------------------------------------------------
namespace llmkit {

TrainConfig train_config_from_json(const std::string& json_text) {
  using nlohmann::json;
  json j = json::parse(json_text, nullptr, false);
  LLMKIT_CHECK(!j.is_discarded() && j.is_object(), kInvalidArgument, "the training config is not a JSON object");
  TrainConfig c;
  for (const auto& [k, v] : j.items()) {
    auto num = [&](auto* field) {
      LLMKIT_CHECK(v.is_number(), kInvalidArgument, "config key '", k, "' must be a number, got ", v.dump());
      *field = v.get<std::remove_pointer_t<decltype(field)>>();
    };
    auto str = [&](std::string* field) {
      LLMKIT_CHECK(v.is_string(), kInvalidArgument, "config key '", k, "' must be a string, got ", v.dump());
      *field = v.get<std::string>();
    };
    auto flag = [&](bool* field) {
      LLMKIT_CHECK(v.is_boolean(), kInvalidArgument, "config key '", k, "' must be true or false, got ", v.dump());
      *field = v.get<bool>();
    };
    if (k == "model") str(&c.model);
    else if (k == "data") str(&c.data);
    else if (k == "out") str(&c.out);
    else if (k == "schedule") str(&c.schedule);
    else if (k == "seq_len") num(&c.seq_len);
    else if (k == "batch") num(&c.batch);
    else if (k == "grad_accum") num(&c.grad_accum);
    else if (k == "steps") num(&c.steps);
    else if (k == "warmup") num(&c.warmup);
    else if (k == "lr") num(&c.lr);
    else if (k == "min_lr_ratio") num(&c.min_lr_ratio);
    else if (k == "weight_decay") num(&c.weight_decay);
    else if (k == "beta1") num(&c.beta1);
    else if (k == "beta2") num(&c.beta2);
    else if (k == "eps") num(&c.eps);
    else if (k == "clip") num(&c.clip);
    else if (k == "eval_every") num(&c.eval_every);
    else if (k == "eval_batches") num(&c.eval_batches);
    else if (k == "save_every") num(&c.save_every);
    else if (k == "keep") num(&c.keep);
    else if (k == "seed") num(&c.seed);
    else if (k == "resume") flag(&c.resume);
    else if (k == "export_model") flag(&c.export_model);
    else if (k == "task") str(&c.task);
    else if (k == "optimizer") str(&c.optimizer);
    else if (k == "recompute") flag(&c.recompute);
    else if (k == "precision") str(&c.precision);
    else if (k == "loss_scale") num(&c.loss_scale);
    else if (k == "scale_window") num(&c.scale_window);
    else if (k == "momentum") num(&c.momentum);
    else if (k == "val_fraction") num(&c.val_fraction);
    else LLMKIT_CHECK(false, kInvalidArgument, "unknown training config key '", k, "'");
  }
  return c;
}

TrainPlan plan_training(const TrainConfig& c) {
  const models::Weights w = models::Weights::open(c.model.empty() ? std::string() : c.model);
  const models::ModelConfig& m = w.config();
  TrainPlan p;
  for (const auto& [name, t] : w.all()) p.n_params += t.numel();
  p.tokens_per_step = c.batch * c.seq_len * c.grad_accum;
  p.weight_bytes = 4.0 * static_cast<double>(p.n_params);
  p.grad_bytes = p.weight_bytes;
  p.optimizer_bytes = 2.0 * p.weight_bytes;
  // What the tape holds per token of a micro-batch: per layer the norm outputs, q/k/v (and their
  // rotated copies), attention output, projections and the MLP's gate, up and product (F32), plus
  // the logits and their softmax.
  const double per_layer = 6.0 * static_cast<double>(m.d_model) +
                           3.0 * static_cast<double>((m.n_heads + 2 * m.n_kv_heads) * m.head_dim) +
                           4.0 * static_cast<double>(m.d_ff);
  // With recomputation the tape keeps each layer's input (d_model) and one layer's activations.
  const double layers = c.recompute ? static_cast<double>(m.n_layers * m.d_model) + per_layer
                                    : static_cast<double>(m.n_layers) * per_layer;
  p.activation_bytes = 4.0 * static_cast<double>(c.batch * c.seq_len) * (layers + 2.0 * static_cast<double>(m.n_vocab));
  // F16 compute: each matmul's weight is kept rounded at 2 bytes for its backward (BF16 compute
  // rounds the F32 weights inside the GEMM and keeps no copy).
  if (c.precision == "f16") p.activation_bytes += 2.0 * static_cast<double>(p.n_params);
  p.total_bytes = p.weight_bytes + p.grad_bytes + p.optimizer_bytes + p.activation_bytes;
  return p;
}

TrainSummary run_training(const TrainConfig& c, const std::function<void(const TrainProgress&)>& on_step) {
  return train::train_model(c, on_step);
}

}  // namespace llmkit
