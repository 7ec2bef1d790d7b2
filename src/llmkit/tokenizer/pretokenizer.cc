// Pre-tokenizers from tokenizer.json (Split, ByteLevel, Digits, Metaspace, Whitespace,
// WhitespaceSplit, BertPreTokenizer, Punctuation, CharDelimiterSplit, Sequence) and the regex
// lists llama.cpp uses for GGUF `tokenizer.ggml.pre`. Splitting follows the `tokenizers`
// library's SplitDelimiterBehavior rules exactly; empty pieces are dropped.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/pipeline.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit::tok {

using json = nlohmann::json;

namespace {
const char* const kGpt2Re = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Re =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Re =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kDeepseekV3Re =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool is_bert_punct(uint32_t c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126) ||
         (c >= 0x80 && is_punctuation(c));
}

// One piece's matches as (begin, end, is_match) covering the whole piece, in order.
struct Seg { size_t b, e; bool m; };

template <typename Find>
void matches_of(std::string_view piece, Find&& find, std::vector<Seg>& out) {
  out.clear();
  size_t prev = 0;
  find(piece, [&](size_t b, size_t e) {
    if (b > prev) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
  });
  if (prev < piece.size()) out.push_back({prev, piece.size(), false});
}

// Per-character predicate matches (each matching character is its own match).
template <typename Pred>
void char_matches(std::string_view piece, Pred pred, std::vector<Seg>& out) {
  matches_of(piece, [&](std::string_view s, auto&& emit) {
    for (size_t i = 0; i < s.size();) {
      size_t len = 0;
      uint32_t cp = utf8_decode(s, i, &len);
      if (pred(cp)) emit(i, i + len);
      i += len;
    }
  }, out);
}

// Applies a split behavior to one piece at offset base; appends the kept spans.
void apply_behavior(std::vector<Seg>& segs, SplitBehavior beh, bool invert, size_t base,
                    std::vector<std::pair<size_t, size_t>>& out) {
  if (invert)
    for (Seg& s : segs) s.m = !s.m;
  std::vector<std::pair<size_t, size_t>> acc;
  auto emit_all = [&](const std::vector<std::pair<size_t, size_t>>& v) {
    for (auto [b, e] : v)
      if (e > b) out.emplace_back(base + b, base + e);
  };
  switch (beh) {
    case SplitBehavior::kRemoved:
      for (const Seg& s : segs)
        if (!s.m && s.e > s.b) out.emplace_back(base + s.b, base + s.e);
      return;
    case SplitBehavior::kIsolated:
      for (const Seg& s : segs)
        if (s.e > s.b) out.emplace_back(base + s.b, base + s.e);
      return;
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const Seg& s : segs) {
        if (s.m && !prev_match && !acc.empty()) acc.back().second = s.e;
        else acc.emplace_back(s.b, s.e);
        prev_match = s.m;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const Seg& s = segs[k];
        if (s.m && !prev_match && !acc.empty()) acc.back().first = s.b;
        else acc.emplace_back(s.b, s.e);
        prev_match = s.m;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const Seg& s : segs) {
        if (s.m == prev_match && !acc.empty()) acc.back().second = s.e;
        else acc.emplace_back(s.b, s.e);
        prev_match = s.m;
      }
      break;
    }
  }
  emit_all(acc);
}

SplitBehavior parse_behavior(const json& j) {
  std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  throw Error(ErrorCode::kInvalidFile, str_cat("tokenizer.json: unknown split behavior \"", b, "\""));
}
}  // namespace

struct PreTokenizer::Step {
  enum Kind { kSplit, kByteLevel, kDigits, kMetaspace, kWhitespace, kWhitespaceSplit, kBert, kPunctuation } kind;
  Pattern pattern;  // Split, Whitespace (regex), Metaspace (replacement literal)
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false, use_regex = true;  // ByteLevel
  bool individual = false;                          // Digits
  std::string replacement = "\xE2\x96\x81";         // Metaspace
  int prepend = 0;                                  // Metaspace: 0 always, 1 first, 2 never
  bool split = true;                                // Metaspace
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {
std::unique_ptr<PreTokenizer::Step> split_step(const std::string& re) {
  auto s = std::make_unique<PreTokenizer::Step>();
  s->kind = PreTokenizer::Step::kSplit;
  s->pattern.regex = std::make_shared<Regex>(re);
  return s;
}
std::unique_ptr<PreTokenizer::Step> byte_level_step() {
  auto s = std::make_unique<PreTokenizer::Step>();
  s->kind = PreTokenizer::Step::kByteLevel;
  s->use_regex = false;
  return s;
}
bool jbool(const json& j, const char* k, bool d) {
  auto it = j.find(k);
  return it == j.end() || !it->is_boolean() ? d : it->get<bool>();
}
}  // namespace

void PreTokenizer::add_json(const json& j) {
  if (j.is_null()) return;
  LLMKIT_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), kInvalidFile,
               "tokenizer.json pre_tokenizer must be an object with a type");
  std::string type = j["type"].get<std::string>();
  auto s = std::make_unique<Step>();
  if (type == "Sequence") {
    const auto& list = j.at("pretokenizers");
    LLMKIT_CHECK(list.is_array(), kInvalidFile, "tokenizer.json pre_tokenizer Sequence needs a pretokenizers array");
    for (const auto& sub : list) add_json(sub);
    return;
  } else if (type == "Split") {
    s->kind = Step::kSplit;
    s->pattern = Pattern::from_json(j.at("pattern"), "Split pre-tokenizer");
    s->behavior = parse_behavior(j.at("behavior"));
    s->invert = jbool(j, "invert", false);
  } else if (type == "ByteLevel") {
    s->kind = Step::kByteLevel;
    s->add_prefix_space = jbool(j, "add_prefix_space", true);
    s->use_regex = jbool(j, "use_regex", true);
    if (s->use_regex) s->pattern.regex = std::make_shared<Regex>(kGpt2Re);
    byte_level_ = true;
  } else if (type == "Digits") {
    s->kind = Step::kDigits;
    s->individual = jbool(j, "individual_digits", false);
  } else if (type == "Metaspace") {
    s->kind = Step::kMetaspace;
    if (j.contains("replacement") && j["replacement"].is_string()) s->replacement = j["replacement"].get<std::string>();
    LLMKIT_CHECK(!s->replacement.empty(), kInvalidFile, "tokenizer.json Metaspace replacement must not be empty");
    std::string scheme = j.contains("prepend_scheme") && j["prepend_scheme"].is_string()
                             ? j["prepend_scheme"].get<std::string>()
                             : (jbool(j, "add_prefix_space", true) ? "always" : "never");
    s->prepend = scheme == "always" ? 0 : scheme == "first" ? 1 : 2;
    s->split = jbool(j, "split", true);
    s->pattern.literal = s->replacement;
  } else if (type == "Whitespace") {
    s->kind = Step::kWhitespace;
    // \w as Oniguruma defines it (letters, marks, decimal digits, connector punctuation).
    s->pattern.regex = std::make_shared<Regex>(R"([\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+)");
  } else if (type == "WhitespaceSplit") {
    s->kind = Step::kWhitespaceSplit;
  } else if (type == "BertPreTokenizer") {
    s->kind = Step::kBert;
  } else if (type == "Punctuation") {
    s->kind = Step::kPunctuation;
    if (j.contains("behavior")) s->behavior = parse_behavior(j["behavior"]);
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat("tokenizer.json pre_tokenizer \"", type, "\" is not supported"),
                "supported: Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, BertPreTokenizer, "
                "Punctuation, Sequence");
  }
  steps_.push_back(std::move(s));
}

PreTokenizer PreTokenizer::from_json(const json& j) {
  PreTokenizer p;
  p.add_json(j);
  return p;
}

PreTokenizer PreTokenizer::from_gguf_pre(const std::string& pre) {
  std::vector<std::string> res;
  if (pre == "gpt-2" || pre == "gpt2" || pre == "phi-2" || pre == "mpt" || pre == "olmo" || pre == "jais" ||
      pre == "jina-v1-en" || pre == "jina-v2-code" || pre == "roberta-bpe" || pre == "gigachat") {
    res = {kGpt2Re};
  } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" || pre == "pixtral") {
    res = {kLlama3Re};
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2" || pre == "hunyuan") {
    res = {kQwen2Re};
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
             pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    res = {R"(\p{N})", kGpt2Re};
  } else if (pre == "deepseek-v3") {
    res = {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", kDeepseekV3Re};
  } else if (pre == "deepseek-coder") {
    res = {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N})"};
  } else if (pre == "falcon") {
    res = {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Re, "[0-9][0-9][0-9]"};
  } else if (pre == "default") {
    res = {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Re, R"(\p{N}+)", "[0-9][0-9][0-9]"};
  } else {
    throw Error(ErrorCode::kUnsupported, str_cat("GGUF tokenizer.ggml.pre \"", pre, "\" is not supported"),
                "supported: gpt-2, llama3/llama-bpe, qwen2, smollm/starcoder, deepseek-v3, deepseek-coder, falcon, "
                "default; or load the model's tokenizer.json");
  }
  PreTokenizer p;
  for (const auto& re : res) p.steps_.push_back(split_step(re));
  p.steps_.push_back(byte_level_step());
  p.byte_level_ = true;
  return p;
}

PreTokenizer PreTokenizer::metaspace(bool prepend_always) {
  PreTokenizer p;
  auto s = std::make_unique<Step>();
  s->kind = Step::kMetaspace;
  s->prepend = prepend_always ? 0 : 2;
  s->pattern.literal = s->replacement;
  p.steps_.push_back(std::move(s));
  return p;
}

PreTokenizer PreTokenizer::bert() {
  PreTokenizer p;
  auto s = std::make_unique<Step>();
  s->kind = Step::kBert;
  p.steps_.push_back(std::move(s));
  return p;
}

void PreTokenizer::apply(Words& w, bool at_origin) const {
  thread_local std::vector<Seg> segs;
  std::vector<std::pair<size_t, size_t>> next;
  for (const auto& st : steps_) {
    next.clear();
    next.reserve(w.spans.size() * 2);
    const bool transforms = (st->kind == Step::kByteLevel && st->add_prefix_space) || st->kind == Step::kMetaspace;
    std::string nbuf;
    if (transforms) nbuf.reserve(w.buf.size() + 16);
    for (auto [b, e] : w.spans) {
      std::string_view piece(w.buf.data() + b, e - b);
      size_t base = b;
      if (transforms) {
        // Rewrite this piece into nbuf, then split it there.
        base = nbuf.size();
        if (st->kind == Step::kByteLevel) {
          if (piece.empty() || piece[0] != ' ') nbuf.push_back(' ');
          nbuf.append(piece);
        } else {
          bool starts = piece.compare(0, st->replacement.size(), st->replacement) == 0 || (!piece.empty() && piece[0] == ' ');
          if (!starts && (st->prepend == 0 || (st->prepend == 1 && at_origin && b == 0))) nbuf += st->replacement;
          for (char c : piece) {
            if (c == ' ') nbuf += st->replacement;
            else nbuf.push_back(c);
          }
        }
        piece = std::string_view(nbuf).substr(base);
      }
      switch (st->kind) {
        case Step::kSplit:
          matches_of(piece, [&](std::string_view s, auto&& emit) { st->pattern.for_each_match(s, emit); }, segs);
          apply_behavior(segs, st->behavior, st->invert, base, next);
          break;
        case Step::kByteLevel:
          if (st->use_regex) {
            size_t prev = 0;
            st->pattern.regex->for_each_match(piece, [&](size_t mb, size_t me) {
              if (mb > prev) next.emplace_back(base + prev, base + mb);
              next.emplace_back(base + mb, base + me);
              prev = me;
            });
            if (prev < piece.size()) next.emplace_back(base + prev, base + piece.size());
          } else if (!piece.empty()) {
            next.emplace_back(base, base + piece.size());
          }
          break;
        case Step::kDigits:
          char_matches(piece, is_numeric, segs);
          apply_behavior(segs, st->individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, base, next);
          break;
        case Step::kMetaspace:
          if (st->split) {
            matches_of(piece, [&](std::string_view s, auto&& emit) { st->pattern.for_each_match(s, emit); }, segs);
            apply_behavior(segs, SplitBehavior::kMergedWithNext, false, base, next);
          } else if (!piece.empty()) {
            next.emplace_back(base, base + piece.size());
          }
          break;
        case Step::kWhitespace:
          matches_of(piece, [&](std::string_view s, auto&& emit) { st->pattern.for_each_match(s, emit); }, segs);
          apply_behavior(segs, SplitBehavior::kRemoved, true, base, next);
          break;
        case Step::kWhitespaceSplit:
          char_matches(piece, is_whitespace, segs);
          apply_behavior(segs, SplitBehavior::kRemoved, false, base, next);
          break;
        case Step::kBert: {
          char_matches(piece, is_whitespace, segs);
          std::vector<std::pair<size_t, size_t>> words;
          apply_behavior(segs, SplitBehavior::kRemoved, false, 0, words);
          for (auto [wb, we] : words) {
            char_matches(piece.substr(wb, we - wb), is_bert_punct, segs);
            apply_behavior(segs, SplitBehavior::kIsolated, false, base + wb, next);
          }
          break;
        }
        case Step::kPunctuation:
          char_matches(piece, is_bert_punct, segs);
          apply_behavior(segs, st->behavior, false, base, next);
          break;
      }
    }
    if (transforms) w.buf = std::move(nbuf);
    w.spans.swap(next);
  }
}

}  // namespace llmkit::tok
