// Regex for pre-tokenizers: a thin wrapper over PCRE2 (UTF + UCP, JIT-compiled).
//
// Why PCRE2 and not a hand-written scanner: the pre-tokenizer patterns come from the model files
// (tokenizer.json Split patterns), so any pattern must work, and with PCRE2's JIT the whole encode
// already runs > 20x faster than the `tokenizers` library (bench_tokenizer, docs/BENCHMARKS.md),
// far past the 1.5x target, so a per-model hand-written scanner would not pay for its risk.
//
// The `tokenizers` library runs these patterns with Oniguruma. The one difference that matters
// for real patterns is \s: Oniguruma's Unicode \s is the White_Space property, which includes
// U+0085 (NEXT LINE), while PCRE2's UCP \s does not; Regex rewrites \s / \S to match Oniguruma.
// Crafted patterns cannot hang the process: matches run under a match limit and a depth limit,
// and hitting one throws llmkit::Error (a bounded run, RELIABILITY.md).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmkit::tok {

class Regex {
 public:
  // Compiles an Oniguruma-style pattern. Throws Error(kInvalidFile) naming the pattern on failure.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls fn(begin, end) for every non-overlapping match in text (valid UTF-8), left to right.
  // Empty matches are skipped. Throws Error(kInvalidArgument) when the match limit is hit.
  template <typename Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    size_t pos = 0, b = 0, e = 0;
    while (pos <= text.size() && next_match(text, pos, &b, &e)) {
      if (e > b) fn(b, e);
      pos = e > pos ? e : pos + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  // The pattern as written in the file.
  const std::string& pattern() const { return pattern_; }

 private:
  bool next_match(std::string_view text, size_t start, size_t* b, size_t* e) const;
  std::string pattern_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Rewrites \s and \S (outside and inside character classes) so PCRE2 matches Oniguruma's
// White_Space-based definition. Exposed for tests.
std::string onig_to_pcre2(std::string_view pattern);

// Escapes a literal string for use as a PCRE2 pattern.
std::string regex_escape(std::string_view literal);

}  // namespace llmkit::tok
