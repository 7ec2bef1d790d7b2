// BPE as the `tokenizers` library runs it: split the word into characters (or bytes), map each to
// a token (byte fallback or a fused unknown token when missing), then repeatedly apply the
// lowest-ranked merge, leftmost first, using a min-heap over adjacent symbol pairs in a linked
// list: O(n log n) per word. A bounded cache of whole words makes repeated words one hash lookup.
#include <algorithm>
#include <cstdio>
#include <queue>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/models.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit::tok {

namespace {
constexpr size_t kCacheMaxEntries = 1u << 17;
constexpr size_t kCacheMaxWordBytes = 256;

// A byte-level token's text (GPT-2 mapped chars) as raw bytes; nullopt if a char is not mapped.
std::optional<std::string> unmap_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    uint32_t cp = utf8_decode(text, i, &len);
    int b = unicode_to_byte(cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    i += len;
  }
  return out;
}

std::string byte_token(int b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}
}  // namespace

Bpe::Bpe(const StrMap<int32_t>& vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options opt)
    : opt_(std::move(opt)) {
  vocab_.reserve(vocab.size());
  for (const auto& [text, id] : vocab) {
    if (opt_.byte_level) {
      if (auto raw = unmap_bytes(text)) {
        vocab_.emplace(std::move(*raw), id);
        continue;
      }
    }
    vocab_.emplace(text, id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = opt_.byte_level ? vocab_.find(std::string(1, static_cast<char>(b))) : vocab_.end();
    byte_id_[b] = it == vocab_.end() ? -1 : it->second;
    auto fb = vocab.find(byte_token(b));
    fallback_id_[b] = fb == vocab.end() ? -1 : fb->second;
  }
  merges_.reserve(merges.size());
  const std::string& prefix = opt_.continuing_subword_prefix;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = vocab.find(a), ib = vocab.find(b);
    LLMKIT_CHECK(ia != vocab.end() && ib != vocab.end(), kInvalidFile, "tokenizer merge #", r, " \"", a, " ", b,
                 "\" uses a token that is not in the vocabulary");
    std::string merged = a;
    merged += (!prefix.empty() && b.compare(0, prefix.size(), prefix) == 0) ? b.substr(prefix.size()) : b;
    auto in = vocab.find(merged);
    LLMKIT_CHECK(in != vocab.end(), kInvalidFile, "tokenizer merge #", r, " \"", a, " ", b, "\" makes \"", merged,
                 "\", which is not in the vocabulary");
    merges_.insert_or_assign(key(ia->second, ib->second), MergeRule{static_cast<int32_t>(r), in->second});
  }
}

std::vector<std::pair<std::string, std::string>> Bpe::merges_from_scores(const std::vector<std::string>& tokens,
                                                                        const std::vector<float>& scores,
                                                                        const std::vector<bool>& mergeable) {
  StrMap<int32_t> ids;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (mergeable[i]) ids.emplace(tokens[i], static_cast<int32_t>(i));
  struct M { float score; size_t left_chars, right_chars; int32_t lid, rid; size_t split; int32_t id; };
  std::vector<M> all;
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (!mergeable[t]) continue;
    const std::string& s = tokens[t];
    std::vector<M> local;
    size_t chars_left = 0, total_chars = 0;
    for (size_t i = 0; i < s.size(); i += utf8_len(static_cast<unsigned char>(s[i]))) ++total_chars;
    for (size_t i = utf8_len(static_cast<unsigned char>(s[0])); i < s.size();
         i += utf8_len(static_cast<unsigned char>(s[i]))) {
      ++chars_left;
      auto l = ids.find(std::string_view(s).substr(0, i)), r = ids.find(std::string_view(s).substr(i));
      if (l != ids.end() && r != ids.end())
        local.push_back({scores[t], chars_left, total_chars - chars_left, l->second, r->second, i, int32_t(t)});
    }
    std::sort(local.begin(), local.end(), [](const M& x, const M& y) {
      return x.lid != y.lid ? x.lid < y.lid : x.rid < y.rid;
    });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const M& x, const M& y) {
    if (x.score != y.score) return x.score > y.score;
    if (x.left_chars != y.left_chars) return x.left_chars > y.left_chars;
    return x.right_chars > y.right_chars;
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(all.size());
  for (const M& m : all) out.emplace_back(tokens[m.id].substr(0, m.split), tokens[m.id].substr(m.split));
  return out;
}

void Bpe::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (opt_.byte_level && word.size() == 1 && byte_id_[static_cast<unsigned char>(word[0])] >= 0) {
    out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (opt_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::unique_lock lock(cache_mu_, std::try_to_lock);
  bool use_cache = lock.owns_lock() && word.size() <= kCacheMaxWordBytes;
  if (use_cache) {
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), pool_.begin() + it->second.first, pool_.begin() + it->second.first + it->second.second);
      return;
    }
  }
  size_t start = out.size();
  merge(word, out);
  if (use_cache) {
    if (cache_.size() >= kCacheMaxEntries) {
      cache_.clear();
      pool_.clear();
    }
    cache_.emplace(std::string(word), std::pair<uint32_t, uint32_t>(uint32_t(pool_.size()), uint32_t(out.size() - start)));
    pool_.insert(pool_.end(), out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
  }
}

void Bpe::merge(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym { int32_t id, prev, next; uint32_t len; };
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }  // min-heap
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap_buf;
  syms.clear();
  auto add = [&](int32_t id, uint32_t len) {
    int32_t n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1, len});
    if (n > 0) syms[n - 1].next = n;
  };

  // 1. Characters -> symbols (the `tokenizers` rules for unknown characters, in its order).
  int32_t unk_id = -1;  // a pending (possibly fused) unknown symbol
  uint32_t unk_len = 0;
  std::string scratch;
  const bool affixes = !opt_.continuing_subword_prefix.empty() || !opt_.end_of_word_suffix.empty();
  for (size_t i = 0; i < word.size();) {
    size_t len = opt_.byte_level ? 1 : utf8_len(static_cast<unsigned char>(word[i]));
    if (i + len > word.size()) len = word.size() - i;
    std::string_view ch = word.substr(i, len);
    int32_t id = -1;
    if (opt_.byte_level && !affixes) {
      id = byte_id_[static_cast<unsigned char>(ch[0])];
    } else {
      std::string_view s = ch;
      if (affixes) {
        scratch.clear();
        if (i > 0) scratch += opt_.continuing_subword_prefix;
        scratch += ch;
        if (i + len == word.size()) scratch += opt_.end_of_word_suffix;
        s = scratch;
      }
      if (auto it = vocab_.find(s); it != vocab_.end()) id = it->second;
      if (id < 0 && opt_.byte_fallback) {
        bool all = true;
        for (char c : s) all &= fallback_id_[static_cast<unsigned char>(c)] >= 0;
        if (all) {
          for (char c : s) add(fallback_id_[static_cast<unsigned char>(c)], 1);
          i += len;
          continue;
        }
      }
    }
    if (id >= 0) {
      if (unk_id >= 0) { add(unk_id, unk_len); unk_id = -1; }
      add(id, static_cast<uint32_t>(len));
    } else if (opt_.unk) {
      if (unk_id >= 0 && opt_.fuse_unk) {
        unk_len += static_cast<uint32_t>(len);
      } else {
        if (unk_id >= 0) add(unk_id, unk_len);
        unk_id = *opt_.unk;
        unk_len = static_cast<uint32_t>(len);
      }
    }
    i += len;
  }
  if (unk_id >= 0) add(unk_id, unk_len);

  // 2. Merges: lowest rank first, leftmost among equal ranks.
  heap_buf.clear();
  std::priority_queue<Cand, std::vector<Cand>> heap(std::less<Cand>(), std::move(heap_buf));
  auto push_pair = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    auto it = merges_.find(key(syms[pos].id, syms[nx].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.new_id});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(syms.size()); ++p) push_pair(p);
  while (!heap.empty()) {
    Cand top = heap.top();
    heap.pop();
    Sym& s = syms[top.pos];
    if (s.len == 0 || s.next < 0) continue;
    Sym& r = syms[s.next];
    auto it = merges_.find(key(s.id, r.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    s.id = top.new_id;
    s.len += r.len;
    r.len = 0;
    s.next = r.next;
    if (s.next >= 0) syms[s.next].prev = top.pos;
    if (s.prev >= 0) push_pair(s.prev);
    push_pair(top.pos);
  }
  for (const Sym& s : syms)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace llmkit::tok
