// The dtype table: one row per type, read top to bottom.
#include "llmkit/tensor/dtype.h"

#include <array>
#include <string>

#include "llmkit/base/check.h"

namespace llmkit {
namespace {

constexpr std::array<DTypeInfo, static_cast<size_t>(DType::kCount)> kInfo = {{
    //  name      block  bytes  quantized  ggml id
    {"f32", 1, 4, false, 0},
    {"f16", 1, 2, false, 1},
    {"bf16", 1, 2, false, 30},
    {"i8", 1, 1, false, 24},
    {"i32", 1, 4, false, 26},
    {"i64", 1, 8, false, 27},
    {"q4_0", 32, 18, true, 2},
    {"q4_1", 32, 20, true, 3},
    {"q5_0", 32, 22, true, 6},
    {"q5_1", 32, 24, true, 7},
    {"q8_0", 32, 34, true, 8},
    {"q8_1", 32, 36, true, 9},
    {"q2_k", 256, 84, true, 10},
    {"q3_k", 256, 110, true, 11},
    {"q4_k", 256, 144, true, 12},
    {"q5_k", 256, 176, true, 13},
    {"q6_k", 256, 210, true, 14},
    {"q8_k", 256, 292, true, 15},
    {"nf4", 64, 36, true, -1},
    {"f8_e4m3", 1, 1, true, -1},
    {"f8_e5m2", 1, 1, true, -1},
    {"q4_0_r8", 32, 18, true, -1},
    {"q4_1_r8", 32, 20, true, -1},
    {"q8_0_r8", 32, 34, true, -1},
}};

}  // namespace

const DTypeInfo& dtype_info(DType t) {
  auto i = static_cast<size_t>(t);
  LLMKIT_ASSERT(i < kInfo.size(), "dtype id ", i);
  return kInfo[i];
}

size_t row_bytes(DType t, int64_t n) {
  auto r = row_bytes_checked(t, n);
  LLMKIT_ASSERT(r.has_value(), "row of ", n, " values is not a whole number of ", dtype_name(t), " blocks");
  return static_cast<size_t>(*r);
}

std::optional<uint64_t> row_bytes_checked(DType t, int64_t n) {
  const auto& info = dtype_info(t);
  if (n < 0) return std::nullopt;
  uint64_t out;
  if (info.block_size == 1) {  // float and integer types: no division (every tensor allocation asks)
    if (!checked_mul(static_cast<uint64_t>(n), static_cast<uint64_t>(info.type_size), &out)) return std::nullopt;
    return out;
  }
  if (n % info.block_size != 0) return std::nullopt;
  if (!checked_mul(static_cast<uint64_t>(n / info.block_size), static_cast<uint64_t>(info.type_size), &out))
    return std::nullopt;
  return out;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (size_t i = 0; i < kInfo.size(); ++i)
    if (lower == kInfo[i].name && !is_r8(static_cast<DType>(i))) return static_cast<DType>(i);
  return std::nullopt;
}

DType r8_base(DType t) {
  switch (t) {
    case DType::kQ4_0_R8: return DType::kQ4_0;
    case DType::kQ4_1_R8: return DType::kQ4_1;
    case DType::kQ8_0_R8: return DType::kQ8_0;
    default: return t;
  }
}

std::optional<DType> r8_of(DType t) {
  switch (t) {
    case DType::kQ4_0: return DType::kQ4_0_R8;
    case DType::kQ4_1: return DType::kQ4_1_R8;
    case DType::kQ8_0: return DType::kQ8_0_R8;
    default: return std::nullopt;
  }
}

std::optional<DType> dtype_from_ggml(int ggml_type) {
  for (size_t i = 0; i < kInfo.size(); ++i)
    if (kInfo[i].ggml_type == ggml_type && ggml_type >= 0) return static_cast<DType>(i);
  return std::nullopt;
}

}  // namespace llmkit
