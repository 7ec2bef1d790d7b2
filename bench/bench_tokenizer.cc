// Single-threaded encode throughput (MB/s of UTF-8 input) of the SmolLM2 tokenizer on the parity
// corpus (testdata/tokenizer/corpus.json: prose, code, Chinese, Japanese, emoji, whitespace and
// digit runs), joined with "\n" and repeated to >= 1 MiB. tools/bench_tokenizers_peer.py times
// the PyPI `tokenizers` library on the same text; docs/BENCHMARKS.md has both figures.
// Also: the other tokenizer kinds on the same text, decode, and the GGUF-loaded SmolLM2 vocabulary
// when the default model is installed.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "llmkit/tokenizer.h"
#include "llmkit/tokenizer/unicode.h"

namespace {

std::string testdata() {
  const char* env = std::getenv("LLMKIT_TESTDATA_DIR");
  // Default: the source tree's testdata, found from this file's path (set LLMKIT_TESTDATA_DIR to override).
  static const std::string src = std::filesystem::path(__FILE__).parent_path().parent_path() / "testdata";
  return (env && *env ? std::string(env) : src) + "/tokenizer/";
}

// The benchmark text; the same construction as tools/bench_tokenizers_peer.py.
const std::string& bench_text() {
  static const std::string text = [] {
    std::ifstream in(testdata() + "corpus.json");
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str());
    std::string joined;
    for (const auto& l : j["lines"]) {
      std::string line;
      if (l.contains("text")) {
        line = l["text"].get<std::string>();
      } else {
        const std::string h = l["hex"].get<std::string>();
        for (size_t i = 0; i + 1 < h.size(); i += 2) line.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
      }
      joined += llmkit::tok::utf8_sanitize(line);
      joined += "\n";
    }
    std::string out;
    while (out.size() < (size_t{1} << 20)) out += joined;
    return out;
  }();
  return text;
}

void encode_bench(benchmark::State& state, const std::string& path) {
  if (!std::filesystem::exists(path)) {
    state.SkipWithError(("missing " + path).c_str());
    return;
  }
  const llmkit::Tokenizer tok = llmkit::Tokenizer::load(path);
  const std::string& text = bench_text();
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

// One encode() per line of the same text (~11k calls), as prompts are encoded.
void BM_EncodeSmolLM2_PerLine(benchmark::State& state) {
  const llmkit::Tokenizer tok = llmkit::Tokenizer::load(testdata() + "smollm2.tokenizer.json");
  const std::string& text = bench_text();
  std::vector<std::string_view> lines;
  for (size_t b = 0; b <= text.size();) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    lines.push_back(std::string_view(text).substr(b, e - b));
    b = e + 1;
  }
  for (auto _ : state) {
    for (auto line : lines) {
      auto ids = tok.encode(line, false);
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["MB/s"] = benchmark::Counter(static_cast<double>(text.size()) / 1e6,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

void BM_EncodeSmolLM2(benchmark::State& s) { encode_bench(s, testdata() + "smollm2.tokenizer.json"); }
void BM_EncodeSmolLM2_Gguf(benchmark::State& s) {
  const char* home = std::getenv("HOME");
  encode_bench(s, std::string(home ? home : ".") + "/.cache/llmkit/models/SmolLM2-135M-Instruct-Q4_1.gguf");
}
void BM_EncodeLlama3Style(benchmark::State& s) { encode_bench(s, testdata() + "bpe_llama3.tokenizer.json"); }
void BM_EncodeQwen2Style(benchmark::State& s) { encode_bench(s, testdata() + "bpe_qwen2.tokenizer.json"); }
void BM_EncodeSentencePieceBpe(benchmark::State& s) { encode_bench(s, testdata() + "spm_bpe.tokenizer.json"); }
void BM_EncodeWordPiece(benchmark::State& s) { encode_bench(s, testdata() + "wordpiece_minilm.tokenizer.json"); }
void BM_EncodeUnigram(benchmark::State& s) { encode_bench(s, testdata() + "unigram.tokenizer.json"); }

void BM_DecodeSmolLM2(benchmark::State& state) {
  const llmkit::Tokenizer tok = llmkit::Tokenizer::load(testdata() + "smollm2.tokenizer.json");
  const auto ids = tok.encode(bench_text(), false);
  for (auto _ : state) {
    std::string s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bench_text().size()));
}

BENCHMARK(BM_EncodeSmolLM2)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_EncodeSmolLM2_PerLine)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_EncodeSmolLM2_Gguf)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeLlama3Style)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeQwen2Style)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeSentencePieceBpe)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeWordPiece)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_EncodeUnigram)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DecodeSmolLM2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
