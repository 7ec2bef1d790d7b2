// Ops for rotary embeddings, ALiBi slopes and attention (MHA/GQA/MQA, causal, sliding window, ALiBi,
// padding), forward and backward. Validation here is what lets the reference kernels trust their inputs.
#include <algorithm>
#include <atomic>
#include <cmath>

#include "llmkit/base/thread_pool.h"
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"

namespace llmkit::ops {
using detail::f32_in;
using detail::grad_out;

namespace {

struct RopeSetup {
  int64_t n_tokens, n_heads, head_dim, rot_dims;
  float mscale;
  std::vector<float> inv_freq;
};

RopeSetup rope_setup(const Tensor& x, const Tensor& pos, const RopeConfig& cfg, const char* op) {
  LLMKIT_CHECK(x.rank() >= 3, kInvalidArgument, op, ": x must be [..., n_heads, head_dim] (rank >= 3), got ",
               x.shape().str());
  RopeSetup s;
  s.n_heads = x.dim(-2);
  s.head_dim = x.dim(-1);
  s.n_tokens = s.n_heads * s.head_dim != 0 ? x.numel() / (s.n_heads * s.head_dim) : 0;
  s.rot_dims = cfg.rot_dims ? cfg.rot_dims : s.head_dim;
  LLMKIT_CHECK(s.rot_dims > 0 && s.rot_dims % 2 == 0 && s.rot_dims <= s.head_dim, kInvalidArgument, op,
               ": rot_dims ", s.rot_dims, " must be even and in (0, head_dim = ", s.head_dim,
               "] (HF partial_rotary_factor * head_dim)");
  LLMKIT_CHECK(pos.numel() == s.n_tokens, kInvalidArgument, op, ": pos has ", pos.numel(),
               " entries, need one per token (", s.n_tokens, " for x ", x.shape().str(), ")");
  LLMKIT_CHECK(cfg.theta > 1.0f, kInvalidArgument, op, ": rope theta ", cfg.theta, " must be > 1 (HF rope_theta)");
  if (cfg.scaling != RopeScaling::kNone)
    LLMKIT_CHECK(cfg.factor > 0.0f, kInvalidArgument, op, ": rope_scaling.factor ", cfg.factor, " must be > 0");
  if (cfg.scaling == RopeScaling::kNtk)
    LLMKIT_CHECK(s.rot_dims > 2, kInvalidArgument, op, ": NTK scaling needs rot_dims > 2");
  if (cfg.scaling == RopeScaling::kYarn || cfg.scaling == RopeScaling::kLlama3)
    LLMKIT_CHECK(cfg.original_ctx > 0, kInvalidArgument, op,
                 ": YaRN and Llama-3 scaling need rope_scaling.original_max_position_embeddings > 0");
  if (cfg.scaling == RopeScaling::kLlama3)
    LLMKIT_CHECK(cfg.high_freq_factor > cfg.low_freq_factor && cfg.low_freq_factor > 0.0f, kInvalidArgument, op,
                 ": Llama-3 scaling needs high_freq_factor (", cfg.high_freq_factor, ") > low_freq_factor (",
                 cfg.low_freq_factor, ") > 0");
  if (!cfg.freq_factors.empty()) {
    LLMKIT_CHECK(static_cast<int64_t>(cfg.freq_factors.size()) == s.rot_dims / 2, kInvalidArgument, op,
                 ": freq_factors has ", cfg.freq_factors.size(), " entries, need rot_dims / 2 = ", s.rot_dims / 2);
    for (float f : cfg.freq_factors)
      LLMKIT_CHECK(std::isfinite(f) && f > 0.0f, kInvalidArgument, op, ": rope freq factor ", f, " must be finite and > 0");
  }
  s.inv_freq.resize(static_cast<size_t>(s.rot_dims / 2));
  ref::rope_freqs(cfg, s.rot_dims, s.inv_freq.data(), &s.mscale);
  return s;
}

void check_heads(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt) {
  LLMKIT_CHECK(q.rank() == 4 && k.rank() == 4 && v.rank() == 4, kInvalidArgument,
               "attention: q must be [n_seqs, n_q, n_heads, head_dim] and k, v [n_seqs, n_kv, n_kv_heads, head_dim]; "
               "got q ", q.shape().str(), ", k ", k.shape().str(), ", v ", v.shape().str());
  detail::same_shape(k, v, "attention", "k", "v");
  LLMKIT_CHECK(q.dim(0) == k.dim(0) && q.dim(3) == k.dim(3), kInvalidArgument, "attention: q ", q.shape().str(),
               " and k ", k.shape().str(), " disagree on n_seqs or head_dim");
  LLMKIT_CHECK(k.dim(2) > 0 && q.dim(2) % k.dim(2) == 0, kInvalidArgument, "attention: n_kv_heads (", k.dim(2),
               ") must divide n_heads (", q.dim(2), ") for GQA/MQA");
  LLMKIT_CHECK(!opt.causal || q.dim(1) <= k.dim(1), kInvalidArgument, "attention: causal needs n_q (", q.dim(1),
               ") <= n_kv (", k.dim(1), "): the queries are the last n_q positions");
  LLMKIT_CHECK(opt.window >= 0, kInvalidArgument, "attention: window ", opt.window, " must be >= 0 (0 = off)");
  LLMKIT_CHECK(opt.kv_len.empty() || static_cast<int64_t>(opt.kv_len.size()) == q.dim(0), kInvalidArgument,
               "attention: kv_len has ", opt.kv_len.size(), " entries, need n_seqs = ", q.dim(0));
  for (int32_t l : opt.kv_len)
    LLMKIT_CHECK(l >= 0 && l <= k.dim(1), kInvalidArgument, "attention: kv_len ", l, " outside [0, n_kv = ", k.dim(1), "]");
  if (!opt.first_key.empty()) {
    LLMKIT_CHECK(static_cast<int64_t>(opt.first_key.size()) == q.dim(0) * q.dim(1), kInvalidArgument,
                 "attention: first_key has ", opt.first_key.size(), " entries, need n_seqs * n_q = ", q.dim(0) * q.dim(1));
    for (int64_t s = 0; s < q.dim(0); ++s) {
      for (int64_t i = 0; i < q.dim(1); ++i) {
        const int32_t f = opt.first_key[static_cast<size_t>(s * q.dim(1) + i)];
        LLMKIT_CHECK(f >= 0 && f < k.dim(1) && (i == 0 || f >= opt.first_key[static_cast<size_t>(s * q.dim(1) + i - 1)]),
                     kInvalidArgument, "attention: first_key ", f, " at sequence ", s, " row ", i,
                     " must be in [0, n_kv) and not below the previous row's (documents are packed in order)");
      }
    }
  }
  LLMKIT_CHECK(std::isfinite(opt.scale) && opt.scale >= 0.0f, kInvalidArgument, "attention: scale ", opt.scale,
               " must be finite and >= 0 (0 = 1/sqrt(head_dim))");
}

ref::AttentionParams params(const Tensor& q, const Tensor& k, const AttentionOptions& opt, const Tensor& slopes) {
  ref::AttentionParams p;
  p.n_seqs = q.dim(0);
  p.n_q = q.dim(1);
  p.n_kv = k.dim(1);
  p.n_heads = q.dim(2);
  p.n_kv_heads = k.dim(2);
  p.head_dim = q.dim(3);
  p.scale = opt.scale > 0.0f ? opt.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  p.causal = opt.causal;
  p.window = opt.window;
  p.alibi = slopes.defined() ? slopes.data<float>() : nullptr;
  p.kv_len = opt.kv_len.empty() ? nullptr : opt.kv_len.data();
  p.first_key = opt.first_key.empty() ? nullptr : opt.first_key.data();
  return p;
}

// The backward: Backend::kCpu runs the reference kernel on the global thread pool, one work item per
// (sequence, kv head): each item owns its query heads' gradients and its kv head's dk/dv, so no two
// threads write the same memory and the result is bitwise the reference's. Backend::kRef stays
// single-threaded.
template <typename F>
void for_each_seq_kv_head(const ref::AttentionParams& p, F fn) {
  const int64_t items = p.n_seqs * p.n_kv_heads, group = p.n_heads / p.n_kv_heads;
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t s = it / p.n_kv_heads, g = it % p.n_kv_heads;
      ref::AttentionParams ps = p;
      ps.n_seqs = 1;
      ps.kv_len = p.kv_len ? p.kv_len + s : nullptr;
      ps.first_key = p.first_key ? p.first_key + s * p.n_q : nullptr;
      ps.head_begin = g * group;
      ps.head_end = (g + 1) * group;
      fn(ps, s);
    }
  };
  if (current_backend() == Backend::kRef || items == 1)
    body(0, items);
  else
    ThreadPool::global().parallel_for(items, 1, body);
}

// Forward work items are (sequence, kv head, block of query rows), so a long prompt keeps every
// thread busy even with few kv heads (SmolLM2: 3 kv heads on 2 threads would leave one thread idle
// a third of the time). Threads take items from an atomic counter, last row blocks first: under a
// causal mask they see the most keys, so the cheap items fill in at the end. Each item writes only
// its own rows of its own heads. Backend::kRef runs the whole op in one call on this thread.
constexpr int64_t kAttnRowsPerItem = 16;

void attention_forward(const ref::AttentionParams& p, const float* q, const float* k, const float* v, float* o,
                       float* lse) {
  const KernelTable& kt = active_table();
  ThreadPool& pool = ThreadPool::global();
  if (current_backend() == Backend::kRef || pool.size() == 1) {
    kt.attention(p, q, k, v, o, lse);
    return;
  }
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t row_blocks = (p.n_q + kAttnRowsPerItem - 1) / kAttnRowsPerItem;
  const int64_t items = p.n_seqs * p.n_kv_heads * row_blocks;
  const int64_t qs = p.n_q * p.n_heads * p.head_dim, ks = p.n_kv * p.n_kv_heads * p.head_dim, ls = p.n_heads * p.n_q;
  std::atomic<int64_t> next{0};
  auto worker = [&](int, int) {
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const int64_t rb = row_blocks - 1 - it % row_blocks, g = it / row_blocks % p.n_kv_heads;
      const int64_t s = it / row_blocks / p.n_kv_heads;
      ref::AttentionParams ps = p;
      ps.n_seqs = 1;
      ps.kv_len = p.kv_len ? p.kv_len + s : nullptr;
      ps.first_key = p.first_key ? p.first_key + s * p.n_q : nullptr;
      ps.head_begin = g * group;
      ps.head_end = (g + 1) * group;
      ps.q_begin = rb * kAttnRowsPerItem;
      ps.q_end = std::min(p.n_q, ps.q_begin + kAttnRowsPerItem);
      kt.attention(ps, q + s * qs, k + s * ks, v + s * ks, o + s * qs, lse ? lse + s * ls : nullptr);
    }
  };
  if (items == 1) {
    worker(0, 1);
  } else {
    pool.run(worker);
  }
}

}  // namespace

namespace {

// The cos/sin tables of the last positions seen per direction (sign +1 forward, -1 backward) on
// this thread: a forward pass rotates q and k of every layer at the same positions, so the angles
// are computed once per pass instead of twice per layer (libm sincos was ~2% of a decode step).
// The key is everything the values depend on: positions, frequencies, mscale.
struct RopeTable {
  std::vector<int32_t> pos;
  std::vector<float> inv_freq, c, s;
  float mscale = 0.0f;
};

const RopeTable& rope_table(const RopeSetup& su, const int32_t* pos, float sign) {
  thread_local RopeTable tables[2];
  RopeTable& t = tables[sign > 0 ? 0 : 1];
  const int64_t half = su.rot_dims / 2, n = su.n_tokens;
  const bool hit = t.mscale == su.mscale && t.inv_freq == su.inv_freq && static_cast<int64_t>(t.pos.size()) == n &&
                   std::equal(pos, pos + n, t.pos.begin());
  if (hit) return t;
  t.pos.assign(pos, pos + n);
  t.inv_freq = su.inv_freq;
  t.mscale = su.mscale;
  t.c.resize(static_cast<size_t>(n * half));
  t.s.resize(static_cast<size_t>(n * half));
  ThreadPool::global().parallel_for(n, std::max<int64_t>(1, 2048 / std::max<int64_t>(half, 1)), [&](int64_t b, int64_t e) {
    ref::rope_cos_sin(pos + b, e - b, su.rot_dims, su.inv_freq.data(), su.mscale, sign, t.c.data() + b * half,
                      t.s.data() + b * half);
  });
  return t;
}

void rope_run(const float* x, float* y, const int32_t* pos, const RopeSetup& su, const RopeConfig& cfg, float sign,
              bool accumulate) {
  const RopeTable& t = rope_table(su, pos, sign);
  const int64_t half = su.rot_dims / 2, row = su.n_heads * su.head_dim;
  const auto apply = active_table().rope_apply;
  const bool neox = cfg.style == RopeStyle::kNeoX;
  // Tokens split over the pool when there is enough work (~16k floats per share).
  ThreadPool::global().parallel_for(su.n_tokens, std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)),
                                    [&](int64_t b, int64_t e) {
                                      apply(x + b * row, y + b * row, t.c.data() + b * half, t.s.data() + b * half,
                                            e - b, su.n_heads, su.head_dim, su.rot_dims, neox, accumulate);
                                    });
}

}  // namespace

Tensor rope(const Tensor& x_, const Tensor& pos_, const RopeConfig& cfg) {
  Tensor x = f32_in(x_, "rope", "x");
  Tensor pos = detail::i32_in(pos_, "rope", "pos");
  RopeSetup s = rope_setup(x, pos, cfg, "rope");
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel()) rope_run(x.data<float>(), y.data<float>(), pos.data<int32_t>(), s, cfg, 1.0f, false);
  return y;
}

void rope_backward(const Tensor& dy_, const Tensor& pos_, const RopeConfig& cfg, Tensor* dx) {
  Tensor dy = f32_in(dy_, "rope_backward", "dy");
  Tensor pos = detail::i32_in(pos_, "rope_backward", "pos");
  RopeSetup s = rope_setup(dy, pos, cfg, "rope_backward");
  float* g = grad_out(dx, dy.shape(), "rope_backward", "dx");
  if (g && dy.numel()) rope_run(dy.data<float>(), g, pos.data<int32_t>(), s, cfg, -1.0f, true);
}

Tensor alibi_slopes(int64_t n_heads) {
  LLMKIT_CHECK(n_heads > 0, kInvalidArgument, "alibi_slopes: n_heads ", n_heads, " must be > 0");
  Tensor s = Tensor::empty({n_heads}, DType::kF32);
  ref::alibi_slopes(n_heads, s.data<float>());
  return s;
}

AttentionOutput attention(const Tensor& q_, const Tensor& k_, const Tensor& v_, const AttentionOptions& opt) {
  Tensor q = f32_in(q_, "attention", "q"), k = f32_in(k_, "attention", "k"), v = f32_in(v_, "attention", "v");
  check_heads(q, k, v, opt);
  Tensor slopes = opt.alibi ? alibi_slopes(q.dim(2)) : Tensor();
  const ref::AttentionParams p = params(q, k, opt, slopes);
  AttentionOutput out;
  out.out = Tensor::empty(q.shape(), DType::kF32);
  out.lse = Tensor::empty({p.n_seqs, p.n_heads, p.n_q}, DType::kF32);
  if (!q.numel()) return out;
  attention_forward(p, q.data<float>(), k.data<float>(), v.data<float>(), out.out.data<float>(),
                    out.lse.data<float>());
  return out;
}

void attention_backward(const Tensor& q_, const Tensor& k_, const Tensor& v_, const AttentionOutput& fwd,
                        const Tensor& dout_, const AttentionOptions& opt, Tensor* dq, Tensor* dk, Tensor* dv) {
  const char* op = "attention_backward";
  Tensor q = f32_in(q_, op, "q"), k = f32_in(k_, op, "k"), v = f32_in(v_, op, "v");
  check_heads(q, k, v, opt);
  Tensor o = f32_in(fwd.out, op, "out"), dout = f32_in(dout_, op, "dout");
  detail::same_shape(q, o, op, "q", "out");
  detail::same_shape(q, dout, op, "q", "dout");
  Tensor lse;
  if (fwd.lse.defined()) {
    lse = f32_in(fwd.lse, op, "lse");
    LLMKIT_CHECK(lse.shape() == Shape({q.dim(0), q.dim(2), q.dim(1)}), kInvalidArgument, op, ": lse ",
                 lse.shape().str(), " must be [n_seqs, n_heads, n_q]");
  }
  Tensor slopes = opt.alibi ? alibi_slopes(q.dim(2)) : Tensor();
  const ref::AttentionParams p = params(q, k, opt, slopes);
  float* gq = grad_out(dq, q.shape(), op, "dq");
  float* gk = grad_out(dk, k.shape(), op, "dk");
  float* gv = grad_out(dv, v.shape(), op, "dv");
  if (!q.numel()) return;
  const int64_t qs = p.n_q * p.n_heads * p.head_dim, ks = p.n_kv * p.n_kv_heads * p.head_dim, ls = p.n_heads * p.n_q;
  auto at = [](float* base, int64_t off) { return base ? base + off : nullptr; };
  const KernelTable& kt = active_table();
  for_each_seq_kv_head(p, [&](const ref::AttentionParams& ps, int64_t s) {
    kt.attention_backward(ps, q.data<float>() + s * qs, k.data<float>() + s * ks, v.data<float>() + s * ks,
                            o.data<float>() + s * qs, lse.defined() ? lse.data<float>() + s * ls : nullptr,
                            dout.data<float>() + s * qs, at(gq, s * qs), at(gk, s * ks), at(gv, s * ks));
  });
}

}  // namespace llmkit::ops

// ---- paged KV cache ----------------------------------------------------------------------------
namespace llmkit::ops {
static_assert(kKVPage == ref::kKVPage, "ops and kernels must agree on the KV page size");
namespace {

void check_pages(const Tensor& k_pages, const Tensor& v_pages, const char* op) {
  LLMKIT_CHECK(k_pages.rank() == 4 && v_pages.rank() == 4 && k_pages.dim(3) == kKVPage && v_pages.dim(2) == kKVPage &&
                   k_pages.dim(0) == v_pages.dim(0) && k_pages.dim(1) == v_pages.dim(1) && k_pages.dim(2) == v_pages.dim(3),
               kInvalidArgument, op, ": k_pages must be [n_pages, n_kv_heads, head_dim, ", kKVPage,
               "] and v_pages [n_pages, n_kv_heads, ", kKVPage, ", head_dim]; got ", k_pages.shape().str(), " and ",
               v_pages.shape().str());
  LLMKIT_CHECK((k_pages.dtype() == DType::kF32 || k_pages.dtype() == DType::kF16) &&
                   v_pages.dtype() == k_pages.dtype() && k_pages.is_contiguous() && v_pages.is_contiguous(),
               kInvalidArgument, op, ": KV pages must be contiguous, both F32 or both F16; got ",
               dtype_name(k_pages.dtype()), " and ", dtype_name(v_pages.dtype()));
}

void check_table(const std::vector<int32_t>& blocks, int64_t n_pos, int64_t n_pages, const char* op) {
  const int64_t need = (n_pos + kKVPage - 1) / kKVPage;
  LLMKIT_CHECK(static_cast<int64_t>(blocks.size()) >= need, kInvalidArgument, op, ": the block table has ",
               blocks.size(), " pages, ", n_pos, " positions need ", need);
  for (int64_t b = 0; b < need; ++b)
    LLMKIT_CHECK(blocks[static_cast<size_t>(b)] >= 0 && blocks[static_cast<size_t>(b)] < n_pages, kInvalidArgument, op,
                 ": block ", blocks[static_cast<size_t>(b)], " at table entry ", b, " is outside the pool [0, ", n_pages, ")");
}

}  // namespace

Tensor paged_attention(const Tensor& q_, const Tensor& k_pages, const Tensor& v_pages, const std::vector<PagedSeq>& seqs,
                       const AttentionOptions& opt) {
  const char* op = "paged_attention";
  Tensor q = f32_in(q_, op, "q");
  check_pages(k_pages, v_pages, op);
  LLMKIT_CHECK(q.rank() == 3 && q.dim(2) == k_pages.dim(2) && k_pages.dim(1) > 0 && q.dim(1) % k_pages.dim(1) == 0,
               kInvalidArgument, op, ": q must be [n_tokens, n_heads, head_dim] with n_kv_heads (", k_pages.dim(1),
               ") dividing n_heads and head_dim ", k_pages.dim(2), "; got ", q.shape().str());
  LLMKIT_CHECK(opt.window >= 0, kInvalidArgument, op, ": window ", opt.window, " must be >= 0 (0 = off)");
  LLMKIT_CHECK(std::isfinite(opt.scale) && opt.scale >= 0.0f, kInvalidArgument, op, ": scale ", opt.scale,
               " must be finite and >= 0 (0 = 1/sqrt(head_dim))");
  const int64_t n_seqs = static_cast<int64_t>(seqs.size());
  std::vector<int64_t> q_off(seqs.size() + 1, 0), n_kv(seqs.size());
  std::vector<const int32_t*> tables(seqs.size());
  for (size_t s = 0; s < seqs.size(); ++s) {
    const PagedSeq& ps = seqs[s];
    LLMKIT_CHECK(ps.blocks && ps.n_q >= 0 && ps.n_q <= ps.n_kv, kInvalidArgument, op, ": sequence ", s, " has ",
                 ps.n_q, " queries over ", ps.n_kv, " positions (need 0 <= n_q <= n_kv and a block table)");
    check_table(*ps.blocks, ps.n_kv, k_pages.dim(0), op);
    q_off[s + 1] = q_off[s] + ps.n_q;
    n_kv[s] = ps.n_kv;
    tables[s] = ps.blocks->data();
  }
  LLMKIT_CHECK(q_off.back() == q.dim(0), kInvalidArgument, op, ": the sequences hold ", q_off.back(),
               " query rows, q has ", q.dim(0));
  Tensor slopes = opt.alibi ? alibi_slopes(q.dim(1)) : Tensor();
  ref::PagedAttentionParams p;
  p.n_heads = q.dim(1);
  p.n_kv_heads = k_pages.dim(1);
  p.head_dim = q.dim(2);
  p.kv_dtype = k_pages.dtype();
  p.scale = opt.scale > 0.0f ? opt.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  p.window = opt.window;
  p.alibi = slopes.defined() ? slopes.data<float>() : nullptr;
  p.n_seqs = n_seqs;
  p.q_off = q_off.data();
  p.n_kv = n_kv.data();
  p.blocks = tables.data();
  Tensor out = Tensor::empty(q.shape(), DType::kF32);
  if (!q.numel()) return out;
  const KernelTable& kt = active_table();
  const float* qd = q.data<float>();
  const void *kd = k_pages.raw(), *vd = v_pages.raw();
  float* od = out.data<float>();
  ThreadPool& pool = ThreadPool::global();
  if (current_backend() == Backend::kRef || pool.size() == 1) {
    kt.paged_attention(p, qd, kd, vd, od);
    return out;
  }
  // Work items (sequence, kv head, block of rows), costliest first (rows x keys the last row sees),
  // claimed from an atomic counter: a batch mixing prompt chunks and single decode rows keeps both
  // threads busy to the end.
  struct Item {
    int64_t s, g, i0, i1, cost;
  };
  std::vector<Item> items;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t nq = q_off[static_cast<size_t>(s) + 1] - q_off[static_cast<size_t>(s)];
    for (int64_t i0 = 0; i0 < nq; i0 += kAttnRowsPerItem) {
      const int64_t i1 = std::min(nq, i0 + kAttnRowsPerItem);
      const int64_t keys = n_kv[static_cast<size_t>(s)] - nq + i1;
      for (int64_t g = 0; g < p.n_kv_heads; ++g) items.push_back({s, g, i0, i1, (i1 - i0) * keys});
    }
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.cost > b.cost; });
  const int64_t group = p.n_heads / p.n_kv_heads;
  std::atomic<size_t> next{0};
  auto worker = [&](int, int) {
    // Each thread claims its next item before running the current one, so that the kernel can
    // prefetch the next item's first keys while it finishes this one.
    size_t it = next.fetch_add(1, std::memory_order_relaxed);
    while (it < items.size()) {
      const size_t nx = next.fetch_add(1, std::memory_order_relaxed);
      const Item& w = items[it];
      ref::PagedAttentionParams ps = p;
      ps.seq_begin = w.s;
      ps.seq_end = w.s + 1;
      ps.head_begin = w.g * group;
      ps.head_end = (w.g + 1) * group;
      ps.q_begin = w.i0;
      ps.q_end = w.i1;
      if (nx < items.size()) {
        const Item& n = items[nx];
        const int64_t nq = q_off[static_cast<size_t>(n.s) + 1] - q_off[static_cast<size_t>(n.s)];
        const int64_t first_pos = n_kv[static_cast<size_t>(n.s)] - nq + n.i0;
        ps.next_blocks = tables[static_cast<size_t>(n.s)];
        ps.next_kvh = n.g;
        ps.next_lo = p.window > 0 && first_pos - p.window + 1 > 0 ? first_pos - p.window + 1 : 0;
        ps.next_hi = first_pos + 1;
      }
      kt.paged_attention(ps, qd, kd, vd, od);
      it = nx;
    }
  };
  if (items.size() == 1) worker(0, 1);
  else pool.run(worker);
  return out;
}

void paged_kv_write(const Tensor& k_, const Tensor& v_, int64_t pos0, const std::vector<int32_t>& blocks, Tensor& k_pages,
                    Tensor& v_pages) {
  const char* op = "paged_kv_write";
  Tensor k = f32_in(k_, op, "k"), v = f32_in(v_, op, "v");
  check_pages(k_pages, v_pages, op);
  detail::same_shape(k, v, op, "k", "v");
  LLMKIT_CHECK(k.rank() == 3 && k.dim(1) == k_pages.dim(1) && k.dim(2) == k_pages.dim(2), kInvalidArgument, op,
               ": k must be [n, n_kv_heads = ", k_pages.dim(1), ", head_dim = ", k_pages.dim(2), "], got ", k.shape().str());
  LLMKIT_CHECK(pos0 >= 0, kInvalidArgument, op, ": first position ", pos0, " must be >= 0");
  check_table(blocks, pos0 + k.dim(0), k_pages.dim(0), op);
  active_table().paged_kv_write(k.data<float>(), v.data<float>(), k.dim(0), k.dim(1), k.dim(2), pos0, blocks.data(),
                                k_pages.raw(), v_pages.raw(), k_pages.dtype());
}

}  // namespace llmkit::ops
