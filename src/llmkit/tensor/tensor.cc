// Tensor views over shared storage.
#include "llmkit/tensor/tensor.h"

#include <cstring>

#include "llmkit/base/check.h"

namespace llmkit {

namespace {
thread_local Arena* t_arena = nullptr;
}  // namespace

ArenaScope::ArenaScope(Arena& arena) : prev_(t_arena) { t_arena = &arena; }
ArenaScope::ArenaScope(std::nullptr_t) : prev_(t_arena) { t_arena = nullptr; }
ArenaScope::~ArenaScope() { t_arena = prev_; }
Arena* ArenaScope::current() { return t_arena; }

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  LLMKIT_CHECK(dims.size() <= static_cast<size_t>(kMaxDims), kInvalidArgument, "tensor rank ",
               dims.size(), " exceeds the maximum of ", kMaxDims);
  rank_ = static_cast<int>(dims.size());
  for (int i = 0; i < rank_; ++i) {
    LLMKIT_CHECK(dims[i] >= 0, kInvalidArgument, "negative dimension ", dims[i], " in shape");
    d_[i] = dims[i];
  }
}

int64_t Shape::numel() const {
  uint64_t n = 1;
  for (int i = 0; i < rank_; ++i)
    LLMKIT_CHECK(checked_mul(n, static_cast<uint64_t>(d_[i]), &n) && n < (uint64_t{1} << 62),
                 kInvalidArgument, "shape ", str(), " has too many elements");
  return static_cast<int64_t>(n);
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
  return s + "]";
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (int i = 0; i < rank_; ++i)
    if (d_[i] != o.d_[i]) return false;
  return true;
}

Storage::~Storage() {
  if (allocator && data) allocator->deallocate(data, bytes);
}

void Tensor::set_contiguous_strides() {
  int r = rank();
  if (r == 0) return;
  const int64_t bs = block_size(dtype_);
  LLMKIT_CHECK(shape_[r - 1] % bs == 0, kInvalidArgument, "last dimension ", shape_[r - 1], " of ",
               dtype_name(dtype_), " tensor ", shape_.str(), " is not a multiple of the block size ", bs);
  strides_[r - 1] = bs == 1 ? type_size(dtype_) : 0;
  int64_t s = static_cast<int64_t>(row_bytes(dtype_, shape_[r - 1]));
  for (int i = r - 2; i >= 0; --i) {
    strides_[i] = s;
    s *= shape_[i];
  }
}

size_t Tensor::nbytes() const {
  if (rank() == 0) return type_size(dtype_);
  return row_bytes(dtype_, dim(-1)) * static_cast<size_t>(rows());
}

bool Tensor::is_contiguous() const {
  int r = rank();
  if (r == 0) return true;
  if (!is_quantized(dtype_) && strides_[r - 1] != type_size(dtype_) && shape_[r - 1] != 1) return false;
  int64_t s = static_cast<int64_t>(row_bytes(dtype_, shape_[r - 1]));
  for (int i = r - 2; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != s) return false;
    s *= shape_[i];
  }
  return true;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.set_contiguous_strides();
  auto st = std::make_shared<Storage>();
  st->bytes = t.nbytes();
  st->device = device;
  if (device.kind == DeviceKind::kCPU && t_arena != nullptr) {
    st->data = t_arena->alloc(st->bytes == 0 ? 1 : st->bytes, 64);  // owned by the arena
  } else {
    st->allocator = device_backend(device).allocator;
    st->data = st->allocator->allocate(st->bytes);
  }
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  LLMKIT_CHECK(device.kind == DeviceKind::kCPU, kUnsupported, "zeros() on ", device.str(),
               " is not supported yet; create on the CPU and copy with to()");
  Tensor t = empty(shape, dtype, device);
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::from_external(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                             Device device) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.set_contiguous_strides();
  auto st = std::make_shared<Storage>();
  st->data = data;
  st->bytes = t.nbytes();
  st->device = device;
  st->owner = std::move(owner);
  t.storage_ = std::move(st);
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& values, const Shape& shape) {
  LLMKIT_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), kInvalidArgument, values.size(),
               " values do not fill shape ", shape.str());
  Tensor t = empty(shape, DType::kF32);
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(float));
  return t;
}

void* Tensor::row_ptr(int64_t r) const {
  LLMKIT_DASSERT(r >= 0 && r < rows());
  if (rank() <= 1) return raw();
  // Decompose r over the outer dimensions (supports non-contiguous outer strides).
  int64_t off = 0;
  for (int i = rank() - 2; i >= 0; --i) {
    int64_t idx = r % shape_[i];
    r /= shape_[i];
    off += idx * strides_[i];
  }
  return static_cast<char*>(raw()) + off;
}

Tensor Tensor::view(const Shape& shape) const {
  LLMKIT_CHECK(is_contiguous(), kInvalidArgument, "view() of non-contiguous tensor ", str(),
               "; call contiguous() first");
  LLMKIT_CHECK(shape.numel() == numel(), kInvalidArgument, "cannot view ", str(), " as ", shape.str(),
               ": element counts differ");
  Tensor t = *this;
  t.shape_ = shape;
  t.set_contiguous_strides();
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  int r = rank();
  if (a < 0) a += r;
  if (b < 0) b += r;
  LLMKIT_CHECK(a >= 0 && a < r && b >= 0 && b < r, kInvalidArgument, "transpose(", a, ", ", b,
               ") out of range for ", str());
  LLMKIT_CHECK(!is_quantized(dtype_), kUnsupported, "transpose of quantized tensor ", str(),
               "; dequantize it first");
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::slice(int d, int64_t start, int64_t end) const {
  if (d < 0) d += rank();
  LLMKIT_CHECK(d >= 0 && d < rank(), kInvalidArgument, "slice dim ", d, " out of range for ", str());
  LLMKIT_CHECK(0 <= start && start <= end && end <= shape_[d], kInvalidArgument, "slice [", start, ", ",
               end, ") out of range for dim ", d, " of ", str());
  Tensor t = *this;
  if (d == rank() - 1 && is_quantized(dtype_)) {
    int64_t bs = block_size(dtype_);
    LLMKIT_CHECK(start % bs == 0 && end % bs == 0, kInvalidArgument, "slice of quantized last dim must be ",
                 "block aligned (", bs, ")");
    t.offset_ += (start / bs) * type_size(dtype_);
  } else {
    t.offset_ += static_cast<size_t>(start * strides_[d]);
  }
  t.shape_[d] = end - start;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  if (d < 0) d += rank();
  LLMKIT_CHECK(d >= 0 && d < rank() - (is_quantized(dtype_) ? 1 : 0), kInvalidArgument, "select dim ", d,
               " invalid for ", str());
  Tensor t = slice(d, index, index + 1);
  std::vector<int64_t> dims;
  int64_t strides[kMaxDims];
  int k = 0;
  for (int i = 0; i < rank(); ++i) {
    if (i == d) continue;
    dims.push_back(t.shape_[i]);
    strides[k++] = t.strides_[i];
  }
  t.shape_ = Shape(dims);
  for (int i = 0; i < k; ++i) t.strides_[i] = strides[i];
  return t;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  LLMKIT_CHECK(dst.dtype() == src.dtype() && dst.shape() == src.shape(), kInvalidArgument, "copy from ",
               src.str(), " into ", dst.str(), ": dtype or shape differs");
  LLMKIT_CHECK(dst.device().kind == DeviceKind::kCPU && src.device().kind == DeviceKind::kCPU, kUnsupported,
               "copy_into handles CPU tensors; use to() to move between devices");
  if (src.numel() == 0) return;
  if (dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(dst.raw(), src.raw(), src.nbytes());
    return;
  }
  const int r = src.rank();
  const size_t row = row_bytes(src.dtype(), src.dim(-1));
  const bool last_contig = is_quantized(src.dtype()) ||
                           (src.stride_bytes(-1) == type_size(src.dtype()) &&
                            dst.stride_bytes(-1) == type_size(dst.dtype()));
  const int64_t rows = src.rows();
  for (int64_t i = 0; i < rows; ++i) {
    char* d = static_cast<char*>(dst.row_ptr(i));
    const char* s = static_cast<const char*>(src.row_ptr(i));
    if (last_contig || r == 0) {
      std::memcpy(d, s, row);
    } else {
      const size_t es = type_size(src.dtype());
      for (int64_t j = 0; j < src.dim(-1); ++j)
        std::memcpy(d + j * dst.stride_bytes(-1), s + j * src.stride_bytes(-1), es);
    }
  }
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  copy_into(t, *this);
  return t;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor t = empty(shape_, dtype_, d);
  if (d.kind == DeviceKind::kCPU) {
    device_backend(device()).copy_to_host(t.raw(), src.raw(), src.nbytes(), device().index);
  } else {
    LLMKIT_CHECK(device().kind == DeviceKind::kCPU, kUnsupported, "copy between two accelerators ",
                 device().str(), " -> ", d.str(), " goes through the host for now");
    device_backend(d).copy_from_host(t.raw(), src.raw(), src.nbytes(), d.index);
  }
  return t;
}

std::string Tensor::str() const {
  return str_cat(dtype_name(dtype_), shape_.str(), " ", device().str());
}

}  // namespace llmkit
