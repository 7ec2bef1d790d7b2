// safetensors reader (validating, memory-mapped) and writer (atomic, sharded); see safetensors.h.
#include "llmkit/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/base/mapped_file.h"
#include "llmkit/io/atomic_write.h"

namespace llmkit::io {
namespace {

struct StDTypeRow {
  StDType t;
  const char* name;
  int size;
  std::optional<DType> dtype;
};

// The dtype table of the safetensors spec, read top to bottom.
const StDTypeRow kStDTypes[] = {
    {StDType::kF64, "F64", 8, std::nullopt},
    {StDType::kF32, "F32", 4, DType::kF32},
    {StDType::kF16, "F16", 2, DType::kF16},
    {StDType::kBF16, "BF16", 2, DType::kBF16},
    {StDType::kI64, "I64", 8, DType::kI64},
    {StDType::kI32, "I32", 4, DType::kI32},
    {StDType::kI16, "I16", 2, std::nullopt},
    {StDType::kI8, "I8", 1, DType::kI8},
    {StDType::kU8, "U8", 1, std::nullopt},
    {StDType::kBool, "BOOL", 1, std::nullopt},
    {StDType::kF8_E4M3, "F8_E4M3", 1, DType::kF8_E4M3},
    {StDType::kF8_E5M2, "F8_E5M2", 1, DType::kF8_E5M2},
};

const StDTypeRow& row(StDType t) { return kStDTypes[static_cast<size_t>(t)]; }

using Json = nlohmann::json;

// Parses the header JSON, rejecting duplicate keys in any object (nlohmann keeps the last one
// silently; a file whose two readers disagree on a tensor's offsets is an attack) and nesting deeper
// than a valid header needs.
Json parse_header_json(const char* p, size_t n, const std::string& file) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  auto cb = [&](int depth, Json::parse_event_t ev, Json& parsed) {
    if (depth > 4)
      throw Error(ErrorCode::kInvalidFile, str_cat("invalid safetensors file '", file, "': header JSON nests deeper than 4 levels"),
                  "the file is corrupt; save it again with safetensors");
    if (ev == Json::parse_event_t::object_start) keys.emplace_back();
    else if (ev == Json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    else if (ev == Json::parse_event_t::key && !keys.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second)
        throw Error(ErrorCode::kInvalidFile,
                    str_cat("invalid safetensors file '", file, "': duplicate key '", k.substr(0, 200), "' in the header"),
                    "the file is corrupt or crafted; save it again with safetensors");
    }
    return true;
  };
  try {
    return Json::parse(p, p + n, cb, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::kInvalidFile,
                str_cat("invalid safetensors file '", file, "': header is not valid UTF-8 JSON (", e.what(), ")"),
                "the file is corrupt or truncated; download or save it again");
  }
}

}  // namespace

const char* st_dtype_name(StDType t) { return row(t).name; }
int st_dtype_size(StDType t) { return row(t).size; }
std::optional<StDType> st_dtype_from_name(std::string_view name) {
  for (const auto& r : kStDTypes)
    if (name == r.name) return r.t;
  return std::nullopt;
}
std::optional<DType> to_dtype(StDType t) { return row(t).dtype; }
std::optional<StDType> to_st_dtype(DType t) {
  for (const auto& r : kStDTypes)
    if (r.dtype == t) return r.t;
  return std::nullopt;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, const SafetensorsLimits& limits) {
  auto mf = MappedFile::open(path);
  const uint8_t* d = mf->data();
  size_t n = mf->size();
  return parse(d, n, std::static_pointer_cast<void>(mf), path, limits);
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, std::shared_ptr<void> owner,
                                       const std::string& name, const SafetensorsLimits& limits) {
  auto fail = [&](const std::string& what) -> Error {
    return Error(ErrorCode::kInvalidFile, str_cat("invalid safetensors file '", name, "': ", what),
                 "the file is corrupt, truncated or not safetensors; download or save it again");
  };
  SafetensorsFile f;
  f.name_ = name;
  f.data_ = data;
  f.size_ = size;
  f.owner_ = std::move(owner);
  if (size < 8) throw fail(str_cat("the file is ", size, " bytes; it must start with an 8-byte header length"));
  uint64_t n_header;
  std::memcpy(&n_header, data, 8);  // little-endian on every platform llmkit builds for
  if (n_header > limits.max_header)
    throw fail(str_cat("header length ", n_header, " exceeds the cap of ", limits.max_header, " bytes (100 MB)"));
  if (n_header > size - 8)
    throw fail(str_cat("header length ", n_header, " is larger than the ", size - 8, " bytes after the length field"));
  if (n_header == 0 || data[8] != '{') throw fail("header does not start with '{' (not UTF-8 JSON)");
  Json h = parse_header_json(reinterpret_cast<const char*>(data + 8), static_cast<size_t>(n_header), name);
  if (!h.is_object()) throw fail("header is not a JSON object");
  f.data_offset_ = 8 + n_header;
  const uint64_t data_bytes = size - f.data_offset_;
  if (h.size() > limits.max_tensors + 1) throw fail(str_cat("header lists ", h.size(), " entries; the cap is ", limits.max_tensors));

  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail(str_cat("__metadata__ value of '", m.key(), "' is not a string"));
        f.metadata_.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (key.empty()) throw fail("a tensor has an empty name");
    if (!v.is_object()) throw fail(str_cat("entry of tensor '", key, "' is not an object"));
    SafetensorsTensorInfo ti;
    ti.name = key;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) throw fail(str_cat("tensor '", key, "' has no dtype string"));
    auto sd = st_dtype_from_name(dt->get_ref<const std::string&>());
    if (!sd) throw fail(str_cat("tensor '", key, "' has unknown dtype '", dt->get_ref<const std::string&>().substr(0, 40), "'"));
    ti.dtype = *sd;
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) throw fail(str_cat("tensor '", key, "' has no shape array"));
    if (sh->size() > static_cast<size_t>(limits.max_rank))
      throw fail(str_cat("tensor '", key, "' has ", sh->size(), " dimensions; the cap is ", limits.max_rank));
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 50))
        throw fail(str_cat("tensor '", key, "' has a shape entry ", d.dump().substr(0, 40), " that is not an integer in [0, 2^50]"));
      uint64_t dv = d.get<uint64_t>();
      if (!checked_mul(numel, dv, &numel)) throw fail(str_cat("tensor '", key, "' element count overflows"));
      ti.shape.push_back(static_cast<int64_t>(dv));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      throw fail(str_cat("tensor '", key, "' data_offsets is not [begin, end] of two non-negative integers"));
    ti.begin = (*off)[0].get<uint64_t>();
    ti.end = (*off)[1].get<uint64_t>();
    if (ti.end < ti.begin) throw fail(str_cat("tensor '", key, "' data_offsets end ", ti.end, " < begin ", ti.begin));
    if (ti.end > data_bytes)
      throw fail(str_cat("tensor '", key, "' data_offsets [", ti.begin, ", ", ti.end, "] extend past the end of the ",
                         data_bytes, " data bytes"));
    uint64_t want;
    if (!checked_mul(numel, static_cast<uint64_t>(st_dtype_size(ti.dtype)), &want) || want != ti.end - ti.begin)
      throw fail(str_cat("tensor '", key, "' shape ", Shape(ti.shape).str(), " x ", st_dtype_name(ti.dtype),
                         " does not match its byte range of ", ti.end - ti.begin, " bytes"));
    f.index_[key] = f.tensors_.size();
    f.tensors_.push_back(std::move(ti));
  }

  // The tensors must tile the data buffer exactly: start at 0, no gaps, no overlaps, no trailing bytes.
  std::vector<const SafetensorsTensorInfo*> order;
  for (const auto& t : f.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t expect = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const auto* t : order) {
    if (t->begin < expect)
      throw fail(str_cat("tensors '", prev->name, "' and '", t->name, "' overlap (", t->name, " begins at ", t->begin,
                         ", before ", expect, ")"));
    if (t->begin > expect) {
      if (prev == nullptr) throw fail(str_cat("the data does not start at 0: the first tensor '", t->name, "' begins at ", t->begin));
      throw fail(str_cat("gap of ", t->begin - expect, " bytes between tensors '", prev->name, "' and '", t->name, "'"));
    }
    expect = t->end;
    prev = t;
  }
  if (expect != data_bytes)
    throw fail(str_cat(data_bytes - expect, " trailing bytes after the last tensor (the data buffer is ", data_bytes,
                       " bytes, the tensors cover ", expect, ")"));
  return f;
}

const SafetensorsTensorInfo* SafetensorsFile::find_tensor(const std::string& tname) const {
  auto it = index_.find(tname);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::pair<const uint8_t*, uint64_t> SafetensorsFile::bytes(const std::string& tname) const {
  const SafetensorsTensorInfo* ti = find_tensor(tname);
  LLMKIT_CHECK(ti != nullptr, kNotFound, "tensor '", tname, "' is not in '", name_, "'");
  return {data_ + data_offset_ + ti->begin, ti->end - ti->begin};
}

Tensor SafetensorsFile::tensor(const std::string& tname) const {
  const SafetensorsTensorInfo* ti = find_tensor(tname);
  LLMKIT_CHECK(ti != nullptr, kNotFound, "tensor '", tname, "' is not in '", name_, "'");
  auto dt = to_dtype(ti->dtype);
  if (!dt)
    throw Error(ErrorCode::kUnsupported,
                str_cat("tensor '", tname, "' in '", name_, "' is ", st_dtype_name(ti->dtype), ", which llmkit does not compute in"),
                "read its raw bytes with SafetensorsFile::bytes(), or save it as F32/F16/BF16");
  const uint8_t* p = data_ + data_offset_ + ti->begin;
  Shape shape(ti->shape);
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(st_dtype_size(ti->dtype)) == 0)
    return Tensor::from_external(const_cast<uint8_t*>(p), shape, *dt, owner_);
  Tensor t = Tensor::empty(shape, *dt);  // a header that is not padded to 8 bytes: copy to align
  std::memcpy(t.raw(), p, ti->end - ti->begin);
  return t;
}

// ---- writer ----

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  for (auto& kv : metadata_)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  metadata_.emplace_back(key, value);
}

void SafetensorsWriter::add_tensor(const std::string& name, const Tensor& t) {
  auto sd = to_st_dtype(t.dtype());
  LLMKIT_CHECK(sd.has_value(), kUnsupported, "tensor '", name, "' is ", dtype_name(t.dtype()),
               ", which safetensors cannot hold; dequantize it first");
  add_raw({name, *sd, t.shape().vec(), t});
}

void SafetensorsWriter::add_raw(SafetensorsEntry e) {
  LLMKIT_CHECK(!e.name.empty() && e.name != "__metadata__", kInvalidArgument, "invalid safetensors tensor name '", e.name, "'");
  for (const auto& o : entries_) LLMKIT_CHECK(o.name != e.name, kInvalidArgument, "duplicate safetensors tensor '", e.name, "'");
  int64_t numel = 1;
  for (auto d : e.shape) numel *= d;
  LLMKIT_CHECK(e.data.defined() && e.data.nbytes() == static_cast<size_t>(numel) * st_dtype_size(e.dtype), kInvalidArgument,
               "tensor '", e.name, "': ", e.data.nbytes(), " bytes given for shape ", Shape(e.shape).str(), " of ",
               st_dtype_name(e.dtype));
  entries_.push_back(std::move(e));
}

uint64_t SafetensorsWriter::total_bytes() const {
  uint64_t n = 0;
  for (const auto& e : entries_) n += e.data.nbytes();
  return n;
}

void SafetensorsWriter::write_entries(const std::string& path, const std::vector<const SafetensorsEntry*>& entries) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    h["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) h["__metadata__"][k] = v;
  }
  uint64_t off = 0;
  for (const auto* e : entries) {
    uint64_t n = e->data.nbytes();
    h[e->name] = {{"dtype", st_dtype_name(e->dtype)}, {"shape", e->shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& ex) {
    throw Error(ErrorCode::kInvalidArgument, str_cat("cannot write '", path, "': a tensor name or metadata value is not UTF-8 (", ex.what(), ")"));
  }
  while (text.size() % 8 != 0) text.push_back(' ');  // data 8-byte aligned, as the reference writer pads
  write_file_atomically(path, [&](std::FILE* f) {
    uint64_t n = text.size();
    write_bytes(f, &n, 8, path);
    write_bytes(f, text.data(), text.size(), path);
    for (const auto* e : entries) {
      Tensor c = e->data.device().kind == DeviceKind::kCPU ? e->data.contiguous() : e->data.to(Device::cpu());
      write_bytes(f, c.raw(), c.nbytes(), path);
    }
  });
}

void SafetensorsWriter::write(const std::string& path) const {
  std::vector<const SafetensorsEntry*> all;
  for (const auto& e : entries_) all.push_back(&e);
  write_entries(path, all);
}

std::vector<std::string> SafetensorsWriter::write_sharded(const std::string& dir, uint64_t max_shard_bytes) const {
  LLMKIT_CHECK(max_shard_bytes > 0, kInvalidArgument, "max shard size must be positive");
  namespace fs = std::filesystem;
  std::vector<std::vector<const SafetensorsEntry*>> shards(1);
  uint64_t cur = 0;
  for (const auto& e : entries_) {
    if (cur > 0 && cur + e.data.nbytes() > max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(&e);
    cur += e.data.nbytes();
  }
  if (shards.size() == 1) {
    write_entries((fs::path(dir) / "model.safetensors").string(), shards[0]);
    return {"model.safetensors"};
  }
  std::vector<std::string> names;
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  char buf[64];
  for (size_t k = 0; k < shards.size(); ++k) {
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    write_entries((fs::path(dir) / buf).string(), shards[k]);
    names.push_back(buf);
    for (const auto* e : shards[k]) map[e->name] = buf;
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total_bytes()}}}, {"weight_map", map}};
  write_text_atomically((fs::path(dir) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  names.push_back("model.safetensors.index.json");
  return names;
}

}  // namespace llmkit::io
