// A model's weights by GGUF name, whichever file they came from. The transformer works in one
// layout, llama.cpp's GGUF layout (names "blk.3.attn_q.weight", LLaMA q/k rows permuted to adjacent
// rotary pairs, fused qkv as [q; k; v] blocks, GPT-2 Conv1D transposed, Gemma norms stored as 1 + w),
// so that a Hugging Face folder and the GGUF converted from it run the same code on the same numbers:
//
//   GGUF file   tensors are memory-mapped views, used as they are;
//   HF folder   each safetensors tensor is renamed through the architecture table and, where the
//               table names a layout transform, transformed on load (weight_transforms.h); tensors
//               without a transform stay memory-mapped views of the shards.
//
// The source (GgufFile or HfFolder) is kept alive by the Weights, so the views stay valid.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "llmkit/io/gguf.h"
#include "llmkit/models/model_config.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit::models {

class Weights {
 public:
  // A GGUF file: config from its metadata, checked against the tensors.
  static Weights from_gguf(const std::string& path);
  // A Hugging Face folder (config.json + safetensors): renamed and transformed to the GGUF layout.
  static Weights from_hf_folder(const std::string& dir);
  // A folder -> from_hf_folder, a file -> from_gguf (with advice for pickle checkpoints).
  static Weights open(const std::string& path);

  const ModelConfig& config() const { return cfg_; }
  const std::string& path() const { return path_; }
  // The GGUF file when the weights came from one (its metadata: tokenizer, chat template), else null.
  const io::GgufFile* gguf() const { return gguf_.get(); }
  // The model's chat template: GGUF tokenizer.chat_template, or a Hugging Face folder's
  // chat_template.jinja / tokenizer_config.json "chat_template" (a string, or the "default" of a
  // list of named templates). Empty when the model has none.
  std::string chat_template() const;

  const Tensor* find(const std::string& name) const;
  // Throws Error(kInvalidFile) naming the missing tensor, or the shape found and the one needed.
  Tensor require(const std::string& name, const Shape& shape) const;
  // nullopt when absent; a present tensor of the wrong shape still throws.
  std::optional<Tensor> optional(const std::string& name, const Shape& shape) const;

  const std::map<std::string, Tensor>& all() const { return tensors_; }
  // Drops the whole memory pages of [p, p + n) where they are a view of the GGUF file, once a
  // repacked copy has replaced those bytes (io::GgufFile::release_pages): RSS stays near the file
  // size. Reading them later maps them back. No-op for other sources.
  void release_pages(const void* p, size_t n) const;
  // Whether t is a view of the GGUF file's mapping (what release_pages can drop).
  bool is_file_view(const Tensor& t) const;
  uint64_t n_params() const;

 private:
  std::string path_;
  ModelConfig cfg_;
  std::map<std::string, Tensor> tensors_;
  std::shared_ptr<io::GgufFile> gguf_;
  std::shared_ptr<void> keep_alive_;  // the HfFolder whose shards the views point into
};

}  // namespace llmkit::models
