// Element types, including the block-quantized types of GGUF. A quantized type stores
// `block_size` consecutive values of a row in `type_size` bytes; a row's length must be a multiple
// of block_size. GGUF type ids follow the ggml enum (ggml.h, "enum ggml_type") so files map 1:1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace llmkit {

enum class DType : uint8_t {
  kF32, kF16, kBF16, kI8, kI32, kI64,
  kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0, kQ8_1,
  kQ2_K, kQ3_K, kQ4_K, kQ5_K, kQ6_K, kQ8_K,
  kNF4,       // QLoRA NormalFloat-4 (Dettmers et al. 2023): 64 values, f32 absmax + 32 bytes
  kF8_E4M3,   // OCP FP8 (Micikevicius et al. 2022): finite-only, max 448
  kF8_E5M2,   // OCP FP8: IEEE-like, max 57344
  // Inference layouts, not file types: the blocks of Q4_0 / Q4_1 / Q8_0 with each group of 8 rows
  // interleaved block by block (see "Rows interleaved by 8" below). Same bytes per row as the base
  // type; made at load by ops::repack_r8 for the CPU int8 kernel, never read from or written to files.
  kQ4_0_R8, kQ4_1_R8, kQ8_0_R8,
  kCount
};

struct DTypeInfo {
  const char* name;     // "q4_0", as printed and parsed
  int block_size;       // values per block (1 for plain types)
  int type_size;        // bytes per block
  bool quantized;       // needs quantize/dequantize to be used as floats
  int ggml_type;        // GGUF/ggml type id, or -1 if GGUF has none
};

const DTypeInfo& dtype_info(DType t);
inline const char* dtype_name(DType t) { return dtype_info(t).name; }
inline int block_size(DType t) { return dtype_info(t).block_size; }
inline int type_size(DType t) { return dtype_info(t).type_size; }
inline bool is_quantized(DType t) { return dtype_info(t).quantized; }
inline bool is_float(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

// Rows interleaved by 8: a [N, K] tensor of type base_r8 (N % 8 == 0) is N / 8 groups; group g
// holds rows 8g .. 8g + 7 in the bytes those 8 rows take in the base layout, ordered block by
// block. For block b of the group (8 x type_size(base) bytes, at g * 8 * row_bytes + b * 8 * type_size):
//   the 8 rows' f16 scales d (16 bytes), Q4_1 then the 8 rows' f16 minimums m (16 bytes), then the
//   levels in pairs of rows (i, i + 4), i = 0..3: Q4_0/Q4_1 row i's 16 nibble bytes, row i + 4's 16;
//   Q8_0 row i's levels 0..15, row i + 4's 0..15, row i's 16..31, row i + 4's 16..31.
// A 32-byte load then holds the levels of rows i and i + 4 as the int8 kernel pairs them, and one
// 16-byte load the 8 scales: one memory stream per 8 rows instead of 8.
inline bool is_r8(DType t) { return t == DType::kQ4_0_R8 || t == DType::kQ4_1_R8 || t == DType::kQ8_0_R8; }
// Q4_0 for Q4_0_R8, ...; t itself for every other type.
DType r8_base(DType t);
// Q4_0_R8 for Q4_0, ...; nullopt for types without an interleaved layout.
std::optional<DType> r8_of(DType t);

// Bytes for one row of n values; asserts n % block_size == 0 (validate user input first with
// row_bytes_checked).
size_t row_bytes(DType t, int64_t n);
// For untrusted sizes: nullopt if n is negative, not a multiple of the block size, or overflows.
std::optional<uint64_t> row_bytes_checked(DType t, int64_t n);

// File and flag type names; the *_R8 inference layouts are not among them.
std::optional<DType> dtype_from_name(std::string_view name);
std::optional<DType> dtype_from_ggml(int ggml_type);

// Quantized block layouts (byte-exact with ggml's ggml-common.h). F16 fields are raw uint16_t.
constexpr int kQK = 32;    // block size of the "legacy" quants
constexpr int kQK_K = 256; // block size of the k-quants
constexpr int kKScaleSize = 12;

struct BlockQ4_0 { uint16_t d; uint8_t qs[kQK / 2]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[kQK / 2]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[kQK / 2]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[kQK]; };
struct BlockQ8_1 { uint16_t d, s; int8_t qs[kQK]; };
struct BlockQ2_K { uint8_t scales[kQK_K / 16]; uint8_t qs[kQK_K / 4]; uint16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[kQK_K / 8]; uint8_t qs[kQK_K / 4]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[kKScaleSize]; uint8_t qs[kQK_K / 2]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[kKScaleSize]; uint8_t qh[kQK_K / 8]; uint8_t qs[kQK_K / 2]; };
struct BlockQ6_K { uint8_t ql[kQK_K / 2]; uint8_t qh[kQK_K / 4]; int8_t scales[kQK_K / 16]; uint16_t d; };
struct BlockQ8_K { float d; int8_t qs[kQK_K]; int16_t bsums[kQK_K / 16]; };
struct BlockNF4 { float absmax; uint8_t qs[32]; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockNF4) == 36);

}  // namespace llmkit
