// Token shards: prepare_data (include/llmkit/data.h) and the training loader (train/data.h).
#include "llmkit/train/data.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unistd.h>

#include "llmkit/base/check.h"
#include "llmkit/data.h"
#include "llmkit/io/atomic_write.h"
#include "llmkit/tokenizer.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kFormat = "llmkit-tokens-v1";

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// a * b = hi * 2^64 + lo, from 32-bit halves (portable: no __int128).
void mul128(uint64_t a, uint64_t b, uint64_t* hi, uint64_t* lo) {
  const uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
  const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
  *lo = (mid << 32) | (p00 & 0xffffffffu);
  *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

std::string shard_name(const std::string& split, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s-%05d.bin", split.c_str(), i);
  return buf;
}

// One split's shard writer: tokens go straight to SHARD.tmp through a 1 MiB buffer; a full shard
// (and the last one) is fsynced and renamed to its name, so memory stays O(1) whatever the corpus.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string split, int64_t shard_tokens, int token_bytes)
      : dir_(std::move(dir)), split_(std::move(split)), cap_(shard_tokens), bytes_(token_bytes) {}
  ~ShardWriter() {
    if (f_) {  // abandoned by an error: drop the partial shard
      std::fclose(f_);
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  void add(const std::vector<int32_t>& toks) {
    for (int32_t t : toks) {
      if (!f_) open_next();
      if (bytes_ == 2) {
        const uint16_t v = static_cast<uint16_t>(t);
        buf_.append(reinterpret_cast<const char*>(&v), 2);
      } else {
        const uint32_t v = static_cast<uint32_t>(t);
        buf_.append(reinterpret_cast<const char*>(&v), 4);
      }
      ++in_shard_;
      if (buf_.size() >= (size_t{1} << 20)) drain();
      if (in_shard_ == cap_) close_shard();
    }
  }
  void finish() {
    if (f_) close_shard();
    fsync_dir(dir_);
  }
  const std::vector<std::pair<std::string, int64_t>>& shards() const { return shards_; }
  int64_t tokens() const { return total_; }

 private:
  static void fsync_dir(const std::string& d) { io::fsync_dir(d); }
  void open_next() {
    name_ = shard_name(split_, static_cast<int>(shards_.size()));
    tmp_ = (fs::path(dir_) / (name_ + ".tmp")).string();
    f_ = std::fopen(tmp_.c_str(), "wb");
    LLMKIT_CHECK(f_ != nullptr, kIo, "cannot create '", tmp_, "': ", std::strerror(errno));
    in_shard_ = 0;
  }
  void drain() {
    io::write_bytes(f_, buf_.data(), buf_.size(), tmp_);
    buf_.clear();
  }
  void close_shard() {
    drain();
    const bool ok = std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
    std::fclose(f_);
    f_ = nullptr;
    LLMKIT_CHECK(ok, kIo, "writing '", tmp_, "' failed: ", std::strerror(errno), " (disk full?)");
    std::error_code ec;
    fs::rename(tmp_, fs::path(dir_) / name_, ec);
    LLMKIT_CHECK(!ec, kIo, "cannot rename '", tmp_, "': ", ec.message());
    shards_.emplace_back(name_, in_shard_);
    total_ += in_shard_;
  }
  std::string dir_, split_, name_, tmp_;
  int64_t cap_;
  int bytes_;
  std::FILE* f_ = nullptr;
  int64_t in_shard_ = 0;
  std::string buf_;
  std::vector<std::pair<std::string, int64_t>> shards_;
  int64_t total_ = 0;
};

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

DataPrepareResult prepare_data(const DataPrepareOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  LLMKIT_CHECK(!opt.input.empty(), kInvalidArgument, "no input file given (--input)");
  LLMKIT_CHECK(!opt.out_dir.empty(), kInvalidArgument, "no output folder given (--out)");
  LLMKIT_CHECK(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0, kInvalidArgument, "--val-fraction ", opt.val_fraction,
               " must be in [0, 1)");
  LLMKIT_CHECK(opt.shard_tokens >= 1024 && opt.shard_tokens <= (int64_t{1} << 32), kInvalidArgument, "--shard-tokens ",
               opt.shard_tokens, " must be in [1024, 2^32]");
  LLMKIT_CHECK(!opt.field.empty(), kInvalidArgument, "--field must name the JSON field that holds each document's text");
  std::error_code ec;
  LLMKIT_CHECK(fs::is_regular_file(opt.input, ec), kNotFound, "input '", opt.input, "' is not a readable file");
  const uint64_t size = fs::file_size(opt.input, ec);
  std::ifstream in(opt.input, std::ios::binary);
  LLMKIT_CHECK(in.good(), kIo, "cannot open '", opt.input, "' for reading");
  const Tokenizer tok = Tokenizer::load(opt.tokenizer);
  std::optional<int32_t> eos = tok.eos_id();
  if (!opt.separator.empty()) {
    if (opt.separator.find_first_not_of("0123456789") == std::string::npos && opt.separator.size() <= 9) {
      eos = std::stoi(opt.separator);
      LLMKIT_CHECK(*eos < tok.n_vocab(), kInvalidArgument, "--separator id ", *eos, " is outside the vocabulary (",
                   tok.n_vocab(), " tokens)");
    } else {
      const std::vector<int32_t> ids = tok.encode(opt.separator, false);
      LLMKIT_CHECK(ids.size() == 1, kInvalidArgument, "--separator '", opt.separator, "' is ", ids.size(),
                   " tokens, not one; give a special token of this vocabulary or a token id");
      eos = ids[0];
    }
  }
  LLMKIT_CHECK(eos.has_value(), kInvalidArgument, "tokenizer '", opt.tokenizer,
               "' has no end-of-sequence token to separate documents with; pass --separator (a token or an id)");
  fs::create_directories(opt.out_dir, ec);
  LLMKIT_CHECK(fs::is_directory(opt.out_dir), kIo, "cannot create the output folder '", opt.out_dir, "': ", ec.message());
  // An old index must not describe the shards this run (over)writes.
  fs::remove(fs::path(opt.out_dir) / "index.json", ec);

  DataPrepareResult r;
  r.token_bytes = tok.n_vocab() <= 65536 ? 2 : 4;
  r.separator = *eos;
  r.input_bytes = size;
  ShardWriter train(opt.out_dir, "train", opt.shard_tokens, r.token_bytes);
  ShardWriter val(opt.out_dir, "val", opt.shard_tokens, r.token_bytes);
  const bool jsonl = ends_with(opt.input, ".jsonl") || ends_with(opt.input, ".ndjson");

  // A document arrives whole (JSONL) or in pieces of at most kPiece bytes cut at line ends (text
  // with no blank line for megabytes), so memory stays bounded: the pieces are tokenized one by
  // one, BOS (if the tokenizer adds one) only before the first, the separator after the last.
  constexpr size_t kPiece = size_t{1} << 20;
  bool in_doc = false, doc_val = false;
  auto piece = [&](const std::string& text, bool last) {
    if (!in_doc) {
      doc_val = train::in_val_split(opt.seed, static_cast<uint64_t>(r.documents), opt.val_fraction);
      ++r.documents;
      if (doc_val) ++r.val_documents;
    }
    std::vector<int32_t> ids = tok.encode(text, !in_doc);
    if (last && (ids.empty() || ids.back() != *eos)) ids.push_back(*eos);
    (doc_val ? val : train).add(ids);
    in_doc = !last;
  };
  auto emit = [&](const std::string& doc) {
    bool blank = true;
    for (char c : doc)
      if (!std::isspace(static_cast<unsigned char>(c))) blank = false;
    if (blank && !in_doc) {
      ++r.skipped_empty;
      return;
    }
    piece(doc, true);
  };

  uint64_t read = 0, next_report = 0;
  int64_t line_no = 0;
  std::string line, doc;
  while (std::getline(in, line)) {
    ++line_no;
    read += line.size() + 1;
    if (opt.progress && read >= next_report) {
      opt.progress(std::min(read, size), size);
      next_report = read + (uint64_t{4} << 20);
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (jsonl) {
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      LLMKIT_CHECK(!j.is_discarded(), kInvalidFile, opt.input, " line ", line_no, " is not valid JSON");
      LLMKIT_CHECK(j.is_object(), kInvalidFile, opt.input, " line ", line_no, " is not a JSON object");
      auto it = j.find(opt.field);
      LLMKIT_CHECK(it != j.end() && it->is_string(), kInvalidFile, opt.input, " line ", line_no, " has no string field '",
                   opt.field, "' (choose another with --field)");
      emit(it->get<std::string>());
    } else if (line.find_first_not_of(" \t") == std::string::npos) {
      if (!doc.empty()) emit(doc);
      doc.clear();
    } else {
      if (!doc.empty()) doc += '\n';
      doc += line;
      if (doc.size() >= kPiece) {
        piece(doc + '\n', false);
        doc.clear();
      }
    }
  }
  LLMKIT_CHECK(!in.bad(), kIo, "reading '", opt.input, "' failed after line ", line_no);
  if (!doc.empty() || in_doc) emit(doc);
  train.finish();
  val.finish();
  LLMKIT_CHECK(r.documents > 0, kInvalidArgument, "'", opt.input, "' holds no documents (",
               jsonl ? "no JSONL records" : "only blank lines", ")");
  if (opt.progress) opt.progress(size, size);

  json idx;
  idx["format"] = kFormat;
  idx["tokenizer"] = fs::path(opt.tokenizer).filename().string();
  idx["n_vocab"] = tok.n_vocab();
  idx["token_bytes"] = r.token_bytes;
  idx["separator"] = r.separator;
  idx["source"] = fs::path(opt.input).filename().string();
  idx["source_bytes"] = size;
  idx["seed"] = opt.seed;
  idx["val_fraction"] = opt.val_fraction;
  idx["documents"] = r.documents;
  idx["val_documents"] = r.val_documents;
  for (const auto* w : {&train, &val}) {
    json arr = json::array();
    for (const auto& [name, n] : w->shards()) arr.push_back({{"file", name}, {"tokens", n}});
    idx[w == &train ? "train" : "val"] = arr;
  }
  io::write_text_atomically((fs::path(opt.out_dir) / "index.json").string(), idx.dump(2) + "\n");
  r.train_tokens = train.tokens();
  r.val_tokens = val.tokens();
  r.train_shards = static_cast<int>(train.shards().size());
  r.val_shards = static_cast<int>(val.shards().size());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace train {

TokenData TokenData::open(const std::string& dir, const std::string& split) {
  LLMKIT_CHECK(split == "train" || split == "val", kInvalidArgument, "data split '", split, "' must be train or val");
  const fs::path ipath = fs::path(dir) / "index.json";
  std::ifstream in(ipath);
  LLMKIT_CHECK(in.good(), kNotFound, "'", dir, "' has no index.json: not a prepared data folder, or `llmkit data prepare` ",
               "did not finish there; run it (again)");
  json idx = json::parse(in, nullptr, false);
  LLMKIT_CHECK(!idx.is_discarded() && idx.is_object() && idx.value("format", "") == kFormat, kInvalidFile, ipath.string(),
               " is not an index of format ", kFormat);
  TokenData d;
  d.token_bytes_ = idx.value("token_bytes", 0);
  LLMKIT_CHECK(d.token_bytes_ == 2 || d.token_bytes_ == 4, kInvalidFile, ipath.string(), ": token_bytes must be 2 or 4");
  d.n_vocab_ = idx.value("n_vocab", int64_t{0});
  d.separator_ = idx.value("separator", -1);
  LLMKIT_CHECK(idx.contains(split) && idx[split].is_array(), kInvalidFile, ipath.string(), " lists no '", split, "' shards");
  for (const auto& s : idx[split]) {
    Shard sh;
    const std::string file = s.value("file", "");
    LLMKIT_CHECK(!file.empty() && file.find('/') == std::string::npos && file.find("..") == std::string::npos, kInvalidFile,
                 ipath.string(), ": bad shard name '", file, "'");
    sh.n = s.value("tokens", int64_t{-1});
    sh.file = MappedFile::open((fs::path(dir) / file).string());
    LLMKIT_CHECK(sh.n >= 0 && sh.file->size() == static_cast<size_t>(sh.n) * static_cast<size_t>(d.token_bytes_), kInvalidFile,
                 "shard ", file, " holds ", sh.file->size(), " bytes; the index says ", sh.n, " tokens of ", d.token_bytes_,
                 " bytes (a truncated or replaced shard: prepare the data again)");
    sh.first = d.n_tokens_;
    d.n_tokens_ += sh.n;
    if (sh.n > 0) d.shards_.push_back(std::move(sh));
  }
  return d;
}

void TokenData::read(int64_t begin, int64_t n, int32_t* out) const {
  LLMKIT_CHECK(begin >= 0 && n >= 0 && begin + n <= n_tokens_, kInvalidArgument, "tokens [", begin, ", ", begin + n,
               ") are outside the split's ", n_tokens_);
  // The shard holding `begin`: the last one starting at or before it.
  auto it = std::upper_bound(shards_.begin(), shards_.end(), begin, [](int64_t v, const Shard& s) { return v < s.first; });
  size_t si = static_cast<size_t>(std::distance(shards_.begin(), it)) - 1;
  int64_t pos = begin;
  while (n > 0) {
    const Shard& s = shards_[si];
    const int64_t off = pos - s.first, take = std::min(n, s.n - off);
    const uint8_t* p = s.file->data() + off * token_bytes_;
    if (token_bytes_ == 2) {
      for (int64_t i = 0; i < take; ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        out[i] = v;
      }
    } else {
      for (int64_t i = 0; i < take; ++i) {
        uint32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = static_cast<int32_t>(v);
      }
    }
    out += take;
    pos += take;
    n -= take;
    ++si;
  }
}

// Checked before the members are built: the window count needs a valid seq_len and enough tokens.
static int64_t windows_of(const TokenData& data, int64_t seq_len, int64_t batch) {
  LLMKIT_CHECK(seq_len >= 1 && batch >= 1, kInvalidArgument, "batch ", batch, " and sequence length ", seq_len,
               " must be >= 1");
  LLMKIT_CHECK(data.n_tokens() >= seq_len + 1, kInvalidArgument, "the data holds ", data.n_tokens(),
               " tokens, fewer than one window of sequence length ", seq_len, " + 1; use a shorter --seq-len or more data");
  return (data.n_tokens() - 1) / seq_len;
}

BatchSampler::BatchSampler(const TokenData& data, int64_t seq_len, int64_t batch, uint64_t seed, bool shuffle)
    : data_(data), seq_len_(seq_len), batch_(batch), order_(windows_of(data, seq_len, batch), seed, shuffle) {}

EpochOrder::EpochOrder(int64_t n, uint64_t seed, bool shuffle) : n_(n), shuffle_(shuffle) { state_.seed = seed; }

int64_t EpochOrder::next() {
  if (state_.cursor == n_) {
    ++state_.epoch;
    state_.cursor = 0;
  }
  int64_t i = state_.cursor++;
  if (!shuffle_) return i;
  if (order_epoch_ != state_.epoch) {
    order_.resize(static_cast<size_t>(n_));
    for (int64_t k = 0; k < n_; ++k) order_[static_cast<size_t>(k)] = k;
    uint64_t r = state_.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(state_.epoch) + 1;
    for (int64_t k = n_ - 1; k > 0; --k) {
      // Unbiased draw in [0, k] (Lemire 2019): the high half of a 64 x 64 -> 128-bit product.
      const uint64_t bound = static_cast<uint64_t>(k) + 1;
      uint64_t hi, lo;
      mul128(splitmix64(r), bound, &hi, &lo);
      if (lo < bound) {
        const uint64_t thresh = (0 - bound) % bound;
        while (lo < thresh) mul128(splitmix64(r), bound, &hi, &lo);
      }
      std::swap(order_[static_cast<size_t>(k)], order_[static_cast<size_t>(hi)]);
    }
    order_epoch_ = state_.epoch;
  }
  return order_[static_cast<size_t>(i)];
}

void EpochOrder::restore(const SamplerState& s, const char* what) {
  LLMKIT_CHECK(s.epoch >= 0 && s.cursor >= 0 && s.cursor <= n_, kInvalidArgument, "sampler state (epoch ", s.epoch,
               ", cursor ", s.cursor, ") does not fit this data (", n_, " ", what, " per epoch): resumed with other data "
               "or another sequence length?");
  state_ = s;
  order_epoch_ = -1;
}

bool in_val_split(uint64_t seed, uint64_t index, double val_fraction) {
  uint64_t s = seed ^ index;
  return static_cast<double>(splitmix64(s) >> 11) * 0x1.0p-53 < val_fraction;
}

void BatchSampler::next(int32_t* tokens) {
  for (int64_t b = 0; b < batch_; ++b) data_.read(order_.next() * seq_len_, seq_len_ + 1, tokens + b * (seq_len_ + 1));
}


}  // namespace train
}  // namespace llmkit
