// The scalar reference kernels: the executable spec of every op llmkit computes, forward and backward
// side by side (llm.c style), and the oracle the SIMD/CUDA kernels are tested against (tests/op_harness.h).
// Plain loops over contiguous row-major float32 unless stated. Shapes are in the comments, in the
// vocabulary n_tokens, n_seqs, d_model, n_heads, n_kv_heads, head_dim, d_ff, n_vocab.
//
// Conventions shared by every kernel here:
//  - Kernels trust their inputs: they never throw (the ops layer validates first) and allocate at most
//    a thread-local scratch buffer that only grows (so steady-state calls do not touch the heap).
//  - Backward kernels ACCUMULATE (+=) into gradient buffers, as llm.c does, so that gradients of a
//    tensor used twice and gradient accumulation over micro-batches need no extra pass. Callers that
//    want plain gradients zero the buffers first. A null gradient pointer means "not wanted".
//  - Dot products accumulate in float in index order (bit-reproducible, what the SIMD kernels are
//    compared against by NMSE). Reductions over a whole row that feed exp/log (softmax sums, norms,
//    log-sum-exp over n_vocab) accumulate in double, where float error would be visible in the tests.
#pragma once

#include <cstdint>
#include <vector>

#include "llmkit/tensor/dtype.h"

namespace llmkit::ref {

// ---- matmul (matmul.cc) ---------------------------------------------------------------------------
// y[M,N] = x[M,K] . w[N,K]^T ; w rows of dtype wt: F32, F16, BF16 or any quantized type (dequantized a
// row at a time with ref::dequantize_row).
void matmul(const float* x, const void* w, DType wt, float* y, int64_t M, int64_t N, int64_t K);
// Same with BF16 inputs (raw bits); products and sums in float.
void matmul_bf16(const uint16_t* x, const uint16_t* w, float* y, int64_t M, int64_t N, int64_t K);
// General product C[M,N] (+)= op(A)[M,K] . op(B)[K,N] over strided row-major operands: the kernel of
// the backward products (dx = dy . w, dw = dy^T . x), which then need no transposed copies.
//   A: F32 or BF16 (at), [M,K] with row stride lda, or (a_t) stored [K,M] with row stride lda.
//   B: F32, F16 or BF16, stored [N,K] with row stride ldb (the weight layout of matmul), or (b_kn)
//      stored [K,N] with row stride ldb.
//   C: F32 [M,N] with row stride ldc; accumulate adds the product to C, else C is overwritten.
//   bf16: BF16 mixed-precision compute. Both operands are rounded to BF16 (round to nearest even; a
//      no-op for BF16 operands), their products are exact in F32 and summed in F32. Without it, an
//      A or B of F16/BF16 is widened exactly and everything runs in F32. (F16 B with bf16 compute is
//      an error: rounding it would lose bits silently.)
struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const void* a = nullptr;
  DType at = DType::kF32;
  int64_t lda = 0;
  bool a_t = false;
  const void* b = nullptr;
  DType bt = DType::kF32;
  int64_t ldb = 0;
  bool b_kn = false;
  float* c = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
  bool bf16 = false;
};
// Sum over k in ascending order, in float, per output element.
void gemm(const GemmArgs& g);
// dx[M,K] += dy[M,N] . w[N,K]      (any weight dtype: frozen quantized bases in QLoRA need this)
void matmul_backward_x(const float* dy, const void* w, DType wt, float* dx, int64_t M, int64_t N, int64_t K);
// dw[N,K] += dy[M,N]^T . x[M,K]    (an f32 gradient, whatever the weight's float dtype); only rows
// n in [n_begin, n_end) of dw (n_end < 0: N), so that threads can own disjoint rows.
void matmul_backward_w(const float* dy, const float* x, float* dw, int64_t M, int64_t N, int64_t K,
                       int64_t n_begin = 0, int64_t n_end = -1);

// ---- element-wise and activations (elementwise.cc) -----------------------------------------------
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);
void scale(const float* a, float s, float* y, int64_t n);
// y[rows,d] = x[rows,d] + b[d] (a bias row broadcast over rows); db[d] += sum over rows of dy.
void add_bias(const float* x, const float* b, float* y, int64_t rows, int64_t d);
void add_bias_backward_b(const float* dy, float* db, int64_t rows, int64_t d);
// da += dy * b ; db += dy * a  (backward of mul)
void mul_backward(const float* a, const float* b, const float* dy, float* da, float* db, int64_t n);

// SiLU(x) = x * sigmoid(x) (Elfwing et al. 2017; Hendrycks & Gimpel's "SiLU").
void silu(const float* x, float* y, int64_t n);
void silu_backward(const float* x, const float* dy, float* dx, int64_t n);
// GELU (Hendrycks & Gimpel 2016): exact x/2 (1 + erf(x/sqrt2)), or the tanh approximation
// x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) used by GPT-2 ("gelu_new"/"gelu_pytorch_tanh" in HF).
void gelu(const float* x, float* y, int64_t n, bool tanh_approx);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, bool tanh_approx);
void relu(const float* x, float* y, int64_t n);
void relu_backward(const float* x, const float* dy, float* dx, int64_t n);
// GLU variants (Shazeer 2020, "GLU Variants Improve Transformer"): y = act(gate) * up.
void swiglu(const float* gate, const float* up, float* y, int64_t n);
void swiglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n);

// One AdamW update (Loshchilov & Hutter; PyTorch's torch.optim.AdamW arithmetic) of n parameters, with
// the step's scalars precomputed: keep = 1 - lr * weight_decay, step_size = lr / (1 - beta1^t),
// bc2_sqrt = sqrt(1 - beta2^t), grad_scale (a gradient-clipping factor, 1 for none). Per element,
// in this order and without fused multiply-adds:
//   g = g grad_scale;  m += (1 - b1) (g - m);  v = v b2 + (1 - b2) g g;
//   p = p keep + (-step_size) (m / (sqrt(v) / bc2_sqrt + eps))
struct AdamWStep {
  float keep = 1.0f, step_size = 0.0f, bc2_sqrt = 1.0f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, grad_scale = 1.0f;
};
void adamw(const AdamWStep& a, float* p, const float* g, float* m, float* v, int64_t n);
void geglu(const float* gate, const float* up, float* y, int64_t n, bool tanh_approx);
void geglu_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t n,
                    bool tanh_approx);

// ---- normalisation and softmax (norm.cc) -----------------------------------------------------------
// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * (w + w_offset). Gemma stores w - 1
// and uses w_offset = 1 (HF GemmaRMSNorm: `output * (1.0 + self.weight)`). x, y: [rows, d]; w: [d].
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset);
void rmsnorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t rows,
                      int64_t d, float eps, float w_offset);
// LayerNorm (Ba et al. 2016): y = (x - mean) / sqrt(var + eps) * w + b; w, b: [d], either may be null
// (then 1 and 0).
void layernorm(const float* x, const float* w, const float* b, float* y, int64_t rows, int64_t d, float eps);
void layernorm_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                        int64_t rows, int64_t d, float eps);

// Masks for a softmax over attention scores x[rows, n_keys]. Rows come in groups of n_q query rows
// (one group per sequence x head, group g = row / n_q). Query row i of a group sits at absolute position
// i + (n_keys - n_q): the queries are the last n_q positions, as in KV-cache decode.
struct SoftmaxMask {
  int64_t n_q = 0;                   // rows per group; 0 means all rows form one group
  bool causal = false;               // key j visible iff j <= position of the query
  const int32_t* key_len = nullptr;  // [n_groups] keys >= key_len[g] are padding; null = none
};
// In-place softmax of each row of x[rows, d] (the KernelTable entry: no mask).
void softmax(float* x, int64_t rows, int64_t d);
// Masked softmax; a row whose keys are all masked becomes all zeros (never NaN).
void softmax_masked(float* x, int64_t rows, int64_t d, const SoftmaxMask& mask);
// dx[rows,d] += y * (dy - sum_j dy_j y_j), from the softmax output y (masked entries have y = 0).
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t d);

// ---- rotary position embedding and ALiBi (rope.cc) ------------------------------------------------
// RoPE (Su et al. 2021, "RoFormer"). GPT-J rotates interleaved pairs (x[2i], x[2i+1]); GPT-NeoX (and
// HF Llama's rotate_half) rotates (x[i], x[i + rot_dims/2]). Only the first rot_dims of each head rotate
// (HF `partial_rotary_factor`, e.g. Phi-2, GPT-J's rotary_dim); the rest pass through.
enum class RopeStyle : uint8_t { kGptJ, kNeoX };
// Context-extension schemes, named by HF config `rope_scaling.rope_type`.
enum class RopeScaling : uint8_t { kNone, kLinear, kNtk, kYarn, kLlama3 };
struct RopeConfig {
  RopeStyle style = RopeStyle::kNeoX;
  int64_t rot_dims = 0;            // rotated dims per head, even; 0 = head_dim
  float theta = 10000.0f;          // HF `rope_theta`
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;             // rope_scaling.factor
  int64_t original_ctx = 0;        // rope_scaling.original_max_position_embeddings (YaRN, Llama-3)
  float beta_fast = 32.0f;         // YaRN rope_scaling.beta_fast
  float beta_slow = 1.0f;          // YaRN rope_scaling.beta_slow
  float low_freq_factor = 1.0f;    // Llama-3 rope_scaling.low_freq_factor
  float high_freq_factor = 4.0f;   // Llama-3 rope_scaling.high_freq_factor
  // Per-frequency divisors [rot_dims/2] applied after the scaling above (llama.cpp's
  // "rope_freqs.weight", its form of Llama-3 scaling in GGUF files); empty = none.
  std::vector<float> freq_factors;
};
// inv_freq[rot_dims/2] (rad per position) and the attention temperature mscale (1 except YaRN) that
// multiplies cos and sin. Computed once per model, not per call.
void rope_freqs(const RopeConfig& cfg, int64_t rot_dims, float* inv_freq, float* mscale);
// y[n_tokens, n_heads, head_dim] = rotate(x) at positions pos[n_tokens]. x may alias y.
void rope(const float* x, float* y, const int32_t* pos, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
          int64_t rot_dims, const float* inv_freq, float mscale, RopeStyle style);
// dx += R^T dy: the rotation is orthogonal, so the backward rotates by -angle (times mscale).
void rope_backward(const float* dy, float* dx, const int32_t* pos, int64_t n_tokens, int64_t n_heads,
                   int64_t head_dim, int64_t rot_dims, const float* inv_freq, float mscale, RopeStyle style);
// The two halves of rope / rope_backward, so that a caller can compute the angles once and apply
// them to many tensors (every layer's q and k): c[t * half + i] = cos(pos_t f_i) m and
// s[t * half + i] = sign sin(pos_t f_i) m (half = rot_dims / 2; sign -1 is the inverse rotation of
// rope_backward), then y (+)= R x per head with those values. rope = rope_cos_sin(sign 1) +
// rope_apply(accumulate false), bit for bit; rope_backward = sign -1, accumulate true.
void rope_cos_sin(const int32_t* pos, int64_t n_tokens, int64_t rot_dims, const float* inv_freq, float mscale,
                  float sign, float* c, float* s);
void rope_apply(const float* x, float* y, const float* c, const float* s, int64_t n_tokens, int64_t n_heads,
                int64_t head_dim, int64_t rot_dims, bool neox, bool accumulate);
// ALiBi head slopes (Press et al. 2022, "Train Short, Test Long"), with BLOOM's rule for head counts
// that are not a power of two (HF modeling_bloom.build_alibi_tensor). slopes[n_heads].
void alibi_slopes(int64_t n_heads, float* slopes);

// ---- attention (attention.cc) ----------------------------------------------------------------------
struct AttentionParams {
  int64_t n_seqs = 1;
  int64_t n_q = 0;                      // query positions per sequence
  int64_t n_kv = 0;                     // key/value positions per sequence (>= n_q when causal)
  int64_t n_heads = 0, n_kv_heads = 0;  // n_kv_heads divides n_heads (MHA / GQA / MQA)
  int64_t head_dim = 0;
  float scale = 0.0f;                   // scores = scale * q.k (usually 1/sqrt(head_dim))
  bool causal = false;                  // query i (absolute position i + n_kv - n_q) sees keys j <= it
  int64_t window = 0;                   // sliding window (Mistral): also require pos_q - j < window; 0 = off
  const float* alibi = nullptr;         // [n_heads] ALiBi slopes: score += slope * (j - pos_q); null = off
  const int32_t* kv_len = nullptr;      // [n_seqs] valid keys per sequence (padding mask); null = all
  const int32_t* first_key = nullptr;   // [n_seqs * n_q] first visible key per query row (packed documents,
                                        // non-decreasing along a sequence); null = 0
  // Only query heads [head_begin, head_end) are computed (head_end 0 = n_heads): lets the ops layer
  // split the work over threads by kv-head group, where no two threads write the same dk/dv.
  int64_t head_begin = 0, head_end = 0;
  // Forward only: only query rows [q_begin, q_end) of each sequence (q_end 0 = n_q), so the work of
  // a long prompt can be split over threads by rows too.
  int64_t q_begin = 0, q_end = 0;
};
// o[n_seqs, n_q, n_heads, head_dim] = softmax(scale q k^T + bias + mask) v, with
// q[n_seqs, n_q, n_heads, head_dim], k and v [n_seqs, n_kv, n_kv_heads, head_dim].
// Flash-attention style (Dao et al. 2022; Milakov & Gimelshein 2018 "online softmax"): keys are visited
// in blocks of kAttnBlock with a running max and sum, so scratch is O(kAttnBlock + head_dim), never
// O(n_kv^2). lse[n_seqs, n_heads, n_q] (optional) receives the log-sum-exp of each row for the backward.
// A query with no visible key outputs zeros (lse = -inf).
constexpr int64_t kAttnBlock = 64;
void attention(const AttentionParams& p, const float* q, const float* k, const float* v, float* o, float* lse);
// Paged KV cache (decoders): positions live in pages of kKVPage consecutive positions, anywhere in a
// pool of pages, found through each sequence's block table (position j is in page blocks[j / kKVPage],
// slot j % kKVPage). Keys are stored transposed so attention reads them without a per-step transpose:
//   k_pages [n_pages, n_kv_heads, head_dim, kKVPage]   (k_j[c] at [page][kvh][c][slot])
//   v_pages [n_pages, n_kv_heads, kKVPage, head_dim]   (v_j[c] at [page][kvh][slot][c])
// Pages hold F32 or F16 values (kv_dtype; F16 halves the cache's memory and the bytes attention
// reads per step; values are rounded to nearest even when written, and widened to F32 when read).
constexpr int64_t kKVPage = 16;
struct PagedAttentionParams {
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  DType kv_dtype = DType::kF32;      // of k_pages and v_pages: F32 or F16
  float scale = 0.0f;
  int64_t window = 0;                // sliding window; 0 = off
  const float* alibi = nullptr;      // [n_heads] or null
  // Sequence s owns query rows [q_off[s], q_off[s + 1]) of q [N, n_heads, head_dim], the last
  // n_q_s = q_off[s + 1] - q_off[s] of its n_kv[s] positions (causal: row i sits at absolute position
  // n_kv[s] - n_q_s + i and sees keys <= it), and block table blocks[s] (>= ceil(n_kv[s] / kKVPage)).
  int64_t n_seqs = 0;
  const int64_t* q_off = nullptr;    // [n_seqs + 1]
  const int64_t* n_kv = nullptr;     // [n_seqs]
  const int32_t* const* blocks = nullptr;  // [n_seqs] block tables
  // Work split (as in AttentionParams): sequences [seq_begin, seq_end), query heads [head_begin,
  // head_end) and rows [q_begin, q_end) of each sequence; 0 ends mean "to the end".
  int64_t seq_begin = 0, seq_end = 0, head_begin = 0, head_end = 0, q_begin = 0, q_end = 0;
  // Optional hint, no effect on results: the calling thread's next work item reads keys [next_lo,
  // next_hi) of kv head next_kvh through block table next_blocks (null: no hint). A kernel may
  // prefetch that item's first keys and values while it finishes this one.
  const int32_t* next_blocks = nullptr;
  int64_t next_kvh = 0, next_lo = 0, next_hi = 0;
};
// o [N, n_heads, head_dim] = causal softmax(scale q k^T + ALiBi + window mask) v over the paged keys.
void paged_attention(const PagedAttentionParams& p, const float* q, const void* k_pages, const void* v_pages,
                     float* o);
// Writes k, v [n, n_kv_heads, head_dim] of positions pos0 .. pos0 + n - 1 into their pages.
void paged_kv_write(const float* k, const float* v, int64_t n, int64_t n_kv_heads, int64_t head_dim, int64_t pos0,
                    const int32_t* blocks, void* k_pages, void* v_pages, DType kv_dtype);

// dq, dk, dv += gradients (shapes as q, k, v), recomputing scores block by block from q, k, v, the
// forward output o and (if given, else recomputed) lse.
void attention_backward(const AttentionParams& p, const float* q, const float* k, const float* v,
                        const float* o, const float* lse, const float* dout, float* dq, float* dk, float* dv);

// ---- loss, selection (loss.cc) ------------------------------------------------------------------------
// Cross-entropy of logits[n, n_vocab] against targets[n] (ops::cross_entropy combines these per-row
// pieces, threading them over rows): lse[r] = log sum_j exp(x[r, j]) (max-shifted, summed in
// double); the loss is the mean of lse[r] - x[r, target[r]] over rows whose target is not
// ignore_index, and its gradient dx[r, j] += g (exp(x[r, j] - lse[r]) - [j == target[r]]) on those
// rows, with g = dloss / n_valid.
void logsumexp_rows(const float* x, int64_t rows, int64_t d, double* lse);
void xent_grad_rows(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t d,
                    int32_t ignore_index, double g, float* dx);
// out[rows] = index of the max of each row of x[rows, d] (first one on ties).
void argmax(const float* x, int32_t* out, int64_t rows, int64_t d);
// The k largest of each row, in descending order (lower index first on ties): vals, idx [rows, k].
void topk(const float* x, float* vals, int32_t* idx, int64_t rows, int64_t d, int64_t k);

// ---- embedding and copies (shape_ops.cc) ------------------------------------------------------------
// y[n_tokens, d] = table[ids[t]] ; table [n_vocab, d] rows of dtype dt (float or quantized).
void embedding(const void* table, DType dt, const int32_t* ids, float* y, int64_t n_tokens, int64_t d);
// dtable[ids[t]] += dy[t]  (scatter-add: repeated ids accumulate).
void embedding_backward(const int32_t* ids, const float* dy, float* dtable, int64_t n_tokens, int64_t d);
// Converts n values of a float dtype (F32/F16/BF16) or whole quantized blocks to float32.
void to_f32(const void* x, DType t, float* y, int64_t n);
// Row n of a [N, K] weight matrix of any dtype as K floats (the *_R8 layouts included).
void weight_row_f32(const void* w, DType t, int64_t n, int64_t K, float* y);

}  // namespace llmkit::ref
