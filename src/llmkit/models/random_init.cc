// Random-weight models (see random_init.h).
#include "llmkit/models/random_init.h"

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/base/thread_pool.h"
#include "llmkit/io/gguf.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::models {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// N(0, std^2) for element i of stream `stream`: Box-Muller on two counter-derived uniforms, so any
// element can be generated independently (threads fill disjoint ranges; the result does not depend
// on the thread count).
float normal_at(uint64_t stream, uint64_t i, float stddev) {
  const uint64_t a = splitmix64(stream ^ (2 * i)), b = splitmix64(stream ^ (2 * i + 1));
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) * stddev);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

ConvertReport random_init_gguf(const std::string& config_json_path, const std::string& out_path, std::optional<DType> type,
                               uint64_t seed, const std::function<void(uint64_t, uint64_t)>& progress) {
  const std::string text = io::read_text_file(config_json_path, 4u << 20);
  ModelConfig cfg = ModelConfig::from_hf_config_json(text);
  LLMKIT_CHECK(cfg.family == ArchFamily::kLlama || cfg.family == ArchFamily::kQwen2 || cfg.family == ArchFamily::kGemma,
               kUnsupported, "random initialisation is built for the LLaMA, Mistral, Qwen2 and Gemma families; '",
               config_json_path, "' is ", family_name(cfg.family));
  LLMKIT_CHECK(cfg.n_experts == 0, kUnsupported, "random initialisation of mixture-of-experts models is not built yet");
  LLMKIT_CHECK(!type || is_float(*type) || *type == DType::kQ8_0 || *type == DType::kQ4_0 || *type == DType::kQ4_1 ||
                   *type == DType::kQ4_K || *type == DType::kQ5_K || *type == DType::kQ6_K,
               kInvalidArgument, "--type ", dtype_name(*type), " is not a GGUF output type");
  float init_std = 0.02f;
  {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_object() && j.contains("initializer_range") && j["initializer_range"].is_number())
      init_std = j["initializer_range"].get<float>();
  }
  const int64_t d = cfg.d_model, q = cfg.n_heads * cfg.head_dim, kv = cfg.n_kv_heads * cfg.head_dim;
  struct Spec {
    std::string name;
    Shape shape;
    int kind;  // 0 weight (normal), 1 norm (ones; Gemma's GGUF stores 1 + w = 1), 2 bias (zeros)
  };
  std::vector<Spec> specs = {{"token_embd.weight", {cfg.n_vocab, d}, 0}};
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string p = str_cat("blk.", l, ".");
    specs.push_back({p + "attn_norm.weight", {d}, 1});
    specs.push_back({p + "attn_q.weight", {q, d}, 0});
    specs.push_back({p + "attn_k.weight", {kv, d}, 0});
    specs.push_back({p + "attn_v.weight", {kv, d}, 0});
    if (cfg.qkv_bias) {
      specs.push_back({p + "attn_q.bias", {q}, 2});
      specs.push_back({p + "attn_k.bias", {kv}, 2});
      specs.push_back({p + "attn_v.bias", {kv}, 2});
    }
    specs.push_back({p + "attn_output.weight", {d, q}, 0});
    specs.push_back({p + "ffn_norm.weight", {d}, 1});
    specs.push_back({p + "ffn_gate.weight", {cfg.d_ff, d}, 0});
    specs.push_back({p + "ffn_up.weight", {cfg.d_ff, d}, 0});
    specs.push_back({p + "ffn_down.weight", {d, cfg.d_ff}, 0});
  }
  specs.push_back({"output_norm.weight", {d}, 1});
  if (!cfg.tied_embeddings) specs.push_back({"output.weight", {cfg.n_vocab, d}, 0});

  io::GgufWriter w;
  cfg.to_gguf(w);
  w.set("general.name", io::GgufValue::from_string("random-" + std::filesystem::path(config_json_path).parent_path().filename().string()));
  w.set("llmkit.random_init.seed", io::GgufValue::from_u64(seed));
  w.set("llmkit.hf.config_json", io::GgufValue::from_string(text));
  // Stand-in vocabulary (see the header): 256 byte symbols in GPT-2's byte-to-unicode order, then
  // numbered placeholders; no merges.
  std::vector<std::string> tokens;
  tokens.reserve(static_cast<size_t>(cfg.n_vocab));
  for (int b = 0; b < 256 && static_cast<int64_t>(tokens.size()) < cfg.n_vocab; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = b;
    if (!printable) {
      int n = 0;
      for (int x = 0; x < b; ++x) n += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
      cp = 256 + n;
    }
    std::string u;
    if (cp < 0x80) u += static_cast<char>(cp);
    else {
      u += static_cast<char>(0xC0 | (cp >> 6));
      u += static_cast<char>(0x80 | (cp & 0x3F));
    }
    tokens.push_back(u);
  }
  while (static_cast<int64_t>(tokens.size()) < cfg.n_vocab) tokens.push_back(str_cat("<|tok_", tokens.size(), "|>"));
  w.set("tokenizer.ggml.model", io::GgufValue::from_string("gpt2"));
  w.set("tokenizer.ggml.pre", io::GgufValue::from_string("default"));
  w.set("tokenizer.ggml.tokens", io::GgufValue::from_strings(tokens));
  w.set("tokenizer.ggml.token_type", io::GgufValue::from_array(io::GgufType::kI32,
                                                               std::vector<io::GgufValue>(tokens.size(), io::GgufValue::from_i32(1))));
  w.set("tokenizer.ggml.merges", io::GgufValue::from_strings({}));
  w.set("tokenizer.ggml.bos_token_id", io::GgufValue::from_u32(static_cast<uint32_t>(cfg.n_vocab - 1)));
  w.set("tokenizer.ggml.eos_token_id", io::GgufValue::from_u32(static_cast<uint32_t>(cfg.n_vocab - 1)));

  uint64_t total = 0, done = 0;
  for (const auto& s : specs) total += static_cast<uint64_t>(s.shape.numel()) * 4;
  ConvertReport rep;
  rep.direction = "random->gguf";
  rep.architecture = family_name(cfg.family);
  std::vector<Tensor> keep;  // the writer copies at write() time
  for (const auto& s : specs) {
    Tensor t = Tensor::empty(s.shape, DType::kF32);
    float* p = t.data<float>();
    const int64_t n = t.numel();
    if (s.kind == 0) {
      const uint64_t stream = splitmix64(seed ^ name_hash(s.name));
      ThreadPool::global().parallel_for(n, 1 << 16, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) p[i] = normal_at(stream, static_cast<uint64_t>(i), init_std);
      });
    } else {
      std::fill(p, p + n, s.kind == 1 ? 1.0f : 0.0f);
    }
    DType want = DType::kF32;
    if (type && s.shape.rank() == 2) {
      want = *type;
      if (is_quantized(want) && s.shape[1] % block_size(want) != 0) {
        rep.notes.push_back(str_cat("'", s.name, "' rows of ", s.shape[1], " are not whole ", dtype_name(want), " blocks: stored as f16"));
        want = DType::kF16;
      }
    }
    keep.push_back(cast_to(t, want, s.name));
    w.add_tensor(s.name, keep.back());
    rep.bytes_out += keep.back().nbytes();
    done += static_cast<uint64_t>(n) * 4;
    if (progress) progress(done, total);
  }
  const std::vector<float> rope_factors = cfg.rope_freq_factors();  // llama.cpp's form of Llama-3 RoPE scaling
  if (!rope_factors.empty()) {
    keep.push_back(Tensor::from_floats(rope_factors, Shape{static_cast<int64_t>(rope_factors.size())}));
    w.add_tensor("rope_freqs.weight", keep.back());
  }
  w.write(out_path);
  rep.n_tensors = specs.size();
  rep.files.push_back(out_path);
  return rep;
}

}  // namespace llmkit::models
