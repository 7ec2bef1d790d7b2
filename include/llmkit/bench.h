// Public API: inference speed, measured the way llama.cpp's llama-bench measures it, so the two
// tables can be read side by side (`llmkit bench`, tools/bench_vs_llamacpp.py).
//
//   pp<P>  prompt processing: one forward of P prompt tokens from an empty KV cache, logits for
//          the last position only (llama-bench's test_prompt with n_batch >= P).
//   tg<N>  text generation: N single-token decode steps from an empty KV cache (positions 0..N-1),
//          logits for every step (llama-bench's test_gen). No sampling: the next input is the next
//          token of the fixed sequence below, so the timing is the model's alone.
//
// Tokens: ids t_i = splitmix64(seed + i) mod n_vocab (i = 0, 1, ...): random ids as llama-bench
// uses, but reproducible in any language, so a peer engine can be fed the same ids
// (bench_tokens()). The context is P + N positions (llama-bench's n_ctx), the KV cache F32.
// Each test runs once untimed (warm-up: page faults of the mmapped weights, arena growth), then
// `reps` timed times; tokens/s = tokens / wall seconds of one run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmkit {

struct BenchOptions {
  std::string model;                 // GGUF file or Hugging Face folder
  int64_t n_prompt = 512;            // pp test size; 0 = no pp test
  int64_t n_gen = 128;               // tg test size; 0 = no tg test
  std::vector<int> threads = {0};    // one row per count; 0 = all cores
  int reps = 5;                      // timed repetitions per row
  uint64_t seed = 42;                // token ids (see above)
  int64_t ubatch = 0;                // rows per forward pass (Transformer::set_ubatch); 0 = default
  std::string kv_type = "f32";       // KV cache values: "f32" or "f16"
};

struct BenchRow {
  std::string model;        // "llama 134.5M q4_1" (family, parameters, main weight type)
  uint64_t size_bytes = 0;  // bytes of all weight tensors
  uint64_t n_params = 0;
  int threads = 0;          // the count actually used (0 resolved to the core count)
  std::string test;         // "pp512" / "tg128"
  int64_t n_tokens = 0;
  std::vector<double> samples;  // tokens/s of each timed repetition
  double mean = 0, stddev = 0;  // of samples (sample standard deviation; 0 for one rep)
  // Memory: the model's files on disk, the KV cache of P + N positions, and the process's peak
  // resident set (getrusage) when this row ended: weights are mapped, not copied, so peak RSS
  // should stay close to file + KV cache (issue: <= 1.1x).
  uint64_t file_bytes = 0, kv_cache_bytes = 0, peak_rss_bytes = 0;
};

// The ids a bench with this seed feeds: t_i = splitmix64(seed + i) mod n_vocab.
std::vector<int32_t> bench_tokens(uint64_t seed, int64_t n, int64_t n_vocab);

// Runs every (threads, test) row. Changes the global thread count (as set_threads) and leaves it
// at the last row's. Throws Error for a model that cannot be loaded or is not a decoder.
std::vector<BenchRow> bench(const BenchOptions& opt);

// llama-bench's markdown table: | model | size | params | threads | test | t/s |.
std::string bench_table(const std::vector<BenchRow>& rows);
// The rows as one JSON document {"rows": [...]} with every field and the raw samples.
std::string bench_json(const std::vector<BenchRow>& rows, const BenchOptions& opt);

}  // namespace llmkit
