// The tape: a thread-local list of backward closures run in reverse by backward().
#include "llmkit/autograd/tape.h"

#include <cstring>

#include "llmkit/base/check.h"

namespace llmkit::ag {
namespace {
thread_local Tape t_default_tape;
thread_local Tape* t_tape = nullptr;
thread_local bool t_no_grad = false;
}  // namespace

Var::Var(Tensor value, bool requires_grad, std::string name) : p_(std::make_shared<VarImpl>()) {
  p_->value = std::move(value);
  p_->requires_grad = requires_grad;
  p_->name = std::move(name);
}

void Var::zero_grad() const {
  if (p_ && p_->grad.defined()) std::memset(p_->grad.raw(), 0, p_->grad.nbytes());
}

Tape& Tape::current() { return t_tape ? *t_tape : t_default_tape; }
bool Tape::recording() { return !t_no_grad; }

void Tape::backward(const Var& loss) {
  LLMKIT_CHECK(loss.defined() && loss.value().numel() == 1, kInvalidArgument,
               "backward: the loss must be a single value, got ", loss.defined() ? loss.value().str() : "undefined",
               "; reduce it first (ag::cross_entropy, ag::sum)");
  if (loss.requires_grad()) {
    Tensor one = Tensor::from_floats({1.0f}, loss.value().shape());
    accumulate(loss.grad_slot(), one);
  }
  run();
}

void Tape::backward(const Var& y, const Tensor& dy) {
  LLMKIT_CHECK(y.defined() && dy.defined() && y.value().numel() == dy.numel(), kInvalidArgument,
               "backward: the seed gradient ", dy.defined() ? dy.str() : "undefined", " does not match ",
               y.defined() ? y.value().str() : "an undefined value");
  if (y.requires_grad()) accumulate(y.grad_slot(), dy);
  run();
}

void Tape::run() {
  // Entries are consumed even if one throws, so a failed step does not leave a half-run tape behind.
  std::vector<std::function<void()>> entries;
  entries.swap(entries_);
  // Each entry is destroyed as soon as it has run: its captures (the activations it saved and its
  // output's gradient) are then freed while the rest of the backward runs, so the peak is the
  // activations plus one layer's gradients, not activations plus every intermediate gradient.
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    (*it)();
    *it = nullptr;
  }
}

ScopedTape::ScopedTape(Tape& t) : prev_(t_tape) { t_tape = &t; }
ScopedTape::~ScopedTape() { t_tape = prev_; }
NoGrad::NoGrad() : prev_(t_no_grad) { t_no_grad = true; }
NoGrad::~NoGrad() { t_no_grad = prev_; }

void accumulate(Tensor* slot, const Tensor& g_) {
  if (!slot) return;
  Tensor g = g_.contiguous();
  if (!slot->defined()) {
    *slot = g.clone();
    return;
  }
  LLMKIT_ASSERT(slot->numel() == g.numel() && slot->dtype() == DType::kF32 && g.dtype() == DType::kF32,
                "gradient shape mismatch ", slot->str(), " vs ", g.str());
  float* d = slot->data<float>();
  const float* s = g.data<float>();
  for (int64_t i = 0; i < g.numel(); ++i) d[i] += s[i];
}

}  // namespace llmkit::ag
