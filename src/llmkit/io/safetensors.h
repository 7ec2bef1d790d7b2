// safetensors (Hugging Face's pickle-free tensor file): reader and writer, single files and
// sharded checkpoints with model.safetensors.index.json.
//
// Layout (huggingface/safetensors, docs "Format"): u64 little-endian header length N, N bytes of
// UTF-8 JSON {"NAME": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {str: str}}, then the data buffer. Offsets are relative to the data buffer; the
// tensors tile it exactly (no gaps, no overlap, starting at 0, ending at the end of the file).
// Shapes are outermost first, row-major, like llmkit's.
//
// Every byte is untrusted (docs/RELIABILITY): the header length is capped at 100 MB and at the
// file size, the JSON must be valid UTF-8 with no duplicate keys, every range is checked with
// overflow-safe arithmetic, and shape x dtype size must equal the byte range. A bad file gives
// Error(kInvalidFile) whose message names the rule broken and the tensor. Tensors are views into
// the memory-mapped file (no copies) unless their bytes are misaligned for the element type.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmkit/tensor/tensor.h"

namespace llmkit::io {

// The dtypes of the safetensors spec. llmkit computes in a subset; the others can still be read
// as raw bytes (SafetensorsFile::bytes) and are copied through by the converter.
enum class StDType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool, kF8_E4M3, kF8_E5M2 };

const char* st_dtype_name(StDType t);  // "BF16", as in the header
int st_dtype_size(StDType t);
std::optional<StDType> st_dtype_from_name(std::string_view name);
std::optional<DType> to_dtype(StDType t);    // nullopt for F64, I16, U8, BOOL
std::optional<StDType> to_st_dtype(DType t);  // nullopt for block-quantized types

struct SafetensorsTensorInfo {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;  // outermost first; may be empty (a scalar)
  uint64_t begin = 0, end = 0;  // byte range inside the data buffer
};

struct SafetensorsLimits {
  uint64_t max_header = 100u << 20;  // the reference implementation's cap (100 MB)
  uint64_t max_tensors = 1u << 20;
  int max_rank = kMaxDims;
};

class SafetensorsFile {
 public:
  // Maps and parses a file. Throws Error(kNotFound / kIo / kInvalidFile).
  static SafetensorsFile open(const std::string& path, const SafetensorsLimits& limits = {});
  // Parses bytes in memory (tests, fuzzing); `owner` keeps them alive for tensor views.
  static SafetensorsFile parse(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                               const std::string& name = "<memory>", const SafetensorsLimits& limits = {});

  const std::string& name() const { return name_; }
  uint64_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }  // header order
  const SafetensorsTensorInfo* find_tensor(const std::string& name) const;
  // The tensor's raw bytes inside the mapping. Throws kNotFound.
  std::pair<const uint8_t*, uint64_t> bytes(const std::string& name) const;
  // A view of the tensor (no copy; a copy only if its bytes are misaligned for the element type).
  // Throws kNotFound, or kUnsupported for dtypes llmkit does not compute in (F64, I16, U8, BOOL).
  Tensor tensor(const std::string& name) const;

 private:
  std::string name_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint64_t data_offset_ = 0;
  std::shared_ptr<void> owner_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<SafetensorsTensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// One tensor to write: raw contiguous bytes of `dtype` and `shape` (a Tensor keeps them alive).
struct SafetensorsEntry {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  Tensor data;  // contiguous CPU tensor whose nbytes() equals numel x st_dtype_size(dtype)
};

// Writes single files and shards. Header JSON is padded with spaces to a multiple of 8 bytes, as
// the reference writer does, so every tensor's data is 8-byte aligned when mapped.
class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // The tensor must be on the CPU or copyable there; it is copied at write time.
  void add_tensor(const std::string& name, const Tensor& t);
  // For dtypes llmkit has no DType for (F64, I16, U8, BOOL): bytes given as an I8/I32/... tensor.
  void add_raw(SafetensorsEntry entry);
  size_t size() const { return entries_.size(); }
  uint64_t total_bytes() const;

  // One file, written atomically (tmp, fsync, rename, directory fsync).
  void write(const std::string& path) const;
  // If the tensors take more than max_shard_bytes, writes DIR/model-0000K-of-0000N.safetensors and
  // DIR/model.safetensors.index.json ({"metadata": {"total_size": B}, "weight_map": {name: file}});
  // otherwise DIR/model.safetensors. The index is written last, so a crash leaves no index that
  // points to missing shards. Returns the file names written.
  std::vector<std::string> write_sharded(const std::string& dir, uint64_t max_shard_bytes) const;

 private:
  void write_entries(const std::string& path, const std::vector<const SafetensorsEntry*>& entries) const;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<SafetensorsEntry> entries_;
};

}  // namespace llmkit::io
