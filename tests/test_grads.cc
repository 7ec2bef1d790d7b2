// Gradients against PyTorch: for every tiny decoder of testdata/tiny (Mixtral's experts included), transformers' causal-LM
// loss (labels = input_ids) and every parameter's gradient (tools/gen_tiny_grads.py wrote them to
// grads.safetensors) against llmkit's differentiable transformer on the same weights and ids,
// loaded both from the Hugging Face folder and from the GGUF `llmkit convert` writes of it (the
// gradients come back through the architecture table's inverse transforms either way). The bar
// is the issue's: 1e-4 relative error per tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>

#include "llmkit/convert.h"
#include "llmkit/error.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/train.h"
#include "llmkit/train/model.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;

std::string tiny(const std::string& name) { return std::string(LLMKIT_TESTDATA_DIR) + "/tiny/" + name; }

void compare(const std::string& name, const std::string& model_path) {
  const io::SafetensorsFile ref = io::SafetensorsFile::open(tiny(name) + "/grads.safetensors");
  const io::SafetensorsFile in = io::SafetensorsFile::open(tiny(name) + "/reference.safetensors");
  Tensor ids = in.tensor("input_ids");
  std::vector<std::vector<int32_t>> batch(static_cast<size_t>(ids.dim(0)));
  for (int64_t b = 0; b < ids.dim(0); ++b)
    for (int64_t t = 0; t < ids.dim(1); ++t)
      batch[static_cast<size_t>(b)].push_back(static_cast<int32_t>(ids.data<int64_t>()[b * ids.dim(1) + t]));
  const models::Weights w = models::Weights::open(model_path);
  auto m = train::TrainModel::from_weights(w);
  ag::Var loss = m->loss(batch);
  ag::backward(loss);
  const float ref_loss = ref.tensor("loss").data<float>()[0];
  EXPECT_NEAR(loss.value().data<float>()[0], ref_loss, 1e-5 * std::fabs(ref_loss)) << name;
  std::map<std::string, Tensor> got;
  for (auto& [n, g] : m->hf_gradients()) got[n] = g;
  // Gradients that are zero in exact arithmetic (OPT's key bias: without RoPE it adds the same
  // q.b to every score of a row, which softmax ignores) are rounding noise on both sides: they are
  // held to an absolute floor of 1e-4 x 1e-3 x the largest gradient norm of the model instead.
  double max_norm = 0;
  for (const auto& info : ref.tensors()) {
    if (info.name == "loss") continue;
    const Tensor r = ref.tensor(info.name);
    double n2 = 0;
    for (int64_t i = 0; i < r.numel(); ++i) n2 += static_cast<double>(r.data<float>()[i]) * r.data<float>()[i];
    max_norm = std::max(max_norm, std::sqrt(n2));
  }
  size_t n_ref = 0;
  double worst = 0;
  std::string worst_name;
  for (const auto& info : ref.tensors()) {
    if (info.name == "loss") continue;
    ++n_ref;
    auto it = got.find(info.name);
    if (it == got.end()) {
      std::string have;
      for (const auto& [n, g] : got) have += n + " ";
      FAIL() << name << ": no gradient for " << info.name << "; llmkit has: " << have;
    }
    const Tensor r = ref.tensor(info.name), g = it->second;
    ASSERT_EQ(r.numel(), g.numel()) << name << " " << info.name << ": " << r.shape().str() << " vs " << g.shape().str();
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < r.numel(); ++i) {
      const double d = static_cast<double>(g.data<float>()[i]) - r.data<float>()[i];
      diff += d * d;
      norm += static_cast<double>(r.data<float>()[i]) * r.data<float>()[i];
    }
    const double rel = std::sqrt(diff) / std::max(std::sqrt(norm), 1e-3 * max_norm);
    if (rel > worst) worst = rel, worst_name = info.name;
    EXPECT_LE(rel, 1e-4) << name << " " << info.name << ": relative error " << rel;
  }
  EXPECT_EQ(got.size(), n_ref) << name << ": llmkit has gradients PyTorch does not";
  std::printf("%-9s %-5s loss %.6f (torch %.6f), %zu gradients, worst relative error %.2e (%s)\n", name.c_str(),
              model_path.size() > 5 && model_path.substr(model_path.size() - 5) == ".gguf" ? "gguf" : "hf",
              loss.value().data<float>()[0], ref_loss, n_ref, worst, worst_name.c_str());
}

class Grads : public ::testing::TestWithParam<std::string> {};

TEST_P(Grads, MatchPyTorchFromHfFolderAndFromGguf) {
  const std::string name = GetParam();
  ASSERT_TRUE(fs::exists(tiny(name) + "/grads.safetensors")) << "run tools/gen_tiny_grads.py";
  compare(name, tiny(name));
  const fs::path gguf = fs::temp_directory_path() / ("llmkit_test_grads_" + name + "_" + std::to_string(::getpid()) + ".gguf");
  convert_model_files(tiny(name), gguf.string(), "f32");
  compare(name, gguf.string());
  fs::remove(gguf);
}

INSTANTIATE_TEST_SUITE_P(EveryDecoder, Grads,
                         ::testing::Values("llama", "llama3", "mistral", "qwen2", "gemma", "phi3", "gpt2", "opt", "bloom",
                                           "gpt_neox", "mixtral"));

// 20 AdamW steps from the tiny LLaMA's weights on fixed batches, against torch.optim.AdamW with
// the same hyper-parameters (weight decay on matrices only, as ParamStore's convention): the loss
// of every step within 1e-4 relative.
TEST(Grads, AdamW20StepsMatchPyTorchLossCurve) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(tiny("llama") + "/adamw20.safetensors");
  auto meta = [&](const std::string& k) {
    for (const auto& [key, v] : f.metadata())
      if (key == k) return std::stod(v);
    ADD_FAILURE() << "no metadata " << k;
    return 0.0;
  };
  ag::AdamWConfig cfg;
  cfg.lr = static_cast<float>(meta("lr"));
  cfg.beta1 = static_cast<float>(meta("beta1"));
  cfg.beta2 = static_cast<float>(meta("beta2"));
  cfg.eps = static_cast<float>(meta("eps"));
  cfg.weight_decay = static_cast<float>(meta("weight_decay"));
  const Tensor ids = f.tensor("input_ids"), ref = f.tensor("loss");  // [S, B, T], [S]
  const int64_t S = ids.dim(0), B = ids.dim(1), T = ids.dim(2);
  auto m = train::TrainModel::from_weights(models::Weights::open(tiny("llama")));
  double worst = 0, first = 0, last = 0;
  for (int64_t s = 0; s < S; ++s) {
    std::vector<std::vector<int32_t>> batch(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) batch[static_cast<size_t>(b)].push_back(static_cast<int32_t>(ids.data<int64_t>()[(s * B + b) * T + t]));
    m->params().zero_grad();
    ag::Var loss = m->loss(batch);
    ag::backward(loss);
    m->params().step_adamw(cfg);
    const double got = loss.value().data<float>()[0], want = ref.data<float>()[s];
    (s == 0 ? first : last) = got;
    worst = std::max(worst, std::fabs(got - want) / std::fabs(want));
    EXPECT_NEAR(got, want, 1e-4 * std::fabs(want)) << "step " << s;
  }
  EXPECT_LT(ref.data<float>()[S - 1], ref.data<float>()[0] - 0.2) << "the reference run does not learn";
  std::printf("AdamW x%lld: loss %.5f -> %.5f (torch %.5f -> %.5f), worst relative difference %.2e\n",
              static_cast<long long>(S), first, last, ref.data<float>()[0], ref.data<float>()[S - 1], worst);
}

// An encoder is not a causal language model: a typed error, not a crash.
TEST(Grads, EncoderIsNamedAsUnsupported) {
  try {
    train::TrainModel::from_weights(models::Weights::open(tiny("bert")));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("decoder"), std::string::npos) << e.what();
  }
}

TEST(Grads, FileToolWritesHfNamesAndLoss) {
  const fs::path out = fs::temp_directory_path() / ("llmkit_test_grads_out_" + std::to_string(::getpid()) + ".safetensors");
  GradsFileResult r = grads_file(tiny("llama"), tiny("llama") + "/reference.safetensors", out.string());
  const io::SafetensorsFile f = io::SafetensorsFile::open(out.string());
  EXPECT_NE(f.find_tensor("model.layers.1.self_attn.q_proj.weight"), nullptr);
  EXPECT_NE(f.find_tensor("lm_head.weight"), nullptr);
  EXPECT_NEAR(f.tensor("loss").data<float>()[0], r.loss, 1e-6);
  EXPECT_EQ(r.batch, 2);
  EXPECT_THROW(grads_file(tiny("llama"), tiny("llama") + "/config.json", out.string()), Error);
  fs::remove(out);
}

}  // namespace
}  // namespace llmkit
