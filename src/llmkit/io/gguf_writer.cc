// GGUF values and the GGUF v3 writer.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "llmkit/base/check.h"
#include "llmkit/io/gguf.h"

namespace llmkit::io {

GgufValue GgufValue::from_u32(uint32_t v) { GgufValue g; g.type = GgufType::kU32; g.u = v; return g; }
GgufValue GgufValue::from_u64(uint64_t v) { GgufValue g; g.type = GgufType::kU64; g.u = v; return g; }
GgufValue GgufValue::from_i32(int32_t v) { GgufValue g; g.type = GgufType::kI32; g.i = v; return g; }
GgufValue GgufValue::from_f32(float v) { GgufValue g; g.type = GgufType::kF32; g.f = v; return g; }
GgufValue GgufValue::from_bool(bool v) { GgufValue g; g.type = GgufType::kBool; g.u = v; return g; }
GgufValue GgufValue::from_string(std::string v) { GgufValue g; g.type = GgufType::kString; g.s = std::move(v); return g; }
GgufValue GgufValue::from_strings(const std::vector<std::string>& v) {
  std::vector<GgufValue> a;
  a.reserve(v.size());
  for (const auto& s : v) a.push_back(from_string(s));
  return from_array(GgufType::kString, std::move(a));
}
GgufValue GgufValue::from_array(GgufType elem, std::vector<GgufValue> v) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem_type = elem;
  g.arr = GgufArray(std::move(v));
  return g;
}

std::optional<int64_t> GgufValue::as_int() const {
  switch (type) {
    case GgufType::kU8: case GgufType::kU16: case GgufType::kU32: case GgufType::kBool: return static_cast<int64_t>(u);
    case GgufType::kU64: return u > static_cast<uint64_t>(INT64_MAX) ? std::nullopt : std::optional<int64_t>(static_cast<int64_t>(u));
    case GgufType::kI8: case GgufType::kI16: case GgufType::kI32: case GgufType::kI64: return i;
    default: return std::nullopt;
  }
}

std::optional<double> GgufValue::as_number() const {
  if (type == GgufType::kF32 || type == GgufType::kF64) return f;
  if (type == GgufType::kU64) return static_cast<double>(u);
  auto v = as_int();
  return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
}

std::string GgufValue::summary(size_t max_chars) const {
  std::string out;
  switch (type) {
    case GgufType::kString: {
      out.push_back('"');  // (not `out = "\""`: GCC 12 -Wrestrict false positive)
      for (char c : s) {
        if (c == '\n') out += "\\n";
        else out += c;
        if (out.size() > max_chars) break;
      }
      out.push_back('"');
      break;
    }
    case GgufType::kArray: {
      out = str_cat("[", gguf_type_name(elem_type), " x ", arr.size(), "] ");
      for (size_t k = 0; k < arr.size() && out.size() < max_chars; ++k) out += (k ? ", " : "") + arr[k].summary(20);
      break;
    }
    case GgufType::kF32: case GgufType::kF64: out = str_cat(f); break;
    case GgufType::kBool: out = u ? "true" : "false"; break;
    default: {
      auto v = as_int();
      out = v ? std::to_string(*v) : std::to_string(u);
    }
  }
  if (out.size() > max_chars) out = out.substr(0, max_chars) + "...";
  return out;
}

namespace {

class Out {
 public:
  explicit Out(std::FILE* f, const std::string& path) : f_(f), path_(path) {}
  void bytes(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n)
      throw Error(ErrorCode::kIo, str_cat("writing '", path_, "' failed: ", std::strerror(errno)), "check free disk space");
    pos_ += n;
  }
  template <typename T>
  void put(T v) { bytes(&v, sizeof(T)); }
  void str(const std::string& s) { put<uint64_t>(s.size()); bytes(s.data(), s.size()); }
  void pad(uint64_t alignment) {
    static const char zeros[4096] = {};
    uint64_t target = (pos_ + alignment - 1) / alignment * alignment;
    while (pos_ < target) bytes(zeros, std::min<uint64_t>(sizeof zeros, target - pos_));
  }
  void value(const GgufValue& v) {
    switch (v.type) {
      case GgufType::kU8: put<uint8_t>(static_cast<uint8_t>(v.u)); break;
      case GgufType::kI8: put<int8_t>(static_cast<int8_t>(v.i)); break;
      case GgufType::kU16: put<uint16_t>(static_cast<uint16_t>(v.u)); break;
      case GgufType::kI16: put<int16_t>(static_cast<int16_t>(v.i)); break;
      case GgufType::kU32: put<uint32_t>(static_cast<uint32_t>(v.u)); break;
      case GgufType::kI32: put<int32_t>(static_cast<int32_t>(v.i)); break;
      case GgufType::kF32: put<float>(static_cast<float>(v.f)); break;
      case GgufType::kBool: put<uint8_t>(v.u ? 1 : 0); break;
      case GgufType::kString: str(v.s); break;
      case GgufType::kU64: put<uint64_t>(v.u); break;
      case GgufType::kI64: put<int64_t>(v.i); break;
      case GgufType::kF64: put<double>(v.f); break;
      case GgufType::kArray:
        put<uint32_t>(static_cast<uint32_t>(v.elem_type));
        put<uint64_t>(v.arr.size());
        for (const auto& e : v.arr) {
          LLMKIT_CHECK(e.type == v.elem_type, kInvalidArgument, "GGUF array of ", gguf_type_name(v.elem_type),
                       " holds a ", gguf_type_name(e.type), " element");
          value(e);
        }
        break;
    }
  }
  uint64_t pos() const { return pos_; }

 private:
  std::FILE* f_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue value) {
  LLMKIT_CHECK(!key.empty(), kInvalidArgument, "GGUF metadata key must not be empty");
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, const Tensor& t) {
  LLMKIT_CHECK(!name.empty(), kInvalidArgument, "GGUF tensor name must not be empty");
  LLMKIT_CHECK(t.rank() >= 1 && t.rank() <= 4, kInvalidArgument, "GGUF tensor '", name, "' has rank ", t.rank(),
               "; GGUF allows 1 to 4 dimensions");
  LLMKIT_CHECK(dtype_info(t.dtype()).ggml_type >= 0, kUnsupported, "dtype ", dtype_name(t.dtype()),
               " of tensor '", name, "' has no GGUF type");
  for (const auto& kv : tensors_)
    LLMKIT_CHECK(kv.first != name, kInvalidArgument, "duplicate GGUF tensor name '", name, "'");
  tensors_.emplace_back(name, t);
}

void GgufWriter::set_alignment(uint32_t alignment) {
  LLMKIT_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, kInvalidArgument, "GGUF alignment ", alignment,
               " must be a power of two");
  alignment_ = alignment;
  set("general.alignment", GgufValue::from_u32(alignment));
}

void GgufWriter::write(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  LLMKIT_CHECK(f != nullptr, kIo, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    Out out(f, tmp);
    out.put<uint32_t>(0x46554747);
    out.put<uint32_t>(3);
    out.put<uint64_t>(tensors_.size());
    out.put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
      out.str(k);
      out.put<uint32_t>(static_cast<uint32_t>(v.type));
      out.value(v);
    }
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const auto& [name, t] : tensors_) {
      out.str(name);
      out.put<uint32_t>(static_cast<uint32_t>(t.rank()));
      for (int d = t.rank() - 1; d >= 0; --d) out.put<uint64_t>(static_cast<uint64_t>(t.dim(d)));
      out.put<uint32_t>(static_cast<uint32_t>(dtype_info(t.dtype()).ggml_type));
      out.put<uint64_t>(offset);
      offsets.push_back(offset);
      offset = (offset + t.nbytes() + alignment_ - 1) / alignment_ * alignment_;
    }
    out.pad(alignment_);
    const uint64_t data_start = out.pos();
    for (size_t k = 0; k < tensors_.size(); ++k) {
      const Tensor& t = tensors_[k].second;
      while (out.pos() - data_start < offsets[k]) out.put<uint8_t>(0);
      Tensor c = t.device().kind == DeviceKind::kCPU ? t.contiguous() : t.to(Device::cpu());
      out.bytes(c.raw(), c.nbytes());
    }
    out.pad(alignment_);
    LLMKIT_CHECK(std::fflush(f) == 0 && fsync(fileno(f)) == 0, kIo, "flushing '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw Error(ErrorCode::kIo, str_cat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(e)));
  }
}

}  // namespace llmkit::io
