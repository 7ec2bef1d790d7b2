// Public API: training data. `llmkit data prepare` streams a text or JSONL corpus (any size: it
// holds one document and one shard buffer at a time, never the file) through a model's tokenizer
// into binary token shards plus an index; the training loader (src/llmkit/train/data.h) maps them.
//
// Folder layout (format "llmkit-tokens-v1"):
//   index.json         written last and atomically: a folder without it is incomplete
//   train-00000.bin    token ids, little-endian uint16 (vocabularies <= 65536) or uint32, the
//   train-00001.bin    documents one after another, each followed by the separator token
//   val-00000.bin      (the tokenizer's end-of-sequence id); shards hold at most shard_tokens
// Documents: in a JSONL file, the string field `field` of each line's object; in any other file,
// runs of lines separated by blank lines. Each document goes to the validation split when
// splitmix64(seed ^ document index) / 2^64 < val_fraction, so the split is fixed by (seed, file)
// and documents never straddle the splits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace llmkit {

struct DataPrepareOptions {
  std::string tokenizer;  // a GGUF file, a Hugging Face folder or a tokenizer.json
  std::string input;      // .jsonl (one JSON object per line) or plain text
  std::string out_dir;    // created if missing; an existing index.json there is replaced
  std::string field = "text";
  // The token after every document: "" = the tokenizer's end-of-sequence token; else a token's
  // text (e.g. "<|endoftext|>", which must encode to one id) or a decimal id.
  std::string separator;
  double val_fraction = 0.0;               // in [0, 1)
  uint64_t seed = 0;
  int64_t shard_tokens = int64_t{1} << 27;  // 128 Mi tokens (256 MiB of uint16) per shard
  // Called every few MiB of input with (bytes read, file size).
  std::function<void(uint64_t, uint64_t)> progress;
};

struct DataPrepareResult {
  int64_t documents = 0, val_documents = 0, skipped_empty = 0;
  int64_t train_tokens = 0, val_tokens = 0;
  int train_shards = 0, val_shards = 0;
  int token_bytes = 2;  // 2 (uint16) or 4 (uint32)
  int32_t separator = -1;
  uint64_t input_bytes = 0;
  double seconds = 0;
};

// Throws Error(kInvalidArgument) naming the option, Error(kInvalidFile) naming the line of a bad
// JSONL record (not JSON, not an object, `field` missing or not a string), Error(kNotFound / kIo)
// for files. On an error no new index.json is written: shards written so far are left in the
// folder but nothing refers to them, and a previous index.json is removed first, so a loader
// never pairs an old index with new shards.
DataPrepareResult prepare_data(const DataPrepareOptions& opt);

}  // namespace llmkit
