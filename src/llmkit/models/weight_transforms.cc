// apply_transform() and cast_to(): see weight_transforms.h for what each transform means.
#include "llmkit/models/weight_transforms.h"

#include <cstring>
#include <vector>

#include "llmkit/base/check.h"
#include "llmkit/kernels/ref/quant.h"

namespace llmkit::models {
namespace {

[[noreturn]] void bad_shape(const std::string& name, const Tensor& x, const std::string& why) {
  throw Error(ErrorCode::kInvalidFile, str_cat("tensor '", name, "' ", x.shape().str(), ": ", why),
              "the weights do not match config.json / the GGUF metadata");
}

// out row dst(r) = in row r, for a tensor viewed as [rows, row_bytes].
template <typename F>
Tensor permute_rows(const Tensor& x, int64_t rows, F dst_of) {
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const size_t rb = x.nbytes() / static_cast<size_t>(rows);
  const auto* s = static_cast<const uint8_t*>(src.raw());
  auto* d = static_cast<uint8_t*>(out.raw());
  for (int64_t r = 0; r < rows; ++r) std::memcpy(d + dst_of(r) * rb, s + r * rb, rb);
  return out;
}

}  // namespace

Tensor apply_transform(Transform t, const ModelConfig& c, const Tensor& x, bool to_gguf, const std::string& name) {
  switch (t) {
    case Transform::kNone:
      return x;
    case Transform::kRopePermuteQ: case Transform::kRopePermuteK: {
      const int64_t heads = t == Transform::kRopePermuteQ ? c.n_heads : c.n_kv_heads;
      const int64_t rows = x.dim(0);
      if (rows % (2 * heads) != 0) bad_shape(name, x, str_cat("rows are not a multiple of 2 x ", heads, " heads"));
      const int64_t hd = rows / heads, half = hd / 2;
      // HF row (h, j, i) = h*hd + j*half + i  <->  GGUF row (h, i, j) = h*hd + i*2 + j.
      return permute_rows(x, rows, [&](int64_t r) {
        const int64_t h = r / hd, w = r % hd;
        if (to_gguf) return h * hd + (w % half) * 2 + w / half;
        return h * hd + (w % 2) * half + w / 2;
      });
    }
    case Transform::kQkvHeadsToBlocks: {
      const int64_t rows = x.dim(0), hd = c.head_dim, nh = c.n_heads;
      if (rows != 3 * nh * hd) bad_shape(name, x, str_cat("fused qkv needs 3 x ", nh, " heads x ", hd, " rows"));
      // HF row (h, s, d) = (h*3 + s)*hd + d  <->  GGUF row (s, h, d) = (s*nh + h)*hd + d.
      return permute_rows(x, rows, [&](int64_t r) {
        const int64_t d = r % hd;
        if (to_gguf) {
          const int64_t h = r / hd / 3, s = r / hd % 3;
          return (s * nh + h) * hd + d;
        }
        const int64_t s = r / hd / nh, h = r / hd % nh;
        return (h * 3 + s) * hd + d;
      });
    }
    case Transform::kTranspose: {
      if (x.rank() == 1) return x;
      if (x.rank() != 2 || is_quantized(x.dtype())) bad_shape(name, x, "only plain 2-D tensors can be transposed");
      Tensor src = x.contiguous();
      const int64_t r = x.dim(0), k = x.dim(1);
      Tensor out = Tensor::empty(Shape{k, r}, x.dtype());
      const size_t es = static_cast<size_t>(type_size(x.dtype()));
      const auto* s = static_cast<const uint8_t*>(src.raw());
      auto* d = static_cast<uint8_t*>(out.raw());
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < k; ++j) std::memcpy(d + (j * r + i) * es, s + (i * k + j) * es, es);
      return out;
    }
    case Transform::kNormPlusOne: {
      Tensor f = cast_to(x, DType::kF32, name).clone();
      float* p = f.data<float>();
      for (int64_t i = 0; i < f.numel(); ++i) p[i] = to_gguf ? p[i] + 1.0f : p[i] - 1.0f;
      return f;
    }
  }
  return x;
}

Tensor cast_to(const Tensor& x, DType to, const std::string& name) {
  if (x.dtype() == to) return x;
  const int64_t n = x.rank() == 0 ? 1 : x.dim(-1);
  if (n % block_size(to) != 0 || n % block_size(x.dtype()) != 0)
    throw Error(ErrorCode::kInvalidArgument,
                str_cat("tensor '", name, "' rows of ", n, " values cannot be stored as ", dtype_name(to), " (blocks of ",
                        block_size(to), ")"),
                "choose a type whose block size divides the row length (f16, bf16, q8_0 for rows of 32k)");
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), to);
  std::vector<float> row(static_cast<size_t>(n));
  const int64_t rows = x.rank() == 0 ? 1 : x.numel() / n;
  const size_t in_rb = row_bytes(x.dtype(), n), out_rb = row_bytes(to, n);
  const auto* s = static_cast<const uint8_t*>(src.raw());
  auto* d = static_cast<uint8_t*>(out.raw());
  for (int64_t r = 0; r < rows; ++r) {
    ref::dequantize_row(x.dtype(), s + r * in_rb, row.data(), n);
    ref::quantize_row(to, row.data(), d + r * out_rb, n);
  }
  return out;
}

}  // namespace llmkit::models
