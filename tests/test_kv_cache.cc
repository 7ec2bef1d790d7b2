// The paged KV cache: the paged attention op against the reference kernel (every SIMD target,
// both backends) and against contiguous attention on the same keys (bitwise, with no window: the
// paged kernel's arithmetic per row is that of the contiguous one), over scattered block tables,
// GQA, sliding windows, ALiBi and batches of sequences; and the serving block manager
// (reservations, references, prefix publication, hash verification, LRU eviction).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "llmkit/error.h"
#include "llmkit/kernels/kernel_table.h"
#include "llmkit/ops/ops.h"
#include "llmkit/serve/kv_blocks.h"

namespace llmkit {
namespace {

struct Case {
  int64_t H, Hkv, hd;
  int64_t window;
  bool alibi;
};

// A pool whose pages are handed out in a scrambled order, so block tables are not contiguous.
struct PagedSetup {
  Tensor k_pages, v_pages;
  std::vector<std::vector<int32_t>> tables;
  std::vector<Tensor> k, v;  // per sequence, contiguous [n_kv, Hkv, hd]
};

// dt: F32 or F16 pages; with F16 the contiguous k, v hold the values rounded to F16 (what the pages
// hold, widened exactly), so contiguous attention on them is the paged kernel's exact reference.
PagedSetup make_pages(const Case& c, const std::vector<int64_t>& n_kv, uint32_t seed, DType dt = DType::kF32) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  int64_t n_pages = 1;
  for (int64_t n : n_kv) n_pages += (n + ops::kKVPage - 1) / ops::kKVPage;
  PagedSetup p;
  p.k_pages = Tensor::zeros({n_pages, c.Hkv, c.hd, ops::kKVPage}, dt);
  p.v_pages = Tensor::zeros({n_pages, c.Hkv, ops::kKVPage, c.hd}, dt);
  // Unwritten slots of a sequence's last page hold NaN: the kernels must never read them.
  if (dt == DType::kF16) {
    std::fill_n(static_cast<uint16_t*>(p.k_pages.raw()), p.k_pages.numel(), uint16_t{0x7E00});
    std::fill_n(static_cast<uint16_t*>(p.v_pages.raw()), p.v_pages.numel(), uint16_t{0x7E00});
  } else {
    std::fill_n(p.k_pages.data<float>(), p.k_pages.numel(), std::nanf(""));
    std::fill_n(p.v_pages.data<float>(), p.v_pages.numel(), std::nanf(""));
  }
  std::vector<int32_t> order(static_cast<size_t>(n_pages));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  size_t next = 0;
  for (int64_t n : n_kv) {
    std::vector<int32_t> t;
    for (int64_t b = 0; b < (n + ops::kKVPage - 1) / ops::kKVPage; ++b) t.push_back(order[next++]);
    Tensor k = Tensor::empty({n, c.Hkv, c.hd}, DType::kF32), v = Tensor::empty({n, c.Hkv, c.hd}, DType::kF32);
    for (int64_t i = 0; i < k.numel(); ++i) k.data<float>()[i] = nd(rng);
    for (int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = nd(rng);
    if (dt == DType::kF16) {
      k = ops::to_f32(ops::to_half(k, DType::kF16));
      v = ops::to_f32(ops::to_half(v, DType::kF16));
    }
    // Written in two calls (a prompt, then the rest), as a prefill followed by decode steps would.
    const int64_t a = n / 2;
    if (a > 0) ops::paged_kv_write(k.slice(0, 0, a), v.slice(0, 0, a), 0, t, p.k_pages, p.v_pages);
    ops::paged_kv_write(k.slice(0, a, n), v.slice(0, a, n), a, t, p.k_pages, p.v_pages);
    p.tables.push_back(std::move(t));
    p.k.push_back(k);
    p.v.push_back(v);
  }
  return p;
}

class PagedAttention : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { set_cpu_target(GetParam()); }
  void TearDown() override { reset_cpu_target(); }
};

TEST_P(PagedAttention, MatchesReferenceAndContiguousAttention) {
  const std::vector<Case> cases = {{4, 4, 16, 0, false}, {9, 3, 64, 0, false}, {8, 2, 32, 37, false},
                                   {6, 1, 24, 0, true},  {4, 2, 64, 5, true}};
  // (n_q, n_kv) per sequence: decode rows, a prompt chunk after a cached prefix, a whole prompt,
  // lengths on and off page and 64-key block boundaries.
  const std::vector<std::pair<int64_t, int64_t>> seqs = {{1, 1}, {1, 17}, {20, 83}, {64, 64}, {1, 130}, {33, 200}};
  uint32_t seed = 1;
  for (const DType dt : {DType::kF32, DType::kF16}) {
    for (const Case& c : cases) {
      std::vector<int64_t> n_kv;
      for (auto [nq, nk] : seqs) n_kv.push_back(nk);
      PagedSetup p = make_pages(c, n_kv, seed++, dt);
      int64_t N = 0;
      for (auto [nq, nk] : seqs) N += nq;
      Tensor q = Tensor::empty({N, c.H, c.hd}, DType::kF32);
      std::mt19937 rng(seed++);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (int64_t i = 0; i < q.numel(); ++i) q.data<float>()[i] = nd(rng);
      std::vector<ops::PagedSeq> ps;
      for (size_t s = 0; s < seqs.size(); ++s) ps.push_back({seqs[s].first, seqs[s].second, &p.tables[s]});
      ops::AttentionOptions opt;
      opt.window = c.window;
      opt.alibi = c.alibi;
      Tensor ref, cpu;
      {
        ops::ScopedBackend b(ops::Backend::kRef);
        ref = ops::paged_attention(q, p.k_pages, p.v_pages, ps, opt);
      }
      cpu = ops::paged_attention(q, p.k_pages, p.v_pages, ps, opt);
      double err = 0, norm = 0;
      for (int64_t i = 0; i < ref.numel(); ++i) {
        ASSERT_TRUE(std::isfinite(cpu.data<float>()[i])) << "a NaN slot was read, element " << i;
        err = std::max<double>(err, std::fabs(cpu.data<float>()[i] - ref.data<float>()[i]));
        norm = std::max<double>(norm, std::fabs(ref.data<float>()[i]));
      }
      EXPECT_LT(err, 2e-5 * std::max(1.0, norm)) << dtype_name(dt) << " H " << c.H << " Hkv " << c.Hkv << " window " << c.window;
      // The same rows through contiguous attention, one sequence at a time.
      int64_t row = 0;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const auto [nq, nk] = seqs[s];
        Tensor qs = q.slice(0, row, row + nq).view({1, nq, c.H, c.hd});
        Tensor o = ops::attention(qs, p.k[s].view({1, nk, c.Hkv, c.hd}), p.v[s].view({1, nk, c.Hkv, c.hd}), opt).out;
        for (int64_t i = 0; i < o.numel(); ++i) {
          const float a = o.data<float>()[i], b = cpu.data<float>()[row * c.H * c.hd + i];
          if (c.window == 0) {
            ASSERT_EQ(a, b) << dtype_name(dt) << " sequence " << s << " element " << i << " (no window: bitwise)";
          } else {
            ASSERT_NEAR(a, b, 2e-5) << dtype_name(dt) << " sequence " << s << " element " << i;
          }
        }
        row += nq;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryTarget, PagedAttention, ::testing::ValuesIn(cpu_targets()),
                         [](const auto& target) { return target.param; });

TEST(PagedAttentionOp, BadInputsNameTheProblem) {
  const Case c{4, 2, 8, 0, false};
  PagedSetup p = make_pages(c, {20}, 7);
  Tensor q = Tensor::zeros({3, 4, 8}, DType::kF32);
  std::vector<int32_t> short_table = {p.tables[0][0]};
  auto expect_error = [&](const std::vector<ops::PagedSeq>& s, const std::string& what) {
    try {
      ops::paged_attention(q, p.k_pages, p.v_pages, s);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error({{3, 20, &short_table}}, "block table has 1 pages");
  std::vector<int32_t> bad = {0, 999};
  expect_error({{3, 20, &bad}}, "block 999");
  expect_error({{2, 20, &p.tables[0]}}, "hold 2 query rows, q has 3");
  expect_error({{3, 2, &p.tables[0]}}, "3 queries over 2 positions");
  PagedSetup h = make_pages(c, {20}, 7, DType::kF16);
  try {
    ops::paged_attention(q, p.k_pages, h.v_pages, {{3, 20, &p.tables[0]}});
    ADD_FAILURE() << "no error for F32 keys with F16 values";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("both F32 or both F16; got f32 and f16"), std::string::npos) << e.what();
  }
}

// ---- the block manager ----------------------------------------------------------------------------
using serve::BlockManager;

std::vector<int32_t> page_tokens(int32_t base) {
  std::vector<int32_t> t(BlockManager::kPage);
  std::iota(t.begin(), t.end(), base);
  return t;
}

TEST(BlockManager, ReservationsBoundWhatCanBeTaken) {
  BlockManager m(4);
  EXPECT_EQ(m.available(), 4);
  EXPECT_TRUE(m.reserve(3));
  EXPECT_FALSE(m.reserve(2));  // only 1 left
  EXPECT_EQ(m.available(), 1);
  const int32_t a = m.take(), b = m.take();
  EXPECT_NE(a, b);
  EXPECT_EQ(m.used(), 2);
  EXPECT_EQ(m.reserved(), 1);
  m.unreserve(1);
  m.release(a);
  m.release(b);
  EXPECT_EQ(m.used(), 0);
  EXPECT_EQ(m.free(), 4);  // unpublished pages go straight back to free
  EXPECT_EQ(m.available(), 4);
}

TEST(BlockManager, PublishedPagesAreFoundSharedAndEvictedLast) {
  BlockManager m(3);
  const auto t0 = page_tokens(100), t1 = page_tokens(200);
  ASSERT_TRUE(m.reserve(2));
  const int32_t p0 = m.take(), p1 = m.take();
  const uint64_t h0 = BlockManager::chain(BlockManager::kRootHash, t0.data());
  const uint64_t h1 = BlockManager::chain(h0, t1.data());
  EXPECT_TRUE(m.publish(p0, BlockManager::kRootHash, h0, t0.data()));
  EXPECT_TRUE(m.publish(p1, h0, h1, t1.data()));
  // Found only under the same prefix: the second page after another first page is a miss.
  EXPECT_EQ(m.lookup(BlockManager::kRootHash, t0.data()), p0);
  EXPECT_EQ(m.lookup(h0, t1.data()), p1);
  EXPECT_EQ(m.lookup(BlockManager::kRootHash, t1.data()), -1);
  EXPECT_EQ(m.lookup(h1, t1.data()), -1);
  // A second holder shares the page; it stays used until both let go, then stays cached.
  m.acquire(p0);
  EXPECT_EQ(m.refs(p0), 2);
  m.release(p0);
  m.release(p0);
  m.release(p1);
  EXPECT_EQ(m.used(), 0);
  EXPECT_EQ(m.cached(), 2);
  EXPECT_EQ(m.free(), 1);
  EXPECT_EQ(m.available(), 3);  // cached pages can be reclaimed
  // A duplicate prefix computed by someone else stays private.
  ASSERT_TRUE(m.reserve(1));
  const int32_t dup = m.take();
  EXPECT_NE(dup, p0);
  EXPECT_FALSE(m.publish(dup, BlockManager::kRootHash, h0, t0.data()));
  m.release(dup);
  EXPECT_EQ(m.free(), 1);
  // Taking a cached page while a free one exists never happens; once none is free, the least
  // recently released cached page (p0, released before p1) is reclaimed and unpublished.
  ASSERT_TRUE(m.reserve(2));
  const int32_t f = m.take();
  EXPECT_EQ(f, dup);
  const int32_t e = m.take();
  EXPECT_EQ(e, p0);
  EXPECT_EQ(m.lookup(BlockManager::kRootHash, t0.data()), -1);
  EXPECT_EQ(m.lookup(h0, t1.data()), p1);  // still cached (its parent hash is only a key)
  EXPECT_EQ(m.cached(), 1);
}

TEST(BlockManager, ReacquiringACachedPageTakesItOffTheEvictionList) {
  BlockManager m(2);
  const auto t0 = page_tokens(7);
  const uint64_t h0 = BlockManager::chain(BlockManager::kRootHash, t0.data());
  ASSERT_TRUE(m.reserve(1));
  const int32_t p0 = m.take();
  m.publish(p0, BlockManager::kRootHash, h0, t0.data());
  m.release(p0);
  EXPECT_EQ(m.cached(), 1);
  m.acquire(m.lookup(BlockManager::kRootHash, t0.data()));
  EXPECT_EQ(m.cached(), 0);
  EXPECT_EQ(m.used(), 1);
  EXPECT_EQ(m.available(), 1);
  EXPECT_FALSE(m.reserve(2));  // the held page cannot be reclaimed
}

TEST(BlockManager, ChainHashDependsOnEveryTokenAndThePrefix) {
  auto t = page_tokens(0);
  const uint64_t h = BlockManager::chain(BlockManager::kRootHash, t.data());
  for (size_t i = 0; i < t.size(); ++i) {
    auto u = t;
    u[i] += 1;
    EXPECT_NE(BlockManager::chain(BlockManager::kRootHash, u.data()), h) << i;
  }
  EXPECT_NE(BlockManager::chain(h, t.data()), h);
  EXPECT_NE(BlockManager::chain(BlockManager::kRootHash + 1, t.data()), h);
}

}  // namespace
}  // namespace llmkit
