// Normalizers from tokenizer.json: NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, BertNormalizer,
// Prepend, Replace, Strip and Sequence — the ones real model files use. SentencePiece's
// "Precompiled" char map (T5, ALBERT) is not supported and says so at load time.
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/pipeline.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit::tok {

using json = nlohmann::json;

Pattern Pattern::from_json(const json& j, const char* where) {
  Pattern p;
  LLMKIT_CHECK(j.is_object(), kInvalidFile, "tokenizer.json ", where, ": pattern must be {\"String\"|\"Regex\": ...}");
  if (j.contains("Regex")) {
    LLMKIT_CHECK(j["Regex"].is_string(), kInvalidFile, "tokenizer.json ", where, ": Regex must be a string");
    p.regex = std::make_shared<Regex>(j["Regex"].get<std::string>());
  } else if (j.contains("String")) {
    LLMKIT_CHECK(j["String"].is_string(), kInvalidFile, "tokenizer.json ", where, ": String must be a string");
    p.literal = j["String"].get<std::string>();
  } else {
    throw Error(ErrorCode::kInvalidFile, str_cat("tokenizer.json ", where, ": pattern must have String or Regex"));
  }
  return p;
}

struct Normalizer::Step {
  enum Kind { kNorm, kLower, kStripAccents, kBert, kPrepend, kReplace, kStrip } kind;
  NormForm form = NormForm::kNFC;
  bool clean_text = false, chinese = false, strip_accents = false, lowercase = false;  // Bert
  bool left = false, right = false;                                                   // Strip
  std::string text;  // Prepend text / Replace content
  Pattern pattern;   // Replace
};

Normalizer::Normalizer() = default;
Normalizer::~Normalizer() = default;
Normalizer::Normalizer(Normalizer&&) noexcept = default;
Normalizer& Normalizer::operator=(Normalizer&&) noexcept = default;

namespace {
bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  LLMKIT_CHECK(it->is_boolean(), kInvalidFile, "tokenizer.json: \"", key, "\" must be true or false");
  return it->get<bool>();
}
std::string get_str(const json& j, const char* key, const char* where) {
  auto it = j.find(key);
  LLMKIT_CHECK(it != j.end() && it->is_string(), kInvalidFile, "tokenizer.json ", where, ": \"", key,
               "\" must be a string");
  return it->get<std::string>();
}

// SentencePiece's space marker U+2581 (a std::string constant: assigning the literal directly
// trips a GCC 12 -Wrestrict false positive).
const std::string& metaspace_marker() {
  static const std::string kMarker = "\xE2\x96\x81";
  return kMarker;
}

bool is_chinese_char(uint32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Keeps the characters for which keep(cp) is true.
template <typename Keep>
std::string filter_chars(std::string_view s, Keep keep) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    uint32_t cp = utf8_decode(s, i, &len);
    if (keep(cp)) out.append(s.substr(i, len));
    i += len;
  }
  return out;
}

std::string bert_normalize(std::string_view s, const Normalizer::Step& st) {
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    uint32_t cp = utf8_decode(s, i, &len);
    std::string_view ch = s.substr(i, len);
    i += len;
    if (st.clean_text) {
      if (cp == 0 || cp == 0xFFFD || (cp != '\t' && cp != '\n' && cp != '\r' && is_other(cp))) continue;
      if (cp == '\t' || cp == '\n' || cp == '\r' || is_whitespace(cp)) { out.push_back(' '); continue; }
    }
    if (st.chinese && is_chinese_char(cp)) {
      out.push_back(' ');
      out.append(ch);
      out.push_back(' ');
      continue;
    }
    out.append(ch);
  }
  if (st.strip_accents) out = filter_chars(normalize(out, NormForm::kNFD), [](uint32_t c) { return !is_mark_nonspacing(c); });
  if (st.lowercase) out = to_lower(out);
  return out;
}
}  // namespace

void Normalizer::add_json(const json& j) {
  if (j.is_null()) return;
  LLMKIT_CHECK(j.is_object() && j.contains("type"), kInvalidFile, "tokenizer.json normalizer must be an object with a type");
  std::string type = get_str(j, "type", "normalizer");
  auto step = std::make_unique<Step>();
  if (type == "Sequence") {
    const auto& list = j.at("normalizers");
    LLMKIT_CHECK(list.is_array(), kInvalidFile, "tokenizer.json normalizer Sequence needs a normalizers array");
    for (const auto& sub : list) add_json(sub);
    return;
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step->kind = Step::kNorm;
    step->form = type == "NFC" ? NormForm::kNFC : type == "NFD" ? NormForm::kNFD : type == "NFKC" ? NormForm::kNFKC : NormForm::kNFKD;
  } else if (type == "Lowercase") {
    step->kind = Step::kLower;
  } else if (type == "StripAccents") {
    step->kind = Step::kStripAccents;
  } else if (type == "BertNormalizer") {
    step->kind = Step::kBert;
    step->clean_text = get_bool(j, "clean_text", true);
    step->chinese = get_bool(j, "handle_chinese_chars", true);
    step->lowercase = get_bool(j, "lowercase", true);
    step->strip_accents = get_bool(j, "strip_accents", step->lowercase);
  } else if (type == "Prepend") {
    step->kind = Step::kPrepend;
    step->text = get_str(j, "prepend", "Prepend normalizer");
  } else if (type == "Replace") {
    step->kind = Step::kReplace;
    step->pattern = Pattern::from_json(j.at("pattern"), "Replace normalizer");
    step->text = get_str(j, "content", "Replace normalizer");
  } else if (type == "Strip") {
    step->kind = Step::kStrip;
    step->left = get_bool(j, "strip_left", true);
    step->right = get_bool(j, "strip_right", true);
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat("tokenizer.json normalizer \"", type, "\" is not supported"),
                "supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, BertNormalizer, Prepend, Replace, Strip, Sequence");
  }
  steps_.push_back(std::move(step));
}

Normalizer Normalizer::from_json(const json& j) {
  Normalizer n;
  n.add_json(j);
  return n;
}

Normalizer Normalizer::spm(bool add_space_prefix) {
  Normalizer n;
  if (add_space_prefix) {
    auto p = std::make_unique<Step>();
    p->kind = Step::kPrepend;
    p->text = metaspace_marker();
    n.steps_.push_back(std::move(p));
  }
  auto r = std::make_unique<Step>();
  r->kind = Step::kReplace;
  r->pattern.literal.assign(1, ' ');
  r->text = metaspace_marker();
  n.steps_.push_back(std::move(r));
  return n;
}

Normalizer Normalizer::bert(bool lowercase) {
  Normalizer n;
  auto s = std::make_unique<Step>();
  s->kind = Step::kBert;
  s->clean_text = s->chinese = true;
  s->lowercase = s->strip_accents = lowercase;
  n.steps_.push_back(std::move(s));
  return n;
}

std::string Normalizer::apply(std::string_view in) const {
  std::string s(in);
  for (const auto& st : steps_) {
    switch (st->kind) {
      case Step::kNorm: s = normalize(s, st->form); break;
      case Step::kLower: s = to_lower(s); break;
      case Step::kStripAccents: s = filter_chars(s, [](uint32_t c) { return !is_mark(c); }); break;
      case Step::kBert: s = bert_normalize(s, *st); break;
      case Step::kPrepend:
        if (!s.empty()) s = st->text + s;
        break;
      case Step::kReplace: {
        std::string out;
        size_t last = 0;
        st->pattern.for_each_match(s, [&](size_t b, size_t e) {
          out.append(s, last, b - last);
          out += st->text;
          last = e;
        });
        out.append(s, last, std::string::npos);
        s = std::move(out);
        break;
      }
      case Step::kStrip: {
        size_t b = 0, e = s.size();
        if (st->left) {
          while (b < e) {
            size_t len = 0;
            if (!is_whitespace(utf8_decode(s, b, &len))) break;
            b += len;
          }
        }
        if (st->right) {
          while (e > b) {
            size_t k = e - 1;
            while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
            size_t len = 0;
            if (!is_whitespace(utf8_decode(s, k, &len))) break;
            e = k;
          }
        }
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

}  // namespace llmkit::tok
