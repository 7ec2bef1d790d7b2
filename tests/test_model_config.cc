// ModelConfig: config.json of every architecture family (fixtures written by transformers'
// own config classes, tools/gen_hf_fixtures.py), round trips through config.json and GGUF, range
// validation naming the bad field, config-vs-tensor checks, the HF <-> GGUF name table and the
// llama.cpp layout transforms.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmkit/io/hf_folder.h"
#include "llmkit/models/arch_table.h"
#include "llmkit/models/model_config.h"
#include "llmkit/models/weight_transforms.h"

namespace llmkit::models {
namespace {

namespace fs = std::filesystem;

std::string fixture(const std::string& name) {
  return io::read_text_file(std::string(LLMKIT_TESTDATA_DIR) + "/hf/configs/" + name + ".json");
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

TEST(ModelConfig, EveryFamilyFromTransformersConfigs) {
  struct Want {
    const char* file;
    ArchFamily family;
    int64_t n_layers, n_heads, n_kv_heads, head_dim, d_ff;
    NormKind norm;
    PositionKind pos;
    Activation act;
    bool gated, qkv_bias, tied;
  };
  const Want wants[] = {
      {"llama3", ArchFamily::kLlama, 2, 4, 2, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, false, true},
      {"smollm", ArchFamily::kLlama, 2, 4, 4, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, false, true},
      {"mistral", ArchFamily::kLlama, 2, 4, 2, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, false, false},
      {"mixtral", ArchFamily::kLlama, 2, 4, 2, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, false, false},
      {"qwen2", ArchFamily::kQwen2, 2, 4, 2, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, true, false},
      {"gemma", ArchFamily::kGemma, 2, 4, 1, 32, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kGeluTanh, true, false, true},
      {"phi3", ArchFamily::kPhi3, 2, 4, 4, 16, 128, NormKind::kRmsNorm, PositionKind::kRopeNeox, Activation::kSilu, true, false, false},
      {"gpt2", ArchFamily::kGpt2, 2, 4, 4, 16, 256, NormKind::kLayerNorm, PositionKind::kLearned, Activation::kGeluTanh, false, true, true},
      {"opt", ArchFamily::kOpt, 2, 4, 4, 16, 128, NormKind::kLayerNorm, PositionKind::kLearned, Activation::kRelu, false, true, true},
      {"bloom", ArchFamily::kBloom, 2, 4, 4, 16, 256, NormKind::kLayerNorm, PositionKind::kAlibi, Activation::kGeluTanh, false, true, true},
      {"gpt_neox", ArchFamily::kGptNeoX, 2, 4, 4, 16, 256, NormKind::kLayerNorm, PositionKind::kRopeNeox, Activation::kGelu, false, true, false},
      {"bert", ArchFamily::kBert, 2, 4, 4, 16, 128, NormKind::kLayerNorm, PositionKind::kLearned, Activation::kGelu, false, true, false},
      {"t5", ArchFamily::kT5, 3, 4, 4, 16, 128, NormKind::kRmsNorm, PositionKind::kRelativeBias, Activation::kGeluTanh, true, false, true},
  };
  for (const auto& w : wants) {
    SCOPED_TRACE(w.file);
    ModelConfig c = ModelConfig::from_hf_config_json(fixture(w.file));
    EXPECT_EQ(c.family, w.family);
    EXPECT_EQ(c.d_model, 64);
    EXPECT_EQ(c.n_vocab, 96);
    EXPECT_EQ(c.n_layers, w.n_layers);
    EXPECT_EQ(c.n_heads, w.n_heads);
    EXPECT_EQ(c.n_kv_heads, w.n_kv_heads);
    EXPECT_EQ(c.head_dim, w.head_dim);
    EXPECT_EQ(c.d_ff, w.d_ff);
    EXPECT_EQ(c.norm, w.norm);
    EXPECT_EQ(c.position, w.pos);
    EXPECT_EQ(c.act, w.act);
    EXPECT_EQ(c.gated_mlp, w.gated);
    EXPECT_EQ(c.qkv_bias, w.qkv_bias);
    EXPECT_EQ(c.tied_embeddings, w.tied);
    // Round trip through config.json.
    EXPECT_EQ(ModelConfig::from_hf_config_json(c.to_hf_config_json()), c);
  }
  ModelConfig l3 = ModelConfig::from_hf_config_json(fixture("llama3"));
  EXPECT_EQ(l3.rope_theta, 500000.0f);
  EXPECT_EQ(l3.rope_scaling.kind, RopeScalingKind::kLlama3);
  EXPECT_EQ(l3.rope_scaling.factor, 8.0f);
  EXPECT_EQ(l3.rope_scaling.original_n_ctx, 128);
  EXPECT_EQ(ModelConfig::from_hf_config_json(fixture("mistral")).sliding_window, 32);
  ModelConfig mx = ModelConfig::from_hf_config_json(fixture("mixtral"));
  EXPECT_EQ(mx.n_experts, 4);
  EXPECT_EQ(mx.n_experts_used, 2);
  ModelConfig gm = ModelConfig::from_hf_config_json(fixture("gemma"));
  EXPECT_EQ(gm.norm_weight_offset, 1.0f);
  EXPECT_EQ(gm.embedding_scale, 8.0f);
  ModelConfig nx = ModelConfig::from_hf_config_json(fixture("gpt_neox"));
  EXPECT_EQ(nx.partial_rotary, 0.25f);
  EXPECT_TRUE(nx.parallel_residual);
  EXPECT_EQ(ModelConfig::from_hf_config_json(fixture("opt")).position_offset, 2);
  ModelConfig t5 = ModelConfig::from_hf_config_json(fixture("t5"));
  EXPECT_EQ(t5.n_encoder_layers, 2);
  EXPECT_TRUE(t5.encoder && t5.decoder);
  EXPECT_FALSE(ModelConfig::from_hf_config_json(fixture("bert")).decoder);
}

TEST(ModelConfig, LegacyRopeKeysStillRead) {
  ModelConfig c = ModelConfig::from_hf_config_json(R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 96, "rope_theta": 1000.0,
    "rope_scaling": {"type": "linear", "factor": 2.0}})");
  EXPECT_EQ(c.rope_theta, 1000.0f);
  EXPECT_EQ(c.rope_scaling.kind, RopeScalingKind::kLinear);
  EXPECT_EQ(c.rope_scaling.factor, 2.0f);
  EXPECT_EQ(c.n_kv_heads, 4);
}

// Minimal GGUF tensors that satisfy check_tensor_shapes for a config (llmkit order, F32 zeros).
void add_tensors(const ModelConfig& c, io::GgufWriter& w, std::vector<Tensor>& keep, int64_t layers_present) {
  auto add = [&](const std::string& n, Shape s) {
    keep.push_back(Tensor::zeros(s, DType::kF32));
    w.add_tensor(n, keep.back());
  };
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  add("token_embd.weight", {c.n_vocab, c.d_model});
  if (!c.tied_embeddings) add("output.weight", {c.n_vocab, c.d_model});
  for (int64_t i = 0; i < layers_present; ++i) {
    std::string b = "blk." + std::to_string(i) + ".";
    add(b + "attn_norm.weight", {c.d_model});
    add(b + "attn_q.weight", {q, c.d_model});
    add(b + "attn_k.weight", {kv, c.d_model});
    add(b + "attn_v.weight", {kv, c.d_model});
    add(b + "attn_output.weight", {c.d_model, q});
    add(b + "ffn_gate.weight", {c.d_ff, c.d_model});
    add(b + "ffn_up.weight", {c.d_ff, c.d_model});
    add(b + "ffn_down.weight", {c.d_model, c.d_ff});
  }
}

io::GgufFile write_and_open(io::GgufWriter& w, const std::string& name) {
  std::string path = (fs::temp_directory_path() / ("llmkit_mc_" + std::to_string(::getpid()) + name + ".gguf")).string();
  w.write(path);
  io::GgufFile f = io::GgufFile::open(path);
  fs::remove(path);  // the mapping stays valid
  return f;
}

TEST(ModelConfig, GgufRoundTripLlamaFamily) {
  for (const char* name : {"llama3", "smollm", "mistral", "qwen2", "gemma"}) {
    SCOPED_TRACE(name);
    ModelConfig c = ModelConfig::from_hf_config_json(fixture(name));
    io::GgufWriter w;
    c.to_gguf(w);
    std::vector<Tensor> keep;
    add_tensors(c, w, keep, c.n_layers);
    io::GgufFile f = write_and_open(w, name);
    ModelConfig back = ModelConfig::from_gguf(f);
    back.hf_model_type = c.hf_model_type;  // llama.cpp files say "llama" for Mistral too
    back.hf_architecture = c.hf_architecture;
    back.qkv_bias = c.qkv_bias;  // decided by the tensors present, which this test leaves out
    EXPECT_EQ(back, c);
  }
}

TEST(ModelConfig, TheDefaultModelGguf) {
  std::string path = std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "default model not installed (scripts/setup)";
  ModelConfig c = ModelConfig::from_gguf(io::GgufFile::open(path));
  EXPECT_EQ(c.family, ArchFamily::kLlama);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.d_model, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.d_ff, 1536);
  EXPECT_EQ(c.n_vocab, 49152);
  EXPECT_TRUE(c.tied_embeddings);
}

std::string llama_json(const std::string& extra) {
  return R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 128, "vocab_size": 96)" + extra + "}";
}

TEST(ModelConfigBad, RangeErrorsNameTheField) {
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "num_attention_heads": 0)")); }, ErrorCode::kInvalidFile, "");
  expect_error([] { ModelConfig::from_hf_config_json(R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 0, "head_dim": 16, "intermediate_size": 128, "vocab_size": 96})"); },
               ErrorCode::kInvalidFile, "n_heads = 0 is out of range");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "num_key_value_heads": 3)")); }, ErrorCode::kInvalidFile,
               "n_heads 4 is not divisible by n_kv_heads 3");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "num_key_value_heads": 8)")); }, ErrorCode::kInvalidFile,
               "n_kv_heads 8 is larger than n_heads 4");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "num_hidden_layers": 100000)")); }, ErrorCode::kInvalidFile,
               "n_layers = 100000 is out of range");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "rms_norm_eps": -1)")); }, ErrorCode::kInvalidFile, "norm_eps");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "eos_token_id": 500)")); }, ErrorCode::kInvalidFile,
               "eos_token_id 500 is outside the vocabulary");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "num_local_experts": 4, "num_experts_per_tok": 5)")); },
               ErrorCode::kInvalidFile, "n_experts_used = 5");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "partial_rotary_factor": 0.3)")); }, ErrorCode::kInvalidFile,
               "not an even number of rotary dimensions");
}

TEST(ModelConfigBad, TypeAndPresenceErrorsNameTheKey) {
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "hidden_size": "64")")); }, ErrorCode::kInvalidFile,
               "\"hidden_size\" must be an integer");
  expect_error([] { ModelConfig::from_hf_config_json(R"({"model_type": "llama"})"); }, ErrorCode::kInvalidFile,
               "\"hidden_size\" is missing");
  expect_error([] { ModelConfig::from_hf_config_json(R"({"model_type": "mamba"})"); }, ErrorCode::kUnsupported, "mamba");
  expect_error([] { ModelConfig::from_hf_config_json("[1]"); }, ErrorCode::kInvalidFile, "not a JSON object");
  expect_error([] { ModelConfig::from_hf_config_json("{"); }, ErrorCode::kInvalidFile, "not valid JSON");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "hidden_act": "swiglu_custom")")); }, ErrorCode::kUnsupported,
               "swiglu_custom");
  expect_error([] { ModelConfig::from_hf_config_json(llama_json(R"(, "rope_scaling": {"rope_type": "longrope"})")); },
               ErrorCode::kUnsupported, "longrope");
}

TEST(ModelConfigBad, GgufLayerCountBeyondTensorsAndShapeMismatch) {
  ModelConfig c = ModelConfig::from_hf_config_json(fixture("smollm"));
  {
    io::GgufWriter w;
    c.to_gguf(w);
    std::vector<Tensor> keep;
    add_tensors(c, w, keep, 1);  // config says 2 layers
    io::GgufFile f = write_and_open(w, "layers");
    expect_error([&] { ModelConfig::from_gguf(f); }, ErrorCode::kInvalidFile, "n_layers is 2 but the weights have no layer 1");
  }
  {
    io::GgufWriter w;
    c.to_gguf(w);
    std::vector<Tensor> keep;
    add_tensors(c, w, keep, 3);  // one layer more than the config
    io::GgufFile f = write_and_open(w, "extra");
    expect_error([&] { ModelConfig::from_gguf(f); }, ErrorCode::kInvalidFile, "the weights have a layer 2 but n_layers is 2");
  }
  {
    ModelConfig wrong = c;
    wrong.d_ff = 96;  // metadata says 96, tensors are 128
    io::GgufWriter w;
    wrong.to_gguf(w);
    std::vector<Tensor> keep;
    add_tensors(c, w, keep, 2);
    io::GgufFile f = write_and_open(w, "shape");
    expect_error([&] { ModelConfig::from_gguf(f); }, ErrorCode::kInvalidFile,
                 "tensor 'blk.0.ffn_up.weight' has shape [128, 64] but the config implies [96, 64]");
  }
  {
    io::GgufWriter w;
    c.to_gguf(w);
    w.set("llama.attention.head_count", io::GgufValue::from_u32(0));
    std::vector<Tensor> keep;
    add_tensors(c, w, keep, 2);
    io::GgufFile f = write_and_open(w, "heads");
    expect_error([&] { ModelConfig::from_gguf(f); }, ErrorCode::kInvalidFile, "n_heads = 0 is out of range");
  }
  {
    io::GgufWriter w;
    w.set("general.architecture", io::GgufValue::from_string("mamba"));
    io::GgufFile f = write_and_open(w, "arch");
    expect_error([&] { ModelConfig::from_gguf(f); }, ErrorCode::kUnsupported, "mamba");
  }
}

TEST(ArchTable, EveryRowMapsBothWays) {
  for (const auto& a : arch_table()) {
    for (const auto& row : a.tensors) {
      auto fill = [](const std::string& pat) {  // {N} -> 17, {E} -> 3
        std::ostringstream o;
        for (size_t i = 0; i < pat.size(); ++i) {
          if (pat.compare(i, 3, "{N}") == 0) o << "17", i += 2;
          else if (pat.compare(i, 3, "{E}") == 0) o << "3", i += 2;
          else o << pat[i];
        }
        return o.str();
      };
      const std::string hf = fill(row.hf), gg = fill(row.gguf);
      for (const char* suffix : {".weight", ".bias"}) {
        auto g = hf_to_gguf_name(a, hf + suffix);
        ASSERT_TRUE(g.has_value()) << hf;
        EXPECT_EQ(g->name, gg + suffix);
        EXPECT_EQ(g->transform, row.transform);
        auto h = gguf_to_hf_name(a, gg + suffix, row.when_gated != 0);
        ASSERT_TRUE(h.has_value()) << gg;
        EXPECT_EQ(h->name, hf + suffix);
      }
    }
  }
}

TEST(ArchTable, ExamplesPrefixesAndUnknownNames) {
  const ArchInfo& llama = arch_info(ArchFamily::kLlama);
  EXPECT_EQ(hf_to_gguf_name(llama, "model.layers.12.self_attn.q_proj.weight")->name, "blk.12.attn_q.weight");
  EXPECT_EQ(hf_to_gguf_name(llama, "model.layers.0.self_attn.q_proj.weight")->transform, Transform::kRopePermuteQ);
  EXPECT_EQ(hf_to_gguf_name(llama, "model.layers.1.block_sparse_moe.experts.7.w2.weight")->name, "blk.1.ffn_down.7.weight");
  EXPECT_FALSE(hf_to_gguf_name(llama, "model.layers.01.self_attn.q_proj.weight"));  // one spelling per index
  EXPECT_FALSE(hf_to_gguf_name(llama, "model.layers.x.self_attn.q_proj.weight"));
  EXPECT_FALSE(hf_to_gguf_name(llama, "model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(hf_is_skipped(llama, "model.layers.0.self_attn.rotary_emb.inv_freq"));
  const ArchInfo& gpt2 = arch_info(ArchFamily::kGpt2);
  EXPECT_EQ(hf_to_gguf_name(gpt2, "h.3.attn.c_attn.weight")->name, "blk.3.attn_qkv.weight");  // saved without "transformer."
  EXPECT_EQ(gguf_to_hf_name(gpt2, "blk.3.attn_qkv.weight")->name, "transformer.h.3.attn.c_attn.weight");
  EXPECT_TRUE(hf_is_skipped(gpt2, "h.0.attn.bias"));
  EXPECT_FALSE(hf_is_skipped(gpt2, "h.0.attn.c_attn.bias"));
  const ArchInfo& t5 = arch_info(ArchFamily::kT5);
  EXPECT_EQ(gguf_to_hf_name(t5, "enc.blk.0.ffn_up.weight", true)->name, "encoder.block.0.layer.1.DenseReluDense.wi_1.weight");
  EXPECT_EQ(gguf_to_hf_name(t5, "enc.blk.0.ffn_up.weight", false)->name, "encoder.block.0.layer.1.DenseReluDense.wi.weight");
  EXPECT_EQ(arch_from_hf("mistral", {}), &llama);
  EXPECT_EQ(arch_from_hf("", {"Qwen2ForCausalLM"}), &arch_info(ArchFamily::kQwen2));
  EXPECT_EQ(arch_from_gguf("gptneox"), &arch_info(ArchFamily::kGptNeoX));
  EXPECT_EQ(arch_from_gguf("nope"), nullptr);
}

std::vector<float> rows_of(const Tensor& t) { return {t.data<float>(), t.data<float>() + t.numel()}; }

TEST(WeightTransforms, RopePermuteMatchesLlamaCppAndInverts) {
  ModelConfig c;
  c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 4;
  // q: 2 heads x 4 rows, one column: row value = its HF index.
  Tensor q = Tensor::from_floats({0, 1, 2, 3, 4, 5, 6, 7}, {8, 1});
  Tensor g = apply_transform(Transform::kRopePermuteQ, c, q, true, "q");
  // llama.cpp: reshape(n_head, 2, hd/2).swapaxes(1, 2): per head [0, 2, 1, 3].
  EXPECT_EQ(rows_of(g), (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  EXPECT_EQ(rows_of(apply_transform(Transform::kRopePermuteQ, c, g, false, "q")), rows_of(q));
  Tensor k = Tensor::from_floats({0, 1, 2, 3}, {4, 1});
  EXPECT_EQ(rows_of(apply_transform(Transform::kRopePermuteK, c, k, true, "k")), (std::vector<float>{0, 2, 1, 3}));
  expect_error([&] { apply_transform(Transform::kRopePermuteQ, c, Tensor::zeros({6, 1}, DType::kF32), true, "q"); },
               ErrorCode::kInvalidFile, "not a multiple");
}

TEST(WeightTransforms, FusedQkvTransposeAndNormPlusOne) {
  ModelConfig c;
  c.n_heads = 2, c.n_kv_heads = 2, c.head_dim = 1;
  // HF per head [q, k, v]: q0 k0 v0 q1 k1 v1 -> GGUF q0 q1 k0 k1 v0 v1.
  Tensor qkv = Tensor::from_floats({10, 20, 30, 11, 21, 31}, {6});
  Tensor g = apply_transform(Transform::kQkvHeadsToBlocks, c, qkv, true, "qkv");
  EXPECT_EQ(rows_of(g), (std::vector<float>{10, 11, 20, 21, 30, 31}));
  EXPECT_EQ(rows_of(apply_transform(Transform::kQkvHeadsToBlocks, c, g, false, "qkv")), rows_of(qkv));
  Tensor m = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = apply_transform(Transform::kTranspose, c, m, true, "m");
  EXPECT_EQ(t.shape(), Shape({3, 2}));
  EXPECT_EQ(rows_of(t), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  Tensor n = Tensor::from_floats({0.5f, -0.25f}, {2});
  Tensor p = apply_transform(Transform::kNormPlusOne, c, n, true, "n");
  EXPECT_EQ(rows_of(p), (std::vector<float>{1.5f, 0.75f}));
  EXPECT_EQ(rows_of(apply_transform(Transform::kNormPlusOne, c, p, false, "n")), rows_of(n));
}

}  // namespace
}  // namespace llmkit::models
