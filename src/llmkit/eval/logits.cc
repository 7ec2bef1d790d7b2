// `llmkit logits`: ids in, logits or hidden states out, as safetensors (see llmkit/eval.h).
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/base/timer.h"
#include "llmkit/eval.h"
#include "llmkit/io/safetensors.h"
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

  auto model = models::Transformer::load(model_path);
  const models::ModelConfig& c = model->config();
  LLMKIT_CHECK(!in.find_tensor("decoder_input_ids") || !c.encoder || !c.decoder, kUnsupported,
               "decoder_input_ids given, but encoder-decoder models are not built yet");
  LLMKIT_CHECK(T <= c.n_ctx, kInvalidArgument, "input_ids has ", T, " tokens per row but the model has ", c.n_ctx,
               " positions");
  LogitsFileResult r;
  r.batch = B, r.tokens = T;
  r.output_name = model->is_encoder() ? "last_hidden_state" : "logits";
  r.width = model->is_encoder() ? c.d_model : c.n_vocab;
  Tensor out = Tensor::empty({B, T, r.width}, DType::kF32);
  Timer timer;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> row(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t v = ids.dtype() == DType::kI64 ? ids.data<int64_t>()[b * T + t] : ids.data<int32_t>()[b * T + t];
      LLMKIT_CHECK(v >= 0 && v < c.n_vocab, kInvalidArgument, "input_ids[", b, ", ", t, "] = ", v,
                   " is outside the vocabulary [0, ", c.n_vocab, ")");
      row[static_cast<size_t>(t)] = static_cast<int32_t>(v);
    }
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
  r.seconds = timer.seconds();
  io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add_tensor(r.output_name, out);
  w.write(output_path);
  return r;
}

}  // namespace llmkit
