// GGUF reader: a bounds-checked cursor over the mapped bytes; see gguf.h for the format.
#include "llmkit/io/gguf.h"

#include <algorithm>
#include <cstring>

#include "llmkit/base/check.h"
#include "llmkit/base/mapped_file.h"

namespace llmkit::io {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxGgufDims = 4;          // GGML_MAX_DIMS

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: return 8;
    case GgufType::kString: return 8;  // at least its length field
    case GgufType::kArray: return 12;  // at least elem type + count
  }
  return 0;
}

// A cursor that refuses to read past the end; every failure names the field and offset.
class Reader {
 public:
  Reader(const uint8_t* d, size_t n, const std::string& name, const GgufLimits& lim, std::shared_ptr<void> keep)
      : d_(d), n_(n), name_(name), lim_(lim), keep_(std::move(keep)) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::kInvalidFile, str_cat("invalid GGUF file '", name_, "': ", what, " (at byte ", pos_, ")"),
                "the file is corrupt or truncated; download or convert it again");
  }
  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  void need(uint64_t bytes, const char* what) const {
    if (bytes > left()) fail(str_cat(what, " needs ", bytes, " bytes but only ", left(), " are left"));
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    if (len > lim_.max_string) fail(str_cat(what, " length ", len, " exceeds the cap of ", lim_.max_string, " bytes"));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }
  GgufType read_type(const char* what) {
    uint32_t t = read<uint32_t>(what);
    if (t > static_cast<uint32_t>(GgufType::kF64)) fail(str_cat(what, ": unknown value type ", t));
    return static_cast<GgufType>(t);
  }
  GgufValue read_value(GgufType t, int depth) {
    GgufValue v;
    v.type = t;
    switch (t) {
      case GgufType::kU8: v.u = read<uint8_t>("u8 value"); break;
      case GgufType::kI8: v.i = read<int8_t>("i8 value"); break;
      case GgufType::kU16: v.u = read<uint16_t>("u16 value"); break;
      case GgufType::kI16: v.i = read<int16_t>("i16 value"); break;
      case GgufType::kU32: v.u = read<uint32_t>("u32 value"); break;
      case GgufType::kI32: v.i = read<int32_t>("i32 value"); break;
      case GgufType::kF32: v.f = read<float>("f32 value"); break;
      case GgufType::kU64: v.u = read<uint64_t>("u64 value"); break;
      case GgufType::kI64: v.i = read<int64_t>("i64 value"); break;
      case GgufType::kF64: v.f = read<double>("f64 value"); break;
      case GgufType::kBool: {
        uint8_t b = read<uint8_t>("bool value");
        if (b > 1) fail(str_cat("bool value ", int(b), " is neither 0 nor 1"));
        v.u = b;
        break;
      }
      case GgufType::kString: v.s = read_string("string value"); break;
      case GgufType::kArray: {
        if (depth >= lim_.max_array_depth) fail(str_cat("arrays nested deeper than ", lim_.max_array_depth));
        v.elem_type = read_type("array element type");
        uint64_t count = read<uint64_t>("array length");
        if (count > lim_.max_array) fail(str_cat("array length ", count, " exceeds the cap of ", lim_.max_array));
        // Each element takes at least scalar_size bytes: reject counts the file cannot hold
        // before reserving memory for them.
        uint64_t min_bytes;
        if (!checked_mul(count, scalar_size(v.elem_type), &min_bytes) || min_bytes > left())
          fail(str_cat("array of ", count, " ", gguf_type_name(v.elem_type), " values does not fit in the ", left(),
                       " bytes left"));
        if (v.elem_type == GgufType::kArray) {  // nested arrays (rare, small): decoded now
          std::vector<GgufValue> elems;
          elems.reserve(static_cast<size_t>(count));
          for (uint64_t k = 0; k < count; ++k) elems.push_back(read_value(v.elem_type, depth + 1));
          v.arr = GgufArray(std::move(elems));
          break;
        }
        // Checked now, decoded on access (see GgufArray): strings need every length read.
        const size_t start = pos_;
        std::vector<uint64_t> offsets;
        if (v.elem_type == GgufType::kString) {
          offsets.reserve(static_cast<size_t>(count));
          for (uint64_t k = 0; k < count; ++k) {
            offsets.push_back(pos_ - start);
            const uint64_t len = read<uint64_t>("string value");
            if (len > lim_.max_string) fail(str_cat("string value length ", len, " exceeds the cap of ", lim_.max_string, " bytes"));
            need(len, "string value");
            pos_ += len;
          }
        } else if (v.elem_type == GgufType::kBool) {
          for (uint64_t k = 0; k < count; ++k)
            if (d_[pos_ + k] > 1) { pos_ += k; fail(str_cat("bool value ", int(d_[pos_]), " is neither 0 nor 1")); }
          pos_ += count;
        } else {
          pos_ += min_bytes;  // fixed-size elements: the size check above covered them
        }
        v.arr = GgufArray(d_ + start, count, v.elem_type, keep_, std::move(offsets));
        break;
      }
    }
    return v;
  }
  void seek(size_t p) { pos_ = p; }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& name_;
  const GgufLimits& lim_;
  std::shared_ptr<void> keep_;  // keeps the bytes alive for lazily decoded arrays
};

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* kNames[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "?";
}

GgufArray::GgufArray(std::vector<GgufValue> owned)
    : owned_(std::make_shared<const std::vector<GgufValue>>(std::move(owned))) {}

GgufArray::GgufArray(const uint8_t* bytes, uint64_t count, GgufType elem, std::shared_ptr<void> keep,
                     std::vector<uint64_t> offsets)
    : bytes_(bytes), count_(count), elem_(elem), keep_(std::move(keep)) {
  if (elem == GgufType::kString) offsets_ = std::make_shared<const std::vector<uint64_t>>(std::move(offsets));
}

size_t GgufArray::size() const { return owned_ ? owned_->size() : static_cast<size_t>(count_); }

std::string_view GgufArray::string_at(size_t i) const {
  LLMKIT_ASSERT(i < size(), "GGUF array index ", i, " out of range ", size());
  if (owned_) {
    const GgufValue& v = (*owned_)[i];
    return v.type == GgufType::kString ? std::string_view(v.s) : std::string_view();
  }
  if (elem_ != GgufType::kString) return {};
  const uint8_t* p = bytes_ + (*offsets_)[i];
  uint64_t len;
  std::memcpy(&len, p, 8);
  return {reinterpret_cast<const char*>(p + 8), static_cast<size_t>(len)};
}

GgufValue GgufArray::operator[](size_t i) const {
  LLMKIT_ASSERT(i < size(), "GGUF array index ", i, " out of range ", size());
  if (owned_) return (*owned_)[i];
  GgufValue v;
  v.type = elem_;
  auto get = [&](auto zero) {
    decltype(zero) x;
    std::memcpy(&x, bytes_ + i * sizeof(x), sizeof(x));
    return x;
  };
  switch (elem_) {
    case GgufType::kU8: case GgufType::kBool: v.u = get(uint8_t{}); break;
    case GgufType::kI8: v.i = get(int8_t{}); break;
    case GgufType::kU16: v.u = get(uint16_t{}); break;
    case GgufType::kI16: v.i = get(int16_t{}); break;
    case GgufType::kU32: v.u = get(uint32_t{}); break;
    case GgufType::kI32: v.i = get(int32_t{}); break;
    case GgufType::kF32: v.f = get(float{}); break;
    case GgufType::kU64: v.u = get(uint64_t{}); break;
    case GgufType::kI64: v.i = get(int64_t{}); break;
    case GgufType::kF64: v.f = get(double{}); break;
    case GgufType::kString: v.s = std::string(string_at(i)); break;
    case GgufType::kArray: LLMKIT_ASSERT(false, "nested GGUF arrays are decoded at parse time"); break;
  }
  return v;
}

GgufValue GgufArray::iterator::operator*() const { return (*a_)[i_]; }

GgufFile GgufFile::open(const std::string& path, const GgufLimits& limits) {
  auto mf = MappedFile::open(path);
  const uint8_t* d = mf->data();
  size_t n = mf->size();
  GgufFile f = parse(d, n, std::static_pointer_cast<void>(mf), path, limits);
  f.mapped_ = std::move(mf);
  return f;
}

void GgufFile::release_pages(const void* p, size_t n) const {
  if (mapped_) mapped_->release(p, n);
}

bool GgufFile::maps(const void* p, size_t n) const {
  if (!mapped_ || !data_) return false;
  const auto* b = static_cast<const uint8_t*>(p);
  return b >= data_ && n <= size_ && static_cast<size_t>(b - data_) <= size_ - n;
}

GgufFile GgufFile::parse(const uint8_t* data, size_t size, std::shared_ptr<void> owner, const std::string& name,
                         const GgufLimits& limits) {
  GgufFile f;
  f.name_ = name;
  f.data_ = data;
  f.size_ = size;
  f.owner_ = std::move(owner);
  Reader r(data, size, f.name_, limits, f.owner_);

  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic) {
    throw Error(ErrorCode::kInvalidFile, str_cat("'", name, "' is not a GGUF file (magic bytes are not \"GGUF\")"),
                "pass a .gguf file, or convert a Hugging Face folder with `llmkit convert`");
  }
  f.version_ = r.read<uint32_t>("version");
  if (f.version_ == 1)
    throw Error(ErrorCode::kUnsupported, str_cat("'", name, "' is GGUF version 1, which llmkit does not read"),
                "re-convert the model with a current converter (GGUF v3)");
  if (f.version_ != 2 && f.version_ != 3) r.fail(str_cat("unknown GGUF version ", f.version_));
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  if (n_tensors > limits.max_tensors) r.fail(str_cat("tensor count ", n_tensors, " exceeds the cap of ", limits.max_tensors));
  if (n_kv > limits.max_kv) r.fail(str_cat("metadata count ", n_kv, " exceeds the cap of ", limits.max_kv));

  // Metadata. Each pair takes at least 8 (key length) + 4 (type) + 1 bytes.
  if (n_kv * 13 > r.left()) r.fail(str_cat("metadata count ", n_kv, " cannot fit in the file"));
  f.kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = r.read_string("metadata key");
    if (key.empty()) r.fail("empty metadata key");
    GgufType t = r.read_type("metadata value type");
    GgufValue v = r.read_value(t, 0);
    if (f.kv_index_.count(key)) r.fail(str_cat("duplicate metadata key '", key, "'"));
    f.kv_index_[key] = f.kv_.size();
    f.kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    auto al = a->as_int();
    if (!al || *al <= 0 || (*al & (*al - 1)) != 0 || *al > (1 << 20))
      r.fail(str_cat("general.alignment ", a->summary(), " is not a power of two in [1, 2^20]"));
    f.alignment_ = static_cast<uint64_t>(*al);
  }

  // Tensor infos. Each takes at least 8 + 4 + 8 + 4 + 8 bytes.
  if (n_tensors * 32 > r.left()) r.fail(str_cat("tensor count ", n_tensors, " cannot fit in the file"));
  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo ti;
    ti.name = r.read_string("tensor name");
    if (ti.name.empty()) r.fail(str_cat("tensor #", k, " has an empty name"));
    uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxGgufDims)
      r.fail(str_cat("tensor '", ti.name, "' has ", n_dims, " dimensions; GGUF allows 1 to ", kMaxGgufDims));
    std::vector<int64_t> dims(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (uint64_t{1} << 40) || !checked_mul(numel, ne, &numel) || numel > (uint64_t{1} << 50))
        r.fail(str_cat("tensor '", ti.name, "' dimension ", d, " = ", ne, " is zero or makes the element count overflow"));
      dims[n_dims - 1 - d] = static_cast<int64_t>(ne);  // GGUF is innermost first
    }
    uint32_t type = r.read<uint32_t>("tensor type");
    auto dt = dtype_from_ggml(static_cast<int>(type));
    if (!dt)
      throw Error(ErrorCode::kUnsupported, str_cat("tensor '", ti.name, "' in '", name, "' has ggml type ", type,
                                                   ", which llmkit does not support"),
                  "re-quantize the model to a supported type (f32, f16, bf16, q4_0..q8_0, q2_k..q6_k)");
    ti.dtype = *dt;
    ti.shape = Shape(dims);
    auto rb = row_bytes_checked(ti.dtype, dims.back());
    uint64_t rows = numel / static_cast<uint64_t>(dims.back());
    if (!rb || !checked_mul(*rb, rows, &ti.bytes))
      r.fail(str_cat("tensor '", ti.name, "' row of ", dims.back(), " values is not a whole number of ", dtype_name(ti.dtype),
                     " blocks (", block_size(ti.dtype), ")"));
    ti.offset = r.read<uint64_t>("tensor offset");
    if (ti.offset % f.alignment_ != 0)
      r.fail(str_cat("tensor '", ti.name, "' offset ", ti.offset, " is not a multiple of the alignment ", f.alignment_));
    if (f.tensor_index_.count(ti.name)) r.fail(str_cat("duplicate tensor name '", ti.name, "'"));
    f.tensor_index_[ti.name] = f.tensors_.size();
    f.tensors_.push_back(std::move(ti));
  }

  // Data section: aligned after the infos; every tensor inside the file, none overlapping.
  uint64_t pos = r.pos();
  f.data_offset_ = (pos + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (f.data_offset_ > size && !f.tensors_.empty()) r.fail("the data section starts past the end of the file");
  uint64_t data_bytes = size >= f.data_offset_ ? size - f.data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& ti : f.tensors_) {
    uint64_t end;
    if (!checked_add(ti.offset, ti.bytes, &end) || end > data_bytes)
      throw Error(ErrorCode::kInvalidFile,
                  str_cat("invalid GGUF file '", name, "': tensor '", ti.name, "' (", ti.bytes, " bytes at data offset ",
                          ti.offset, ") extends past the end of the file (", data_bytes, " data bytes)"),
                  "the file is truncated; download or convert it again");
    by_offset.push_back(&ti);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    if (by_offset[k - 1]->offset + by_offset[k - 1]->bytes > by_offset[k]->offset)
      throw Error(ErrorCode::kInvalidFile,
                  str_cat("invalid GGUF file '", name, "': tensors '", by_offset[k - 1]->name, "' and '",
                          by_offset[k]->name, "' overlap"),
                  "the file is corrupt; convert it again");
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

std::optional<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v || !v->as_string()) return std::nullopt;
  return v->s;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& tname) const {
  auto it = tensor_index_.find(tname);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor(const std::string& tname) const {
  const GgufTensorInfo* ti = find_tensor(tname);
  LLMKIT_CHECK(ti != nullptr, kNotFound, "tensor '", tname, "' is not in '", name_, "'");
  void* p = const_cast<uint8_t*>(data_ + data_offset_ + ti->offset);
  return Tensor::from_external(p, ti->shape, ti->dtype, owner_);
}

}  // namespace llmkit::io
