// The training data pipeline: prepare_data's shards hold exactly the tokenizer's ids of each
// document plus the separator, split deterministically into train/validation; bad records are
// reported by line; the loader deals every window once per epoch in a seed-fixed order and resumes
// from a saved state with the very batches an uninterrupted run draws; a big corpus streams
// through with bounded memory.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "llmkit/data.h"
#include "llmkit/error.h"
#include "llmkit/tokenizer.h"
#include "llmkit/train/data.h"

namespace llmkit {
namespace {

namespace fs = std::filesystem;

const std::string kTok = std::string(LLMKIT_TESTDATA_DIR) + "/tokenizer/smollm2.tokenizer.json";

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("llmkit_test_data_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::vector<std::string> docs() {
  std::vector<std::string> d;
  for (int i = 0; i < 40; ++i)
    d.push_back("Document " + std::to_string(i) + ": in the beginning God created the heaven and the earth. And the "
                "earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God "
                "moved upon the face of the waters. " +
                std::string(static_cast<size_t>(i % 7), '!') + " \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80");
  return d;
}

std::vector<int32_t> read_all(const train::TokenData& d) {
  std::vector<int32_t> v(static_cast<size_t>(d.n_tokens()));
  if (!v.empty()) d.read(0, d.n_tokens(), v.data());
  return v;
}

TEST(DataPrepare, ShardsHoldEachDocumentsIdsAndTheSeparator) {
  const fs::path dir = temp_dir("jsonl");
  std::string jsonl;
  for (const auto& d : docs()) jsonl += "{\"id\": 1, \"text\": \"" + d + "\"}\n";
  jsonl += "\n";  // blank lines are skipped
  write(dir / "corpus.jsonl", jsonl);
  DataPrepareOptions o;
  o.tokenizer = kTok;
  o.input = (dir / "corpus.jsonl").string();
  o.out_dir = (dir / "out").string();
  o.separator = "<|endoftext|>";
  o.val_fraction = 0.25;
  o.seed = 7;
  o.shard_tokens = 1024;  // several train shards
  DataPrepareResult r = prepare_data(o);
  const Tokenizer tok = Tokenizer::load(kTok);
  const std::vector<int32_t> sep = tok.encode("<|endoftext|>", false);
  ASSERT_EQ(sep.size(), 1u);
  EXPECT_EQ(r.separator, sep[0]);
  EXPECT_EQ(r.documents, 40);
  EXPECT_EQ(r.token_bytes, 2);
  EXPECT_GT(r.val_documents, 3);
  EXPECT_LT(r.val_documents, 20);
  EXPECT_GE(r.train_shards, 2);

  // Independent reconstruction: each document's ids + separator, in order, routed by the split.
  std::vector<int32_t> want_train, want_val;
  int64_t n_val = 0;
  for (size_t i = 0; i < docs().size(); ++i) {
    std::vector<int32_t> ids = tok.encode(docs()[i], true);
    ids.push_back(sep[0]);
    // The split rule of data.h: splitmix64(seed ^ index) / 2^64 < val_fraction.
    uint64_t z = (o.seed ^ i) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    const bool val = static_cast<double>(z >> 11) * 0x1.0p-53 < o.val_fraction;
    n_val += val;
    auto& dst = val ? want_val : want_train;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(n_val, r.val_documents);
  const auto tr = train::TokenData::open(o.out_dir, "train"), va = train::TokenData::open(o.out_dir, "val");
  EXPECT_EQ(read_all(tr), want_train);
  EXPECT_EQ(read_all(va), want_val);
  EXPECT_EQ(tr.n_tokens(), r.train_tokens);
  EXPECT_EQ(tr.separator(), sep[0]);
  // A token range across a shard boundary reads the same as the whole.
  std::vector<int32_t> part(100);
  tr.read(1000, 100, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), want_train.begin() + 1000));

  // The same seed and file give the same folder; text files split documents at blank lines.
  std::string text;
  for (const auto& d : docs()) text += d + "\n\n\n";
  write(dir / "corpus.txt", text);
  DataPrepareOptions t = o;
  t.input = (dir / "corpus.txt").string();
  t.out_dir = (dir / "out_txt").string();
  DataPrepareResult rt = prepare_data(t);
  EXPECT_EQ(rt.documents, 40);
  EXPECT_EQ(read_all(train::TokenData::open(t.out_dir, "train")), want_train);
  EXPECT_EQ(read_all(train::TokenData::open(t.out_dir, "val")), want_val);
  fs::remove_all(dir);
}

TEST(DataPrepare, BadRecordsAndOptionsAreNamed) {
  const fs::path dir = temp_dir("bad");
  DataPrepareOptions o;
  o.tokenizer = kTok;
  o.out_dir = (dir / "out").string();
  o.separator = "<|endoftext|>";
  auto expect = [&](const std::string& content, const std::string& what) {
    write(dir / "c.jsonl", content);
    o.input = (dir / "c.jsonl").string();
    try {
      prepare_data(o);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir / "out" / "index.json")) << "an index was written despite " << what;
  };
  expect("{\"text\": \"ok\"}\n{\"text\": \"broken\n", "line 2 is not valid JSON");
  expect("{\"text\": \"ok\"}\n[1, 2]\n", "line 2 is not a JSON object");
  expect("{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", "line 2 has no string field 'text'");
  expect("\n\n", "holds no documents");
  o.separator = "two words";
  expect("{\"text\": \"ok\"}\n", "is 2 tokens, not one");
  o.separator = "<|endoftext|>";
  o.val_fraction = 1.5;
  expect("{\"text\": \"ok\"}\n", "--val-fraction 1.5");
  o.val_fraction = 0;
  o.input = (dir / "missing.txt").string();
  EXPECT_THROW(prepare_data(o), Error);
  EXPECT_THROW(train::TokenData::open((dir / "nowhere").string()), Error);
  fs::remove_all(dir);
}

TEST(DataLoader, EveryWindowOncePerEpochInASeedFixedOrder) {
  const fs::path dir = temp_dir("loader");
  std::string text;
  for (int rep = 0; rep < 5; ++rep)
    for (const auto& d : docs()) text += d + "\n\n";
  write(dir / "c.txt", text);
  DataPrepareOptions o;
  o.tokenizer = kTok;
  o.input = (dir / "c.txt").string();
  o.out_dir = (dir / "out").string();
  o.separator = "<|endoftext|>";
  prepare_data(o);
  const auto data = train::TokenData::open(o.out_dir);
  const std::vector<int32_t> all = read_all(data);
  const int64_t T = 16, B = 4;
  train::BatchSampler a(data, T, B, 42), b(data, T, B, 42), c(data, T, B, 43);
  const int64_t W = a.windows_per_epoch();
  ASSERT_EQ(W, (data.n_tokens() - 1) / T);
  ASSERT_GT(W, 40);
  // One epoch: each batch row is a window [w T, w T + T + 1) of the stream, every w exactly once.
  std::multiset<int64_t> seen;
  std::vector<int32_t> ba(static_cast<size_t>(B * (T + 1))), bb(ba.size()), bc(ba.size());
  bool differs = false;
  for (int64_t step = 0; step < W / B; ++step) {
    a.next(ba.data());
    b.next(bb.data());
    c.next(bc.data());
    EXPECT_EQ(ba, bb);
    differs = differs || ba != bc;
    for (int64_t r = 0; r < B; ++r) {
      const int32_t* row = ba.data() + r * (T + 1);
      int64_t found = -1;
      for (int64_t w = 0; w < W && found < 0; ++w)
        if (std::equal(row, row + T + 1, all.begin() + w * T) && !seen.count(w)) found = w;
      ASSERT_GE(found, 0) << "row is not an unseen window of the stream";
      seen.insert(found);
    }
  }
  EXPECT_TRUE(differs) << "seeds 42 and 43 dealt the same order";
  EXPECT_EQ(static_cast<int64_t>(seen.size()), W / B * B);
  // In-order dealing (validation) starts at window 0.
  train::BatchSampler v(data, T, 1, 0, /*shuffle=*/false);
  v.next(bc.data());
  EXPECT_TRUE(std::equal(bc.begin(), bc.begin() + T + 1, all.begin()));
  EXPECT_THROW(train::BatchSampler(data, data.n_tokens(), 1, 0), Error);
  fs::remove_all(dir);
}

TEST(DataLoader, ResumeContinuesWithTheSameBatches) {
  const fs::path dir = temp_dir("resume");
  std::string text;
  for (const auto& d : docs()) text += d + "\n\n";
  write(dir / "c.txt", text);
  DataPrepareOptions o;
  o.tokenizer = kTok;
  o.input = (dir / "c.txt").string();
  o.out_dir = (dir / "out").string();
  o.separator = "<|endoftext|>";
  prepare_data(o);
  const auto data = train::TokenData::open(o.out_dir);
  const int64_t T = 8, B = 3;
  train::BatchSampler run(data, T, B, 5);
  const int64_t steps = 3 * run.windows_per_epoch() / B + 2;  // crosses epoch boundaries
  std::vector<std::vector<int32_t>> straight;
  train::SamplerState saved;
  for (int64_t s = 0; s < steps; ++s) {
    if (s == steps / 2) saved = run.state();
    std::vector<int32_t> buf(static_cast<size_t>(B * (T + 1)));
    run.next(buf.data());
    straight.push_back(buf);
  }
  train::BatchSampler resumed(data, T, B, 999);  // the seed comes from the state
  resumed.restore(saved);
  for (int64_t s = steps / 2; s < steps; ++s) {
    std::vector<int32_t> buf(static_cast<size_t>(B * (T + 1)));
    resumed.next(buf.data());
    ASSERT_EQ(buf, straight[static_cast<size_t>(s)]) << "step " << s;
  }
  train::SamplerState bad = saved;
  bad.cursor = resumed.windows_per_epoch() + 1;
  EXPECT_THROW(resumed.restore(bad), Error);
  fs::remove_all(dir);
}

TEST(DataPrepare, StreamsABigCorpusWithBoundedMemory) {
  const fs::path dir = temp_dir("big");
  // ~44 MB of text in one file, the last 30 MB a single "document" with no blank line.
  {
    std::ofstream f(dir / "big.txt", std::ios::binary);
    const std::string para = "And God said, Let there be light: and there was light. 12345 \xe4\xb8\xad\xe6\x96\x87\n";
    for (int i = 0; i < 200000; ++i) f << para << (i % 3 == 0 ? "\n" : "");
    for (int i = 0; i < 450000; ++i) f << para;
  }
  const uint64_t size = fs::file_size(dir / "big.txt");
  ASSERT_GT(size, 40u << 20);
  DataPrepareOptions o;
  o.tokenizer = kTok;
  {  // a small run first: the tokenizer's own memory (each run loads it) is then already in the peak
    write(dir / "small.txt", "warm up\n");
    DataPrepareOptions w = o;
    w.input = (dir / "small.txt").string();
    w.out_dir = (dir / "small").string();
    w.separator = "<|endoftext|>";
    prepare_data(w);
  }
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  o.input = (dir / "big.txt").string();
  o.out_dir = (dir / "out").string();
  o.separator = "<|endoftext|>";
  o.shard_tokens = 1 << 22;  // 8 MiB shards
  uint64_t last = 0;
  int calls = 0;
  o.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GE(done, last);
    EXPECT_EQ(total, size);
    last = done;
    ++calls;
  };
  DataPrepareResult r = prepare_data(o);
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  EXPECT_EQ(last, size);
  EXPECT_GT(calls, 5);
  EXPECT_EQ(r.documents, 66667 + 1);
  EXPECT_GT(r.train_shards, 1);
  // Peak RSS grows by the write buffer and a 1 MiB document piece (and its ids), not by the file.
  const long grew_mb = (after.ru_maxrss - before.ru_maxrss) / 1024;
  std::printf("peak RSS grew %ld MB while preparing a %llu MB corpus\n", grew_mb,
              static_cast<unsigned long long>(size >> 20));
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in quarantine (256 MB by default): RSS says nothing here.
  (void)grew_mb;
#else
  EXPECT_LT(grew_mb, 16) << "peak RSS grew " << grew_mb << " MB for a " << (size >> 20) << " MB corpus";
#endif
  const auto data = train::TokenData::open(o.out_dir);
  EXPECT_EQ(data.n_tokens(), r.train_tokens);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace llmkit
