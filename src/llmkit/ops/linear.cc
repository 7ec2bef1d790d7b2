// Ops for matmul (every weight dtype, BF16 mixed precision), element-wise arithmetic, bias rows and
// embedding lookups, forward and backward. Shapes: x [..., K] is treated as [M = rows, K].
#include <algorithm>
#include <cstring>

#include "llmkit/base/thread_pool.h"
#include "llmkit/kernels/cpu/quant_i8.h"
#include "llmkit/kernels/ref/quant.h"
#include "llmkit/ops/check_util.h"
#include "llmkit/ops/ops.h"
#include "llmkit/tensor/half.h"

namespace llmkit::ops {
using detail::f32_in;
using detail::grad_out;

namespace {

Shape with_last(const Shape& s, int64_t last) {
  std::vector<int64_t> d = s.vec();
  d.back() = last;
  return Shape(d);
}

void check_weight(const Tensor& w, const char* op) {
  LLMKIT_CHECK(w.defined() && w.rank() == 2, kInvalidArgument, op, ": weight must be 2-D [N, K] (out, in), got ",
               w.defined() ? w.str() : "undefined");
  LLMKIT_CHECK(w.device().kind == DeviceKind::kCPU, kUnsupported, op, ": weight on ", w.device().str(),
               " is not supported by the CPU ops");
  LLMKIT_CHECK(is_float(w.dtype()) || is_quantized(w.dtype()), kUnsupported, op, ": weight dtype ",
               dtype_name(w.dtype()), " is not a float or quantized type");
  LLMKIT_CHECK(w.is_contiguous(), kInvalidArgument, op, ": weight ", w.str(),
               " must be contiguous (a transposed view is not a weight); call contiguous()");
}

// Both backward products on the KernelTable's strided GEMM (dy [M, N] F32, or BF16 under bf16; w [N, K] and x [M, K]
// contiguous, x only needed for dw): dx = dy . w reads w as a [K-major] B, dw = dy^T . x reads dy as
// a transposed A, so nothing is copied or transposed. A fresh dx is overwritten, a given one and dw
// accumulate. bf16: GemmArgs::bf16 (operands rounded to BF16).
void gemm_backward(const char* op, const Tensor& dy, const Tensor& x, const Tensor& w, Tensor* dx, Tensor* dw,
                   bool bf16) {
  const int64_t M = dy.rows(), N = w.dim(0), K = w.dim(1);
  const KernelTable& kt = active_table();
  if (dx) {
    ref::GemmArgs g;
    g.M = M, g.N = K, g.K = N;
    g.a = dy.raw(), g.at = dy.dtype(), g.lda = N;
    g.b = w.raw(), g.bt = w.dtype(), g.ldb = K, g.b_kn = true;
    bool fresh = false;
    g.c = detail::grad_out_or_fresh(dx, with_last(dy.shape(), K), op, "dx", &fresh), g.ldc = K;
    g.accumulate = !fresh, g.bf16 = bf16;
    kt.gemm(g);
  }
  if (dw) {
    LLMKIT_CHECK(x.rows() == M && x.dim(-1) == K, kInvalidArgument, op, ": x ", x.shape().str(), " does not match dy ",
                 dy.shape().str(), " and w ", w.shape().str());
    ref::GemmArgs g;
    g.M = N, g.N = K, g.K = M;
    g.a = dy.raw(), g.at = dy.dtype(), g.lda = N, g.a_t = true;
    g.b = x.raw(), g.bt = x.dtype(), g.ldb = K, g.b_kn = true;
    g.c = grad_out(dw, w.shape(), op, "dw"), g.ldc = K, g.accumulate = true, g.bf16 = bf16;
    kt.gemm(g);
  }
}

}  // namespace

Tensor matmul(const Tensor& x_, const Tensor& w) {
  check_weight(w, "matmul");
  Tensor x = f32_in(x_, "matmul", "x");
  const int64_t N = w.dim(0), K = w.dim(1);
  LLMKIT_CHECK(x.rank() >= 1 && x.dim(-1) == K, kInvalidArgument, "matmul: x ", x.shape().str(),
               " must end in K = ", K, " to multiply by w ", w.str(), " ([N, K]: weights are stored [out, in])");
  Tensor y = Tensor::empty(with_last(x.shape(), N), DType::kF32);
  if (y.numel() == 0) return y;
  active_table().matmul(x.data<float>(), w.raw(), w.dtype(), y.data<float>(), x.rows(), N, K);
  return y;
}

void matmul_backward(const Tensor& dy_, const Tensor& x_, const Tensor& w, Tensor* dx, Tensor* dw) {
  check_weight(w, "matmul_backward");
  const int64_t N = w.dim(0), K = w.dim(1);
  Tensor dy = f32_in(dy_, "matmul_backward", "dy");
  detail::last_dim(dy, N, "matmul_backward", "dy", "N");
  const int64_t M = dy.rows();
  // On kCpu, float weights run both products on the KernelTable's strided GEMM (packed SIMD, threaded):
  // dx = dy . w reads w as a [K-major] B, dw = dy^T . x reads dy as a transposed A, so nothing is
  // copied or transposed, and the products accumulate straight into the gradients. Results equal
  // the reference to float rounding (the op harness and the PyTorch gradient tests bound them), not
  // bitwise. Quantized weights (frozen bases) and the reference backend use the reference loops,
  // split over the pool by output rows when large (~1M multiply-adds), which keeps the reference's
  // summation order.
  const bool gemm = current_backend() == Backend::kCpu && is_float(w.dtype()) && M * N * K >= (int64_t{1} << 16);
  const bool threaded = current_backend() == Backend::kCpu && M * N * K >= (int64_t{1} << 20);
  if (gemm) {
    gemm_backward("matmul_backward", dy, dw ? f32_in(x_, "matmul_backward", "x") : Tensor(), w.contiguous(), dx, dw,
                  false);
    return;
  }
  auto rows = [&](int64_t n_rows, auto fn) {
    if (threaded)
      ThreadPool::global().parallel_for(n_rows, 1, fn);
    else
      fn(int64_t{0}, n_rows);
  };
  if (dx) {
    float* g = grad_out(dx, with_last(dy.shape(), K), "matmul_backward", "dx");
    rows(M, [&](int64_t m0, int64_t m1) {
      ref::matmul_backward_x(dy.data<float>() + m0 * N, w.raw(), w.dtype(), g + m0 * K, m1 - m0, N, K);
    });
  }
  if (dw) {
    // dw depends only on dy and x, so F16/BF16 weights get an f32 gradient (for f32 master weights);
    // a quantized weight has no meaningful gradient.
    LLMKIT_CHECK(is_float(w.dtype()), kUnsupported, "matmul_backward: dw of quantized weight ", w.str(),
                 " is not defined; freeze it (requires_grad = false) and train an adapter (LoRA/QLoRA) instead");
    Tensor x = f32_in(x_, "matmul_backward", "x");
    LLMKIT_CHECK(x.rows() == M && x.dim(-1) == K, kInvalidArgument, "matmul_backward: x ", x.shape().str(),
                 " does not match dy ", dy.shape().str(), " and w ", w.shape().str());
    float* g = grad_out(dw, w.shape(), "matmul_backward", "dw");
    rows(N, [&](int64_t n0, int64_t n1) {
      ref::matmul_backward_w(dy.data<float>(), x.data<float>(), g, M, N, K, n0, n1);
    });
  }
}

bool r8_helps(const Tensor& w) {
  return w.defined() && w.rank() == 2 && w.device().kind == DeviceKind::kCPU && w.is_contiguous() &&
         r8_of(w.dtype()).has_value() && w.dim(0) % 8 == 0 && current_backend() == Backend::kCpu &&
         cpu::i8_matmul_available();
}

void relayout_into(const Tensor& w, const Tensor& out, const std::function<void(size_t bytes)>& done) {
  check_weight(w, "relayout_into");
  const bool copy = out.defined() && out.dtype() == w.dtype();
  const std::optional<DType> r8 = r8_of(w.dtype());
  if (!copy) {
    LLMKIT_CHECK(r8.has_value(), kUnsupported, "repack_r8: weight ", w.str(),
                 " has no rows-interleaved layout (only q4_0, q4_1 and q8_0 do)");
    LLMKIT_CHECK(w.dim(0) % 8 == 0, kInvalidArgument, "repack_r8: weight ", w.str(),
                 " needs a multiple of 8 rows (N = ", w.dim(0), "); keep it in the base layout");
  }
  const DType want = copy ? w.dtype() : *r8;
  LLMKIT_CHECK(out.defined() && out.dtype() == want && out.shape() == w.shape() && out.is_contiguous() &&
                   out.device().kind == DeviceKind::kCPU,
               kInvalidArgument, "repack_r8: out must be a contiguous CPU ", dtype_name(want), " tensor ",
               w.shape().str(), ", got ", out.defined() ? out.str() : "undefined");
  // Units of 8 rows (one R8 group) or of one row (a copy), in chunks of ~4 MB, each spread over the
  // pool in tasks of ~64 KB (the copy is memory-bound).
  const int64_t unit_rows = copy ? 1 : 8, units = w.dim(0) / unit_rows, K = w.dim(1);
  const size_t unit_bytes = static_cast<size_t>(unit_rows) * row_bytes(w.dtype(), K);
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>((size_t{4} << 20) / unit_bytes));
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(65536 / unit_bytes));
  const auto* from = static_cast<const uint8_t*>(w.raw());
  auto* to = static_cast<uint8_t*>(out.raw());
  for (int64_t c0 = 0; c0 < units; c0 += chunk) {
    const int64_t c1 = std::min(units, c0 + chunk);
    ThreadPool::global().parallel_for(c1 - c0, grain, [&](int64_t u0, int64_t u1) {
      if (copy) {
        std::memcpy(to + static_cast<size_t>(c0 + u0) * unit_bytes, from + static_cast<size_t>(c0 + u0) * unit_bytes,
                    static_cast<size_t>(u1 - u0) * unit_bytes);
      } else {
        ref::pack_r8(w.dtype(), from, to, K, c0 + u0, c0 + u1);
      }
    });
    if (done) done(static_cast<size_t>(c1) * unit_bytes);
  }
}

Tensor repack_r8(const Tensor& w) {
  check_weight(w, "repack_r8");
  const std::optional<DType> r8 = r8_of(w.dtype());
  LLMKIT_CHECK(r8.has_value(), kUnsupported, "repack_r8: weight ", w.str(),
               " has no rows-interleaved layout (only q4_0, q4_1 and q8_0 do)");
  Tensor y = Tensor::empty(w.shape(), *r8);
  relayout_into(w, y);
  return y;
}

Tensor matmul_bf16(const Tensor& x_, const Tensor& w_) {
  LLMKIT_CHECK(x_.defined() && w_.defined() && x_.dtype() == DType::kBF16 && w_.dtype() == DType::kBF16 &&
                   x_.rank() == 2 && w_.rank() == 2 && x_.dim(1) == w_.dim(1),
               kInvalidArgument, "matmul_bf16: needs bf16 x [M, K] and w [N, K], got ",
               x_.defined() ? x_.str() : "undefined", " and ", w_.defined() ? w_.str() : "undefined");
  Tensor x = x_.contiguous(), w = w_.contiguous();
  Tensor y = Tensor::empty({x.dim(0), w.dim(0)}, DType::kF32);
  if (y.numel() == 0) return y;
  active_table().matmul_bf16(x.data<uint16_t>(), w.data<uint16_t>(), y.data<float>(), x.dim(0), w.dim(0),
                             x.dim(1));
  return y;
}

namespace {
// A contiguous CPU tensor of F32 or BF16 (the operands of the mixed-precision products).
Tensor f32_or_bf16_in(const Tensor& t, const char* op, const char* arg) {
  LLMKIT_CHECK(t.defined(), kInvalidArgument, op, ": argument '", arg, "' is an undefined tensor");
  LLMKIT_CHECK(t.device().kind == DeviceKind::kCPU, kUnsupported, op, ": '", arg, "' is on ", t.device().str(),
               "; only CPU tensors are supported by these ops, move it with to(Device::cpu())");
  LLMKIT_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16, kInvalidArgument, op, ": '", arg,
               "' must be f32 or bf16, got ", t.str(), "; convert it with ops::to_f32 or ops::to_half");
  return t.contiguous();
}
}  // namespace

Tensor matmul_mixed_bf16(const Tensor& x_, const Tensor& w_) {
  const Tensor x = f32_or_bf16_in(x_, "matmul_mixed_bf16", "x"), w = f32_or_bf16_in(w_, "matmul_mixed_bf16", "w");
  LLMKIT_CHECK(w.rank() == 2, kInvalidArgument, "matmul_mixed_bf16: weight must be 2-D [N, K], got ", w.str());
  const int64_t N = w.dim(0), K = w.dim(1);
  LLMKIT_CHECK(x.rank() >= 1 && x.dim(-1) == K, kInvalidArgument, "matmul_mixed_bf16: x ", x.shape().str(),
               " must end in K = ", K, " to multiply by w ", w.str(), " ([N, K]: weights are stored [out, in])");
  Tensor y = Tensor::empty(with_last(x.shape(), N), DType::kF32);
  if (y.numel() == 0) return y;
  ref::GemmArgs g;
  g.M = x.rows(), g.N = N, g.K = K;
  g.a = x.raw(), g.at = x.dtype(), g.lda = K;
  g.b = w.raw(), g.bt = w.dtype(), g.ldb = K;
  g.c = y.data<float>(), g.ldc = N, g.bf16 = true;
  active_table().gemm(g);
  return y;
}

void matmul_backward_mixed_bf16(const Tensor& dy_, const Tensor& x_, const Tensor& w_, Tensor* dx, Tensor* dw) {
  const char* op = "matmul_backward_mixed_bf16";
  const Tensor w = f32_or_bf16_in(w_, op, "w");
  LLMKIT_CHECK(w.rank() == 2, kInvalidArgument, op, ": weight must be 2-D [N, K], got ", w.str());
  const Tensor dy = f32_in(dy_, op, "dy");
  detail::last_dim(dy, w.dim(0), op, "dy", "N");
  // dy rounded to BF16 once for both products (the GEMM would round it while packing, once per
  // product and, where a product is split by columns, once per thread): the same values. Not for a
  // dy as large as a head's logits (SmolLM2: 1024 x 49152): its copy would sit on the step's peak
  // memory (+96 MB measured), for a saving that small next to that product's work.
  constexpr int64_t kMaxRoundedDy = int64_t{8} << 20;
  const Tensor dyh = dx && dw && dy.numel() <= kMaxRoundedDy ? to_half(dy, DType::kBF16) : dy;
  gemm_backward(op, dyh, dw ? f32_or_bf16_in(x_, op, "x") : Tensor(), w, dx, dw, true);
}

namespace {
using Binary = void (*)(const float*, const float*, float*, int64_t);
Tensor binary(const Tensor& a_, const Tensor& b_, Binary fn, const char* op) {
  Tensor a = f32_in(a_, op, "a"), b = f32_in(b_, op, "b");
  detail::same_shape(a, b, op, "a", "b");
  Tensor y = Tensor::empty(a.shape(), DType::kF32);
  if (y.numel()) fn(a.data<float>(), b.data<float>(), y.data<float>(), y.numel());
  return y;
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(a, b, active_table().add, "add"); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(a, b, active_table().mul, "mul"); }

Tensor scale(const Tensor& a_, float s) {
  Tensor a = f32_in(a_, "scale", "a");
  Tensor y = Tensor::empty(a.shape(), DType::kF32);
  if (y.numel()) active_table().scale(a.data<float>(), s, y.data<float>(), y.numel());
  return y;
}

void mul_backward(const Tensor& a_, const Tensor& b_, const Tensor& dy_, Tensor* da, Tensor* db) {
  Tensor a = f32_in(a_, "mul_backward", "a"), b = f32_in(b_, "mul_backward", "b");
  Tensor dy = f32_in(dy_, "mul_backward", "dy");
  detail::same_shape(a, b, "mul_backward", "a", "b");
  detail::same_shape(a, dy, "mul_backward", "a", "dy");
  float* ga = grad_out(da, a.shape(), "mul_backward", "da");
  float* gb = grad_out(db, b.shape(), "mul_backward", "db");
  ref::mul_backward(a.data<float>(), b.data<float>(), dy.data<float>(), ga, gb, a.numel());
}

Tensor add_bias(const Tensor& x_, const Tensor& bias_) {
  Tensor x = f32_in(x_, "add_bias", "x"), b = f32_in(bias_, "add_bias", "bias");
  LLMKIT_CHECK(b.rank() == 1, kInvalidArgument, "add_bias: bias must be 1-D [d], got ", b.shape().str());
  detail::last_dim(x, b.dim(0), "add_bias", "x", "the bias length d");
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel()) ref::add_bias(x.data<float>(), b.data<float>(), y.data<float>(), x.rows(), b.dim(0));
  return y;
}

void add_bias_backward(const Tensor& dy_, Tensor* dbias) {
  Tensor dy = f32_in(dy_, "add_bias_backward", "dy");
  LLMKIT_CHECK(dy.rank() >= 1, kInvalidArgument, "add_bias_backward: dy must have a last dim");
  float* g = grad_out(dbias, Shape{dy.dim(-1)}, "add_bias_backward", "dbias");
  if (g && dy.numel()) ref::add_bias_backward_b(dy.data<float>(), g, dy.rows(), dy.dim(-1));
}

Tensor embedding(const Tensor& table, const Tensor& ids_) {
  check_weight(table, "embedding");
  Tensor ids = detail::i32_in(ids_, "embedding", "ids");
  const int64_t n_vocab = table.dim(0), d = table.dim(1), n = ids.numel();
  const int32_t* id = ids.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    LLMKIT_CHECK(id[t] >= 0 && id[t] < n_vocab, kInvalidArgument, "embedding: token id ", id[t], " at position ",
                 t, " is outside the table [0, ", n_vocab, "); check the tokenizer matches the model");
  std::vector<int64_t> shape = ids.shape().vec();
  shape.push_back(d);
  Tensor y = Tensor::empty(Shape(shape), DType::kF32);
  if (y.numel()) ref::embedding(table.raw(), table.dtype(), id, y.data<float>(), n, d);
  return y;
}

void embedding_backward(const Tensor& ids_, const Tensor& dy_, Tensor* dtable, int64_t n_vocab) {
  Tensor ids = detail::i32_in(ids_, "embedding_backward", "ids");
  Tensor dy = f32_in(dy_, "embedding_backward", "dy");
  LLMKIT_CHECK(dy.rank() >= 1 && dy.rows() == ids.numel(), kInvalidArgument, "embedding_backward: dy ",
               dy.shape().str(), " must have one row per id (", ids.numel(), ")");
  const int32_t* id = ids.data<int32_t>();
  for (int64_t t = 0; t < ids.numel(); ++t)
    LLMKIT_CHECK(id[t] >= 0 && id[t] < n_vocab, kInvalidArgument, "embedding_backward: id ", id[t],
                 " outside [0, ", n_vocab, ")");
  float* g = grad_out(dtable, Shape{n_vocab, dy.dim(-1)}, "embedding_backward", "dtable");
  if (g) ref::embedding_backward(id, dy.data<float>(), g, ids.numel(), dy.dim(-1));
}

Tensor to_f32(const Tensor& x_) {
  LLMKIT_CHECK(x_.defined() && (is_float(x_.dtype()) || is_quantized(x_.dtype())), kInvalidArgument,
               "to_f32: needs a float or quantized tensor, got ", x_.defined() ? x_.str() : "undefined");
  Tensor x = x_.contiguous();
  Tensor y = Tensor::empty(x.shape(), DType::kF32);
  if (y.numel() && is_r8(x.dtype())) {  // rank 2 (repack_r8 made it)
    for (int64_t n = 0; n < x.dim(0); ++n) ref::weight_row_f32(x.raw(), x.dtype(), n, x.dim(1), y.data<float>() + n * x.dim(1));
  } else if (y.numel()) {
    ref::to_f32(x.raw(), x.dtype(), y.data<float>(), y.numel());
  }
  return y;
}

Tensor to_half(const Tensor& x_, DType t) {
  LLMKIT_CHECK(t == DType::kF16 || t == DType::kBF16, kInvalidArgument, "to_half: target ", dtype_name(t),
               " must be F16 or BF16");
  Tensor x = f32_in(x_, "to_half", "x");
  Tensor y = Tensor::empty(x.shape(), t);
  const float* src = x.data<float>();
  uint16_t* dst = static_cast<uint16_t*>(y.raw());
  auto run = [&](int64_t b, int64_t e) {
    if (t == DType::kF16)
      for (int64_t i = b; i < e; ++i) dst[i] = f32_to_f16(src[i]);
    else
      for (int64_t i = b; i < e; ++i) dst[i] = f32_to_bf16(src[i]);
  };
  if (current_backend() == Backend::kCpu)
    ThreadPool::global().parallel_for(x.numel(), int64_t{1} << 16, run);
  else
    run(0, x.numel());
  return y;
}

}  // namespace llmkit::ops
