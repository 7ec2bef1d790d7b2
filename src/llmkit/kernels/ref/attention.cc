// Reference scaled-dot-product attention (Vaswani et al. 2017), forward and backward, computed the
// flash-attention way (Dao et al. 2022, alg. 1/2) one query row at a time: keys are visited in blocks
// of kAttnBlock with the online-softmax recurrence (Milakov & Gimelshein 2018)
//   m' = max(m, max_j s_j),  l' = l e^(m-m') + sum_j e^(s_j-m'),  acc' = acc e^(m-m') + sum_j e^(s_j-m') v_j
// so the scratch is O(kAttnBlock + head_dim) whatever the context length. Covers MHA/GQA/MQA (query head
// h reads kv head h / (n_heads / n_kv_heads)), causal and sliding-window masks, ALiBi and padding.
// The backward recomputes each score from q and k and uses the saved log-sum-exp:
//   p = e^(s - lse), D = dout.o, dv_j += p dout, ds = p (dout.v_j - D), dq += scale ds k_j, dk_j += scale ds q.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "llmkit/kernels/ref/ops.h"
#include "llmkit/tensor/half.h"

namespace llmkit::ref {
namespace {

thread_local std::vector<float> t_scores, t_acc;

struct RowView {
  const float* q;  // [head_dim]
  const float* k;  // first key of this kv head; key j at k + j * kv_stride
  const float* v;
  int64_t kv_stride;
  int64_t lo, hi;  // visible keys [lo, hi)
  int64_t pos;     // absolute position of the query
  float slope;     // ALiBi slope (0 = none)
};

RowView row_view(const AttentionParams& p, const float* q, const float* k, const float* v, int64_t s, int64_t h,
                 int64_t i) {
  RowView r;
  const int64_t group = p.n_heads / p.n_kv_heads;
  const int64_t kvh = h / group;
  r.q = q + ((s * p.n_q + i) * p.n_heads + h) * p.head_dim;
  r.kv_stride = p.n_kv_heads * p.head_dim;
  r.k = k + (s * p.n_kv * p.n_kv_heads + kvh) * p.head_dim;
  r.v = v + (s * p.n_kv * p.n_kv_heads + kvh) * p.head_dim;
  r.pos = i + p.n_kv - p.n_q;
  r.hi = p.n_kv;
  if (p.causal && r.pos + 1 < r.hi) r.hi = r.pos + 1;
  if (p.kv_len && p.kv_len[s] < r.hi) r.hi = p.kv_len[s];
  r.lo = 0;
  if (p.window > 0 && r.pos - p.window + 1 > r.lo) r.lo = r.pos - p.window + 1;
  if (p.first_key && p.first_key[s * p.n_q + i] > r.lo) r.lo = p.first_key[s * p.n_q + i];
  r.slope = p.alibi ? p.alibi[h] : 0.0f;
  return r;
}

inline float score(const AttentionParams& p, const RowView& r, int64_t j) {
  const float* kj = r.k + j * r.kv_stride;
  float d = 0.0f;
  for (int64_t c = 0; c < p.head_dim; ++c) d += r.q[c] * kj[c];
  return p.scale * d + r.slope * static_cast<float>(j - r.pos);
}

// Online softmax over the visible keys; fills acc (unnormalised) and returns (m, l).
void online_softmax(const AttentionParams& p, const RowView& r, float* acc, float* m_out, float* l_out) {
  float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
  float* sc = t_scores.data();
  for (int64_t c = 0; c < p.head_dim; ++c) acc[c] = 0.0f;
  for (int64_t j0 = r.lo; j0 < r.hi; j0 += kAttnBlock) {
    const int64_t j1 = j0 + kAttnBlock < r.hi ? j0 + kAttnBlock : r.hi;
    float bm = m;
    for (int64_t j = j0; j < j1; ++j) {
      sc[j - j0] = score(p, r, j);
      bm = sc[j - j0] > bm ? sc[j - j0] : bm;
    }
    const float corr = std::exp(m - bm);  // m = -inf on the first block: corr = 0
    l *= corr;
    for (int64_t c = 0; c < p.head_dim; ++c) acc[c] *= corr;
    for (int64_t j = j0; j < j1; ++j) {
      const float e = std::exp(sc[j - j0] - bm);
      l += e;
      const float* vj = r.v + j * r.kv_stride;
      for (int64_t c = 0; c < p.head_dim; ++c) acc[c] += e * vj[c];
    }
    m = bm;
  }
  *m_out = m;
  *l_out = l;
}

void ensure_scratch(int64_t head_dim) {
  if (static_cast<int64_t>(t_scores.size()) < kAttnBlock) t_scores.resize(kAttnBlock);
  if (static_cast<int64_t>(t_acc.size()) < head_dim) t_acc.resize(static_cast<size_t>(head_dim));
}

}  // namespace

void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* o, float* lse) {
  ensure_scratch(p.head_dim);
  float* acc = t_acc.data();
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    for (int64_t h = p.head_begin; h < (p.head_end ? p.head_end : p.n_heads); ++h) {
      for (int64_t i = p.q_begin; i < (p.q_end ? p.q_end : p.n_q); ++i) {
        const RowView r = row_view(p, q, k, v, s, h, i);
        float m, l;
        online_softmax(p, r, acc, &m, &l);
        float* oi = o + ((s * p.n_q + i) * p.n_heads + h) * p.head_dim;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int64_t c = 0; c < p.head_dim; ++c) oi[c] = acc[c] * inv;
        if (lse)
          lse[(s * p.n_heads + h) * p.n_q + i] =
              l > 0.0f ? m + std::log(l) : -std::numeric_limits<float>::infinity();
      }
    }
  }
}

void attention_backward(const AttentionParams& p, const float* q, const float* k, const float* v,
                        const float* o, const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  ensure_scratch(p.head_dim);
  const int64_t group = p.n_heads / p.n_kv_heads;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    for (int64_t h = p.head_begin; h < (p.head_end ? p.head_end : p.n_heads); ++h) {
      const int64_t kv_off = (s * p.n_kv * p.n_kv_heads + h / group) * p.head_dim;
      for (int64_t i = 0; i < p.n_q; ++i) {
        const RowView r = row_view(p, q, k, v, s, h, i);
        if (r.hi <= r.lo) continue;  // no visible key: the output was a constant 0
        float row_lse;
        if (lse) {
          row_lse = lse[(s * p.n_heads + h) * p.n_q + i];
        } else {
          float m, l;
          online_softmax(p, r, t_acc.data(), &m, &l);
          row_lse = m + std::log(l);
        }
        const int64_t qo = ((s * p.n_q + i) * p.n_heads + h) * p.head_dim;
        const float* doi = dout + qo;
        const float* oi = o + qo;
        float D = 0.0f;
        for (int64_t c = 0; c < p.head_dim; ++c) D += doi[c] * oi[c];
        for (int64_t j = r.lo; j < r.hi; ++j) {
          const float pj = std::exp(score(p, r, j) - row_lse);
          const float* vj = r.v + j * r.kv_stride;
          const float* kj = r.k + j * r.kv_stride;
          float dp = 0.0f;
          for (int64_t c = 0; c < p.head_dim; ++c) dp += doi[c] * vj[c];
          const float ds = pj * (dp - D) * p.scale;
          const int64_t jo = kv_off + j * r.kv_stride;
          for (int64_t c = 0; c < p.head_dim; ++c) {
            if (dv) dv[jo + c] += pj * doi[c];
            if (dq) dq[qo + c] += ds * kj[c];
            if (dk) dk[jo + c] += ds * r.q[c];
          }
        }
      }
    }
  }
}

}  // namespace llmkit::ref

// ---- paged KV cache ------------------------------------------------------------------------------
// The definition, kept plain: for each query row, every visible score, then the softmax and the
// weighted sum of values, accumulated in double.
namespace llmkit::ref {

void paged_attention(const PagedAttentionParams& p, const float* q, const void* k_pages, const void* v_pages,
                     float* o) {
  const bool f16 = p.kv_dtype == DType::kF16;
  // Element i of a page pool (F32 or F16) as float.
  auto at = [f16](const void* base, int64_t i) {
    return f16 ? f16_to_f32(static_cast<const uint16_t*>(base)[i]) : static_cast<const float*>(base)[i];
  };
  const int64_t hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  const int64_t page_floats = p.n_kv_heads * hd * kKVPage;
  const int64_t s_end = p.seq_end ? p.seq_end : p.n_seqs, h_end = p.head_end ? p.head_end : p.n_heads;
  std::vector<double> sc, acc(static_cast<size_t>(hd));
  for (int64_t s = p.seq_begin; s < s_end; ++s) {
    const int64_t n_q = p.q_off[s + 1] - p.q_off[s], n_kv = p.n_kv[s];
    const int64_t i_end = p.q_end ? std::min(p.q_end, n_q) : n_q;
    for (int64_t i = p.q_begin; i < i_end; ++i) {
      const int64_t pos = n_kv - n_q + i, hi = pos + 1;
      const int64_t lo = p.window > 0 && pos - p.window + 1 > 0 ? pos - p.window + 1 : 0;
      for (int64_t h = p.head_begin; h < h_end; ++h) {
        const int64_t kvh = h / group;
        const float* qi = q + ((p.q_off[s] + i) * p.n_heads + h) * hd;
        float* oi = o + ((p.q_off[s] + i) * p.n_heads + h) * hd;
        sc.assign(static_cast<size_t>(hi - lo), 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = lo; j < hi; ++j) {
          const int64_t kp = p.blocks[s][j / kKVPage] * page_floats + kvh * hd * kKVPage + j % kKVPage;
          double d = 0;
          for (int64_t c = 0; c < hd; ++c) d += static_cast<double>(qi[c]) * at(k_pages, kp + c * kKVPage);
          d = d * p.scale + (p.alibi ? static_cast<double>(p.alibi[h]) * static_cast<double>(j - pos) : 0.0);
          sc[static_cast<size_t>(j - lo)] = d;
          mx = std::max(mx, d);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        double sum = 0;
        for (int64_t j = lo; j < hi; ++j) {
          const double e = std::exp(sc[static_cast<size_t>(j - lo)] - mx);
          sum += e;
          const int64_t vp = p.blocks[s][j / kKVPage] * page_floats + (kvh * kKVPage + j % kKVPage) * hd;
          for (int64_t c = 0; c < hd; ++c) acc[static_cast<size_t>(c)] += e * at(v_pages, vp + c);
        }
        for (int64_t c = 0; c < hd; ++c) oi[c] = sum > 0 ? static_cast<float>(acc[static_cast<size_t>(c)] / sum) : 0.0f;
      }
    }
  }
}

void paged_kv_write(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim, int64_t pos0,
                    const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype) {
  const int64_t page_floats = n_kv_heads * head_dim * kKVPage;
  auto put = [kv_dtype](void* base, int64_t i, float x) {
    if (kv_dtype == DType::kF16)
      static_cast<uint16_t*>(base)[i] = f32_to_f16(x);
    else
      static_cast<float*>(base)[i] = x;
  };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = pos0 + i, page = blocks[j / kKVPage], slot = j % kKVPage;
    for (int64_t h = 0; h < n_kv_heads; ++h) {
      const float* ki = k + (i * n_kv_heads + h) * head_dim;
      const float* vi = v + (i * n_kv_heads + h) * head_dim;
      const int64_t kp = page * page_floats + h * head_dim * kKVPage + slot;
      const int64_t vp = page * page_floats + (h * kKVPage + slot) * head_dim;
      for (int64_t c = 0; c < head_dim; ++c) put(k_pages, kp + c * kKVPage, ki[c]);
      for (int64_t c = 0; c < head_dim; ++c) put(v_pages, vp + c, vi[c]);
    }
  }
}

}  // namespace llmkit::ref
