// WordPiece (greedy longest-match-first with a "##" continuation prefix, one [UNK] for a word
// that cannot be covered) and Unigram (Viterbi over every vocabulary piece that starts at each
// character; unknown characters cost min_score - 10 and consecutive unknowns fuse), both as the
// `tokenizers` library implements them, tie-breaking included.
#include <cstdio>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/models.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit::tok {

WordPiece::WordPiece(const StrMap<int32_t>& vocab, int32_t unk, std::string prefix, size_t max_chars)
    : vocab_(vocab), unk_(unk), prefix_(std::move(prefix)), max_chars_(max_chars) {}

void WordPiece::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  size_t n_chars = 0;
  for (size_t i = 0; i < word.size(); i += utf8_len(static_cast<unsigned char>(word[i]))) ++n_chars;
  if (n_chars > max_chars_) {
    out.push_back(unk_);
    return;
  }
  size_t mark = out.size(), start = 0;
  std::string buf;
  while (start < word.size()) {
    size_t end = word.size();
    int32_t found = -1;
    while (start < end) {
      std::string_view sub = word.substr(start, end - start);
      if (start > 0) {
        buf.assign(prefix_);
        buf.append(sub);
        sub = buf;
      }
      if (auto it = vocab_.find(sub); it != vocab_.end()) {
        found = it->second;
        break;
      }
      // Drop the last character.
      size_t k = end - 1;
      while (k > start && (static_cast<unsigned char>(word[k]) & 0xC0) == 0x80) --k;
      end = k;
    }
    if (found < 0) {
      out.resize(mark);
      out.push_back(unk_);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

Unigram::Unigram(std::vector<std::pair<std::string, double>> pieces, std::optional<int32_t> unk, bool byte_fallback)
    : pieces_(std::move(pieces)), unk_(unk), byte_fallback_(byte_fallback) {
  ids_.reserve(pieces_.size());
  bool first = true;
  for (size_t i = 0; i < pieces_.size(); ++i) {
    ids_.emplace(pieces_[i].first, static_cast<int32_t>(i));
    max_piece_bytes_ = std::max(max_piece_bytes_, pieces_[i].first.size());
    if (first || pieces_[i].second < min_score_) min_score_ = pieces_[i].second;
    first = false;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = ids_.find(std::string_view(name));
    fallback_id_[b] = it == ids_.end() ? -1 : it->second;
  }
}

void Unigram::encode_word(std::string_view s, std::vector<int32_t>& out) const {
  if (s.empty()) return;
  constexpr double kUnkPenalty = 10.0;
  const double unk_score = min_score_ - kUnkPenalty;
  struct Node { double score = 0; int64_t start = -1; int32_t id = -1; };
  std::vector<Node> best(s.size() + 1);
  for (size_t at = 0; at < s.size();) {
    const double here = best[at].score;
    const size_t mblen = std::min(utf8_len(static_cast<unsigned char>(s[at])), s.size() - at);
    bool single = false;
    // Every piece that starts here, shortest first (the order of a trie's common-prefix search).
    size_t max_len = std::min(max_piece_bytes_, s.size() - at);
    for (size_t len = mblen; len <= max_len;) {
      if (auto it = ids_.find(s.substr(at, len)); it != ids_.end()) {
        Node& t = best[at + len];
        double cand = here + pieces_[it->second].second;
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<int64_t>(at), it->second};
        if (len == mblen) single = true;
      }
      if (at + len >= s.size()) break;
      len += utf8_len(static_cast<unsigned char>(s[at + len]));
    }
    if (!single) {
      LLMKIT_CHECK(unk_.has_value(), kInvalidFile, "unigram tokenizer has no unk_id but the text has a character ",
                   "not in its vocabulary");
      Node& t = best[at + mblen];
      double cand = here + unk_score;
      if (t.start < 0 || cand > t.score) t = {cand, static_cast<int64_t>(at), *unk_};
    }
    at += mblen;
  }
  // Backtrack; consecutive unknown pieces fuse into one.
  std::vector<std::pair<size_t, size_t>> spans;  // reversed
  std::vector<bool> is_unk;
  for (size_t end = s.size(); end > 0;) {
    const Node& n = best[end];
    size_t start = static_cast<size_t>(n.start);
    bool u = unk_ && n.id == *unk_;
    if (u && !is_unk.empty() && is_unk.back()) {
      spans.back().first = start;
    } else {
      spans.emplace_back(start, end);
      is_unk.push_back(u);
    }
    end = start;
  }
  for (size_t k = spans.size(); k-- > 0;) {
    std::string_view piece = s.substr(spans[k].first, spans[k].second - spans[k].first);
    if (auto it = ids_.find(piece); it != ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all &= fallback_id_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : piece) out.push_back(fallback_id_[static_cast<unsigned char>(c)]);
        continue;
      }
    }
    out.push_back(*unk_);
  }
}

}  // namespace llmkit::tok
