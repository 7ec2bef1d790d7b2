// Decoders from tokenizer.json (ByteLevel, Metaspace, WordPiece, Replace, ByteFallback, Fuse,
// Strip, BPEDecoder, CTC, Sequence): token texts -> text, in the `tokenizers` library's order.
// In raw mode bytes that do not form valid UTF-8 are kept as they are, so a streaming decoder can
// hold back a character that the next token completes; otherwise they become U+FFFD.
#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/pipeline.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit::tok {

using json = nlohmann::json;

struct Decoder::Step {
  enum Kind { kByteLevel, kMetaspace, kWordPiece, kReplace, kByteFallback, kFuse, kStrip, kBpeSuffix, kCtc } kind;
  std::string text;      // Metaspace replacement, WordPiece prefix, Replace content, Strip content, BPE suffix
  Pattern pattern;       // Replace
  bool flag = false;     // Metaspace: strip on the first token; WordPiece: cleanup
  size_t start = 0, stop = 0;  // Strip
};

Decoder::Decoder() = default;
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

namespace {
std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  std::string out;
  size_t last = 0;
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, last)) {
    out.append(s, last, p - last);
    out.append(to);
    last = p + from.size();
  }
  out.append(s, last, std::string::npos);
  return out;
}

std::string wordpiece_cleanup(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"},
      {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [a, b] : kRules) s = replace_all(std::move(s), a, b);
  return s;
}

int parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string lossy(std::string s, bool raw) { return raw || utf8_valid(s) ? s : utf8_sanitize(s); }
}  // namespace

void Decoder::add_json(const json& j) {
  if (j.is_null()) return;
  LLMKIT_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), kInvalidFile,
               "tokenizer.json decoder must be an object with a type");
  std::string type = j["type"].get<std::string>();
  auto str = [&](const char* k, const char* d) {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(d);
  };
  auto s = std::make_unique<Step>();
  if (type == "Sequence") {
    LLMKIT_CHECK(j.contains("decoders") && j["decoders"].is_array(), kInvalidFile, "decoder Sequence needs decoders");
    for (const auto& sub : j["decoders"]) add_json(sub);
    return;
  } else if (type == "ByteLevel") {
    s->kind = Step::kByteLevel;
  } else if (type == "Metaspace") {
    s->kind = Step::kMetaspace;
    s->text = str("replacement", "\xE2\x96\x81");
    std::string scheme = str("prepend_scheme", "");
    if (scheme.empty()) scheme = j.contains("add_prefix_space") && j["add_prefix_space"] == false ? "never" : "always";
    s->flag = scheme != "never";
  } else if (type == "WordPiece") {
    s->kind = Step::kWordPiece;
    s->text = str("prefix", "##");
    s->flag = !j.contains("cleanup") || j["cleanup"] != false;
  } else if (type == "Replace") {
    s->kind = Step::kReplace;
    s->pattern = Pattern::from_json(j.at("pattern"), "Replace decoder");
    s->text = str("content", "");
  } else if (type == "ByteFallback") {
    s->kind = Step::kByteFallback;
  } else if (type == "Fuse") {
    s->kind = Step::kFuse;
  } else if (type == "Strip") {
    s->kind = Step::kStrip;
    s->text = str("content", " ");
    s->start = j.value("start", size_t{0});
    s->stop = j.value("stop", size_t{0});
  } else if (type == "BPEDecoder") {
    s->kind = Step::kBpeSuffix;
    s->text = str("suffix", "</w>");
  } else if (type == "CTC") {
    s->kind = Step::kCtc;
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat("tokenizer.json decoder \"", type, "\" is not supported"));
  }
  steps_.push_back(std::move(s));
}

Decoder Decoder::from_json(const json& j) {
  Decoder d;
  d.add_json(j);
  return d;
}

Decoder Decoder::byte_level() {
  Decoder d;
  d.add_json(json{{"type", "ByteLevel"}});
  return d;
}

Decoder Decoder::spm(bool strip_leading_space) {
  Decoder d;
  d.add_json(json{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}});
  d.add_json(json{{"type", "ByteFallback"}});
  d.add_json(json{{"type", "Fuse"}});
  if (strip_leading_space) d.add_json(json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  return d;
}

Decoder Decoder::metaspace(bool prepend) {
  Decoder d;
  d.add_json(json{{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", prepend ? "always" : "never"}});
  return d;
}

Decoder Decoder::wordpiece() {
  Decoder d;
  d.add_json(json{{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}});
  return d;
}

std::string Decoder::decode(std::vector<std::string> toks, bool raw) const {
  for (const auto& st : steps_) {
    switch (st->kind) {
      case Step::kByteLevel: {
        std::string bytes;
        for (const auto& t : toks) {
          std::string mine;
          bool ok = true;
          for (size_t i = 0; i < t.size() && ok;) {
            size_t len = 0;
            int b = unicode_to_byte(utf8_decode(t, i, &len));
            if (b < 0) ok = false;
            else mine.push_back(static_cast<char>(b));
            i += len;
          }
          bytes += ok ? mine : t;
        }
        toks.assign(1, lossy(std::move(bytes), raw));
        break;
      }
      case Step::kMetaspace:
        for (size_t i = 0; i < toks.size(); ++i)
          toks[i] = replace_all(std::move(toks[i]), st->text, i == 0 && st->flag ? "" : " ");
        break;
      case Step::kWordPiece:
        for (size_t i = 0; i < toks.size(); ++i) {
          if (i != 0) {
            if (toks[i].compare(0, st->text.size(), st->text) == 0) toks[i].erase(0, st->text.size());
            else toks[i].insert(0, " ");
          }
          if (st->flag) toks[i] = wordpiece_cleanup(std::move(toks[i]));
        }
        break;
      case Step::kReplace:
        for (auto& t : toks) {
          std::string out;
          size_t last = 0;
          st->pattern.for_each_match(t, [&](size_t b, size_t e) {
            out.append(t, last, b - last);
            out += st->text;
            last = e;
          });
          out.append(t, last, std::string::npos);
          t = std::move(out);
        }
        break;
      case Step::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t n_pending = 0;
        auto flush = [&] {
          if (n_pending == 0) return;
          if (raw || utf8_valid(pending)) out.push_back(pending);
          else for (size_t k = 0; k < n_pending; ++k) out.emplace_back("\xEF\xBF\xBD");
          pending.clear();
          n_pending = 0;
        };
        for (auto& t : toks) {
          int b = parse_byte_token(t);
          if (b >= 0) {
            pending.push_back(static_cast<char>(b));
            ++n_pending;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        toks = std::move(out);
        break;
      }
      case Step::kFuse: {
        std::string all;
        for (const auto& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
      case Step::kStrip:
        for (auto& t : toks) {
          size_t b = 0, e = t.size(), n = 0;
          while (n < st->start && t.compare(b, st->text.size(), st->text) == 0 && b < e) { b += st->text.size(); ++n; }
          n = 0;
          while (n < st->stop && e >= b + st->text.size() && t.compare(e - st->text.size(), st->text.size(), st->text) == 0) {
            e -= st->text.size();
            ++n;
          }
          t = t.substr(b, e - b);
        }
        break;
      case Step::kBpeSuffix:
        for (size_t i = 0; i < toks.size(); ++i) toks[i] = replace_all(std::move(toks[i]), st->text, i + 1 == toks.size() ? "" : " ");
        break;
      case Step::kCtc: {
        std::vector<std::string> out;
        for (size_t i = 0; i < toks.size(); ++i)
          if ((i == 0 || toks[i] != toks[i - 1]) && toks[i] != "<pad>") out.push_back(toks[i]);
        toks = std::move(out);
        break;
      }
    }
  }
  std::string all;
  for (const auto& t : toks) all += t;
  return lossy(std::move(all), raw);
}

}  // namespace llmkit::tok
