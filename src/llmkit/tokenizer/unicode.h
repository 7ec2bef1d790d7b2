// UTF-8 and Unicode helpers for the tokenizers: decoding/encoding code points, replacing invalid
// UTF-8 the way Python's bytes.decode("utf-8", "replace") does (what the reference library sees),
// the GPT-2 byte <-> printable-char map of byte-level BPE, and the character classes and
// normalizations the tokenizer.json pipeline needs (ICU: categories, NFC/NFD/NFKC/NFKD, full
// lowercase). Everything here takes and returns UTF-8 std::string; sizes are size_t.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmkit::tok {

// Decodes the code point at s[i] (s must be valid UTF-8); sets *len to its byte length.
inline uint32_t utf8_decode(std::string_view s, size_t i, size_t* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (p[0] < 0x80) { *len = 1; return p[0]; }
  if (p[0] < 0xE0) { *len = 2; return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu); }
  if (p[0] < 0xF0) { *len = 3; return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu); }
  *len = 4;
  return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}
// Byte length of the UTF-8 sequence that starts with byte b (1 for stray bytes).
inline size_t utf8_len(unsigned char b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }
void utf8_append(std::string& out, uint32_t cp);

// True when s is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool utf8_valid(std::string_view s);
// s with every maximal invalid subsequence replaced by U+FFFD (Unicode / CPython "replace").
std::string utf8_sanitize(std::string_view s);
// Length of the longest prefix of s that does not end inside an incomplete (but so far valid)
// multi-byte sequence: what a streaming decoder may emit now.
size_t utf8_complete_prefix(std::string_view s);

// GPT-2 byte-level map: each byte 0..255 <-> one printable code point.
const std::array<uint32_t, 256>& byte_to_unicode();
// The byte for a mapped code point, or -1.
int unicode_to_byte(uint32_t cp);

// Character classes (Unicode general categories, as Rust's char methods define them).
bool is_whitespace(uint32_t cp);    // White_Space property (Rust char::is_whitespace)
bool is_numeric(uint32_t cp);       // Nd | Nl | No
bool is_alphabetic(uint32_t cp);    // Alphabetic property
bool is_punctuation(uint32_t cp);   // P*
bool is_other(uint32_t cp);         // C* (Cc, Cf, Cs, Co, Cn)
bool is_mark_nonspacing(uint32_t cp);  // Mn
bool is_mark(uint32_t cp);          // M*
bool is_symbol(uint32_t cp);        // S*
bool is_letter(uint32_t cp);        // L*

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };
std::string normalize(std::string_view s, NormForm form);
// Full Unicode lowercase mapping per character (Rust char::to_lowercase; no context rules).
std::string to_lower(std::string_view s);

}  // namespace llmkit::tok
