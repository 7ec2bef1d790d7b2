// Supervised fine-tuning data: chat or instruction JSONL -> token rows with labels on the
// assistant's tokens only, packed into fixed-length rows with document boundaries.
//
// Each JSONL line is one example, either
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}   (OpenAI chat)
//   {"instruction": "...", "input": "...", "output": "..."}                         (Alpaca; input optional,
//                                                                                    "system" optional)
// An Alpaca record becomes [system?] user(instruction, + "\n\n" + input when given), assistant(output).
// The conversation is rendered with the model's chat template (as transformers'
// apply_chat_template). The text of each assistant turn is the part that render(messages[:i+1])
// adds to render(messages[:i], add_generation_prompt = true): the reply and the template's
// end-of-turn (so the model learns to stop). Those tokens are trained; every other token
// (system, user, the template's role headers) is context only. Segments are tokenized one by one
// (special tokens recognised, nothing added), so a label never straddles a boundary.
//
// Packing: examples are laid into rows of seq_len tokens in order, as many whole examples per row
// as fit (an example longer than a row is cut to the row and counted); the rest of a row is padding
// that is never trained on. Each token's position restarts at 0 with its example and attention
// stays inside the example (TokenBatch::doc_start): a packed row trains exactly like its examples
// run one at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmkit/train/data.h"
#include "llmkit/train/model.h"

namespace llmkit::train {

struct SftExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;  // 1 where ids[i] is an assistant token (a target of ids[i - 1])
};

struct SftData {
  std::vector<SftExample> train, val;
  int64_t lines = 0, truncated = 0, trained_tokens = 0, tokens = 0;
};

// Reads and tokenizes `jsonl` with the tokenizer and chat template of `model` (GGUF file or Hugging
// Face folder). Examples go to `val` when splitmix64(seed ^ line index) / 2^64 < val_fraction.
// Throws Error(kInvalidFile) naming the line of a bad record (not JSON, neither format, a
// message without role/content, no assistant turn), Error(kUnsupported) when the model has no
// chat template, Error(kNotFound) for a missing file.
SftData load_sft(const std::string& jsonl, const std::string& model, int64_t seq_len, double val_fraction,
                 uint64_t seed);

// One row per group of examples (in the given order), seq_len tokens each; pad_id fills the tail.
std::vector<TokenBatch> pack_sft(const std::vector<SftExample>& examples, int64_t seq_len, int32_t pad_id);

// Deals packed rows in batches of `batch`, in a seeded order per epoch (platform-independent, as
// BatchSampler), with the same resumable state.
class SftSampler {
 public:
  SftSampler(std::vector<TokenBatch> rows, int64_t batch, uint64_t seed, bool shuffle = true);
  int64_t rows_per_epoch() const { return order_.size(); }
  TokenBatch next();
  SamplerState state() const { return order_.state(); }
  void restore(const SamplerState& s) { order_.restore(s, "packed rows (same data and --seq-len?)"); }

 private:
  std::vector<TokenBatch> rows_;
  int64_t batch_;
  EpochOrder order_;
};

}  // namespace llmkit::train
