// Copy ops: concat and split along any dimension (via slice views and copy_into, so every dtype works,
// quantized ones too when the split keeps the last dimension block-aligned), and copy.
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ops {

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  LLMKIT_CHECK(!xs.empty(), kInvalidArgument, "concat: needs at least one tensor");
  const Tensor& a = xs[0];
  LLMKIT_CHECK(a.defined(), kInvalidArgument, "concat: tensor 0 is undefined");
  const int r = a.rank();
  if (dim < 0) dim += r;
  LLMKIT_CHECK(dim >= 0 && dim < r, kInvalidArgument, "concat: dim out of range for ", a.str());
  std::vector<int64_t> shape = a.shape().vec();
  shape[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    bool ok = x.defined() && x.dtype() == a.dtype() && x.rank() == r;
    for (int d = 0; ok && d < r; ++d) ok = d == dim || x.dim(d) == a.dim(d);
    LLMKIT_CHECK(ok, kInvalidArgument, "concat: tensor ", i, " ", x.defined() ? x.str() : "undefined",
                 " does not match tensor 0 ", a.str(), " outside dim ", dim);
    shape[dim] += x.dim(dim);
  }
  Tensor y = Tensor::empty(Shape(shape), a.dtype());
  int64_t off = 0;
  for (const Tensor& x : xs) {
    copy_into(y.slice(dim, off, off + x.dim(dim)), x);
    off += x.dim(dim);
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim) {
  LLMKIT_CHECK(x.defined(), kInvalidArgument, "split: x is undefined");
  if (dim < 0) dim += x.rank();
  LLMKIT_CHECK(dim >= 0 && dim < x.rank(), kInvalidArgument, "split: dim out of range for ", x.str());
  int64_t total = 0;
  for (int64_t s : sizes) {
    LLMKIT_CHECK(s >= 0, kInvalidArgument, "split: negative size ", s);
    total += s;
  }
  LLMKIT_CHECK(total == x.dim(dim), kInvalidArgument, "split: sizes sum to ", total, " but dim ", dim, " of ", x.str(),
               " is ", x.dim(dim));
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(x.slice(dim, off, off + s).clone());
    off += s;
  }
  return out;
}

Tensor copy(const Tensor& x) {
  LLMKIT_CHECK(x.defined(), kInvalidArgument, "copy: x is undefined");
  return x.clone();
}

}  // namespace llmkit::ops
