// safetensors reader/writer: round trips of every dtype, sharding, a fixture written by the
// reference Python implementation, and every bad-file case of RELIABILITY.md, each expecting its
// specific typed error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmkit/io/safetensors.h"

namespace llmkit::io {
namespace {

namespace fs = std::filesystem;

// header JSON text + data bytes -> a safetensors byte string (header length taken as given).
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data, std::optional<uint64_t> n = {}) {
  // One resize and three memcpy (vector::insert here trips a GCC 12 -Warray-bounds false positive).
  std::vector<uint8_t> b(8 + header.size() + data.size());
  const uint64_t len = n ? *n : header.size();
  std::memcpy(b.data(), &len, 8);
  if (!header.empty()) std::memcpy(b.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
  return b;
}

SafetensorsFile parse(const std::vector<uint8_t>& bytes) {
  auto owner = std::make_shared<std::vector<uint8_t>>(bytes);
  return SafetensorsFile::parse(owner->data(), owner->size(), owner, "test.safetensors");
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& needle, ErrorCode code = ErrorCode::kInvalidFile) {
  try {
    parse(bytes);
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::string tmp_dir(const std::string& name) {
  auto p = fs::temp_directory_path() / ("llmkit_st_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

const std::string kOneF32 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::vector<uint8_t> k8(8, 0);

TEST(Safetensors, RoundTripEveryDtypeWithMetadataAndNoCopies) {
  std::string dir = tmp_dir("rt");
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("note", "中文 ok");
  Tensor f32 = Tensor::from_floats({1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, 7.0f}, {2, 3});
  Tensor f16 = Tensor::empty({3}, DType::kF16);
  Tensor bf16 = Tensor::empty({1, 2}, DType::kBF16);
  Tensor i64 = Tensor::empty({2}, DType::kI64);
  Tensor i8 = Tensor::empty({5}, DType::kI8);
  Tensor f8 = Tensor::empty({4}, DType::kF8_E4M3);
  for (auto* t : {&f16, &bf16, &i64, &i8, &f8})
    for (size_t k = 0; k < t->nbytes(); ++k) static_cast<uint8_t*>(t->raw())[k] = static_cast<uint8_t>(k * 37 + 11);
  w.add_tensor("f32", f32);
  w.add_tensor("layers.0.f16", f16);
  w.add_tensor("bf16", bf16);
  w.add_tensor("i64", i64);
  w.add_tensor("i8", i8);
  w.add_tensor("f8", f8);
  Tensor raw_bool = Tensor::empty({3}, DType::kI8);
  std::memcpy(raw_bool.raw(), "\x01\x00\x01", 3);
  w.add_raw({"mask", StDType::kBool, {3}, raw_bool});
  Tensor scalar = Tensor::from_floats({42.0f}, {1}).view(Shape{});
  w.add_raw({"scalar", StDType::kF32, {}, scalar});
  const std::string path = dir + "/x.safetensors";
  w.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.data_offset() % 8, 0u) << "header must be padded to 8 bytes";
  ASSERT_EQ(f.tensors().size(), 8u);
  EXPECT_EQ(f.metadata().size(), 2u);
  Tensor r = f.tensor("f32");
  EXPECT_EQ(r.shape(), Shape({2, 3}));
  EXPECT_EQ(std::memcmp(r.raw(), f32.raw(), f32.nbytes()), 0);
  auto [p, n] = f.bytes("f32");
  EXPECT_EQ(r.raw(), static_cast<const void*>(p)) << "aligned tensors must be views into the mapping";
  EXPECT_EQ(n, 24u);
  for (auto [name, t] : {std::pair{"layers.0.f16", &f16}, {"bf16", &bf16}, {"i64", &i64}, {"i8", &i8}, {"f8", &f8}}) {
    Tensor got = f.tensor(name);
    EXPECT_EQ(got.dtype(), t->dtype()) << name;
    EXPECT_EQ(got.shape(), t->shape()) << name;
    EXPECT_EQ(std::memcmp(got.raw(), t->raw(), t->nbytes()), 0) << name;
  }
  EXPECT_EQ(f.find_tensor("mask")->dtype, StDType::kBool);
  EXPECT_EQ(std::memcmp(f.bytes("mask").first, "\x01\x00\x01", 3), 0);
  try {
    f.tensor("mask");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
  EXPECT_EQ(f.find_tensor("scalar")->shape.size(), 0u);
  EXPECT_EQ(f.tensor("scalar").data<float>()[0], 42.0f);
  try {
    f.tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  fs::remove_all(dir);
}

TEST(Safetensors, ShardedWriteWithIndex) {
  std::string dir = tmp_dir("shard");
  SafetensorsWriter w;
  for (int k = 0; k < 5; ++k) w.add_tensor("t" + std::to_string(k), Tensor::zeros({16}, DType::kF32));  // 64 bytes each
  auto files = w.write_sharded(dir, 150);
  ASSERT_EQ(files.size(), 4u);  // 3 shards (2+2+1) + index
  EXPECT_EQ(files[0], "model-00001-of-00003.safetensors");
  std::ifstream in(dir + "/model.safetensors.index.json");
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["metadata"]["total_size"], 320);
  EXPECT_EQ(j["weight_map"]["t4"], "model-00003-of-00003.safetensors");
  EXPECT_EQ(SafetensorsFile::open(dir + "/model-00002-of-00003.safetensors").tensors().size(), 2u);
  // Small enough for one file: model.safetensors, no index.
  std::string dir2 = tmp_dir("single");
  EXPECT_EQ(w.write_sharded(dir2, 1 << 20), std::vector<std::string>{"model.safetensors"});
  fs::remove_all(dir);
  fs::remove_all(dir2);
}

// Written by PyPI safetensors (tools/gen_safetensors_fixtures.py): llmkit reads the reference writer.
TEST(Safetensors, ReadsReferenceWriterFixture) {
  SafetensorsFile f = SafetensorsFile::open(std::string(LLMKIT_TESTDATA_DIR) + "/safetensors/reference.safetensors");
  ASSERT_NE(f.find_tensor("weight"), nullptr);
  Tensor w = f.tensor("weight");
  EXPECT_EQ(w.shape(), Shape({3, 4}));
  for (int k = 0; k < 12; ++k) EXPECT_EQ(w.data<float>()[k], 0.5f * static_cast<float>(k) - 1.0f);
  EXPECT_EQ(f.tensor("ids").dtype(), DType::kI64);
  EXPECT_EQ(f.tensor("ids").data<int64_t>()[2], -7);
  EXPECT_EQ(f.tensor("half").dtype(), DType::kF16);
  bool has_format = false;
  for (const auto& [k, v] : f.metadata()) has_format |= k == "format" && v == "pt";
  EXPECT_TRUE(has_format);
}

TEST(SafetensorsBad, TooSmallForTheLengthField) { expect_error({1, 2, 3}, "8-byte header length"); }

TEST(SafetensorsBad, HeaderLengthOver100MB) {
  expect_error(make_file(kOneF32, k8, uint64_t{100} << 20 | 1), "exceeds the cap");
  expect_error(make_file(kOneF32, k8, ~uint64_t{0}), "exceeds the cap");
}

TEST(SafetensorsBad, HeaderLengthLargerThanFile) { expect_error(make_file(kOneF32, k8, 4096), "larger than the"); }

TEST(SafetensorsBad, HeaderNotJson) {
  expect_error(make_file("{not json at all}", {}), "not valid UTF-8 JSON");
  expect_error(make_file("[1, 2]", {}), "does not start with '{'");
  expect_error(make_file(kOneF32.substr(0, 20), {}), "not valid UTF-8 JSON");
}

TEST(SafetensorsBad, HeaderNotUtf8) {
  std::string h = "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  expect_error(make_file(h, k8), "not valid UTF-8 JSON");
}

TEST(SafetensorsBad, DuplicateTensorKey) {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expect_error(make_file(h, k8), "duplicate key 'a'");
}

TEST(SafetensorsBad, DuplicateFieldInsideAnEntry) {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"data_offsets":[0,4]}})";
  expect_error(make_file(h, k8), "duplicate key 'data_offsets'");
}

TEST(SafetensorsBad, OffsetsOverlap) {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_error(make_file(h, std::vector<uint8_t>(12)), "overlap");
}

TEST(SafetensorsBad, OffsetsLeaveAGap) {
  std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_error(make_file(h, std::vector<uint8_t>(12)), "gap of 4 bytes");
}

TEST(SafetensorsBad, OffsetsDoNotStartAtZero) {
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_error(make_file(h, std::vector<uint8_t>(12)), "does not start at 0");
}

TEST(SafetensorsBad, TrailingBytes) { expect_error(make_file(kOneF32, std::vector<uint8_t>(9)), "1 trailing bytes"); }

TEST(SafetensorsBad, ShapeTimesDtypeIsNotTheByteRange) {
  std::string h = R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})";
  expect_error(make_file(h, k8), "does not match its byte range");
}

TEST(SafetensorsBad, OffsetsPastTheEnd) {
  std::string h = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  expect_error(make_file(h, k8), "extend past the end");
}

TEST(SafetensorsBad, MalformedEntries) {
  expect_error(make_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", k8), "unknown dtype");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", k8), "not an integer in");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", k8), "not an integer in");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", k8), "end 0 < begin 8");
  expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", k8), "data_offsets is not");
  expect_error(make_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", k8), "no dtype");
  expect_error(make_file(R"({"a":[1,2]})", k8), "is not an object");
  expect_error(make_file(R"({"__metadata__":{"k":1}})", {}), "is not a string");
}

TEST(SafetensorsBad, ElementCountOverflow) {
  std::string h = R"({"a":{"dtype":"F32","shape":[1125899906842624,1125899906842624,16],"data_offsets":[0,8]}})";
  expect_error(make_file(h, k8), "overflows");
}

TEST(SafetensorsBad, DeepNesting) {
  std::string h = R"({"a":{"b":{"c":{"d":{"e":{}}}}}})";
  expect_error(make_file(h, {}), "nests deeper");
}

TEST(Safetensors, UnpaddedHeaderStillReadsAlignedCopies) {
  // A 57-byte header puts the data at an odd offset: tensor() must copy instead of a misaligned view.
  std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )";
  h.resize(57, ' ');
  float v[2] = {1.25f, -3.0f};
  std::vector<uint8_t> d(8);
  std::memcpy(d.data(), v, 8);
  SafetensorsFile f = parse(make_file(h, d));
  Tensor t = f.tensor("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 4, 0u);
  EXPECT_EQ(t.data<float>()[1], -3.0f);
}

TEST(Safetensors, EmptyFileWithOnlyMetadataIsValid) {
  SafetensorsFile f = parse(make_file(R"({"__metadata__":{"format":"pt"}})", {}));
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.metadata()[0].second, "pt");
}

TEST(Safetensors, WriterRejectsBadInput) {
  SafetensorsWriter w;
  w.add_tensor("a", Tensor::zeros({2}, DType::kF32));
  EXPECT_THROW(w.add_tensor("a", Tensor::zeros({2}, DType::kF32)), Error);
  EXPECT_THROW(w.add_tensor("__metadata__", Tensor::zeros({2}, DType::kF32)), Error);
  EXPECT_THROW(w.add_tensor("q", Tensor::zeros({32}, DType::kQ4_0)), Error);
}

}  // namespace
}  // namespace llmkit::io
