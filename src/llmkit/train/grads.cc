// `llmkit grads` (include/llmkit/train.h): the gradient parity tool over TrainModel.
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/base/timer.h"
#include "llmkit/io/safetensors.h"
#include "llmkit/train.h"
#include "llmkit/train/model.h"

namespace llmkit {

GradsFileResult grads_file(const std::string& model_path, const std::string& input_path, const std::string& output_path) {
  io::SafetensorsFile in = io::SafetensorsFile::open(input_path);
  LLMKIT_CHECK(in.find_tensor("input_ids") != nullptr, kInvalidArgument, "'", input_path,
               "' has no tensor 'input_ids'; write int64 input_ids [batch, tokens]");
  Tensor ids = in.tensor("input_ids");
  LLMKIT_CHECK(ids.rank() == 2 && (ids.dtype() == DType::kI64 || ids.dtype() == DType::kI32) && ids.dim(1) >= 2,
               kInvalidArgument, "input_ids in '", input_path, "' is ", dtype_name(ids.dtype()), " ", ids.shape().str(),
               "; it must be int64 (or int32) [batch, tokens] with at least 2 tokens");
  Timer timer;
  const models::Weights weights = models::Weights::open(model_path);
  LLMKIT_CHECK(ids.dim(1) <= weights.config().n_ctx, kInvalidArgument, "input_ids has ", ids.dim(1),
               " tokens per row but the model has ", weights.config().n_ctx, " positions");
  auto model = train::TrainModel::from_weights(weights);
  std::vector<std::vector<int32_t>> batch(static_cast<size_t>(ids.dim(0)));
  for (int64_t b = 0; b < ids.dim(0); ++b)
    for (int64_t t = 0; t < ids.dim(1); ++t) {
      const int64_t v = ids.dtype() == DType::kI64 ? ids.data<int64_t>()[b * ids.dim(1) + t]
                                                   : ids.data<int32_t>()[b * ids.dim(1) + t];
      LLMKIT_CHECK(v >= 0 && v < weights.config().n_vocab, kInvalidArgument, "input_ids[", b, ", ", t, "] = ", v,
                   " is outside the vocabulary [0, ", weights.config().n_vocab, ")");
      batch[static_cast<size_t>(b)].push_back(static_cast<int32_t>(v));
    }
  ag::Var loss = model->loss(batch);
  ag::backward(loss);
  io::SafetensorsWriter w;
  w.set_metadata("loss", std::to_string(loss.value().data<float>()[0]));
  GradsFileResult r;
  for (const auto& [name, g] : model->hf_gradients()) {
    w.add_tensor(name, g);
    ++r.n_gradients;
  }
  w.add_tensor("loss", loss.value());
  w.write(output_path);
  r.loss = loss.value().data<float>()[0];
  r.batch = ids.dim(0);
  r.tokens = ids.dim(1);
  r.seconds = timer.seconds();
  return r;
}

}  // namespace llmkit
