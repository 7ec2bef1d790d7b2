// Differentiable ops: forward through llmkit::ops, backward closures that call the ops' backward with
// each input's grad slot (null for frozen inputs, so no work is done for them).
#include "llmkit/autograd/ops.h"

#include <initializer_list>

#include "llmkit/base/check.h"

namespace llmkit::ag {
namespace {

Var result(Tensor value, std::initializer_list<const Var*> inputs) {
  bool rg = false;
  if (Tape::recording())
    for (const Var* v : inputs) rg = rg || (v->defined() && v->requires_grad());
  return Var(std::move(value), rg);
}

// Records fn(dy) to run during backward if `out` needs a gradient; skipped when no gradient reached out.
template <typename F>
void on_backward(const Var& out, F fn) {
  if (!out.requires_grad()) return;
  Tape::current().record([out, fn] {
    if (out.grad().defined()) fn(out.grad());
  });
}

Tensor* slot(const Var& v) { return v.defined() ? v.grad_slot() : nullptr; }

void check_defined(const Var& v, const char* op, const char* arg) {
  LLMKIT_CHECK(v.defined(), kInvalidArgument, "ag::", op, ": '", arg, "' is an undefined Var");
}

}  // namespace

thread_local DType t_compute = DType::kF32;
DType compute_dtype() { return t_compute; }
ScopedCompute::ScopedCompute(DType t) : prev_(t_compute) {
  LLMKIT_CHECK(t == DType::kF32 || t == DType::kF16 || t == DType::kBF16, kInvalidArgument, "compute precision ",
               dtype_name(t), " must be F32, F16 or BF16");
  t_compute = t;
}
ScopedCompute::~ScopedCompute() { t_compute = prev_; }

Var matmul(const Var& x, const Var& w) {
  check_defined(x, "matmul", "x");
  check_defined(w, "matmul", "w");
  const DType cd = t_compute;
  if (cd == DType::kBF16 && w.value().dtype() == DType::kF32) {
    // x rounded to BF16 once here (the copy the backward keeps: half the bytes); the F32 weight is
    // rounded by the BF16 GEMM as it packs it (the same values: no per-step BF16 copy of every
    // weight, 2 bytes per parameter less at the peak), as is dy in the backward. The weight does
    // not change between this forward and its backward (the optimizer steps after both).
    const Tensor xh = ops::to_half(x.value(), cd);
    Var y = result(ops::matmul_mixed_bf16(xh, w.value()), {&x, &w});
    on_backward(y, [x, w, xh](const Tensor& dy) {
      ops::matmul_backward_mixed_bf16(dy, xh, w.value(), slot(x), slot(w));
    });
    return y;
  }
  if (cd != DType::kF32 && w.value().dtype() == DType::kF32) {
    const Tensor xh = ops::to_half(x.value(), cd), wh = ops::to_half(w.value(), cd);
    Var y = result(ops::matmul(ops::to_f32(xh), wh), {&x, &w});
    on_backward(y, [x, w, xh, wh, cd](const Tensor& dy) {
      ops::matmul_backward(ops::to_f32(ops::to_half(dy, cd)), ops::to_f32(xh), wh, slot(x), slot(w));
    });
    return y;
  }
  Var y = result(ops::matmul(x.value(), w.value()), {&x, &w});
  on_backward(y, [x, w](const Tensor& dy) { ops::matmul_backward(dy, x.value(), w.value(), slot(x), slot(w)); });
  return y;
}

Var add(const Var& a, const Var& b) {
  Var y = result(ops::add(a.value(), b.value()), {&a, &b});
  on_backward(y, [a, b](const Tensor& dy) {
    accumulate(slot(a), dy);
    accumulate(slot(b), dy);
  });
  return y;
}

Var mul(const Var& a, const Var& b) {
  Var y = result(ops::mul(a.value(), b.value()), {&a, &b});
  on_backward(y, [a, b](const Tensor& dy) { ops::mul_backward(a.value(), b.value(), dy, slot(a), slot(b)); });
  return y;
}

Var scale(const Var& a, float s) {
  Var y = result(ops::scale(a.value(), s), {&a});
  on_backward(y, [a, s](const Tensor& dy) { accumulate(slot(a), ops::scale(dy, s)); });
  return y;
}

Var add_bias(const Var& x, const Var& bias) {
  Var y = result(ops::add_bias(x.value(), bias.value()), {&x, &bias});
  on_backward(y, [x, bias](const Tensor& dy) {
    accumulate(slot(x), dy);
    if (slot(bias)) ops::add_bias_backward(dy, slot(bias));
  });
  return y;
}

Var activation(ops::Act act, const Var& x) {
  Var y = result(ops::activation(act, x.value()), {&x});
  on_backward(y, [act, x](const Tensor& dy) { ops::activation_backward(act, x.value(), dy, slot(x)); });
  return y;
}

Var glu(ops::Act act, const Var& gate, const Var& up) {
  Var y = result(ops::glu(act, gate.value(), up.value()), {&gate, &up});
  on_backward(y, [act, gate, up](const Tensor& dy) {
    ops::glu_backward(act, gate.value(), up.value(), dy, slot(gate), slot(up));
  });
  return y;
}

Var rmsnorm(const Var& x, const Var& w, float eps, float w_offset) {
  Var y = result(ops::rmsnorm(x.value(), w.value(), eps, w_offset), {&x, &w});
  on_backward(y, [x, w, eps, w_offset](const Tensor& dy) {
    ops::rmsnorm_backward(x.value(), w.value(), dy, eps, w_offset, slot(x), slot(w));
  });
  return y;
}

Var layernorm(const Var& x, const Var& w, const Var& b, float eps) {
  const Tensor wv = w.defined() ? w.value() : Tensor(), bv = b.defined() ? b.value() : Tensor();
  Var y = result(ops::layernorm(x.value(), wv, bv, eps), {&x, &w, &b});
  on_backward(y, [x, w, b, wv, eps](const Tensor& dy) {
    ops::layernorm_backward(x.value(), wv, dy, eps, slot(x), slot(w), slot(b));
  });
  return y;
}

Var softmax(const Var& x, const ops::SoftmaxOptions& opt) {
  Var y = result(ops::softmax(x.value(), opt), {&x});
  // The backward needs the output, not the input: capture y's value (not y, which would be a cycle).
  const Tensor yv = y.value();
  on_backward(y, [x, yv](const Tensor& dy) { ops::softmax_backward(yv, dy, slot(x)); });
  return y;
}

Var rope(const Var& x, const Tensor& pos, const ops::RopeConfig& cfg) {
  Var y = result(ops::rope(x.value(), pos, cfg), {&x});
  on_backward(y, [x, pos, cfg](const Tensor& dy) { ops::rope_backward(dy, pos, cfg, slot(x)); });
  return y;
}

Var attention(const Var& q, const Var& k, const Var& v, const ops::AttentionOptions& opt) {
  ops::AttentionOutput fwd = ops::attention(q.value(), k.value(), v.value(), opt);
  Var y = result(fwd.out, {&q, &k, &v});
  on_backward(y, [q, k, v, fwd, opt](const Tensor& dy) {
    ops::attention_backward(q.value(), k.value(), v.value(), fwd, dy, opt, slot(q), slot(k), slot(v));
  });
  return y;
}

Var embedding(const Var& table, const Tensor& ids) {
  Var y = result(ops::embedding(table.value(), ids), {&table});
  on_backward(y, [table, ids](const Tensor& dy) {
    ops::embedding_backward(ids, dy, slot(table), table.value().dim(0));
  });
  return y;
}

Var scatter_rows(const Var& x, const Tensor& ids, int64_t n_rows) {
  LLMKIT_CHECK(x.value().rank() == 2 && ids.numel() == x.value().dim(0), kInvalidArgument, "scatter_rows: x ",
               x.value().str(), " needs one id per row, got ", ids.numel());
  Tensor y = Tensor::zeros({n_rows, x.value().dim(1)}, DType::kF32);
  ops::embedding_backward(ids, x.value(), &y, n_rows);
  Var out = result(y, {&x});
  on_backward(out, [x, ids](const Tensor& dy) {
    if (Tensor* g = slot(x)) accumulate(g, ops::embedding(dy, ids));
  });
  return out;
}

Var cross_entropy(const Var& logits, const Tensor& targets, int32_t ignore_index) {
  Var y = result(Tensor::from_floats({ops::cross_entropy(logits.value(), targets, ignore_index)}, {1}), {&logits});
  on_backward(y, [logits, targets, ignore_index](const Tensor& dy) {
    ops::cross_entropy_backward(logits.value(), targets, dy.data<float>()[0], slot(logits), ignore_index);
  });
  return y;
}

Var view(const Var& x, const Shape& shape) {
  Var y = result(x.value().contiguous().view(shape), {&x});
  const Shape in_shape = x.shape();
  on_backward(y, [x, in_shape](const Tensor& dy) { accumulate(slot(x), dy.contiguous().view(in_shape)); });
  return y;
}

std::vector<Var> split(const Var& x, const std::vector<int64_t>& sizes, int dim) {
  std::vector<Tensor> parts = ops::split(x.value(), sizes, dim);
  std::vector<Var> out;
  for (Tensor& p : parts) out.push_back(result(p.contiguous(), {&x}));
  // One backward for all parts: the concatenation of their gradients (zeros where none flowed).
  if (!out.empty() && out[0].requires_grad()) {
    Tape::current().record([x, out, dim] {
      Tensor* gx = slot(x);
      if (!gx) return;
      std::vector<Tensor> gs;
      bool any = false;
      for (const Var& o : out) {
        any = any || o.grad().defined();
        gs.push_back(o.grad().defined() ? o.grad() : Tensor::zeros(o.shape(), DType::kF32));
      }
      if (any) accumulate(gx, ops::concat(gs, dim));
    });
  }
  return out;
}

Var sum(const Var& x) {
  Tensor v = ops::to_f32(x.value());
  double s = 0;
  for (int64_t i = 0; i < v.numel(); ++i) s += v.data<float>()[i];
  Var y = result(Tensor::from_floats({static_cast<float>(s)}, {1}), {&x});
  on_backward(y, [x](const Tensor& dy) {
    Tensor g = Tensor::empty(x.shape(), DType::kF32);
    for (int64_t i = 0; i < g.numel(); ++i) g.data<float>()[i] = dy.data<float>()[0];
    accumulate(slot(x), g);
  });
  return y;
}

}  // namespace llmkit::ag
