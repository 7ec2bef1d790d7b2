// Reverse-mode autograd over the ops layer. A Var holds a value Tensor and (once a gradient flows) a
// float32 grad of the same shape. Differentiable ops (autograd/ops.h) compute their value with the ops
// layer and, when an input requires a gradient, record a backward closure on the current Tape;
// backward(loss) seeds d loss = 1 and runs the closures in reverse, each ACCUMULATING into its inputs'
// grads (ops' gradient convention), then clears the tape. So:
//  - a frozen Var (requires_grad = false) gets no grad buffer and no backward work goes into it;
//  - calling forward + backward() several times accumulates gradients until zero_grad();
//  - parameters in a ParamStore have their grad pre-bound to a view of the store's flat grad buffer, so
//    the accumulation lands directly in the buffer an optimizer or all-reduce works on.
// The tape is thread-local (Tape::current()); ScopedTape installs another one, NoGrad stops recording.
// A forward that is never followed by backward() leaves its entries (and the activations they hold) on
// the tape: run evaluation under NoGrad, or clear() the tape.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llmkit/tensor/tensor.h"

namespace llmkit::ag {

struct VarImpl {
  Tensor value;
  Tensor grad;  // f32, value's shape; undefined until a gradient arrives (or bound by ParamStore)
  bool requires_grad = false;
  std::string name;
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false, std::string name = {});

  bool defined() const { return p_ != nullptr; }
  const Tensor& value() const { return p_->value; }
  // The gradient (undefined if none has flowed here yet).
  const Tensor& grad() const { return p_->grad; }
  bool requires_grad() const { return p_ && p_->requires_grad; }
  // Freezing drops the grad buffer unless it is bound into a ParamStore (then it simply stops filling).
  void set_requires_grad(bool r) { p_->requires_grad = r; }
  const std::string& name() const { return p_->name; }
  const Shape& shape() const { return p_->value.shape(); }
  // Zeroes (bound or allocated) gradient memory; leaves an undefined grad undefined.
  void zero_grad() const;
  VarImpl* impl() const { return p_.get(); }
  // Gradient slot for an op's backward: null when this Var is frozen (ops skip the work).
  Tensor* grad_slot() const { return requires_grad() ? &p_->grad : nullptr; }

 private:
  std::shared_ptr<VarImpl> p_;
};

class Tape {
 public:
  void record(std::function<void()> backward) { entries_.push_back(std::move(backward)); }
  // Seeds loss's gradient with 1 (loss must have one element), runs every entry in reverse, clears.
  void backward(const Var& loss);
  // Seeds y's gradient with dy (y's shape) instead: back-propagates a gradient that arrived from
  // outside this tape (activation recomputation runs a layer again on a private tape).
  void backward(const Var& y, const Tensor& dy);
  void clear() { entries_.clear(); }
  size_t size() const { return entries_.size(); }
  // The tape ops record on: this thread's default, or the innermost ScopedTape.
  static Tape& current();
  static bool recording();

 private:
  void run();  // every entry in reverse, each freed once run; the tape ends empty
  std::vector<std::function<void()>> entries_;
  friend class ScopedTape;
  friend class NoGrad;
};

class ScopedTape {
 public:
  explicit ScopedTape(Tape& t);
  ~ScopedTape();
  ScopedTape(const ScopedTape&) = delete;
  ScopedTape& operator=(const ScopedTape&) = delete;

 private:
  Tape* prev_;
};

// Inside a NoGrad scope ops compute values only (inference, evaluation).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

inline void backward(const Var& loss) { Tape::current().backward(loss); }

// g_slot += g (allocating the slot as a copy when undefined). Shapes must have equal numel.
void accumulate(Tensor* slot, const Tensor& g);

}  // namespace llmkit::ag
