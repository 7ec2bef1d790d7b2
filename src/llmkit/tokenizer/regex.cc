// PCRE2 wrapper: compile with UTF|UCP, JIT when available, per-thread match data, bounded runs.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "llmkit/tokenizer/regex.h"

#include <pcre2.h>

#include "llmkit/base/check.h"

namespace llmkit::tok {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  pcre2_match_context* mctx = nullptr;
  bool jit = false;
};

std::string onig_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S') {
        out += in_class ? "\\S" : "[^\\s\\x{85}]";  // inside a class \S keeps PCRE2's meaning
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member.
      if (i + 1 < p.size() && p[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < p.size() && p[i + 1] == ']') { out += ']'; ++i; }
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

std::string regex_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  std::string translated = onig_to_pcre2(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Error(ErrorCode::kInvalidFile,
                str_cat("tokenizer regex /", pattern, "/ does not compile at offset ", off, ": ",
                        reinterpret_cast<const char*>(msg)),
                "the pre-tokenizer pattern must be a valid Oniguruma/PCRE regular expression");
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
  impl_->mctx = pcre2_match_context_create(nullptr);
  // Bounded runs for crafted patterns (catastrophic backtracking): far above what real
  // pre-tokenizer patterns need on any input piece.
  pcre2_set_match_limit(impl_->mctx, 10'000'000);
  pcre2_set_depth_limit(impl_->mctx, 100'000);
}

Regex::~Regex() {
  if (impl_) {
    pcre2_match_context_free(impl_->mctx);
    pcre2_code_free(impl_->code);
  }
}

namespace {
// One match-data block per thread, grown to the largest pattern seen (ovector of 1 pair suffices
// for matching; capture groups in a pattern only need more room, never change the match).
struct ThreadMatchData {
  pcre2_match_data* md = pcre2_match_data_create(32, nullptr);
  ~ThreadMatchData() { pcre2_match_data_free(md); }
};
}  // namespace

bool Regex::next_match(std::string_view text, size_t start, size_t* b, size_t* e) const {
  thread_local ThreadMatchData tmd;
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, tmd.md, impl_->mctx)
                      : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, tmd.md, impl_->mctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0 && rc != 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw Error(ErrorCode::kInvalidArgument,
                str_cat("tokenizer regex /", pattern_, "/ gave up on the input: ", reinterpret_cast<const char*>(msg)),
                "the pattern backtracks too much on this text; fix the tokenizer's pre-tokenizer pattern");
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tmd.md);
  *b = ov[0];
  *e = ov[1];
  return true;
}

}  // namespace llmkit::tok
