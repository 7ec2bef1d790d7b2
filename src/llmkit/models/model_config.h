// ModelConfig: every architecture llmkit runs, described as data (CTranslate2 / gemma.cpp style).
// One configurable transformer reads these flags; no per-architecture subclass exists unless the
// structure really differs (encoder-only BERT, encoder-decoder T5).
//
// A config comes from a Hugging Face config.json (from_hf_config_json) or from GGUF metadata
// (from_gguf), and can be written back to either (to_hf_config_json, to_gguf). Both readers end in
// validate(), which rejects out-of-range hyper-parameters with an Error(kInvalidFile) naming the
// field ("n_heads 32 is not divisible by n_kv_heads 5"); check_tensor_shapes() then compares the
// config with the tensors actually present (layer count, embedding and projection shapes).
//
// The tensors it describes are in the Hugging Face layout ([n_out, n_in] rows, LLaMA q/k in the
// rotate-half order of HF). GGUF files from llama.cpp permute some weights; the architecture table
// (arch_table.h) says which, and weight_transforms.h undoes it on load.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "llmkit/io/gguf.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit::models {

enum class ArchFamily : uint8_t {
  kLlama,    // LLaMA 1/2/3, SmolLM, Mistral (sliding window), Mixtral (MoE)
  kQwen2,    // LLaMA-like with q/k/v bias
  kGemma,    // scaled embeddings, GeGLU, (1 + w) RMSNorm, tied embeddings
  kPhi3,     // fused qkv and gate_up projections
  kGpt2,     // learned positions, LayerNorm, fused qkv as Conv1D [in, out]
  kOpt,      // learned positions with an offset of 2, ReLU
  kBloom,    // ALiBi, embedding LayerNorm, fused per-head qkv
  kGptNeoX,  // partial rotary, parallel residual, fused per-head qkv
  kBert,     // encoder only (embeddings), post-norm, token types
  kT5,       // encoder-decoder, relative position buckets, RMSNorm without bias
};
enum class NormKind : uint8_t { kRmsNorm, kLayerNorm };
enum class PositionKind : uint8_t {
  kRopeNeox,      // rotate-half pairs (i, i + d/2): HF LLaMA, GPT-NeoX, Qwen2, Gemma, Phi-3
  kRopeGptj,      // adjacent pairs (2i, 2i + 1)
  kAlibi,         // BLOOM (Press et al. 2022)
  kLearned,       // GPT-2, OPT, BERT: a position embedding table
  kRelativeBias,  // T5: bucketed relative attention bias
};
enum class RopeScalingKind : uint8_t { kNone, kLinear, kNtk, kYarn, kLlama3 };
enum class Activation : uint8_t { kSilu, kGelu, kGeluTanh, kRelu };

const char* family_name(ArchFamily f);
const char* norm_kind_name(NormKind k);
const char* position_kind_name(PositionKind k);
const char* rope_scaling_name(RopeScalingKind k);
const char* activation_name(Activation a);

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::kNone;
  float factor = 1.0f;
  int64_t original_n_ctx = 0;   // pre-scaling context (yarn, llama3)
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  float beta_fast = 32.0f, beta_slow = 1.0f;  // yarn
  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  ArchFamily family = ArchFamily::kLlama;
  std::string hf_model_type;    // "llama", "mistral", ... (what config.json says)
  std::string hf_architecture;  // "LlamaForCausalLM"

  int64_t n_layers = 0;          // decoder layers (T5: decoder; BERT: encoder layers)
  int64_t n_encoder_layers = 0;  // T5 only
  int64_t d_model = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t d_ff = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx = 0;

  NormKind norm = NormKind::kRmsNorm;
  float norm_eps = 1e-5f;
  float norm_weight_offset = 0.0f;  // Gemma: the norm multiplies by (1 + w)
  bool norm_bias = false;           // LayerNorm with a bias
  bool post_norm = false;           // BERT: norm after the residual add

  PositionKind position = PositionKind::kRopeNeox;
  int64_t position_offset = 0;      // OPT: learned position ids start at 2
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  float partial_rotary = 1.0f;      // fraction of head_dim that is rotated (GPT-NeoX 0.25)
  int64_t n_rel_buckets = 0, rel_max_distance = 0;  // T5

  Activation act = Activation::kSilu;
  bool gated_mlp = true;            // act(gate(x)) * up(x)
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  bool parallel_residual = false;   // x + attn(ln1(x)) + mlp(ln2(x))
  bool tied_embeddings = false;
  float embedding_scale = 1.0f;     // Gemma: sqrt(d_model)
  bool embedding_norm = false;      // BLOOM, BERT: a norm right after the embedding
  int64_t n_token_types = 0;        // BERT

  int64_t sliding_window = 0;       // 0 = full attention
  int64_t n_experts = 0, n_experts_used = 0;  // MoE (Mixtral)
  bool encoder = false, decoder = true;

  int64_t bos_token_id = -1, eos_token_id = -1, pad_token_id = -1;

  bool operator==(const ModelConfig&) const = default;

  // Throws Error(kInvalidFile) naming the bad field and its value.
  void validate() const;
  // Compares with the tensors present: `shape_of(gguf_name)` returns a tensor's shape in llmkit
  // order or nullopt if absent. Checks the layer count (no missing layer, none beyond n_layers)
  // and the embedding / attention / MLP shapes. Throws Error(kInvalidFile) naming both shapes.
  void check_tensor_shapes(const std::function<std::optional<Shape>(const std::string&)>& shape_of) const;

  static ModelConfig from_hf_config_json(const std::string& json_text);
  static ModelConfig from_gguf(const io::GgufFile& f);
  // A config.json that transformers can load for this architecture; torch_dtype names the
  // weights' type ("float32", "float16", "bfloat16").
  std::string to_hf_config_json(const std::string& torch_dtype = "float32") const;
  // Writes general.architecture and the "<arch>.*" hyper-parameter keys of llama.cpp.
  void to_gguf(io::GgufWriter& w) const;
  // Llama-3 RoPE scaling as llama.cpp stores it: per rotary frequency i, the divisor of
  // theta^(-2i/rot_dims) (1 for high frequencies, `factor` for low ones, smooth in between), the
  // F32 tensor "rope_freqs.weight" [rot_dims / 2]. Empty unless rope_scaling is kLlama3.
  std::vector<float> rope_freq_factors() const;
};

// The structural flags every model of a family shares (norm kind, activation, biases, position
// kind, ...); readers start from these and override what the file states.
ModelConfig family_defaults(ArchFamily f);

}  // namespace llmkit::models
