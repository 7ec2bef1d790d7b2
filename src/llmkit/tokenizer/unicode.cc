// UTF-8 validation/repair, the GPT-2 byte map, and ICU-backed character classes and
// normalization. ICU (Debian libicu-dev) is used rather than our own tables because NFC/NFKC and
// the category data are large and must follow the Unicode standard exactly; it is only called on
// non-ASCII characters, and never on the byte-level BPE hot path.
#include "llmkit/tokenizer/unicode.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include "llmkit/base/check.h"

namespace llmkit::tok {

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {
// For a lead byte: how many continuation bytes follow and the allowed range of the first one
// (Unicode Table 3-7, well-formed UTF-8 byte sequences). need = -1: not a valid lead byte.
struct Lead { int need; unsigned char lo, hi; };
Lead lead_info(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {-1, 0, 0};
}

// Length of the well-formed sequence at s[i], or -(length of the maximal invalid subpart).
long scan_one(const unsigned char* s, size_t n, size_t i) {
  if (s[i] < 0x80) return 1;
  Lead l = lead_info(s[i]);
  if (l.need < 0) return -1;
  size_t j = i + 1;
  int k = 0;
  for (; k < l.need && j < n; ++k, ++j) {
    unsigned char lo = k == 0 ? l.lo : 0x80, hi = k == 0 ? l.hi : 0xBF;
    if (s[j] < lo || s[j] > hi) break;
  }
  long len = static_cast<long>(j - i);
  return k == l.need ? len : -len;
}
}  // namespace

bool utf8_valid(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size(), i = 0;
  while (i < n) {
    if (s[i] < 0x80) { ++i; continue; }
    long r = scan_one(s, n, i);
    if (r < 0) return false;
    i += static_cast<size_t>(r);
  }
  return true;
}

std::string utf8_sanitize(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size(), i = 0;
  std::string out;
  out.reserve(n + 8);
  while (i < n) {
    size_t start = i;
    while (i < n && s[i] < 0x80) ++i;  // ASCII run
    out.append(sv.data() + start, i - start);
    if (i >= n) break;
    long r = scan_one(s, n, i);
    if (r > 0) {
      out.append(sv.data() + i, static_cast<size_t>(r));
      i += static_cast<size_t>(r);
    } else {
      out.append("\xEF\xBF\xBD");
      i += static_cast<size_t>(-r);
    }
  }
  return out;
}

size_t utf8_complete_prefix(std::string_view sv) {
  const auto* s = reinterpret_cast<const unsigned char*>(sv.data());
  size_t n = sv.size();
  // Look back at most 3 bytes for the lead byte of a sequence that is still incomplete.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char b = s[n - back];
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    Lead l = lead_info(b);
    if (l.need < 0) return n;
    if (static_cast<size_t>(l.need) + 1 > back && scan_one(s, n, n - back) == -static_cast<long>(back))
      return n - back;  // a valid but unfinished sequence: hold it back
    return n;
  }
  return n;
}

const std::array<uint32_t, 256>& byte_to_unicode() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

int unicode_to_byte(uint32_t cp) {
  static const std::array<int16_t, 324> inverse = [] {
    std::array<int16_t, 324> inv{};
    inv.fill(-1);
    const auto& t = byte_to_unicode();
    for (int b = 0; b < 256; ++b) inv[t[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  return cp < inverse.size() ? inverse[cp] : -1;
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 9 && cp <= 13);
  return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE);
}

namespace {
int8_t category(uint32_t cp) { return u_charType(static_cast<UChar32>(cp)); }
}  // namespace

bool is_numeric(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  int8_t c = category(cp);
  return c == U_DECIMAL_DIGIT_NUMBER || c == U_LETTER_NUMBER || c == U_OTHER_NUMBER;
}
bool is_alphabetic(uint32_t cp) { return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_ALPHABETIC); }
bool is_punctuation(uint32_t cp) {
  int8_t c = category(cp);
  return c == U_CONNECTOR_PUNCTUATION || c == U_DASH_PUNCTUATION || c == U_START_PUNCTUATION ||
         c == U_END_PUNCTUATION || c == U_INITIAL_PUNCTUATION || c == U_FINAL_PUNCTUATION ||
         c == U_OTHER_PUNCTUATION;
}
bool is_other(uint32_t cp) {
  int8_t c = category(cp);
  return c == U_CONTROL_CHAR || c == U_FORMAT_CHAR || c == U_SURROGATE || c == U_PRIVATE_USE_CHAR ||
         c == U_UNASSIGNED;
}
bool is_mark_nonspacing(uint32_t cp) { return category(cp) == U_NON_SPACING_MARK; }
bool is_mark(uint32_t cp) {
  int8_t c = category(cp);
  return c == U_NON_SPACING_MARK || c == U_ENCLOSING_MARK || c == U_COMBINING_SPACING_MARK;
}
bool is_symbol(uint32_t cp) {
  int8_t c = category(cp);
  return c == U_MATH_SYMBOL || c == U_CURRENCY_SYMBOL || c == U_MODIFIER_SYMBOL || c == U_OTHER_SYMBOL;
}
bool is_letter(uint32_t cp) {
  int8_t c = category(cp);
  return c == U_UPPERCASE_LETTER || c == U_LOWERCASE_LETTER || c == U_TITLECASE_LETTER ||
         c == U_MODIFIER_LETTER || c == U_OTHER_LETTER;
}

std::string normalize(std::string_view s, NormForm form) {
  bool ascii = true;
  for (char c : s) ascii &= static_cast<unsigned char>(c) < 0x80;
  if (ascii) return std::string(s);  // ASCII is invariant under every normalization form
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case NormForm::kNFC: n = icu::Normalizer2::getNFCInstance(st); break;
    case NormForm::kNFD: n = icu::Normalizer2::getNFDInstance(st); break;
    case NormForm::kNFKC: n = icu::Normalizer2::getNFKCInstance(st); break;
    case NormForm::kNFKD: n = icu::Normalizer2::getNFKDInstance(st); break;
  }
  LLMKIT_CHECK(U_SUCCESS(st) && n, kInternal, "ICU normalizer unavailable: ", u_errorName(st));
  icu::UnicodeString us = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  icu::UnicodeString out = n->normalize(us, st);
  LLMKIT_CHECK(U_SUCCESS(st), kInternal, "ICU normalization failed: ", u_errorName(st));
  std::string r;
  out.toUTF8String(r);
  return r;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = utf8_decode(s, i, &len);
    i += len;
    UChar src[2], dst[8];
    int32_t n_src = 0;
    UBool err = false;
    U16_APPEND(src, n_src, 2, static_cast<UChar32>(cp), err);
    UErrorCode st = U_ZERO_ERROR;
    int32_t n = u_strToLower(dst, 8, src, n_src, "", &st);
    if (U_FAILURE(st) || err) { utf8_append(out, cp); continue; }
    for (int32_t k = 0; k < n;) {
      UChar32 o;
      U16_NEXT(dst, k, n, o);
      utf8_append(out, static_cast<uint32_t>(o));
    }
  }
  return out;
}

}  // namespace llmkit::tok
