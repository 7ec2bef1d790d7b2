// GGUF v2/v3 (llama.cpp's single-file model format): reader and writer.
//
// Layout (GGUF spec, ggml/docs/gguf.md): magic "GGUF", u32 version, u64 tensor_count,
// u64 kv_count, then kv_count metadata pairs (string key, u32 value type, value), then tensor
// infos (string name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset),
// padding to `general.alignment` (default 32), then the tensor data. Offsets are relative to the
// data section and aligned.
//
// Every number in the file is untrusted: counts, lengths, dims and offsets are checked against
// hard caps and the bytes actually left, with overflow-checked arithmetic, before anything is
// allocated; a bad file gives Error(kInvalidFile) naming the field, the value and the byte offset.
// Tensors are memory-mapped: GgufFile::tensor() returns a view into the mapping without a copy.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "llmkit/base/mapped_file.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit::io {

enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
const char* gguf_type_name(GgufType t);

struct GgufValue;

// The elements of a GGUF array value. An array read from a file is not decoded into GgufValues
// at open time: its elements stay in the file's bytes (already checked by the parser) and are
// decoded on access. A 49k-token vocabulary with its merges and token types is ~150k values,
// ~14 MB of heap as GgufValues, that a model run (weights + config) never reads. Arrays built in
// memory (writers, tests) and nested arrays own their elements.
class GgufArray {
 public:
  GgufArray() = default;
  explicit GgufArray(std::vector<GgufValue> owned);
  // Elements inside `bytes` (kept alive by `keep` when not null): `count` values of `elem`; for
  // strings, `offsets` holds each string's position (its u64 length prefix) relative to `bytes`.
  GgufArray(const uint8_t* bytes, uint64_t count, GgufType elem, std::shared_ptr<void> keep,
            std::vector<uint64_t> offsets);

  size_t size() const;
  bool empty() const { return size() == 0; }
  GgufValue operator[](size_t i) const;  // a decoded copy; i < size() (asserted)
  // Element i of a string array without a copy (empty view if the array holds no strings).
  std::string_view string_at(size_t i) const;

  class iterator {
   public:
    using value_type = GgufValue;
    iterator(const GgufArray* a, size_t i) : a_(a), i_(i) {}
    GgufValue operator*() const;
    iterator& operator++() { ++i_; return *this; }
    bool operator!=(const iterator& o) const { return i_ != o.i_; }
    bool operator==(const iterator& o) const { return i_ == o.i_; }
   private:
    const GgufArray* a_;
    size_t i_;
  };
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, size()}; }

 private:
  std::shared_ptr<const std::vector<GgufValue>> owned_;  // in-memory arrays (shared: copies are cheap)
  const uint8_t* bytes_ = nullptr;                       // file-backed arrays
  uint64_t count_ = 0;
  GgufType elem_ = GgufType::kU8;
  std::shared_ptr<void> keep_;
  std::shared_ptr<const std::vector<uint64_t>> offsets_;
};

struct GgufValue {
  GgufType type = GgufType::kU32;
  uint64_t u = 0;  // unsigned integers and bool
  int64_t i = 0;   // signed integers
  double f = 0;    // floats
  std::string s;   // strings
  GgufType elem_type = GgufType::kU8;  // arrays
  GgufArray arr;

  static GgufValue from_u32(uint32_t v);
  static GgufValue from_u64(uint64_t v);
  static GgufValue from_i32(int32_t v);
  static GgufValue from_f32(float v);
  static GgufValue from_bool(bool v);
  static GgufValue from_string(std::string v);
  static GgufValue from_strings(const std::vector<std::string>& v);
  static GgufValue from_array(GgufType elem, std::vector<GgufValue> v);

  // Integer value of any integer/bool type; nullopt otherwise.
  std::optional<int64_t> as_int() const;
  // Numeric value of any integer or float type.
  std::optional<double> as_number() const;
  const std::string* as_string() const { return type == GgufType::kString ? &s : nullptr; }
  // Short human-readable rendering (arrays abbreviated), at most max_chars characters.
  std::string summary(size_t max_chars = 60) const;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;          // outermost first (GGUF stores innermost first; reversed on read)
  uint64_t offset = 0;  // relative to the data section
  uint64_t bytes = 0;
};

// Hard caps on what a GGUF file may declare (far above any real model, far below a DoS).
struct GgufLimits {
  uint64_t max_tensors = 1u << 20;
  uint64_t max_kv = 1u << 20;
  uint64_t max_string = 64u << 20;       // bytes in one string (chat templates are ~10 KB)
  uint64_t max_array = 1u << 26;         // elements in one array (vocabularies are ~10^5..10^6)
  int max_array_depth = 3;
};

class GgufFile {
 public:
  // Maps and parses a file. Throws Error(kNotFound / kIo / kInvalidFile / kUnsupported).
  static GgufFile open(const std::string& path, const GgufLimits& limits = {});
  // Parses bytes in memory (tests, fuzzing); `owner` keeps them alive for tensor views.
  static GgufFile parse(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                        const std::string& name = "<memory>", const GgufLimits& limits = {});

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }
  const std::string& name() const { return name_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  std::optional<int64_t> get_int(const std::string& key) const;
  std::optional<std::string> get_string(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A view of the tensor's bytes inside the mapping (no copy). Throws kNotFound.
  Tensor tensor(const std::string& name) const;
  // A file opened with open(): drops the whole pages of [p, p + n) inside its mapping from memory
  // (MappedFile::release), for tensors a repacked copy replaced. No-op for parsed memory.
  void release_pages(const void* p, size_t n) const;
  // Whether [p, p + n) lies inside the file mapping of a file opened with open().
  bool maps(const void* p, size_t n) const;

 private:
  std::string name_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<void> owner_;
  std::shared_ptr<MappedFile> mapped_;  // set by open()
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3. The file appears atomically: written to PATH.tmp, fsynced, then renamed.
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);  // replaces an existing key
  // The tensor is copied at write() time; it must stay alive until then. Shape outermost first.
  void add_tensor(const std::string& name, const Tensor& t);
  void set_alignment(uint32_t alignment);
  void write(const std::string& path) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace llmkit::io
