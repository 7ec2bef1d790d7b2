// Every architecture against Hugging Face transformers: tiny random models (2 layers, hidden 64,
// random norms and biases) saved by transformers itself, with their logits and greedy continuations
// (testdata/tiny, made by tools/gen_tiny_models.py). For each one: the HF folder loads and its
// logits match to 1e-4 in F32; greedy decoding through the KV cache gives the same tokens; the GGUF
// that `llmkit convert` writes from the folder loads and gives the same logits again.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>

#include "llmkit/base/check.h"
#include "llmkit/eval.h"
#include "llmkit/io/gguf.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/models/convert.h"
#include "llmkit/models/random_init.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/kernels/cpu/quant_i8.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/models/t5.h"
#include "llmkit/models/transformer.h"

namespace llmkit::models {
namespace {
namespace fs = std::filesystem;

std::string tiny_dir(const std::string& name) { return std::string(LLMKIT_TESTDATA_DIR) + "/tiny/" + name; }

std::vector<int32_t> row_ids(const Tensor& ids, int64_t b) {
  std::vector<int32_t> out;
  for (int64_t t = 0; t < ids.dim(1); ++t) out.push_back(static_cast<int32_t>(ids.data<int64_t>()[b * ids.dim(1) + t]));
  return out;
}

struct Ref {
  io::SafetensorsFile file;
  explicit Ref(const std::string& name) : file(io::SafetensorsFile::open(tiny_dir(name) + "/reference.safetensors")) {}
  Tensor get(const std::string& t) const { return file.tensor(t); }
  bool has(const std::string& t) const { return file.find_tensor(t) != nullptr; }
};

// Max |a - b| between our output rows and the reference [B, T, W].
double max_diff_all_rows(const Transformer& m, const Ref& ref) {
  Tensor ids = ref.get("input_ids");
  const bool enc = m.is_encoder();
  Tensor want = ref.get(enc ? "last_hidden_state" : "logits");
  const int64_t B = ids.dim(0), T = ids.dim(1), W = want.dim(2);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> row = row_ids(ids, b);
    Tensor got;
    if (enc) {
      got = m.encode(row);
    } else {
      KVCache cache = m.new_cache(T);
      got = m.forward(row, cache, T);
    }
    EXPECT_EQ(got.shape(), Shape({T, W}));
    for (int64_t i = 0; i < T * W; ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(got.data<float>()[i] - want.data<float>()[b * T * W + i])));
  }
  return worst;
}

std::vector<int32_t> greedy(const Transformer& m, const std::vector<int32_t>& prompt, int n_new) {
  KVCache cache = m.new_cache(static_cast<int64_t>(prompt.size()) + n_new);
  std::vector<int32_t> out = prompt;
  Tensor logits = m.forward(prompt, cache, 1);
  for (int i = 0; i < n_new; ++i) {
    const float* row = logits.data<float>();
    const int32_t next = static_cast<int32_t>(std::max_element(row, row + logits.dim(1)) - row);
    out.push_back(next);
    if (i + 1 < n_new) logits = m.forward({next}, cache, 1);
  }
  return out;
}

class TinyModel : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyModel, MatchesTransformersFromHfFolderAndFromConvertedGguf) {
  const std::string name = GetParam();
  ASSERT_TRUE(fs::exists(tiny_dir(name) + "/config.json")) << "fixture missing: run tools/gen_tiny_models.py";
  Ref ref(name);
  auto hf = Transformer::load(tiny_dir(name));
  const double d_hf = max_diff_all_rows(*hf, ref);
  EXPECT_LE(d_hf, 1e-4) << name << " from the HF folder";

  if (!hf->is_encoder()) {
    Tensor prompt_t = ref.get("greedy_prompt"), want_t = ref.get("greedy_ids");
    std::vector<int32_t> prompt = row_ids(prompt_t, 0), want = row_ids(want_t, 0);
    EXPECT_EQ(greedy(*hf, prompt, static_cast<int>(want.size() - prompt.size())), want) << name << " greedy";
  }

  const std::string gguf = (fs::temp_directory_path() / ("llmkit_tiny_" + name + "_" + std::to_string(getpid()) + ".gguf")).string();
  convert_hf_to_gguf(tiny_dir(name), gguf);
  {
    auto g = Transformer::load(gguf);
    EXPECT_EQ(g->config().family, hf->config().family);
    const double d_gguf = max_diff_all_rows(*g, ref);
    EXPECT_LE(d_gguf, 1e-4) << name << " from the converted GGUF";
  }
  fs::remove(gguf);
}

INSTANTIATE_TEST_SUITE_P(EveryArchitecture, TinyModel,
                         ::testing::Values("llama", "llama3", "mistral", "qwen2", "gemma", "phi3", "gpt2", "opt", "bloom",
                                           "gpt_neox", "mixtral", "bert"),
                         [](const ::testing::TestParamInfo<const char*>& i) { return std::string(i.param); });

// Every GGUF output type of the converter loads and runs. Two checks per type:
//  * against the same weights dequantized back to F32 (convert GGUF -> HF folder, load that): only
//    the 8-bit quantization of activations inside the quantized matmuls differs, so logits stay close
//    and the argmax agrees; a wrong block layout or kernel would be far off;
//  * against transformers' F32 logits: the weight quantization error on top, which on these random
//    64-wide models is large for 4-bit types (no structure for the blocks to exploit), so that bound is
//    loose, a sanity check only.
// d_model 64 is not a multiple of the k-quants' 256-element super-block, so for q4_k the converter
// falls back to f16 (as llama.cpp does).
TEST(TinyModelQuantized, EveryOutputTypeLoadsAndMatchesItsDequantizedSelf) {
  struct Case { const char* type; DType dtype; double vs_ref; };
  const Case cases[] = {{"f16", DType::kF16, 0.01}, {"bf16", DType::kBF16, 0.05}, {"q8_0", DType::kQ8_0, 0.1},
                        {"q4_0", DType::kQ4_0, 1.0}, {"q4_1", DType::kQ4_1, 1.0}, {"q4_k", DType::kQ4_K, 0.01}};
  auto compare = [](const Tensor& got, const float* want, int64_t T, int64_t V, int* same_argmax) {
    double sum = 0;
    *same_argmax = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float* g = got.data<float>() + t * V;
      const float* w = want + t * V;
      for (int64_t v = 0; v < V; ++v) sum += std::fabs(g[v] - w[v]);
      *same_argmax += (std::max_element(g, g + V) - g) == (std::max_element(w, w + V) - w);
    }
    return sum / static_cast<double>(T * V);
  };
  for (const char* name : {"llama", "qwen2", "gpt2", "mixtral"}) {
    Ref ref(name);
    Tensor ids = ref.get("input_ids"), want = ref.get("logits");
    const int64_t T = ids.dim(1), V = want.dim(2);
    for (const Case& c : cases) {
      const std::string base = (fs::temp_directory_path() / str_cat("llmkit_tinyq_", name, "_", c.type, "_", getpid())).string();
      ConvertOptions opt;
      opt.type = c.dtype;
      convert_hf_to_gguf(tiny_dir(name), base + ".gguf", opt);
      auto m = Transformer::load(base + ".gguf");
      KVCache cache = m->new_cache(T);
      Tensor got = m->forward(row_ids(ids, 0), cache, T);
      convert_gguf_to_hf(base + ".gguf", base + "_f32");  // dequantized to F32
      auto deq = Transformer::load(base + "_f32");
      KVCache dcache = deq->new_cache(T);
      Tensor deq_logits = deq->forward(row_ids(ids, 0), dcache, T);
      int argmax_ref = 0, argmax_deq = 0;
      const double d_ref = compare(got, want.data<float>(), T, V, &argmax_ref);
      const double d_deq = compare(got, deq_logits.data<float>(), T, V, &argmax_deq);
      EXPECT_LE(d_deq, 0.1) << name << " " << c.type << " vs its dequantized weights";
      EXPECT_GE(argmax_deq, T - 1) << name << " " << c.type << " vs its dequantized weights";
      EXPECT_LE(d_ref, c.vs_ref) << name << " " << c.type << " vs transformers";
      std::printf("%-8s %-5s mean |dlogit| vs dequantized %.5f (argmax %d/%lld), vs transformers %.5f (argmax %d/%lld)\n", name,
                  c.type, d_deq, argmax_deq, static_cast<long long>(T), d_ref, argmax_ref, static_cast<long long>(T));
      fs::remove(base + ".gguf");
      fs::remove_all(base + "_f32");
    }
  }
}

// The matrices move at load into a huge-page slab, Q4_0 / Q4_1 / Q8_0 ones repacked on the way
// (rows interleaved by 8 for the int8 kernel): prompt logits and decode steps are those of the
// weights left in the file (LLMKIT_REPACK=0) bit for bit, for a tied output head (its embedding
// lookups read the repacked rows) and for Mixtral's experts; and so are the small batches that read
// [q; k; v] and [gate; up] as one concatenated matrix, for float weights (F16, BF16, F32) too.
TEST(TinyModelQuantized, RepackedWeightsGiveTheFileLayoutsLogitsBitwise) {
  for (const char* name : {"llama", "mixtral", "phi3"}) {
    Ref ref(name);
    const std::vector<int32_t> ids = row_ids(ref.get("input_ids"), 0);
    const int64_t T = static_cast<int64_t>(ids.size());
    for (DType dt : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1, DType::kF16, DType::kBF16, DType::kF32}) {
      const std::string path =
          (fs::temp_directory_path() / str_cat("llmkit_tiny_r8_", name, "_", dtype_name(dt), "_", getpid(), ".gguf")).string();
      ConvertOptions opt;
      opt.type = dt;
      convert_hf_to_gguf(tiny_dir(name), path, opt);
      auto run = [&](std::unique_ptr<Transformer>& m) {
        KVCache cache = m->new_cache(T + 1);
        Tensor prompt = m->forward(std::vector<int32_t>(ids.begin(), ids.end() - 1), cache, T - 1);
        Tensor step = m->forward({ids.back()}, cache, 1);
        return std::make_pair(prompt, step);
      };
      ::setenv("LLMKIT_REPACK", "0", 1);
      auto file = Transformer::load(path);
      ::unsetenv("LLMKIT_REPACK");
      auto packed = Transformer::load(path);
      EXPECT_EQ(file->slab_bytes(), 0u);
      EXPECT_GT(packed->slab_bytes(), 0u) << name << " " << dtype_name(dt);
      // Llama and Mixtral store q, k, v (and Llama gate, up) apart: the slab puts them back to back
      // and small batches read each group as one matrix. Phi-3's file has them fused already.
      EXPECT_EQ(file->fused_views(), 0);
      if (std::string(name) != "phi3") {
        EXPECT_GT(packed->fused_views(), 0) << name << " " << dtype_name(dt);
      }
      if (!is_quantized(dt)) {  // float matrices move to the slab unchanged
        EXPECT_EQ(packed->repacked_bytes(), 0u);
      } else if (cpu::i8_matmul_available()) {
        EXPECT_GT(packed->repacked_bytes(), 0u) << name << " " << dtype_name(dt);
      }
      const auto [p0, s0] = run(file);
      const auto [p1, s1] = run(packed);
      ASSERT_EQ(p0.nbytes(), p1.nbytes());
      EXPECT_EQ(0, std::memcmp(p0.raw(), p1.raw(), p0.nbytes())) << name << " " << dtype_name(dt) << " prompt logits";
      EXPECT_EQ(0, std::memcmp(s0.raw(), s1.raw(), s0.nbytes())) << name << " " << dtype_name(dt) << " decode logits";
      fs::remove(path);
    }
  }
}

// An F16 KV cache (set_kv_dtype): logits stay within F16 rounding of the F32 cache's (and so of
// transformers') for RoPE, learned positions, ALiBi and a sliding window; the pages take half the
// bytes; and a prompt's last row still equals the same token decoded after the rest of the prompt,
// bit for bit (K and V are rounded when written, before any row reads them).
TEST(TinyModel, F16KVCacheStaysCloseAndBatchInvariant) {
  for (const char* name : {"llama", "gpt2", "bloom", "mistral"}) {
    Ref ref(name);
    const std::vector<int32_t> ids = row_ids(ref.get("input_ids"), 0);
    const int64_t T = static_cast<int64_t>(ids.size());
    auto f32 = Transformer::load(tiny_dir(name));
    auto f16 = Transformer::load(tiny_dir(name));
    f16->set_kv_dtype(DType::kF16);
    EXPECT_EQ(f16->kv_dtype(), DType::kF16);
    KVCache c32 = f32->new_cache(T), c16 = f16->new_cache(T);
    EXPECT_EQ(c16.pages->nbytes() * 2, c32.pages->nbytes());
    Tensor a = f32->forward(ids, c32, T), b = f16->forward(ids, c16, T);
    const int64_t V = a.dim(-1);
    double worst = 0, scale = 0;
    int same_argmax = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float* x = a.data<float>() + t * V;
      const float* y = b.data<float>() + t * V;
      for (int64_t v = 0; v < V; ++v) {
        worst = std::max(worst, double(std::fabs(x[v] - y[v])));
        scale = std::max(scale, double(std::fabs(x[v])));
      }
      same_argmax += (std::max_element(x, x + V) - x) == (std::max_element(y, y + V) - y);
    }
    std::printf("%-8s F16 KV: max |dlogit| %.2e (max |logit| %.2f), argmax %d/%lld\n", name, worst, scale, same_argmax,
                static_cast<long long>(T));
    EXPECT_GT(worst, 0.0) << name << ": the F16 cache changed nothing (not in use?)";
    EXPECT_LE(worst, 5e-3 * std::max(1.0, scale)) << name;
    EXPECT_GE(same_argmax, T - 1) << name;
  }
  // Batch invariance needs batch-invariant matmuls: the int8 kernels of a Q8_0 file (the dense F32
  // GEMM of an HF folder sums a prompt's rows in another order than one row's GEMV).
  const std::string path = (fs::temp_directory_path() / str_cat("llmkit_tiny_f16kv_", getpid(), ".gguf")).string();
  ConvertOptions opt;
  opt.type = DType::kQ8_0;
  convert_hf_to_gguf(tiny_dir("llama"), path, opt);
  auto m = Transformer::load(path);
  m->set_kv_dtype(DType::kF16);
  const std::vector<int32_t> ids = row_ids(Ref("llama").get("input_ids"), 0);
  const int64_t T = static_cast<int64_t>(ids.size());
  KVCache all = m->new_cache(T), step = m->new_cache(T);
  Tensor whole = m->forward(ids, all, 1);
  m->forward(std::vector<int32_t>(ids.begin(), ids.end() - 1), step, 1);
  Tensor last = m->forward({ids.back()}, step, 1);
  ASSERT_EQ(whole.nbytes(), last.nbytes());
  EXPECT_EQ(0, std::memcmp(last.raw(), whole.raw(), whole.nbytes())) << "prompt's last row vs the same token decoded";
  fs::remove(path);
  EXPECT_THROW(m->set_kv_dtype(DType::kQ8_0), Error);
}

// The encoder (BERT) and the encoder-decoder (T5) run quantized too: f16, q8_0 and q4_0 GGUFs against the
// same weights dequantized back to F32 (hidden states for BERT, decoder logits for T5).
TEST(TinyModelQuantized, EncoderAndEncoderDecoderRunQuantized) {
  // Mean |a - b| relative to mean |b|: only the 8-bit rounding of activations inside the quantized
  // matmuls separates the two (a wrong block layout or kernel is off by ~100%).
  auto mean_abs = [](const Tensor& a, const Tensor& b) {
    EXPECT_EQ(a.shape(), b.shape());
    double sum = 0, scale = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      sum += std::fabs(a.data<float>()[i] - b.data<float>()[i]);
      scale += std::fabs(b.data<float>()[i]);
    }
    return sum / scale;
  };
  for (DType dt : {DType::kF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const char* name : {"bert", "t5"}) {
      Ref ref(name);
      const std::string base =
          (fs::temp_directory_path() / str_cat("llmkit_tinyq_enc_", name, "_", dtype_name(dt), "_", getpid())).string();
      ConvertOptions opt;
      opt.type = dt;
      convert_hf_to_gguf(tiny_dir(name), base + ".gguf", opt);
      convert_gguf_to_hf(base + ".gguf", base + "_f32");
      Weights qw = Weights::open(base + ".gguf");
      bool any_quantized = false;
      for (const auto& [n, t] : qw.all()) any_quantized |= t.dtype() == dt;
      EXPECT_TRUE(any_quantized) << name << " " << dtype_name(dt);
      double d = 0;
      const std::vector<int32_t> ids = row_ids(ref.get("input_ids"), 0);
      if (std::string(name) == "bert") {
        Tensor got = Transformer::from_weights(std::move(qw))->encode(ids);
        Tensor want = Transformer::load(base + "_f32")->encode(ids);
        d = mean_abs(got, want);
      } else {
        const std::vector<int32_t> dec = row_ids(ref.get("decoder_input_ids"), 0);
        auto q = T5Model::from_weights(std::move(qw));
        auto f = T5Model::from_weights(Weights::open(base + "_f32"));
        d = mean_abs(q->decode(dec, q->encode(ids)), f->decode(dec, f->encode(ids)));
      }
      // F16 weights run an F32 GEMM: exact. 8-bit activations: ~1% for BERT; ~4% for T5, whose
      // unscaled attention logits and gated-GELU outliers amplify the rounding (measured q8_0 4.3%,
      // q4_0 3.6%; the decoder families of the test above are at 1-2%).
      const double bound = dt == DType::kF16 ? 1e-4 : std::string(name) == "t5" ? 0.06 : 0.02;
      EXPECT_LE(d, bound) << name << " " << dtype_name(dt);
      std::printf("%-5s %-5s mean |d| / mean |x| vs its dequantized weights %.5f\n", name, dtype_name(dt), d);
      fs::remove(base + ".gguf");
      fs::remove_all(base + "_f32");
    }
  }
}

// llama.cpp's current Mixtral layout stacks the experts of a layer into one tensor per matrix
// (blk.N.ffn_gate_exps.weight [n_experts, d_ff, d_model], ...) instead of one tensor per expert.
// A GGUF written that way, with q8_0 experts, gives the logits of the per-expert one.
TEST(TinyModel, MixtralWithStackedExpertTensors) {
  const std::string base = (fs::temp_directory_path() / str_cat("llmkit_tiny_moe_", getpid())).string();
  ConvertOptions opt;
  opt.type = DType::kQ8_0;
  convert_hf_to_gguf(tiny_dir("mixtral"), base + "_split.gguf", opt);
  io::GgufFile split = io::GgufFile::open(base + "_split.gguf");
  io::GgufWriter w;
  for (const auto& [key, value] : split.metadata()) w.set(key, value);
  const ModelConfig c = ModelConfig::from_gguf(split);
  std::vector<Tensor> keep;
  for (const auto& ti : split.tensors()) {
    const std::string& n = ti.name;
    const bool per_expert = (n.find(".ffn_gate.") != std::string::npos || n.find(".ffn_up.") != std::string::npos ||
                             n.find(".ffn_down.") != std::string::npos) && n.find("_inp") == std::string::npos;
    if (!per_expert) w.add_tensor(n, split.tensor(n));
  }
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const char* mat : {"ffn_gate", "ffn_up", "ffn_down"}) {
      std::vector<Tensor> parts;
      for (int64_t e = 0; e < c.n_experts; ++e) {
        Tensor t = split.tensor(str_cat("blk.", l, ".", mat, ".", e, ".weight"));
        parts.push_back(t.view({1, t.dim(0), t.dim(1)}));
      }
      keep.push_back(ops::concat(parts, 0));
      w.add_tensor(str_cat("blk.", l, ".", mat, "_exps.weight"), keep.back());
    }
  w.write(base + "_stacked.gguf");
  auto a = Transformer::load(base + "_split.gguf");
  auto b = Transformer::load(base + "_stacked.gguf");
  Ref ref("mixtral");
  std::vector<int32_t> row = row_ids(ref.get("input_ids"), 0);
  KVCache ca = a->new_cache(16), cb = b->new_cache(16);
  Tensor la = a->forward(row, ca, 8), lb = b->forward(row, cb, 8);
  ASSERT_EQ(la.shape(), lb.shape());
  for (int64_t i = 0; i < la.numel(); ++i) ASSERT_EQ(la.data<float>()[i], lb.data<float>()[i]) << i;
  fs::remove(base + "_split.gguf");
  fs::remove(base + "_stacked.gguf");
}

// Llama-3 RoPE scaling reaches llama.cpp only as the rope_freqs tensor: the converter writes it,
// with the divisors transformers' llama3 rope init implies for this config (base_inv_freq / inv_freq
// from transformers.modeling_rope_utils, hard-coded here), and keeps the scaling parameters out of
// the keys llama.cpp would misread as linear scaling.
TEST(TinyModel, Llama3RopeScalingIsWrittenAsLlamaCppRopeFreqs) {
  const std::string gguf = (fs::temp_directory_path() / str_cat("llmkit_tiny_l3_", getpid(), ".gguf")).string();
  convert_hf_to_gguf(tiny_dir("llama3"), gguf);
  io::GgufFile f = io::GgufFile::open(gguf);
  Tensor freqs = f.tensor("rope_freqs.weight");
  const float want[] = {1.735941f, 8, 8, 8, 8, 8, 8, 8};
  ASSERT_EQ(freqs.numel(), 8);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(freqs.data<float>()[i], want[i], 1e-5) << i;
  EXPECT_FALSE(f.find("llama.rope.scaling.factor")) << "llama.cpp would read it as linear scaling";
  EXPECT_EQ(ModelConfig::from_gguf(f).rope_scaling.kind, RopeScalingKind::kLlama3);

  // A file as llama.cpp writes it: the divisors only, no scaling parameters in the metadata. It
  // still gives transformers' logits, through the divisors.
  io::GgufWriter w;
  for (const auto& [key, value] : f.metadata())
    if (key.rfind("llmkit.rope.", 0) != 0 && key != "llmkit.hf.config_json") w.set(key, value);
  for (const auto& ti : f.tensors()) w.add_tensor(ti.name, f.tensor(ti.name));
  w.write(gguf + ".llamacpp.gguf");
  auto m = Transformer::load(gguf + ".llamacpp.gguf");
  EXPECT_EQ(m->config().rope_scaling.kind, RopeScalingKind::kNone);
  EXPECT_LE(max_diff_all_rows(*m, Ref("llama3")), 1e-4);
  fs::remove(gguf + ".llamacpp.gguf");
  fs::remove(gguf);
}

// Random initialisation from a config.json (training from scratch, benchmark models): the same seed
// gives the same file whatever the thread count, it loads and runs, and weights have the std asked.
TEST(RandomInit, ReproducibleLoadableAndScaled) {
  const std::string base = (fs::temp_directory_path() / str_cat("llmkit_rand_", getpid())).string();
  const std::string cfg = io::read_text_file(tiny_dir("llama3") + "/config.json");
  fs::create_directories(base);
  { std::FILE* f = std::fopen((base + "/config.json").c_str(), "wb"); std::fputs(cfg.c_str(), f); std::fclose(f); }
  ThreadPool::set_global_threads(1);
  random_init_gguf(base + "/config.json", base + "/a.gguf", std::nullopt, 7);
  ThreadPool::set_global_threads(2);
  random_init_gguf(base + "/config.json", base + "/b.gguf", std::nullopt, 7);
  random_init_gguf(base + "/config.json", base + "/c.gguf", DType::kQ8_0, 8);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  EXPECT_EQ(slurp(base + "/a.gguf"), slurp(base + "/b.gguf"));
  auto m = Transformer::load(base + "/a.gguf");
  EXPECT_EQ(m->config().n_layers, 2);
  const Tensor& q = *m->weights().find("blk.0.attn_q.weight");
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < q.numel(); ++i) sum += q.data<float>()[i], sq += q.data<float>()[i] * q.data<float>()[i];
  const double mean = sum / q.numel(), sd = std::sqrt(sq / q.numel() - mean * mean);
  EXPECT_NEAR(sd, 0.02, 0.002);  // the fixture's config.json says initializer_range 0.02
  EXPECT_NEAR(mean, 0.0, 0.002);
  KVCache cache = m->new_cache(8);
  Tensor logits = m->forward({1, 2, 3}, cache, 1);
  for (int64_t i = 0; i < logits.numel(); ++i) ASSERT_TRUE(std::isfinite(logits.data<float>()[i]));
  auto mq = Transformer::load(base + "/c.gguf");
  EXPECT_EQ(mq->weights().find("blk.0.ffn_up.weight")->dtype(), DType::kQ8_0);
  fs::remove_all(base);
}

// Padding-free batching: sequences of different lengths and different cache fill levels in one pass
// give the logits each gives alone (prefill of both, then one decode step of both).
TEST(ForwardBatch, EqualsEachSequenceAlone) {
  for (const char* name : {"llama", "mixtral", "bloom"}) {
    Ref ref(name);
    auto m = Transformer::load(tiny_dir(name));
    Tensor ids = ref.get("input_ids");
    std::vector<int32_t> a = row_ids(ids, 0), b = row_ids(ids, 1);
    b.resize(5);
    KVCache ca = m->new_cache(16), cb = m->new_cache(16), sa = m->new_cache(16), sb = m->new_cache(16);
    std::vector<Tensor> both = m->forward_batch({{&a, &ca, 3}, {&b, &cb, 5}});
    Tensor alone_a = m->forward(a, sa, 3), alone_b = m->forward(b, sb, 5);
    std::vector<int32_t> na = {5}, nb = {7};
    std::vector<Tensor> step = m->forward_batch({{&na, &ca, 1}, {&nb, &cb, 1}});
    Tensor step_a = m->forward(na, sa, 1), step_b = m->forward(nb, sb, 1);
    EXPECT_EQ(ca.n_past, 9);
    EXPECT_EQ(cb.n_past, 6);
    const std::pair<Tensor, Tensor> pairs[] = {{both[0], alone_a}, {both[1], alone_b}, {step[0], step_a}, {step[1], step_b}};
    for (const auto& [got, want] : pairs) {
      ASSERT_EQ(got.shape(), want.shape()) << name;
      for (int64_t i = 0; i < got.numel(); ++i) ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4) << name << " " << i;
    }
  }
}

// Micro-batches: a pass of more rows than ubatch() runs in consecutive pieces that append to the
// caches; the logits (every row of a prompt, several sequences split across pieces) equal one pass.
TEST(ForwardBatch, MicroBatchesEqualOnePass) {
  for (const char* name : {"llama", "mistral", "bloom"}) {
    Ref ref(name);
    auto m = Transformer::load(tiny_dir(name));
    Tensor ids = ref.get("input_ids");
    std::vector<int32_t> a = row_ids(ids, 0), b = row_ids(ids, 1);
    const int64_t na = static_cast<int64_t>(a.size()), nb = static_cast<int64_t>(b.size());
    auto run = [&](int64_t ubatch, KVCache* ca, KVCache* cb) {
      m->set_ubatch(ubatch);
      return m->forward_batch({{&a, ca, na}, {&b, cb, 2}});
    };
    KVCache c1 = m->new_cache(32), c2 = m->new_cache(32), c3 = m->new_cache(32), c4 = m->new_cache(32);
    std::vector<Tensor> whole = run(1024, &c1, &c2), pieces = run(3, &c3, &c4);
    EXPECT_EQ(c3.n_past, na);
    EXPECT_EQ(c4.n_past, nb);
    for (int s = 0; s < 2; ++s) {
      ASSERT_EQ(pieces[s].shape(), whole[s].shape()) << name;
      for (int64_t i = 0; i < whole[s].numel(); ++i)
        ASSERT_NEAR(pieces[s].data<float>()[i], whole[s].data<float>()[i], 1e-4) << name << " seq " << s << " " << i;
    }
    // And they match transformers' logits row for row.
    Tensor want = ref.get("logits");
    for (int64_t i = 0; i < pieces[0].numel(); ++i) ASSERT_NEAR(pieces[0].data<float>()[i], want.data<float>()[i], 1e-4) << name;
    // A bad token in the second sequence is refused before any piece writes to a cache.
    std::vector<int32_t> bad = b;
    bad.back() = -1;
    KVCache c5 = m->new_cache(32), c6 = m->new_cache(32);
    m->set_ubatch(2);
    EXPECT_THROW(m->forward_batch({{&a, &c5, 1}, {&bad, &c6, 1}}), Error);
    EXPECT_EQ(c5.n_past, 0);
    EXPECT_EQ(c6.n_past, 0);
    EXPECT_THROW(m->set_ubatch(0), Error);
  }
}

TEST(ForwardBatch, RejectsASharedCache) {
  auto m = Transformer::load(tiny_dir("llama"));
  KVCache c = m->new_cache(16);
  std::vector<int32_t> t = {5, 6};
  EXPECT_THROW(m->forward_batch({{&t, &c, 1}, {&t, &c, 1}}), Error);
  EXPECT_EQ(c.n_past, 0);
}

// T5 (encoder-decoder, relative position buckets): decoder logits for given decoder inputs, and
// greedy decoding from the start token; from the HF folder and from its converted GGUF.
double t5_max_diff(const T5Model& m, const Ref& ref) {
  Tensor ids = ref.get("input_ids"), dec = ref.get("decoder_input_ids"), want = ref.get("logits");
  double worst = 0;
  for (int64_t b = 0; b < ids.dim(0); ++b) {
    Tensor got = m.decode(row_ids(dec, b), m.encode(row_ids(ids, b)));
    EXPECT_EQ(got.shape(), Shape({dec.dim(1), want.dim(2)}));
    const int64_t n = got.numel();
    for (int64_t i = 0; i < n; ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(got.data<float>()[i] - want.data<float>()[b * n + i])));
  }
  return worst;
}

TEST(TinyT5, MatchesTransformersFromHfFolderAndFromConvertedGguf) {
  ASSERT_TRUE(fs::exists(tiny_dir("t5") + "/config.json")) << "fixture missing: run tools/gen_tiny_models.py";
  Ref ref("t5");
  auto hf = T5Model::from_weights(Weights::open(tiny_dir("t5")));
  EXPECT_LE(t5_max_diff(*hf, ref), 1e-4);
  std::vector<int32_t> prompt = row_ids(ref.get("greedy_prompt"), 0), want = row_ids(ref.get("greedy_ids"), 0);
  EXPECT_EQ(hf->greedy(prompt, static_cast<int64_t>(want.size()) - 1), want);
  const std::string gguf = (fs::temp_directory_path() / ("llmkit_tiny_t5_" + std::to_string(getpid()) + ".gguf")).string();
  convert_hf_to_gguf(tiny_dir("t5"), gguf);
  EXPECT_LE(t5_max_diff(*T5Model::from_weights(Weights::open(gguf)), ref), 1e-4);
  fs::remove(gguf);
  // The public entry point reads decoder_input_ids too.
  const std::string out = gguf + ".logits.safetensors";
  LogitsFileResult r = logits_file(tiny_dir("t5"), tiny_dir("t5") + "/reference.safetensors", out);
  EXPECT_EQ(r.tokens, ref.get("decoder_input_ids").dim(1));
  fs::remove(out);
}

// HF's _relative_position_bucket at the values its docstring and formula give (32 buckets, 128).
TEST(TinyT5, RelativeBuckets) {
  EXPECT_EQ(T5Model::relative_bucket(0, true, 32, 128), 0);
  EXPECT_EQ(T5Model::relative_bucket(3, true, 32, 128), 16 + 3);
  EXPECT_EQ(T5Model::relative_bucket(-3, true, 32, 128), 3);
  EXPECT_EQ(T5Model::relative_bucket(-8, true, 32, 128), 8);   // log range starts at max_exact 8
  EXPECT_EQ(T5Model::relative_bucket(-1000, true, 32, 128), 15);
  EXPECT_EQ(T5Model::relative_bucket(5, false, 32, 128), 0);   // the future: bucket 0 (masked anyway)
  EXPECT_EQ(T5Model::relative_bucket(-5, false, 32, 128), 5);
  EXPECT_EQ(T5Model::relative_bucket(-1000, false, 32, 128), 31);
  EXPECT_EQ(T5Model::relative_bucket(-20, false, 32, 128), 17);  // 16 + trunc(log(20/16) / log(128/16) * 16)
}

// The same parity through the public `llmkit logits` entry point: ids from a safetensors file in,
// a safetensors file with [B, T, V] logits out.
TEST(LogitsFile, WritesTheReferenceLogits) {
  const std::string in = tiny_dir("llama") + "/reference.safetensors";
  const std::string out = (fs::temp_directory_path() / ("llmkit_logits_" + std::to_string(getpid()) + ".safetensors")).string();
  LogitsFileResult r = logits_file(tiny_dir("llama"), in, out);
  EXPECT_EQ(r.output_name, "logits");
  io::SafetensorsFile got = io::SafetensorsFile::open(out);
  Tensor g = got.tensor("logits"), want = Ref("llama").get("logits");
  ASSERT_EQ(g.shape(), want.shape());
  double worst = 0;
  for (int64_t i = 0; i < g.numel(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(g.data<float>()[i] - want.data<float>()[i])));
  EXPECT_LE(worst, 1e-4);
  fs::remove(out);

  LogitsFileResult e = logits_file(tiny_dir("bert"), tiny_dir("bert") + "/reference.safetensors", out);
  EXPECT_EQ(e.output_name, "last_hidden_state");
  EXPECT_EQ(e.width, 64);
  fs::remove(out);
}

TEST(LogitsFile, BadInputsAreClearErrors) {
  const std::string out = (fs::temp_directory_path() / ("llmkit_logits_bad_" + std::to_string(getpid()) + ".safetensors")).string();
  // A file without input_ids: the hidden-state file we just could write is one.
  io::SafetensorsWriter w;
  w.add_tensor("other", Tensor::zeros({2, 3}, DType::kF32));
  w.write(out);
  try {
    logits_file(tiny_dir("llama"), out, out + ".x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input_ids"), std::string::npos) << e.what();
  }
  io::SafetensorsWriter w2;
  Tensor ids = Tensor::zeros({1, 3}, DType::kI64);
  ids.data<int64_t>()[1] = 100000;  // beyond the vocabulary of 128
  w2.add_tensor("input_ids", ids);
  w2.write(out);
  try {
    logits_file(tiny_dir("llama"), out, out + ".x");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("100000"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(out + ".x"));
  fs::remove(out);
}

TEST(Weights, PickleAndLoneSafetensorsGetAdvice) {
  const std::string bin = (fs::temp_directory_path() / ("llmkit_model_" + std::to_string(getpid()) + ".bin")).string();
  { FILE* f = std::fopen(bin.c_str(), "wb"); std::fputs("not really", f); std::fclose(f); }
  try {
    Transformer::load(bin);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("pickle"), std::string::npos) << e.what();
  }
  fs::remove(bin);
  try {
    Transformer::load(tiny_dir("llama") + "/model.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llmkit::models
