// The device-agnostic ops: functions over llmkit::Tensor that validate dtypes and shapes (a typed
// llmkit::Error naming the op, the bad shapes and the fix: user input never asserts), allocate the
// outputs and call the kernel of the selected backend. Backend::kCpu (the default) uses the SIMD entry
// of cpu_table() where one exists and the reference kernel otherwise; Backend::kRef always runs the
// scalar reference (the oracle of the op harness). Select with ScopedBackend; the choice is per thread.
//
// Backward ops take their gradient outputs as `Tensor*`: null = not wanted; an undefined Tensor is
// allocated (zeros) and filled; a defined one is ACCUMULATED into (+=), which is how autograd sums the
// gradients of a tensor used twice and how gradient accumulation works.
//
// Inputs may be non-contiguous views; ops copy them to contiguous float32 first. Activations are F32.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "llmkit/kernels/kernel_table.h"
#include "llmkit/kernels/ref/ops.h"
#include "llmkit/tensor/tensor.h"

namespace llmkit::ops {

using ref::RopeConfig;
using ref::RopeScaling;
using ref::RopeStyle;

// ---- backend selection (backend.cc) ----------------------------------------------------------------
enum class Backend : uint8_t { kRef, kCpu };
Backend current_backend();
const char* backend_name(Backend b);
// The kernel table the ops use now: ref_table() for kRef; for kCpu, cpu_table() entries falling back to
// ref_table() where null (a merged copy, rebuilt when the SIMD target changes).
const KernelTable& active_table();
class ScopedBackend {
 public:
  explicit ScopedBackend(Backend b);
  ~ScopedBackend();
  ScopedBackend(const ScopedBackend&) = delete;
  ScopedBackend& operator=(const ScopedBackend&) = delete;

 private:
  Backend prev_;
};

// ---- linear algebra and element-wise (linear.cc) ---------------------------------------------------
// y[..., N] = x[..., K] . w[N, K]^T ; w: F32, F16, BF16 or a quantized dtype. E.g. q [n_tokens, n_heads *
// head_dim] = x [n_tokens, d_model] . wq [n_heads * head_dim, d_model]^T.
Tensor matmul(const Tensor& x, const Tensor& w);
// dx[..., K] from dy[..., N] and w[N, K] (any dtype); dw[N, K] (f32) from dy and x (w F32/F16/BF16).
void matmul_backward(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw);
// w [N, K] of Q4_0 / Q4_1 / Q8_0 with N % 8 == 0 -> the same matrix in its rows-interleaved-by-8
// layout (dtype.h, *_R8: the CPU int8 kernel reads one memory stream per 8 rows and loads 8 scales at
// once), a new tensor of the same byte size, filled on the pool. matmul, embedding and to_f32 read
// the result with the same values; it is an inference layout (no file format stores it).
Tensor repack_r8(const Tensor& w);
// w into `out` (contiguous CPU, w's shape: e.g. a view into one huge-page slab for all of a model's
// matrices), on the pool: repacked when out's dtype is r8_of(w.dtype()), copied as it is when it
// is w's own. `done(bytes)` (may be empty) is called as the leading `bytes` of w have been read for
// the last time, a few MB at a time, so a caller can drop the source pages while the copy proceeds
// (peak memory: the copy plus one chunk).
void relayout_into(const Tensor& w, const Tensor& out, const std::function<void(size_t bytes)>& done = {});
// Whether matmul with w would run faster after repack_r8 here: w has an R8 layout, N % 8 == 0, and
// this backend and CPU run the int8 kernel (x86 AVX2 or later).
bool r8_helps(const Tensor& w);
// y[M, N] = x[M, K] . w[N, K]^T with BF16 x and w, F32 result.
Tensor matmul_bf16(const Tensor& x, const Tensor& w);
// BF16 mixed-precision matmul (the compute of `--precision bf16` training): x [..., K] and w [N, K],
// each F32 or BF16, are rounded to BF16 (round to nearest even; exact for BF16 values), multiplied
// exactly and summed in F32 (ref::GemmArgs::bf16: VDPBF16PS on AVX512_BF16 CPUs). y [..., N] F32.
Tensor matmul_mixed_bf16(const Tensor& x, const Tensor& w);
// Its backward with the same numerics (dy rounded to BF16 as well): dx [..., K] += dy . w and
// dw [N, K] += dy^T . x, both F32, either may be null.
void matmul_backward_mixed_bf16(const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw);
// Same-shape element-wise ops.
Tensor add(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, float s);
void mul_backward(const Tensor& a, const Tensor& b, const Tensor& dy, Tensor* da, Tensor* db);
// y[..., d] = x[..., d] + bias[d] ; backward: dbias[d] = sum of dy over rows (dx is dy itself).
Tensor add_bias(const Tensor& x, const Tensor& bias);
void add_bias_backward(const Tensor& dy, Tensor* dbias);
// y[n_tokens, d_model] = table[ids[n_tokens]] ; table [n_vocab, d_model] of any dtype, ids I32 in
// [0, n_vocab) (any leading shape: ids [n_seqs, n_tokens] gives y [n_seqs, n_tokens, d_model]).
Tensor embedding(const Tensor& table, const Tensor& ids);
// dtable[n_vocab, d_model] += scatter of dy[n_tokens, d_model] by ids[n_tokens].
void embedding_backward(const Tensor& ids, const Tensor& dy, Tensor* dtable, int64_t n_vocab);
// Any float dtype (F32, F16, BF16, quantized) to a new F32 tensor of the same shape.
Tensor to_f32(const Tensor& x);
// F32 -> F16 or BF16, round to nearest even (F16: beyond +-65504 becomes +-inf, as a cast does).
Tensor to_half(const Tensor& x, DType t);

// ---- activations (activation.cc) --------------------------------------------------------------------
enum class Act : uint8_t { kSilu, kGeluErf, kGeluTanh, kRelu };
const char* act_name(Act a);
Tensor activation(Act a, const Tensor& x);
void activation_backward(Act a, const Tensor& x, const Tensor& dy, Tensor* dx);
inline Tensor silu(const Tensor& x) { return activation(Act::kSilu, x); }
inline Tensor gelu(const Tensor& x, bool tanh_approx = false) {
  return activation(tanh_approx ? Act::kGeluTanh : Act::kGeluErf, x);
}
inline Tensor relu(const Tensor& x) { return activation(Act::kRelu, x); }
// Gated units y[n_tokens, d_ff] = act(gate[n_tokens, d_ff]) * up[n_tokens, d_ff]: SwiGLU (act = SiLU)
// and GeGLU (act = GELU erf or tanh).
Tensor glu(Act a, const Tensor& gate, const Tensor& up);
void glu_backward(Act a, const Tensor& gate, const Tensor& up, const Tensor& dy, Tensor* dgate, Tensor* dup);
inline Tensor swiglu(const Tensor& gate, const Tensor& up) { return glu(Act::kSilu, gate, up); }
inline Tensor geglu(const Tensor& gate, const Tensor& up, bool tanh_approx = false) {
  return glu(tanh_approx ? Act::kGeluTanh : Act::kGeluErf, gate, up);
}

// ---- normalisation and softmax (norm.cc) ------------------------------------------------------------
// y, x [n_tokens, d_model] (any leading shape), w [d_model]; w_offset = 1 for Gemma.
Tensor rmsnorm(const Tensor& x, const Tensor& w, float eps, float w_offset = 0.0f);
void rmsnorm_backward(const Tensor& x, const Tensor& w, const Tensor& dy, float eps, float w_offset, Tensor* dx,
                      Tensor* dw);
// w, b [d_model] or undefined (then 1 and 0).
Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, float eps);
void layernorm_backward(const Tensor& x, const Tensor& w, const Tensor& dy, float eps, Tensor* dx, Tensor* dw,
                        Tensor* db);
// Softmax over the last dim of x [..., n_keys]. Masks (see ref::SoftmaxMask): rows form groups of n_q
// query rows; key_len (one per group, or empty) masks padding.
struct SoftmaxOptions {
  bool causal = false;
  int64_t n_q = 0;
  std::vector<int32_t> key_len;
};
Tensor softmax(const Tensor& x, const SoftmaxOptions& opt = {});
void softmax_backward(const Tensor& y, const Tensor& dy, Tensor* dx);

// ---- positions and attention (attention.cc) ---------------------------------------------------------
// x [n_tokens, n_heads, head_dim] (or [n_seqs, n_tokens, n_heads, head_dim]: any leading shape holding
// n_tokens = numel / (n_heads head_dim) rows); pos I32 [n_tokens], the absolute position of each row.
Tensor rope(const Tensor& x, const Tensor& pos, const RopeConfig& cfg);
void rope_backward(const Tensor& dy, const Tensor& pos, const RopeConfig& cfg, Tensor* dx);
// slopes F32 [n_heads] (Press et al. 2022; BLOOM's rule for non-powers of two).
Tensor alibi_slopes(int64_t n_heads);
struct AttentionOptions {
  float scale = 0.0f;             // 0 means 1/sqrt(head_dim)
  bool causal = true;
  int64_t window = 0;             // sliding window (Mistral); 0 = off
  bool alibi = false;             // add ALiBi bias with the standard slopes
  std::vector<int32_t> kv_len;    // [n_seqs] valid keys per sequence (padding); empty = all
  // [n_seqs * n_q] the first key each query row may see, non-decreasing along a sequence: packed
  // documents (a row sees only its own document, which starts there); empty = 0 for every row.
  std::vector<int32_t> first_key;
};
struct AttentionOutput {
  Tensor out;  // [n_seqs, n_q, n_heads, head_dim]
  Tensor lse;  // [n_seqs, n_heads, n_q] log-sum-exp per row, for the backward
};
// q [n_seqs, n_q, n_heads, head_dim]; k, v [n_seqs, n_kv, n_kv_heads, head_dim].
AttentionOutput attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& opt = {});
void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOutput& fwd,
                        const Tensor& dout, const AttentionOptions& opt, Tensor* dq, Tensor* dk, Tensor* dv);
// Paged KV cache (decoders, causal): positions in pages of kKVPage = 16 anywhere in a pool, found
// through each sequence's block table (position j in page blocks[j / 16], slot j % 16). Layouts:
//   k_pages [n_pages, n_kv_heads, head_dim, 16]  (keys transposed: attention reads them in place)
//   v_pages [n_pages, n_kv_heads, 16, head_dim]
// Pages are F32 or F16 (both the same): F16 halves the cache and what attention reads per step;
// paged_kv_write rounds to nearest even, attention widens to F32 and computes in F32.
constexpr int64_t kKVPage = 16;
struct PagedSeq {
  int64_t n_q = 0;                             // this sequence's query rows (consecutive in q)
  int64_t n_kv = 0;                            // its positions, the n_q new ones included (the last)
  const std::vector<int32_t>* blocks = nullptr;  // its block table, >= ceil(n_kv / 16) pages
};
// q [N = sum n_q, n_heads, head_dim] -> [N, n_heads, head_dim]. Options: scale, window, alibi
// (causal is implied; kv_len is not used). One call covers every sequence of a batch, split over the
// thread pool by (sequence, kv head, block of rows).
Tensor paged_attention(const Tensor& q, const Tensor& k_pages, const Tensor& v_pages, const std::vector<PagedSeq>& seqs,
                       const AttentionOptions& opt = {});
// Stores k, v [n, n_kv_heads, head_dim] as positions pos0 .. pos0 + n - 1 of the block table.
void paged_kv_write(const Tensor& k, const Tensor& v, int64_t pos0, const std::vector<int32_t>& blocks, Tensor& k_pages,
                    Tensor& v_pages);

// ---- loss and selection (loss.cc) -------------------------------------------------------------------
constexpr int32_t kIgnoreIndex = -100;  // PyTorch / HF label convention
// logits [n_tokens, n_vocab], targets I32 [n_tokens] in [0, n_vocab) or ignore_index. Mean over the
// non-ignored rows.
float cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index = kIgnoreIndex);
void cross_entropy_backward(const Tensor& logits, const Tensor& targets, float dloss, Tensor* dlogits,
                            int32_t ignore_index = kIgnoreIndex);
// I32 [...] index of the max over the last dim of x [..., d].
Tensor argmax(const Tensor& x);
// (values F32 [..., k], indices I32 [..., k]), descending.
std::pair<Tensor, Tensor> topk(const Tensor& x, int64_t k);

// ---- copies (shape.cc) ------------------------------------------------------------------------------
// Concatenation of same-dtype tensors along `dim` (other dims equal); split is its inverse.
Tensor concat(const std::vector<Tensor>& xs, int dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int dim);
// A contiguous copy (of any view).
Tensor copy(const Tensor& x);

}  // namespace llmkit::ops
