// The training loop: the LR schedule; a run that learns a repeating token pattern (loss falls,
// validation evaluated, metrics.jsonl and loss.svg written); a run stopped and resumed from its
// checkpoint ends with bitwise the parameters of an uninterrupted one; NaN is caught and named by
// step; the exported GGUF loads in the inference engine and gives the trained model's loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "llmkit/error.h"
#include "llmkit/models/transformer.h"
#include "llmkit/train/checkpoint.h"
#include "llmkit/ops/ops.h"
#include "llmkit/tensor/half.h"
#include "llmkit/tokenizer.h"
#include "llmkit/train.h"
#include "llmkit/train/model.h"
#include "llmkit/train/sft.h"
#include "llmkit/train/trainer.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;
using train::TrainOptions;

const std::string kModel = std::string(LLMKIT_TESTDATA_DIR) + "/tiny/llama";

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("llmkit_test_train_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A prepared data folder (the format of include/llmkit/data.h) holding a token pattern with period
// 7 over ids 3..9: learnable in a few steps.
std::string pattern_data(const fs::path& dir) {
  const fs::path d = dir / "data";
  fs::create_directories(d);
  auto shard = [&](const char* name, int64_t n) {
    std::ofstream f(d / name, std::ios::binary);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t t = static_cast<uint16_t>(3 + (i * 3) % 7);
      f.write(reinterpret_cast<const char*>(&t), 2);
    }
  };
  shard("train-00000.bin", 4000);
  shard("val-00000.bin", 400);
  std::ofstream(d / "index.json") << R"({"format": "llmkit-tokens-v1", "n_vocab": 64, "token_bytes": 2, "separator": 2,
    "train": [{"file": "train-00000.bin", "tokens": 4000}], "val": [{"file": "val-00000.bin", "tokens": 400}]})";
  return d.string();
}

TrainOptions options(const fs::path& dir) {
  TrainOptions o;
  o.model = kModel;
  o.data = pattern_data(dir);
  o.out = (dir / "run").string();
  o.seq_len = 16;
  o.batch = 2;
  o.steps = 12;
  o.warmup = 2;
  o.lr = 1e-2;
  o.eval_every = 4;
  o.eval_batches = 2;
  o.save_every = 6;
  o.export_model = false;
  return o;
}

TEST(Train, LearningRateScheduleWarmsUpThenDecays) {
  TrainOptions o;
  o.lr = 1.0;
  o.steps = 11;
  o.warmup = 2;
  o.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(train::lr_at(o, 0), 0.5);
  EXPECT_DOUBLE_EQ(train::lr_at(o, 1), 1.0);
  EXPECT_DOUBLE_EQ(train::lr_at(o, 2), 1.0);   // cosine starts at the peak
  EXPECT_NEAR(train::lr_at(o, 10), 0.1, 1e-12);  // and ends at lr x min_lr_ratio
  EXPECT_NEAR(train::lr_at(o, 6), 0.55, 1e-12);  // halfway: the mean
  o.schedule = "linear";
  EXPECT_NEAR(train::lr_at(o, 6), 0.55, 1e-12);
  EXPECT_NEAR(train::lr_at(o, 4), 0.775, 1e-12);
  o.schedule = "constant";
  EXPECT_DOUBLE_EQ(train::lr_at(o, 9), 1.0);
}

TEST(Train, LearnsAPatternAndWritesMetricsPlotAndCheckpoints) {
  const fs::path dir = temp_dir("learn");
  TrainOptions o = options(dir);
  o.steps = 30;
  o.save_every = 10;
  o.keep = 2;
  int calls = 0;
  train::TrainResult r = train::train_model(o, [&](const train::StepInfo& s) {
    ++calls;
    EXPECT_TRUE(std::isfinite(s.loss));
    EXPECT_GT(s.lr, 0);
  });
  EXPECT_EQ(calls, 30);
  EXPECT_LT(r.last_loss, 0.5 * r.first_loss) << r.first_loss << " -> " << r.last_loss;
  EXPECT_TRUE(std::isfinite(r.last_val_loss));
  EXPECT_LT(r.last_val_loss, 0.5 * r.first_loss);
  std::ifstream m(fs::path(o.out) / "metrics.jsonl");
  int lines = 0, with_val = 0;
  for (std::string l; std::getline(m, l); ++lines) with_val += l.find("val_loss") != std::string::npos;
  EXPECT_EQ(lines, 30);
  EXPECT_EQ(with_val, 30 / 4 + 1);  // every 4 steps and the last
  std::ifstream svg(fs::path(o.out) / "loss.svg");
  const std::string s((std::istreambuf_iterator<char>(svg)), {});
  EXPECT_NE(s.find("<svg"), std::string::npos);
  EXPECT_NE(s.find("<polyline"), std::string::npos);
  EXPECT_NE(s.find("<circle"), std::string::npos);
  const auto cks = train::list_checkpoints((fs::path(o.out) / "checkpoints").string());
  ASSERT_EQ(cks.size(), 2u);  // steps 20 and 30 (keep 2)
  EXPECT_TRUE(fs::exists(fs::path(cks.back()) / "loss.svg"));
  fs::remove_all(dir);
}

// Activation recomputation changes memory, not results: the same loss and bitwise the same
// gradients with and without it (every dense family's layer code is shared, so one model suffices;
// gpt2 covers biases, LayerNorm and learned positions).
TEST(Train, RecomputationGivesBitwiseTheSameGradients) {
  for (const char* name : {"llama", "gpt2", "llama/bf16"}) {
    const bool bf16 = std::string(name) == "llama/bf16";
    const std::string path = std::string(LLMKIT_TESTDATA_DIR) + "/tiny/" + (bf16 ? "llama" : name);
    ag::ScopedCompute precision(bf16 ? DType::kBF16 : DType::kF32);
    std::vector<std::vector<int32_t>> batch(2);
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < 12; ++t) batch[static_cast<size_t>(b)].push_back((7 * t + 3 * b + 1) % 50);
    std::vector<float> grads[2];
    float losses[2];
    size_t tape[2];
    for (int rc = 0; rc < 2; ++rc) {
      auto m = train::TrainModel::from_weights(models::Weights::open(path));
      m->set_recompute(rc == 1);
      m->params().zero_grad();
      ag::Var l = m->loss(batch);
      tape[rc] = ag::Tape::current().size();
      ag::backward(l);
      losses[rc] = l.value().data<float>()[0];
      const Tensor& g = m->params().grads();
      grads[rc].assign(g.data<float>(), g.data<float>() + g.numel());
    }
    EXPECT_EQ(losses[0], losses[1]) << name;
    EXPECT_LT(tape[1] * 3, tape[0]) << name << ": with recomputation the tape holds one entry per layer";
    ASSERT_EQ(grads[0].size(), grads[1].size());
    EXPECT_EQ(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)), 0) << name;
    double norm = 0;
    for (float v : grads[1]) norm += static_cast<double>(v) * v;
    EXPECT_GT(norm, 0) << name << ": no gradient reached the parameters";
  }
}

// The same settings from JSON, YAML and TOML files; syntax errors and unknown keys are named.
TEST(Train, ConfigFilesInJsonYamlAndToml) {
  const fs::path dir = temp_dir("config");
  std::ofstream(dir / "a.json") << R"({"model": "m.gguf", "data": "d", "seq_len": 128, "lr": 1e-4, "resume": false,
                                      "schedule": "linear", "task": "sft", "recompute": true})";
  std::ofstream(dir / "a.yaml") << "# run\nmodel: m.gguf\ndata: d\nseq_len: 128\nlr: 1e-4\nresume: false\n"
                                   "schedule: linear\ntask: sft\nrecompute: true\n";
  std::ofstream(dir / "a.toml") << "# run\nmodel = \"m.gguf\"\ndata = \"d\"\nseq_len = 128\nlr = 1e-4\n"
                                   "resume = false\nschedule = \"linear\"\ntask = \"sft\"\nrecompute = true\n";
  for (const char* f : {"a.json", "a.yaml", "a.toml"}) {
    const TrainConfig c = train_config_from_json(train_config_file_json((dir / f).string()));
    EXPECT_EQ(c.model, "m.gguf") << f;
    EXPECT_EQ(c.data, "d") << f;
    EXPECT_EQ(c.seq_len, 128) << f;
    EXPECT_DOUBLE_EQ(c.lr, 1e-4) << f;
    EXPECT_FALSE(c.resume) << f;
    EXPECT_EQ(c.schedule, "linear") << f;
    EXPECT_EQ(c.task, "sft") << f;
    EXPECT_TRUE(c.recompute) << f;
  }
  auto error_of = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    try {
      train_config_from_json(train_config_file_json((dir / name).string()));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("b.toml", "seq_len = = 3\n").find("line 1"), std::string::npos);
  EXPECT_NE(error_of("b.yaml", "seq_len: [1, 2\n").find("YAML"), std::string::npos);
  EXPECT_NE(error_of("c.yaml", "seq_lenn: 3\n").find("seq_lenn"), std::string::npos);
  EXPECT_NE(error_of("d.yaml", "seq_len: many\n").find("seq_len"), std::string::npos);
  EXPECT_THROW(train_config_file_json((dir / "missing.yaml").string()), Error);
  fs::remove_all(dir);
}

// BF16 compute: a matmul's value is the F32 product of its inputs rounded to BF16, its gradients
// those of the rounded operands with the incoming gradient rounded too; training with it learns.
TEST(Train, Bf16ComputeRoundsMatmulOperandsAndLearns) {
  Tensor xt = Tensor::empty({3, 5}, DType::kF32), wt = Tensor::empty({4, 5}, DType::kF32);
  for (int i = 0; i < 15; ++i) xt.data<float>()[i] = 0.1f * static_cast<float>(i) + 0.0123f;
  for (int i = 0; i < 20; ++i) wt.data<float>()[i] = 0.05f * static_cast<float>(i) - 0.4567f;
  ag::Var x(xt, true), w(wt, true);
  ag::Var y;
  {
    ag::ScopedCompute bf16(DType::kBF16);
    y = ag::matmul(x, w);
  }
  auto r = [](float v) { return bf16_to_f32(f32_to_bf16(v)); };
  for (int m = 0; m < 3; ++m)
    for (int n = 0; n < 4; ++n) {
      float want = 0;
      for (int k = 0; k < 5; ++k) want += r(xt.data<float>()[m * 5 + k]) * r(wt.data<float>()[n * 5 + k]);
      EXPECT_NEAR(y.value().data<float>()[m * 4 + n], want, 1e-6f);
      float plain = 0;
      for (int k = 0; k < 5; ++k) plain += xt.data<float>()[m * 5 + k] * wt.data<float>()[n * 5 + k];
      if (m == 2 && n == 3) {
        EXPECT_GT(std::fabs(want - plain), 1e-4f) << "the test values must be rounded by BF16";
      }
    }
  ag::backward(ag::sum(y));
  for (int n = 0; n < 4; ++n)
    for (int k = 0; k < 5; ++k) {
      float want = 0;
      for (int m = 0; m < 3; ++m) want += r(xt.data<float>()[m * 5 + k]);  // dy = 1 is exact in BF16
      EXPECT_NEAR(w.grad().data<float>()[n * 5 + k], want, 1e-6f);
    }
  const fs::path dir = temp_dir("bf16");
  TrainOptions o = options(dir);
  o.precision = "bf16";
  o.steps = 30;
  o.eval_every = 0;
  const train::TrainResult res = train::train_model(o);
  EXPECT_LT(res.last_loss, 0.5 * res.first_loss) << res.first_loss << " -> " << res.last_loss;
  fs::remove_all(dir);
}

// F16 compute under dynamic loss scaling: a scale far too large overflows F16 in the backward; those
// steps are skipped (parameters untouched, scale halved) until it fits, then training proceeds.
TEST(Train, F16LossScalerSkipsOverflowingStepsAndLearns) {
  const fs::path dir = temp_dir("f16");
  TrainOptions o = options(dir);
  o.precision = "f16";
  o.loss_scale = 1073741824.0;  // 2^30
  o.scale_window = 10;
  o.steps = 40;
  o.eval_every = 0;
  o.save_every = 0;
  int skipped = 0, updated_after_skips = 0;
  double last_scale = 0;
  const train::TrainResult r = train::train_model(o, [&](const train::StepInfo& s) {
    if (s.skipped) {
      ++skipped;
      EXPECT_EQ(updated_after_skips, 0) << "overflow again after the scale had settled, step " << s.step;
    } else if (skipped) {
      ++updated_after_skips;
    }
    last_scale = s.loss_scale;
  });
  EXPECT_GE(skipped, 3);
  EXPECT_EQ(r.skipped_steps, skipped);
  EXPECT_GT(updated_after_skips, 15);
  EXPECT_LT(last_scale, 1073741824.0);
  EXPECT_LT(r.last_loss, 0.6 * r.first_loss) << r.first_loss << " -> " << r.last_loss;
  std::ifstream m(fs::path(o.out) / "metrics.jsonl");
  int lines_skipped = 0;
  for (std::string l; std::getline(m, l);) lines_skipped += l.find("\"skipped\":true") != std::string::npos;
  EXPECT_EQ(lines_skipped, skipped);
  o.precision = "fp8";
  EXPECT_THROW(train::train_model(o), Error);
  fs::remove_all(dir);
}

TEST(Train, SgdWithMomentumLearnsThePattern) {
  const fs::path dir = temp_dir("sgd");
  TrainOptions o = options(dir);
  o.optimizer = "sgd";
  o.momentum = 0.9;
  o.weight_decay = 0.0;
  o.lr = 0.3;
  o.steps = 30;
  o.eval_every = 0;
  const train::TrainResult r = train::train_model(o);
  EXPECT_LT(r.last_loss, 0.6 * r.first_loss) << r.first_loss << " -> " << r.last_loss;
  o.optimizer = "adam";
  EXPECT_THROW(train::train_model(o), Error);
  fs::remove_all(dir);
}

TEST(Train, ResumedRunEndsBitwiseWhereAnUninterruptedOneDoes) {
  const fs::path dir = temp_dir("resume");
  TrainOptions straight = options(dir);
  straight.out = (dir / "straight").string();
  train::train_model(straight);
  // The same run dies right after its step-6 checkpoint (and after logging step 7's metrics would
  // have been the same), then is started again with the same options: it resumes at step 6.
  TrainOptions a = options(dir);
  a.out = (dir / "resumed").string();
  struct Crash {};
  EXPECT_THROW(train::train_model(a, [](const train::StepInfo& s) {
                 if (s.step == 6) throw Crash{};
               }),
               Crash);
  train::TrainResult r = train::train_model(a);
  EXPECT_EQ(r.start_step, 6);
  auto load = [](const std::string& run) {
    std::ifstream f(train::latest_checkpoint(run + "/checkpoints") + "/model.safetensors", std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  };
  const std::string s1 = load(straight.out), s2 = load(a.out);
  ASSERT_GT(s1.size(), 1000u);
  EXPECT_TRUE(s1 == s2) << "the resumed run's parameters differ from the uninterrupted run's";
  std::ifstream m1(fs::path(straight.out) / "metrics.jsonl"), m2(fs::path(a.out) / "metrics.jsonl");
  auto lines = [](std::ifstream& f) {
    std::vector<std::string> v;
    for (std::string l; std::getline(f, l);) v.push_back(l.substr(0, l.find("\"tokens_per_s\"")));
    return v;
  };
  EXPECT_EQ(lines(m1), lines(m2)) << "metrics of the resumed run differ (losses, lr, norms)";
  fs::remove_all(dir);
}

TEST(Train, NanIsCaughtAndNamedByStep) {
  const fs::path dir = temp_dir("nan");
  TrainOptions o = options(dir);
  o.lr = 1e30;  // the first update blows the weights up
  o.warmup = 0;
  o.clip = 0;
  try {
    train::train_model(o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2"), std::string::npos) << e.what();
  }
  o.lr = -1;
  EXPECT_THROW(train::train_model(o), Error);
  fs::remove_all(dir);
}

TEST(Train, ExportedGgufLoadsAndGivesTheTrainedLoss) {
  const fs::path dir = temp_dir("export");
  TrainOptions o = options(dir);
  o.steps = 8;
  o.export_model = true;
  train::TrainResult r = train::train_model(o);
  ASSERT_TRUE(fs::exists(r.export_gguf));
  EXPECT_TRUE(fs::exists(fs::path(o.out) / "export" / "hf" / "config.json"));
  // The trained weights (from the last checkpoint) and the exported GGUF give the same loss on
  // one sequence of the pattern, through two different engines.
  std::vector<int32_t> seq;
  for (int i = 0; i < 16; ++i) seq.push_back(3 + (i * 3) % 7);
  auto tm = train::TrainModel::from_weights(models::Weights::open(kModel));
  train::load_checkpoint(r.last_checkpoint, tm->params());
  ag::NoGrad ng;
  const double want = tm->loss({seq}).value().data<float>()[0];
  auto inf = models::Transformer::load(r.export_gguf);
  models::KVCache cache = inf->new_cache(16);
  Tensor logits = inf->forward(seq, cache, 16);  // [16, V]
  double nll = 0;
  for (int t = 0; t + 1 < 16; ++t) {
    const float* row = logits.data<float>() + t * logits.dim(1);
    double mx = row[0], sum = 0;
    for (int64_t v = 0; v < logits.dim(1); ++v) mx = std::max<double>(mx, row[v]);
    for (int64_t v = 0; v < logits.dim(1); ++v) sum += std::exp(row[v] - mx);
    nll += -(row[seq[static_cast<size_t>(t + 1)]] - mx - std::log(sum));
  }
  EXPECT_NEAR(nll / 15, want, 1e-4 * want);
  EXPECT_LT(want, 0.8 * r.first_loss) << "the exported model did not learn";
  fs::remove_all(dir);
}


// ---- SFT -----------------------------------------------------------------------------------------
// testdata/hf/tiny-llama: a 300-token BPE tokenizer and the chat template
// "<s>{role}: {content}</s>" per message, "<s>assistant: " as the generation prompt.
const std::string kChatModel = std::string(LLMKIT_TESTDATA_DIR) + "/hf/tiny-llama";

std::string write_jsonl(const fs::path& dir, const std::string& text) {
  const fs::path f = dir / "sft.jsonl";
  std::ofstream(f) << text;
  return f.string();
}

TEST(Sft, OnlyTheAssistantsTokensAreTrained) {
  const fs::path dir = temp_dir("sft_labels");
  const std::string f = write_jsonl(dir,
      R"({"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello you"}, )"
      R"({"role": "user", "content": "and now"}, {"role": "assistant", "content": "bye"}]})" "\n"
      "\n"
      R"({"instruction": "say yes", "input": "please", "output": "yes"})" "\n");
  const train::SftData d = train::load_sft(f, kChatModel, 64, 0.0, 1);
  ASSERT_EQ(d.train.size(), 2u);
  EXPECT_EQ(d.lines, 2);
  const Tokenizer tok = Tokenizer::load(kChatModel);
  auto text_of = [&](const train::SftExample& ex, uint8_t trained) {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < ex.ids.size(); ++i)
      if (ex.trained[i] == trained) ids.push_back(ex.ids[i]);
    return tok.decode(ids, false);
  };
  // The replies and their end-of-turn are trained; roles, prompts and the user's words are not.
  EXPECT_EQ(text_of(d.train[0], 1), "hello you</s>bye</s>");
  const std::string context = text_of(d.train[0], 0);
  EXPECT_NE(context.find("hi there"), std::string::npos);
  EXPECT_NE(context.find("and now"), std::string::npos);
  EXPECT_EQ(context.find("hello"), std::string::npos);
  // The whole example is the rendered conversation.
  EXPECT_EQ(tok.decode(d.train[0].ids, false),
            "<s>user: hi there</s><s>assistant: hello you</s><s>user: and now</s><s>assistant: bye</s>");
  // Alpaca: the instruction and input become the user turn.
  EXPECT_EQ(text_of(d.train[1], 1), "yes</s>");
  EXPECT_NE(text_of(d.train[1], 0).find("say yes\n\nplease"), std::string::npos);

  // Bad records name their line.
  auto error_of = [&](const std::string& text) {
    try {
      train::load_sft(write_jsonl(dir, text), kChatModel, 64, 0.0, 1);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("{\"instruction\": \"a\", \"output\": \"b\"}\nnot json\n").find("line 2"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "only a question"}]})").find("no assistant"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"text": "plain"})").find("neither"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user"}]})").find("role"), std::string::npos);
  EXPECT_THROW(train::load_sft((dir / "missing.jsonl").string(), kChatModel, 64, 0.0, 1), Error);
  fs::remove_all(dir);
}

// A packed row (two examples, then padding) gives the loss and the gradients of its examples run one
// at a time: no attention across examples, positions restart, padding never trained.
TEST(Sft, PackedRowTrainsExactlyLikeItsExamplesAlone) {
  const fs::path dir = temp_dir("sft_pack");
  const std::string f = write_jsonl(dir,
      R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "bc"}]})" "\n"
      R"({"instruction": "g", "output": "hi"})" "\n");
  const train::SftData d = train::load_sft(f, kChatModel, 64, 0.0, 1);
  ASSERT_EQ(d.train.size(), 2u);
  const std::vector<train::TokenBatch> rows = train::pack_sft(d.train, 64, 0);
  ASSERT_EQ(rows.size(), 1u) << "two short examples fit one row of 64: " << d.train[0].ids.size() << " + "
                             << d.train[1].ids.size();
  auto model = train::TrainModel::from_weights(models::Weights::open(kChatModel));
  ag::ParamStore& ps = model->params();
  ps.zero_grad();
  ag::Var packed = model->loss(rows[0]);
  ag::backward(packed);
  std::vector<float> g_packed(ps.grads().data<float>(), ps.grads().data<float>() + ps.grads().numel());

  ps.zero_grad();
  double weighted = 0;
  int64_t n_targets = 0;
  std::vector<train::TokenBatch> alone;
  for (const auto& ex : d.train) {
    alone.push_back(train::pack_sft({ex}, static_cast<int64_t>(ex.ids.size()), 0)[0]);
    alone.back().doc_start.clear();  // a row of its own: plain causal attention
    for (int32_t t : alone.back().targets) n_targets += t != ops::kIgnoreIndex;
  }
  for (const auto& b : alone) {
    int64_t n = 0;
    for (int32_t t : b.targets) n += t != ops::kIgnoreIndex;
    ag::Var l = model->loss(b);
    weighted += l.value().data<float>()[0] * static_cast<double>(n);
    ag::backward(ag::scale(l, static_cast<float>(n) / static_cast<float>(n_targets)));
  }
  EXPECT_NEAR(packed.value().data<float>()[0], weighted / static_cast<double>(n_targets), 1e-5);
  const float* g = ps.grads().data<float>();
  double worst = 0, norm = 0;
  for (size_t i = 0; i < g_packed.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(g_packed[i]) - g[i]));
    norm = std::max(norm, std::fabs(static_cast<double>(g[i])));
  }
  EXPECT_LT(worst, 1e-5 * norm) << "largest gradient " << norm;
  fs::remove_all(dir);
}

TEST(Sft, FinetuneLearnsTheRepliesAndResumes) {
  const fs::path dir = temp_dir("sft_run");
  std::string text;
  const char* qa[][2] = {{"red", "apple"}, {"yellow", "banana"}, {"green", "lime"}, {"purple", "grape"}};
  for (int rep = 0; rep < 3; ++rep)
    for (const auto& p : qa)
      text += std::string(R"({"messages": [{"role": "user", "content": ")") + p[0] +
              R"("}, {"role": "assistant", "content": ")" + p[1] + "\"}]}\n";
  TrainOptions o;
  o.model = kChatModel;
  o.task = "sft";
  o.data = write_jsonl(dir, text);
  o.out = (dir / "run").string();
  o.seq_len = 48;
  o.batch = 2;
  o.steps = 40;
  o.warmup = 2;
  o.lr = 1e-2;
  o.eval_every = 0;
  o.save_every = 20;
  o.export_model = false;
  const train::TrainResult r = train::train_model(o);
  EXPECT_LT(r.last_loss, 0.3 * r.first_loss) << r.first_loss << " -> " << r.last_loss;
  EXPECT_NE(r.data_note.find("12 examples"), std::string::npos) << r.data_note;
  // Killed right after its step-20 checkpoint and started again: the same final parameters.
  auto finished = train::TrainModel::from_weights(models::Weights::open(kChatModel));
  train::load_checkpoint(r.last_checkpoint, finished->params());
  TrainOptions o2 = o;
  o2.out = (dir / "run2").string();
  struct Crash {};
  EXPECT_THROW(train::train_model(o2, [](const train::StepInfo& s) {
                 if (s.step == 20) throw Crash{};
               }),
               Crash);
  const train::TrainResult r2 = train::train_model(o2);
  EXPECT_EQ(r2.start_step, 20);
  auto resumed = train::TrainModel::from_weights(models::Weights::open(kChatModel));
  train::load_checkpoint(r2.last_checkpoint, resumed->params());
  const Tensor& a = finished->params().params();
  const Tensor& b = resumed->params().params();
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "resume changed the SFT run";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace llmkit
