// GGUF reader/writer: round trips, the real default model, and every bad-file case of
// RELIABILITY.md (each must be a typed error, never a crash or an allocation of the claimed size).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "llmkit/io/gguf.h"

namespace llmkit::io {
namespace {

// Builds GGUF bytes field by field, so tests can write exactly the bad value they need.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  }
  Bytes& tensor_info(const std::string& name, std::vector<uint64_t> dims_inner_first, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(dims_inner_first.size()));
    for (auto d : dims_inner_first) put<uint64_t>(d);
    return put<uint32_t>(type).put<uint64_t>(offset);
  }
  Bytes& pad_to(size_t alignment) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

GgufFile parse(const Bytes& bytes) {
  auto owner = std::make_shared<std::vector<uint8_t>>(bytes.b);
  return GgufFile::parse(owner->data(), owner->size(), owner, "test.gguf");
}

// Expects a typed llmkit::Error whose message contains `needle`.
void expect_error(const Bytes& bytes, const std::string& needle, ErrorCode code = ErrorCode::kInvalidFile) {
  try {
    parse(bytes);
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("llmkit_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(Gguf, RoundTripEveryValueTypeAndTensorsBitIdentical) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::from_string("llama"));
  w.set("llama.block_count", GgufValue::from_u32(2));
  w.set("x.u64", GgufValue::from_u64(uint64_t{1} << 40));
  w.set("x.i32", GgufValue::from_i32(-7));
  w.set("x.f32", GgufValue::from_f32(0.25f));
  w.set("x.bool", GgufValue::from_bool(true));
  w.set("x.strings", GgufValue::from_strings({"a", "", "中文", "emoji 🎉"}));
  w.set("x.nested", GgufValue::from_array(GgufType::kArray, {GgufValue::from_array(GgufType::kU32, {GgufValue::from_u32(5)})}));
  Tensor a = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor q = Tensor::empty({2, 64}, DType::kQ4_0);
  for (size_t i = 0; i < q.nbytes(); ++i) q.data<uint8_t>()[i] = static_cast<uint8_t>(i * 7 + 1);
  Tensor h = Tensor::empty({5}, DType::kF16);
  for (int i = 0; i < 5; ++i) h.data<uint16_t>()[i] = static_cast<uint16_t>(0x3c00 + i);
  w.add_tensor("a", a);
  w.add_tensor("q", q);
  w.add_tensor("h", h);
  const std::string path = temp_path("rt.gguf");
  w.write(path);

  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_EQ(f.get_int("x.u64"), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("x.i32"), -7);
  EXPECT_EQ(f.find("x.f32")->as_number(), 0.25);
  EXPECT_EQ(f.get_int("x.bool"), 1);
  ASSERT_EQ(f.find("x.strings")->arr.size(), 4u);
  EXPECT_EQ(f.find("x.strings")->arr[2].s, "中文");
  EXPECT_EQ(f.find("x.nested")->arr[0].arr[0].u, 5u);
  // Arrays read from a file are decoded on access; every element type comes back as written.
  EXPECT_EQ(f.find("x.strings")->arr.string_at(3), "emoji 🎉");
  std::vector<std::string> all;
  for (const GgufValue& e : f.find("x.strings")->arr) all.push_back(e.s);
  EXPECT_EQ(all, (std::vector<std::string>{"a", "", "中文", "emoji 🎉"}));
  ASSERT_EQ(f.tensors().size(), 3u);
  Tensor a2 = f.tensor("a"), q2 = f.tensor("q"), h2 = f.tensor("h");
  EXPECT_EQ(a2.shape(), Shape({2, 3}));
  EXPECT_EQ(q2.dtype(), DType::kQ4_0);
  EXPECT_EQ(q2.shape(), Shape({2, 64}));
  EXPECT_EQ(std::memcmp(a2.raw(), a.raw(), a.nbytes()), 0);
  EXPECT_EQ(std::memcmp(q2.raw(), q.raw(), q.nbytes()), 0);
  EXPECT_EQ(std::memcmp(h2.raw(), h.raw(), h.nbytes()), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q2.raw()) % 32, 0u);
  EXPECT_THROW(f.tensor("missing"), Error);
  std::filesystem::remove(path);
}

TEST(Gguf, WriterRejectsBadInput) {
  GgufWriter w;
  EXPECT_THROW(w.set("", GgufValue::from_u32(1)), Error);
  EXPECT_THROW(w.set_alignment(3), Error);
  Tensor a = Tensor::from_floats({1}, {1});
  w.add_tensor("a", a);
  EXPECT_THROW(w.add_tensor("a", a), Error);
  EXPECT_THROW(w.add_tensor("nf4", Tensor::empty({64}, DType::kNF4)), Error);
  EXPECT_THROW(w.write("/nonexistent-dir/x.gguf"), Error);
}

TEST(Gguf, DefaultModelIfInstalled) {
  const char* home = std::getenv("LLMKIT_HOME");
  std::string dir = home ? std::string(home) + "/models" : std::string(std::getenv("HOME")) + "/.cache/llmkit/models";
  std::string path = dir + "/SmolLM2-135M-Instruct-Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not installed (scripts/setup installs it)";
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.tensors().size(), 272u);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->arr.size(), 49152u);
  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, Shape({49152, 576}));
  EXPECT_EQ(f.tensor("blk.0.attn_q.weight").dtype(), DType::kQ4_1);
}

TEST(GgufBad, MagicVersion) {
  Bytes b;
  b.put<uint32_t>(0x12345678).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(0);
  expect_error(b, "not a GGUF file");
  expect_error(Bytes().header(0, 0, 1), "version 1", ErrorCode::kUnsupported);
  expect_error(Bytes().header(0, 0, 99), "unknown GGUF version 99");
  Bytes empty;
  expect_error(empty, "magic needs 4 bytes");
}

TEST(GgufBad, CountsNear2Pow64) {
  expect_error(Bytes().header(~uint64_t{0}, 0), "tensor count");
  expect_error(Bytes().header(0, ~uint64_t{0}), "metadata count");
  expect_error(Bytes().header(0, 1000), "cannot fit");  // plausible count, too few bytes
}

TEST(GgufBad, StringAndArrayLongerThanTheFile) {
  Bytes s = Bytes().header(0, 1);
  s.put<uint64_t>(~uint64_t{0} - 5).zeros(16);  // key length near 2^64
  expect_error(s, "exceeds the cap");
  Bytes s2 = Bytes().header(0, 1);
  s2.put<uint64_t>(1000).zeros(10);  // key longer than the bytes left
  expect_error(s2, "only 10 are left");
  Bytes a = Bytes().header(0, 1);
  a.str("k").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(uint64_t{1} << 25);  // 2^25 strings
  expect_error(a, "does not fit");
  Bytes a2 = Bytes().header(0, 1);
  a2.str("k").put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(~uint64_t{0});
  expect_error(a2, "exceeds the cap");
}

TEST(GgufBad, ValueTypesAndNesting) {
  Bytes t = Bytes().header(0, 1);
  t.str("k").put<uint32_t>(13).put<uint32_t>(0);
  expect_error(t, "unknown value type 13");
  Bytes bo = Bytes().header(0, 1);
  bo.str("k").put<uint32_t>(7).put<uint8_t>(2);
  expect_error(bo, "neither 0 nor 1");
  Bytes boa = Bytes().header(0, 1);  // inside an array (checked at open, though decoded on access)
  boa.str("k").put<uint32_t>(9).put<uint32_t>(7).put<uint64_t>(3).put<uint8_t>(1).put<uint8_t>(0).put<uint8_t>(5);
  expect_error(boa, "bool value 5 is neither 0 nor 1");
  Bytes sa = Bytes().header(0, 1);  // a string array whose second string runs past the end
  sa.str("k").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("ok").put<uint64_t>(1000).put<uint8_t>('x');
  expect_error(sa, "string value needs 1000 bytes");
  Bytes deep = Bytes().header(0, 1);
  deep.str("k");
  deep.put<uint32_t>(9);
  for (int i = 0; i < 10; ++i) deep.put<uint32_t>(9).put<uint64_t>(1);
  expect_error(deep, "nested deeper");
  Bytes dup = Bytes().header(0, 2);
  dup.str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
  expect_error(dup, "duplicate metadata key 'k'");
}

TEST(GgufBad, Alignment) {
  for (uint32_t al : {0u, 3u, 48u}) {
    Bytes b = Bytes().header(0, 1);
    b.str("general.alignment").put<uint32_t>(4).put<uint32_t>(al);
    expect_error(b, "not a power of two");
  }
}

TEST(GgufBad, TensorShapesAndTypes) {
  auto one = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset = 0, size_t data = 64) {
    Bytes b = Bytes().header(1, 0);
    b.tensor_info("t", dims, type, offset).pad_to(32).zeros(data);
    return b;
  };
  expect_error(one({}, 0), "has 0 dimensions");
  expect_error(one({1, 1, 1, 1, 1}, 0), "has 5 dimensions");
  expect_error(one({0}, 0), "is zero");
  expect_error(one({uint64_t{1} << 30, uint64_t{1} << 30}, 0), "overflow");
  expect_error(one({~uint64_t{0}}, 0), "overflow");
  expect_error(one({16}, 4), "ggml type 4", ErrorCode::kUnsupported);
  expect_error(one({16}, 2), "whole number of q4_0 blocks");
  expect_error(one({16}, 0, 7), "not a multiple of the alignment");
  expect_error(one({17}, 0), "past the end of the file");          // 68 bytes > 64
  expect_error(one({4}, 0, ~uint64_t{0} & ~uint64_t{31}), "past the end");  // offset + size overflows
  Bytes dup = Bytes().header(2, 0);
  dup.tensor_info("t", {4}, 0, 0).tensor_info("t", {4}, 0, 32).pad_to(32).zeros(64);
  expect_error(dup, "duplicate tensor name 't'");
  Bytes ov = Bytes().header(2, 0);
  ov.tensor_info("a", {16}, 0, 0).tensor_info("b", {16}, 0, 32).pad_to(32).zeros(128);
  expect_error(ov, "overlap");
  Bytes name = Bytes().header(1, 0);
  name.tensor_info("", {4}, 0, 0).pad_to(32).zeros(16);
  expect_error(name, "empty name");
}

TEST(GgufBad, EveryTruncationIsATypedError) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::from_string("llama"));
  w.set("x.strings", GgufValue::from_strings({"hello", "world"}));
  w.add_tensor("a", Tensor::from_floats({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4}));
  const std::string path = temp_path("trunc.gguf");
  w.write(path);
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> all((std::istreambuf_iterator<char>(in)), {});
  std::filesystem::remove(path);
  EXPECT_NO_THROW(parse(Bytes{all}));
  for (size_t n = 0; n + 1 < all.size(); ++n) {
    Bytes prefix{std::vector<uint8_t>(all.begin(), all.begin() + static_cast<long>(n))};
    EXPECT_THROW(parse(prefix), Error) << "prefix of " << n << " bytes";
  }
}

TEST(GgufBad, MissingFileAndNotAFile) {
  try {
    GgufFile::open("/definitely/not/here.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
  EXPECT_THROW(GgufFile::open("/tmp"), Error);
}

}  // namespace
}  // namespace llmkit::io
