// `llmkit convert`: HF folder -> GGUF -> HF folder leaves every weight bit-identical (tiny random
// LLaMA-, GPT-2- and GPT-NeoX-shaped folders made here with llmkit's own writer, and the folder
// written by transformers in testdata/hf/tiny-llama); the GGUF side has llama.cpp's names, keys
// and q/k layout; quantized conversion stays close; bad requests fail before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "llmkit/io/gguf.h"
#include "llmkit/io/hf_folder.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/convert.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::models {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path p;
  explicit TempDir(const std::string& name)
      : p(fs::temp_directory_path() / ("llmkit_cv_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~TempDir() { fs::remove_all(p); }
};

Tensor random_tensor(const Shape& s, DType t, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 0.5f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (auto& x : v) x = nd(rng);
  return cast_to(Tensor::from_floats(v, s.rank() ? s : Shape{1}).view(s), t, "r").clone();
}

const char* kTokenizerJson = R"({"version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": true},
  {"id": 1, "content": "</s>", "special": true}], "model": {"type": "BPE", "vocab": {"<s>": 0, "</s>": 1, "a": 2, "b": 3,
  "ab": 4}, "merges": ["a b"]}})";
const char* kTokenizerConfig = R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true,
  "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"})";

// Writes a folder: config.json, the tensors (sharded when max_shard is small), tokenizer files.
void write_folder(const fs::path& dir, const ModelConfig& c, const std::vector<std::pair<std::string, Tensor>>& tensors,
                  uint64_t max_shard) {
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  for (const auto& [n, t] : tensors) w.add_tensor(n, t);
  w.write_sharded(dir.string(), max_shard);
  std::ofstream(dir / "config.json") << c.to_hf_config_json();
  std::ofstream(dir / "tokenizer.json") << kTokenizerJson;
  std::ofstream(dir / "tokenizer_config.json") << kTokenizerConfig;
}

ModelConfig small(ArchFamily f) {
  ModelConfig c = family_defaults(f);
  c.n_layers = 2, c.d_model = 64, c.n_heads = 4, c.n_kv_heads = f == ArchFamily::kLlama ? 2 : 4, c.head_dim = 16;
  c.d_ff = 128, c.n_vocab = 40, c.n_ctx = 128, c.tied_embeddings = false;
  if (f == ArchFamily::kGpt2) c.tied_embeddings = true;
  return c;
}

std::vector<std::pair<std::string, Tensor>> llama_tensors(const ModelConfig& c, std::mt19937& rng) {
  std::vector<std::pair<std::string, Tensor>> t;
  t.reserve(64);
  const int64_t d = c.d_model, q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  t.emplace_back("model.embed_tokens.weight", random_tensor({c.n_vocab, d}, DType::kBF16, rng));
  t.emplace_back("lm_head.weight", random_tensor({c.n_vocab, d}, DType::kF16, rng));
  t.emplace_back("model.norm.weight", random_tensor({d}, DType::kF32, rng));
  for (int i = 0; i < c.n_layers; ++i) {
    std::string b = "model.layers." + std::to_string(i) + ".";
    t.emplace_back(b + "input_layernorm.weight", random_tensor({d}, DType::kF32, rng));
    t.emplace_back(b + "self_attn.q_proj.weight", random_tensor({q, d}, DType::kBF16, rng));
    t.emplace_back(b + "self_attn.k_proj.weight", random_tensor({kv, d}, DType::kBF16, rng));
    t.emplace_back(b + "self_attn.v_proj.weight", random_tensor({kv, d}, DType::kBF16, rng));
    t.emplace_back(b + "self_attn.o_proj.weight", random_tensor({d, q}, DType::kBF16, rng));
    t.emplace_back(b + "post_attention_layernorm.weight", random_tensor({d}, DType::kF32, rng));
    t.emplace_back(b + "mlp.gate_proj.weight", random_tensor({c.d_ff, d}, DType::kF32, rng));
    t.emplace_back(b + "mlp.up_proj.weight", random_tensor({c.d_ff, d}, DType::kBF16, rng));
    t.emplace_back(b + "mlp.down_proj.weight", random_tensor({d, c.d_ff}, DType::kF16, rng));
  }
  return t;
}

// Every tensor of folder a is in folder b with the same dtype, shape and bytes (and nothing else).
void expect_same_weights(const fs::path& a, const fs::path& b, const std::string& b_prefix = "") {
  io::HfFolder fa = io::HfFolder::open(a.string()), fb = io::HfFolder::open(b.string());
  EXPECT_EQ(fa.tensor_names().size(), fb.tensor_names().size());
  for (const auto& n : fa.tensor_names()) {
    std::string nb = n.rfind(b_prefix, 0) == 0 ? n : b_prefix + n;
    const auto* ia = fa.find_tensor(n);
    const auto* ib = fb.find_tensor(nb);
    ASSERT_NE(ib, nullptr) << nb;
    EXPECT_EQ(ia->dtype, ib->dtype) << n;
    EXPECT_EQ(ia->shape, ib->shape) << n;
    auto [pa, na] = fa.shard_of(n).bytes(n);
    auto [pb, nb2] = fb.shard_of(nb).bytes(nb);
    ASSERT_EQ(na, nb2) << n;
    EXPECT_EQ(std::memcmp(pa, pb, na), 0) << "bytes differ: " << n;
  }
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Convert, LlamaRoundTripIsBitIdenticalAndGgufHasLlamaCppLayout) {
  TempDir d("llama");
  std::mt19937 rng(1);
  ModelConfig c = small(ArchFamily::kLlama);
  auto tensors = llama_tensors(c, rng);
  fs::create_directories(d.p / "hf");
  write_folder(d.p / "hf", c, tensors, 20000);  // several shards + index
  ASSERT_TRUE(fs::exists(d.p / "hf" / "model.safetensors.index.json"));
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  ConvertOptions opt;
  opt.progress = [&](uint64_t done, uint64_t total) { progress.emplace_back(done, total); };
  ConvertReport r1 = convert_model((d.p / "hf").string(), (d.p / "m.gguf").string(), opt);
  EXPECT_EQ(r1.direction, "hf->gguf");
  EXPECT_EQ(r1.n_tensors, tensors.size());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().first, progress.back().second);

  io::GgufFile g = io::GgufFile::open((d.p / "m.gguf").string());
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_int("llama.block_count"), 2);
  EXPECT_EQ(g.get_int("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(g.find("tokenizer.ggml.tokens")->arr[4].s, "ab");
  EXPECT_EQ(g.find("tokenizer.ggml.merges")->arr[0].s, "a b");
  EXPECT_EQ(g.get_int("tokenizer.ggml.eos_token_id"), 1);
  EXPECT_EQ(g.get_string("tokenizer.chat_template"), "{% for m in messages %}{{ m.content }}{% endfor %}");
  // q is stored in llama.cpp's rope order; k uses the kv head count.
  Tensor q_hf = tensors[4].second, k_hf = tensors[5].second;
  Tensor q_gg = g.tensor("blk.0.attn_q.weight"), k_gg = g.tensor("blk.0.attn_k.weight");
  Tensor q_want = apply_transform(Transform::kRopePermuteQ, c, q_hf, true, "q");
  Tensor k_want = apply_transform(Transform::kRopePermuteK, c, k_hf, true, "k");
  EXPECT_EQ(std::memcmp(q_gg.raw(), q_want.raw(), q_want.nbytes()), 0);
  EXPECT_EQ(std::memcmp(k_gg.raw(), k_want.raw(), k_want.nbytes()), 0);
  EXPECT_NE(std::memcmp(q_gg.raw(), q_hf.raw(), q_hf.nbytes()), 0);
  EXPECT_EQ(ModelConfig::from_gguf(g).n_kv_heads, 2);

  ConvertReport r2 = convert_model((d.p / "m.gguf").string(), (d.p / "back").string());
  EXPECT_EQ(r2.direction, "gguf->hf");
  expect_same_weights(d.p / "hf", d.p / "back");
  EXPECT_EQ(slurp(d.p / "hf" / "config.json"), slurp(d.p / "back" / "config.json"));
  EXPECT_EQ(slurp(d.p / "hf" / "tokenizer.json"), slurp(d.p / "back" / "tokenizer.json"));
  EXPECT_EQ(slurp(d.p / "hf" / "tokenizer_config.json"), slurp(d.p / "back" / "tokenizer_config.json"));
}

TEST(Convert, ReferenceWrittenFolderRoundTrip) {
  TempDir d("ref");
  const fs::path src = fs::path(LLMKIT_TESTDATA_DIR) / "hf" / "tiny-llama";
  convert_hf_to_gguf(src.string(), (d.p / "t.gguf").string());
  convert_gguf_to_hf((d.p / "t.gguf").string(), (d.p / "back").string());
  expect_same_weights(src, d.p / "back");
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
    EXPECT_EQ(slurp(src / f), slurp(d.p / "back" / f)) << f;
}

TEST(Convert, QuantizedConversionStaysCloseAndFallsBack) {
  TempDir d("q");
  std::mt19937 rng(2);
  ModelConfig c = small(ArchFamily::kLlama);
  auto tensors = llama_tensors(c, rng);
  fs::create_directories(d.p / "hf");
  write_folder(d.p / "hf", c, tensors, 1 << 30);
  ConvertOptions q8;
  q8.type = DType::kQ8_0;
  convert_hf_to_gguf((d.p / "hf").string(), (d.p / "q8.gguf").string(), q8);
  io::GgufFile g = io::GgufFile::open((d.p / "q8.gguf").string());
  EXPECT_EQ(g.find_tensor("blk.0.ffn_up.weight")->dtype, DType::kQ8_0);
  EXPECT_EQ(g.find_tensor("blk.0.attn_norm.weight")->dtype, DType::kF32);
  EXPECT_EQ(g.get_int("general.file_type"), 7);
  ConvertOptions f32;
  f32.type = DType::kF32;
  convert_gguf_to_hf((d.p / "q8.gguf").string(), (d.p / "back").string(), f32);
  io::HfFolder back = io::HfFolder::open((d.p / "back").string());
  for (const auto& [name, t] : tensors) {
    Tensor a = cast_to(t, DType::kF32, name), b = back.tensor(name);
    ASSERT_EQ(b.dtype(), DType::kF32);
    double max_err = 0, max_abs = 0;
    for (int64_t k = 0; k < a.numel(); ++k) {
      max_err = std::max(max_err, double(std::fabs(a.data<float>()[k] - b.data<float>()[k])));
      max_abs = std::max(max_abs, double(std::fabs(a.data<float>()[k])));
    }
    EXPECT_LE(max_err, max_abs / 100) << name;  // q8_0: 8 bits per block of 32
  }
  ConvertOptions q4k;
  q4k.type = DType::kQ4_K;  // rows of 64 are not whole 256-blocks: f16, with a note
  ConvertReport r = convert_hf_to_gguf((d.p / "hf").string(), (d.p / "q4k.gguf").string(), q4k);
  EXPECT_EQ(io::GgufFile::open((d.p / "q4k.gguf").string()).find_tensor("blk.0.attn_q.weight")->dtype, DType::kF16);
  bool noted = false;
  for (const auto& n : r.notes) noted |= n.find("stored as f16") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(Convert, Gpt2AndNeoXRoundTripsThroughTransposeAndFusedQkv) {
  std::mt19937 rng(3);
  {
    TempDir d("gpt2");
    ModelConfig c = small(ArchFamily::kGpt2);
    std::vector<std::pair<std::string, Tensor>> t;
    t.reserve(32);
    t.emplace_back("wte.weight", random_tensor({c.n_vocab, 64}, DType::kF32, rng));  // saved without "transformer."
    t.emplace_back("wpe.weight", random_tensor({c.n_ctx, 64}, DType::kF32, rng));
    t.emplace_back("ln_f.weight", random_tensor({64}, DType::kF32, rng));
    t.emplace_back("ln_f.bias", random_tensor({64}, DType::kF32, rng));
    for (int i = 0; i < 2; ++i) {
      std::string b = "h." + std::to_string(i) + ".";
      for (const char* ln : {"ln_1", "ln_2"}) {
        t.emplace_back(b + ln + ".weight", random_tensor({64}, DType::kF32, rng));
        t.emplace_back(b + ln + ".bias", random_tensor({64}, DType::kF32, rng));
      }
      t.emplace_back(b + "attn.c_attn.weight", random_tensor({64, 192}, DType::kF32, rng));  // Conv1D [in, out]
      t.emplace_back(b + "attn.c_attn.bias", random_tensor({192}, DType::kF32, rng));
      t.emplace_back(b + "attn.c_proj.weight", random_tensor({64, 64}, DType::kF32, rng));
      t.emplace_back(b + "mlp.c_fc.weight", random_tensor({64, 128}, DType::kF32, rng));
      t.emplace_back(b + "mlp.c_proj.weight", random_tensor({128, 64}, DType::kF32, rng));
      t.emplace_back(b + "attn.bias", random_tensor({1, 1, 4, 4}, DType::kF32, rng));  // causal mask buffer
    }
    fs::create_directories(d.p / "hf");
    write_folder(d.p / "hf", c, t, 1 << 30);
    ConvertReport r = convert_hf_to_gguf((d.p / "hf").string(), (d.p / "g.gguf").string());
    EXPECT_EQ(r.n_tensors, t.size() - 2);  // the two mask buffers are dropped
    io::GgufFile g = io::GgufFile::open((d.p / "g.gguf").string());
    EXPECT_EQ(g.find_tensor("blk.0.attn_qkv.weight")->shape, Shape({192, 64}));
    convert_gguf_to_hf((d.p / "g.gguf").string(), (d.p / "back").string());
    io::HfFolder back = io::HfFolder::open((d.p / "back").string());
    for (const auto& [name, tensor] : t) {
      if (name.find("attn.bias") != std::string::npos) continue;
      Tensor b = back.tensor("transformer." + name);
      ASSERT_EQ(b.shape(), tensor.shape()) << name;
      EXPECT_EQ(std::memcmp(b.raw(), tensor.raw(), tensor.nbytes()), 0) << name;
    }
  }
  {
    TempDir d("neox");
    ModelConfig c = small(ArchFamily::kGptNeoX);
    c.partial_rotary = 0.25f;
    std::vector<std::pair<std::string, Tensor>> t;
    t.reserve(32);
    t.emplace_back("gpt_neox.embed_in.weight", random_tensor({c.n_vocab, 64}, DType::kF16, rng));
    t.emplace_back("embed_out.weight", random_tensor({c.n_vocab, 64}, DType::kF16, rng));
    t.emplace_back("gpt_neox.final_layer_norm.weight", random_tensor({64}, DType::kF16, rng));
    for (int i = 0; i < 2; ++i) {
      std::string b = "gpt_neox.layers." + std::to_string(i) + ".";
      t.emplace_back(b + "input_layernorm.weight", random_tensor({64}, DType::kF16, rng));
      t.emplace_back(b + "attention.query_key_value.weight", random_tensor({192, 64}, DType::kF16, rng));
      t.emplace_back(b + "attention.query_key_value.bias", random_tensor({192}, DType::kF16, rng));
      t.emplace_back(b + "attention.dense.weight", random_tensor({64, 64}, DType::kF16, rng));
      t.emplace_back(b + "post_attention_layernorm.weight", random_tensor({64}, DType::kF16, rng));
      t.emplace_back(b + "mlp.dense_h_to_4h.weight", random_tensor({128, 64}, DType::kF16, rng));
      t.emplace_back(b + "mlp.dense_4h_to_h.weight", random_tensor({64, 128}, DType::kF16, rng));
    }
    fs::create_directories(d.p / "hf");
    write_folder(d.p / "hf", c, t, 1 << 30);
    convert_hf_to_gguf((d.p / "hf").string(), (d.p / "n.gguf").string());
    io::GgufFile g = io::GgufFile::open((d.p / "n.gguf").string());
    EXPECT_EQ(g.get_int("gptneox.rope.dimension_count"), 4);
    // Fused qkv rows regrouped [q heads; k heads; v heads]: GGUF row 1 (q of head 0, dim 1) is HF row 1,
    // GGUF row 16 (q of head 1, dim 0) is HF row 48.
    Tensor hf = t[4].second, gg = g.tensor("blk.0.attn_qkv.weight");
    EXPECT_EQ(std::memcmp(gg.row_ptr(16), hf.row_ptr(48), 128), 0);
    convert_gguf_to_hf((d.p / "n.gguf").string(), (d.p / "back").string());
    expect_same_weights(d.p / "hf", d.p / "back");
  }
}

template <typename F>
void expect_error(F&& f, ErrorCode code, const std::string& needle) {
  try {
    f();
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Convert, BadRequestsFailBeforeWriting) {
  TempDir d("bad");
  std::mt19937 rng(4);
  ModelConfig c = small(ArchFamily::kLlama);
  auto tensors = llama_tensors(c, rng);
  fs::create_directories(d.p / "hf");
  write_folder(d.p / "hf", c, tensors, 1 << 30);
  convert_hf_to_gguf((d.p / "hf").string(), (d.p / "m.gguf").string());
  ConvertOptions q4;
  q4.type = DType::kQ4_0;
  expect_error([&] { convert_gguf_to_hf((d.p / "m.gguf").string(), (d.p / "x").string(), q4); }, ErrorCode::kInvalidArgument,
               "not a Hugging Face output type");
  ConvertOptions nf4;
  nf4.type = DType::kNF4;
  expect_error([&] { convert_hf_to_gguf((d.p / "hf").string(), (d.p / "y.gguf").string(), nf4); }, ErrorCode::kInvalidArgument,
               "not a GGUF output type");
  expect_error([&] { convert_gguf_to_hf((d.p / "m.gguf").string(), (d.p / "hf").string()); }, ErrorCode::kInvalidArgument,
               "is not empty");
  expect_error([&] { convert_model((d.p / "nope").string(), (d.p / "z").string()); }, ErrorCode::kNotFound, "does not exist");
  // A layer missing from the weights (config says 3).
  ModelConfig three = c;
  three.n_layers = 3;
  std::ofstream(d.p / "hf" / "config.json") << three.to_hf_config_json();
  expect_error([&] { convert_hf_to_gguf((d.p / "hf").string(), (d.p / "w.gguf").string()); }, ErrorCode::kInvalidFile,
               "no layer 2");
  EXPECT_FALSE(fs::exists(d.p / "w.gguf"));
  // A tensor the architecture table does not know.
  std::ofstream(d.p / "hf" / "config.json") << c.to_hf_config_json();
  io::SafetensorsWriter extra;
  extra.add_tensor("model.layers.0.self_attn.mystery.weight", Tensor::zeros({4}, DType::kF32));
  fs::create_directories(d.p / "hf2");
  for (const auto& e : fs::directory_iterator(d.p / "hf")) fs::copy(e.path(), d.p / "hf2" / e.path().filename());
  extra.write((d.p / "hf2" / "model.safetensors").string());
  fs::remove(d.p / "hf2" / "model.safetensors.index.json");
  expect_error([&] { convert_hf_to_gguf((d.p / "hf2").string(), (d.p / "u.gguf").string()); }, ErrorCode::kUnsupported,
               "mystery");
}

}  // namespace
}  // namespace llmkit::models
