// `llmkit logits`: ids in, logits or hidden states out, as safetensors (see llmkit/eval.h).
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/base/timer.h"
#include "llmkit/eval.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/models/t5.h"
#include "llmkit/models/transformer.h"

namespace llmkit {

LogitsFileResult logits_file(const std::string& model_path, const std::string& input_path, const std::string& output_path,
                             const std::function<void(int64_t, int64_t)>& progress) {
  io::SafetensorsFile in = io::SafetensorsFile::open(input_path);
  const io::SafetensorsTensorInfo* ti = in.find_tensor("input_ids");
  LLMKIT_CHECK(ti != nullptr, kInvalidArgument, "'", input_path, "' has no tensor 'input_ids'",
               "; write int64 input_ids [batch, tokens] (e.g. safetensors.torch.save_file({'input_ids': ids}, path))");
  Tensor ids = in.tensor("input_ids");
  LLMKIT_CHECK(ids.rank() == 2 && (ids.dtype() == DType::kI64 || ids.dtype() == DType::kI32), kInvalidArgument,
               "input_ids in '", input_path, "' is ", dtype_name(ids.dtype()), " ", ids.shape().str(),
               "; it must be int64 (or int32) with shape [batch, tokens]");
  const int64_t B = ids.dim(0), T = ids.dim(1);
  LLMKIT_CHECK(B >= 1 && T >= 1, kInvalidArgument, "input_ids ", ids.shape().str(), " is empty");

  auto row_of = [&](const Tensor& t, int64_t b, int64_t vocab, const char* what) {
    const int64_t n = t.dim(1);
    std::vector<int32_t> row(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = t.dtype() == DType::kI64 ? t.data<int64_t>()[b * n + i] : t.data<int32_t>()[b * n + i];
      LLMKIT_CHECK(v >= 0 && v < vocab, kInvalidArgument, what, "[", b, ", ", i, "] = ", v,
                   " is outside the vocabulary [0, ", vocab, ")");
      row[static_cast<size_t>(i)] = static_cast<int32_t>(v);
    }
    return row;
  };
  LogitsFileResult r;
  r.batch = B;
  Tensor out;
  Timer timer;
  models::Weights weights = models::Weights::open(model_path);
  const models::ModelConfig c = weights.config();
  LLMKIT_CHECK(T <= c.n_ctx || c.family == models::ArchFamily::kT5, kInvalidArgument, "input_ids has ", T,
               " tokens per row but the model has ", c.n_ctx, " positions");
  if (c.family == models::ArchFamily::kT5) {  // encoder-decoder: logits of the decoder positions
    LLMKIT_CHECK(in.find_tensor("decoder_input_ids") != nullptr, kInvalidArgument, "model '", model_path,
                 "' is an encoder-decoder (T5): '", input_path, "' also needs int64 decoder_input_ids [batch, tokens]",
                 " (first id: the decoder start token, ", c.bos_token_id, ")");
    Tensor dec = in.tensor("decoder_input_ids");
    LLMKIT_CHECK(dec.rank() == 2 && dec.dim(0) == B && dec.dim(1) >= 1 &&
                     (dec.dtype() == DType::kI64 || dec.dtype() == DType::kI32),
                 kInvalidArgument, "decoder_input_ids is ", dtype_name(dec.dtype()), " ", dec.shape().str(),
                 "; it must be int64 [", B, ", tokens]");
    auto t5 = models::T5Model::from_weights(std::move(weights));
    r.output_name = "logits", r.tokens = dec.dim(1), r.width = c.n_vocab;
    out = Tensor::empty({B, r.tokens, r.width}, DType::kF32);
    for (int64_t b = 0; b < B; ++b) {
      Tensor y = t5->decode(row_of(dec, b, c.n_vocab, "decoder_input_ids"), t5->encode(row_of(ids, b, c.n_vocab, "input_ids")));
      std::memcpy(out.data<float>() + b * r.tokens * r.width, y.data<float>(), static_cast<size_t>(y.numel()) * sizeof(float));
      if (progress) progress(b + 1, B);
    }
  } else {
    auto model = models::Transformer::from_weights(std::move(weights));
    r.output_name = model->is_encoder() ? "last_hidden_state" : "logits";
    r.tokens = T, r.width = model->is_encoder() ? c.d_model : c.n_vocab;
    out = Tensor::empty({B, T, r.width}, DType::kF32);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int32_t> row = row_of(ids, b, c.n_vocab, "input_ids");
      Tensor y;
      if (model->is_encoder()) {
        y = model->encode(row);
      } else {
        models::KVCache cache = model->new_cache(T);
        y = model->forward(row, cache, T);
      }
      std::memcpy(out.data<float>() + b * T * r.width, y.data<float>(), static_cast<size_t>(T * r.width) * sizeof(float));
      if (progress) progress(b + 1, B);
    }
  }
  r.seconds = timer.seconds();
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add_tensor(r.output_name, out);
  w.write(output_path);
  return r;
}

}  // namespace llmkit
