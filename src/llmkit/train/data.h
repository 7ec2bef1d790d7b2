// The training loader over a folder written by prepare_data (include/llmkit/data.h).
//
// TokenData maps one split's shards (nothing is read into memory up front; the OS pages tokens
// in as batches touch them). BatchSampler cuts that token stream into windows of seq_len + 1
// tokens starting every seq_len tokens (window w covers tokens [w T, w T + T + 1): inputs are its
// first T, targets its last T, as nanoGPT/llm.c do), and deals them out in an order that is a
// permutation of all windows per epoch, fixed by (seed, epoch): Fisher-Yates driven by splitmix64
// with unbiased bounded draws (Lemire), so the order is the same on every platform and compiler.
// Its state (seed, epoch, cursor) is three integers: a checkpoint stores it and restore() resumes
// with exactly the batches the uninterrupted run would have drawn.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/base/mapped_file.h"

namespace llmkit::train {

class TokenData {
 public:
  // dir: a folder with index.json; split: "train" or "val". Throws Error(kNotFound) without
  // index.json (an incomplete or foreign folder), Error(kInvalidFile) naming a shard whose size
  // disagrees with the index.
  static TokenData open(const std::string& dir, const std::string& split = "train");
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_vocab() const { return n_vocab_; }
  int32_t separator() const { return separator_; }
  int token_bytes() const { return token_bytes_; }
  // out[0 .. n) = tokens [begin, begin + n) of the split (may span shards); checked bounds.
  void read(int64_t begin, int64_t n, int32_t* out) const;

 private:
  struct Shard {
    std::shared_ptr<MappedFile> file;
    int64_t first = 0, n = 0;  // global index of its first token, its token count
  };
  std::vector<Shard> shards_;
  int64_t n_tokens_ = 0, n_vocab_ = 0;
  int32_t separator_ = -1;
  int token_bytes_ = 2;
};

// Whether item `index` goes to the validation split: splitmix64(seed ^ index) / 2^64 < val_fraction.
bool in_val_split(uint64_t seed, uint64_t index, double val_fraction);

struct SamplerState {
  uint64_t seed = 0;
  int64_t epoch = 0;
  int64_t cursor = 0;  // windows of this epoch already dealt
};

// Deals the items 0..n-1 once per epoch, each epoch in its own seeded order (Fisher-Yates over
// splitmix64 with unbiased bounded draws: the same on every platform) or in order, and moves on
// to the next epoch when one runs out. Its state is a SamplerState, so a run resumes exactly.
class EpochOrder {
 public:
  EpochOrder(int64_t n, uint64_t seed, bool shuffle);
  int64_t size() const { return n_; }
  int64_t next();
  const SamplerState& state() const { return state_; }
  // Throws Error(kInvalidArgument) naming `what` (e.g. "windows") when s does not fit n items.
  void restore(const SamplerState& s, const char* what);

 private:
  int64_t n_;
  bool shuffle_;
  SamplerState state_;
  std::vector<int64_t> order_;  // this epoch's order (shuffle only)
  int64_t order_epoch_ = -1;
};

class BatchSampler {
 public:
  // Throws Error(kInvalidArgument) when the split holds fewer than seq_len + 1 tokens (not one
  // window) or batch / seq_len are not positive. shuffle = false deals windows in order (validation).
  BatchSampler(const TokenData& data, int64_t seq_len, int64_t batch, uint64_t seed, bool shuffle = true);
  int64_t windows_per_epoch() const { return order_.size(); }
  // Fills tokens [batch, seq_len + 1], one window per row; an epoch that runs out mid-batch
  // continues with the next epoch's order.
  void next(int32_t* tokens);
  SamplerState state() const { return order_.state(); }
  // Continues from a saved state (same data, seq_len and shuffle flag; batch may differ).
  void restore(const SamplerState& s) { order_.restore(s, "windows"); }

 private:
  const TokenData& data_;
  int64_t seq_len_, batch_;
  EpochOrder order_;
};

}  // namespace llmkit::train
