// Tensor views: a dtype, a shape, byte strides and a byte offset over shared Storage.
// Shapes are written outermost first, as in PyTorch: a weight is [n_out, n_in] row-major and
// `matmul(x[M,K], w[N,K]) -> y[M,N]` (stated once, here). The last dimension of a quantized
// tensor is always contiguous and a whole number of blocks; its stride is meaningless and the
// stride of the dimension before it is the row size in bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/base/arena.h"
#include "llmkit/error.h"
#include "llmkit/tensor/device.h"
#include "llmkit/tensor/dtype.h"

namespace llmkit {

constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);
  int rank() const { return rank_; }
  int64_t operator[](int i) const { return d_[i < 0 ? i + rank_ : i]; }
  int64_t& operator[](int i) { return d_[i < 0 ? i + rank_ : i]; }
  int64_t numel() const;
  std::vector<int64_t> vec() const { return {d_, d_ + rank_}; }
  std::string str() const;  // "[2, 3, 4]"
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t d_[kMaxDims] = {};
  int rank_ = 0;
};

// Bytes on a device. Memory is owned through `allocator` or kept alive by `owner` (an mmap, a
// buffer of another library); never both.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Allocator* allocator = nullptr;
  std::shared_ptr<void> owner;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialised; 64-byte aligned.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A view of memory someone else owns (an mmap'd file); `owner` keeps it alive.
  static Tensor from_external(void* data, const Shape& shape, DType dtype,
                              std::shared_ptr<void> owner, Device device = Device::cpu());
  static Tensor from_floats(const std::vector<float>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  int64_t stride_bytes(int i) const { return strides_[i < 0 ? i + rank() : i]; }
  size_t offset_bytes() const { return offset_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // Bytes spanned by a contiguous tensor (numel in blocks x type size).
  size_t nbytes() const;
  bool is_contiguous() const;

  void* raw() const { return static_cast<char*>(storage_->data) + offset_; }
  template <typename T>
  T* data() const { return static_cast<T*>(raw()); }
  // Pointer to row r of a tensor viewed as [rows, last_dim] (requires contiguous outer layout).
  void* row_ptr(int64_t r) const;
  int64_t rows() const { return rank() == 0 ? 1 : numel() / dim(-1); }

  // Views (no copy). Each checks its arguments with LLMKIT_CHECK.
  Tensor view(const Shape& shape) const;           // contiguous only
  Tensor transpose(int a, int b) const;            // not for quantized dtypes
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor select(int dim, int64_t index) const;     // drops the dimension

  // Copies.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device d) const;

  // Debug string: "f32[2, 3] cpu".
  std::string str() const;

 private:
  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::kF32;
  Shape shape_;
  int64_t strides_[kMaxDims] = {};
  size_t offset_ = 0;

  void set_contiguous_strides();
};

// Buffer planning for one forward/backward pass: while an ArenaScope is alive, CPU tensors created
// on this thread by Tensor::empty/zeros take their bytes from the arena instead of the system
// allocator. Those tensors must not be used after the arena's next reset(); results that must
// outlive the pass are clone()d after the scope ends, or made inside an ArenaScope(nullptr), which
// sends allocations back to the system allocator. Scopes nest (the innermost wins).
class ArenaScope {
 public:
  explicit ArenaScope(Arena& arena);
  explicit ArenaScope(std::nullptr_t);
  ~ArenaScope();
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;
  static Arena* current();

 private:
  Arena* prev_;
};

// Copies src into dst element by element (same dtype and shape; any strides; CPU).
void copy_into(const Tensor& dst, const Tensor& src);

}  // namespace llmkit
