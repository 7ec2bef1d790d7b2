// The encode and decode pipelines (added tokens -> normalizer -> pre-tokenizer -> model ->
// post-processor; ids -> decoder), the public llmkit::Tokenizer API and the streaming decoder.
#include "llmkit/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmkit/base/check.h"
#include "llmkit/tokenizer/tokenizer_impl.h"
#include "llmkit/tokenizer/unicode.h"

namespace llmkit {
namespace tok {

void AddedMatcher::build(const std::vector<AddedToken>& tokens, const std::vector<std::string>& texts) {
  tokens_ = &tokens;
  texts_.clear();
  index_.clear();
  for (auto& v : by_first_) v.clear();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (texts[i].empty()) continue;
    int32_t k = static_cast<int32_t>(texts_.size());
    texts_.push_back(texts[i]);
    index_.push_back(static_cast<int32_t>(i));
    by_first_[static_cast<unsigned char>(texts[i][0])].push_back(k);
  }
  for (auto& v : by_first_)
    std::stable_sort(v.begin(), v.end(), [&](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });
}

namespace {
bool is_word_char(uint32_t c) { return c == '_' || is_alphabetic(c) || is_numeric(c); }
size_t prev_char_start(std::string_view s, size_t i) {
  size_t k = i - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  return k;
}
}  // namespace

void AddedMatcher::split(std::string_view s, std::vector<Piece>& out) const {
  size_t i = 0, seg = 0;
  while (i < s.size()) {
    const auto& cands = by_first_[static_cast<unsigned char>(s[i])];
    int32_t found = -1;
    for (int32_t k : cands) {
      const std::string& t = texts_[k];
      if (s.compare(i, t.size(), t) != 0) continue;
      const AddedToken& tok = (*tokens_)[index_[k]];
      if (tok.single_word) {
        size_t len = 0;
        if (i > 0 && is_word_char(utf8_decode(s, prev_char_start(s, i), &len))) continue;
        if (i + t.size() < s.size() && is_word_char(utf8_decode(s, i + t.size(), &len))) continue;
      }
      found = k;
      break;
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = (*tokens_)[index_[found]];
    size_t b = i, e = i + texts_[found].size();
    if (tok.lstrip) {
      while (b > seg) {
        size_t k = prev_char_start(s, b), len = 0;
        if (!is_whitespace(utf8_decode(s, k, &len))) break;
        b = k;
      }
    }
    if (tok.rstrip) {
      while (e < s.size()) {
        size_t len = 0;
        if (!is_whitespace(utf8_decode(s, e, &len))) break;
        e += len;
      }
    }
    if (b > seg) out.push_back({seg, b, -1});
    out.push_back({b, e, index_[found]});
    seg = i = e;
  }
  if (seg < s.size()) out.push_back({seg, s.size(), -1});
}

void TokenizerImpl::finalize() {
  const size_t n = pieces.size();
  LLMKIT_CHECK(n > 0, kInvalidFile, name, ": the vocabulary is empty");
  LLMKIT_CHECK(static_cast<int64_t>(n) <= kMaxVocab, kInvalidFile, name, ": ", n, " tokens exceed the limit ", kMaxVocab);
  for (size_t id = 0; id < n; ++id)
    LLMKIT_CHECK(!pieces[id].empty(), kInvalidFile, name, ": id ", id, " has no token (n_vocab ", n,
                 "); ids must run from 0 to n_vocab - 1", "; the vocabulary is corrupt or has a duplicate token");
  auto check_id = [&](int64_t id, const char* what) {
    LLMKIT_CHECK(id >= 0 && static_cast<size_t>(id) < n, kInvalidFile, name, ": ", what, " id ", id,
                 " is outside the vocabulary (n_vocab ", n, ")");
  };
  for (int32_t id : prefix) check_id(id, "post-processor token");
  for (int32_t id : suffix) check_id(id, "post-processor token");
  if (bos) check_id(*bos, "BOS");
  if (eos) check_id(*eos, "EOS");
  special.assign(n, 0);
  std::vector<std::string> raw_texts, norm_texts;
  for (const AddedToken& a : added) {
    check_id(a.id, "added token");
    special[a.id] = a.special;
    raw_texts.push_back(a.normalized ? std::string() : a.content);
    norm_texts.push_back(!a.normalized ? std::string() : normalizer.empty() ? a.content : normalizer.apply(a.content));
  }
  raw_matcher.build(added, raw_texts);
  normalized_matcher.build(added, norm_texts);
}

void TokenizerImpl::encode_words(std::string_view text, bool at_origin, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  thread_local Words w;
  w.buf.assign(text);
  w.spans.assign(1, {0, text.size()});
  pre.apply(w, at_origin);
  for (auto [b, e] : w.spans) {
    std::string_view word(w.buf.data() + b, e - b);
    if (bpe) bpe->encode_word(word, out);
    else if (wordpiece) wordpiece->encode_word(word, out);
    else unigram->encode_word(word, out);
  }
}

void TokenizerImpl::encode_segment(std::string_view text, bool at_origin, std::vector<int32_t>& out) const {
  if (normalizer.empty() && normalized_matcher.empty()) {
    encode_words(text, at_origin, out);
    return;
  }
  std::string n = normalizer.empty() ? std::string(text) : normalizer.apply(text);
  if (normalized_matcher.empty()) {
    encode_words(n, at_origin, out);
    return;
  }
  std::vector<AddedMatcher::Piece> parts;
  normalized_matcher.split(n, parts);
  for (const auto& p : parts) {
    if (p.token >= 0) out.push_back(added[p.token].id);
    else encode_words(std::string_view(n).substr(p.begin, p.end - p.begin), at_origin && p.begin == 0, out);
  }
}

std::vector<int32_t> TokenizerImpl::encode(std::string_view text, bool add_special) const {
  std::string clean;
  if (!utf8_valid(text)) {
    clean = utf8_sanitize(text);
    text = clean;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out = prefix;
  if (raw_matcher.empty()) {
    encode_segment(text, true, out);
  } else {
    std::vector<AddedMatcher::Piece> parts;
    raw_matcher.split(text, parts);
    for (const auto& p : parts) {
      if (p.token >= 0) out.push_back(added[p.token].id);
      else encode_segment(text.substr(p.begin, p.end - p.begin), p.begin == 0, out);
    }
  }
  if (add_special) out.insert(out.end(), suffix.begin(), suffix.end());
  return out;
}

std::string TokenizerImpl::decode(std::span<const int32_t> ids, bool skip_special, bool raw) const {
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= pieces.size()) continue;
    if (skip_special && special[id]) continue;
    toks.push_back(pieces[id]);
  }
  if (join_with_space) {
    std::string s;
    for (size_t i = 0; i < toks.size(); ++i) s += (i ? " " : "") + toks[i];
    return s;
  }
  return decoder.decode(std::move(toks), raw);
}

}  // namespace tok

namespace {
std::string read_file(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  LLMKIT_CHECK(!ec, kNotFound, "cannot read tokenizer file ", path, ": ", ec.message());
  LLMKIT_CHECK(size <= (uint64_t{1} << 30), kInvalidFile, "tokenizer file ", path, " is ", size,
               " bytes; tokenizer.json files are at most a few tens of MB");
  std::ifstream in(path, std::ios::binary);
  LLMKIT_CHECK(in.good(), kIo, "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  LLMKIT_CHECK(fs::exists(path, ec), kNotFound, "tokenizer source ", path, " does not exist",
               "; pass a .gguf file, a tokenizer.json, or a Hugging Face folder containing tokenizer.json");
  if (fs::is_directory(path, ec)) {
    fs::path json = fs::path(path) / "tokenizer.json", cfg = fs::path(path) / "tokenizer_config.json";
    LLMKIT_CHECK(fs::exists(json, ec), kNotFound, "folder ", path, " has no tokenizer.json",
                 "; llmkit reads the fast-tokenizer file (tokenizer.json) of Hugging Face folders");
    std::string cfg_text = fs::is_regular_file(cfg, ec) ? read_file(cfg.string()) : std::string();
    return Tokenizer(tok::load_tokenizer_json(read_file(json.string()), json.string(), cfg_text));
  }
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(magic, 4);
  }
  if (std::string_view(magic, 4) == "GGUF") return Tokenizer(tok::load_tokenizer_gguf(path));
  return from_json(read_file(path), path);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& name) {
  return Tokenizer(tok::load_tokenizer_json(json_text, name));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  return impl_->encode(text, add_special);
}
std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return impl_->decode(ids, skip_special, false);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab()) return "";
  const int32_t one[1] = {id};
  return impl_->decode(one, false, true);
}
int64_t Tokenizer::n_vocab() const { return static_cast<int64_t>(impl_->pieces.size()); }
const std::string& Tokenizer::piece(int32_t id) const {
  static const std::string kEmpty;
  return id >= 0 && static_cast<size_t>(id) < impl_->pieces.size() ? impl_->pieces[id] : kEmpty;
}
std::optional<int32_t> Tokenizer::token_to_id(std::string_view p) const {
  auto it = impl_->vocab.find(p);
  return it == impl_->vocab.end() ? std::nullopt : std::optional<int32_t>(it->second);
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[id];
}
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }
std::string Tokenizer::kind() const { return impl_->kind; }

Tokenizer::StreamDecoder Tokenizer::stream_decoder(bool skip_special) const { return StreamDecoder(impl_, skip_special); }

Tokenizer::StreamDecoder::StreamDecoder(std::shared_ptr<const tok::TokenizerImpl> impl, bool skip_special)
    : impl_(std::move(impl)), skip_special_(skip_special) {}

// ids_ is a window of recent ids; n_context_ bytes of decode(ids_) (kept in context_text_'s size)
// are already out. A window keeps decoders that look at neighbours (WordPiece spacing, the first
// token's stripped space) consistent, and re-basing it keeps each push O(window).
std::string Tokenizer::StreamDecoder::push(int32_t id) {
  constexpr size_t kWindow = 4;
  ids_.push_back(id);
  std::string text = impl_->decode(ids_, skip_special_, true);
  size_t done = std::min(n_context_, text.size());
  size_t complete = tok::utf8_complete_prefix(text);
  std::string out;
  if (complete > done) {
    out = text.substr(done, complete - done);
    n_context_ = complete;
  }
  if (complete == text.size() && ids_.size() > 2 * kWindow) {
    ids_.erase(ids_.begin(), ids_.end() - kWindow);
    n_context_ = impl_->decode(ids_, skip_special_, true).size();
  }
  // Anything that is not valid UTF-8 even though complete (stray bytes) is replaced, as decode() does.
  return tok::utf8_valid(out) ? out : tok::utf8_sanitize(out);
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string text = impl_->decode(ids_, skip_special_, true);
  std::string rest = n_context_ < text.size() ? text.substr(n_context_) : std::string();
  ids_.clear();
  n_context_ = 0;
  return tok::utf8_sanitize(rest);
}

}  // namespace llmkit
