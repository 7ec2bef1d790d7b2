// Reference cross-entropy (mean over non-ignored rows, the PyTorch `ignore_index` semantics used by HF
// causal-LM training with label -100) and its gradient softmax - onehot, plus argmax and top-k per row.
// The log-sum-exp over n_vocab (up to ~256k terms) is summed in double.
#include <cmath>

#include "llmkit/kernels/ref/ops.h"

namespace llmkit::ref {
namespace {

// log sum_j exp(x_j) = m + log sum_j exp(x_j - m)
double logsumexp(const float* x, int64_t d) {
  float m = x[0];
  for (int64_t j = 1; j < d; ++j) m = x[j] > m ? x[j] : m;
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) s += std::exp(static_cast<double>(x[j]) - m);
  return m + std::log(s);
}

// (a at i) ranks before (b at j): larger value first, lower index on ties.
inline bool before(float a, int64_t i, float b, int64_t j) { return a > b || (a == b && i < j); }

}  // namespace

void logsumexp_rows(const float* x, int64_t rows, int64_t d, double* lse) {
  for (int64_t r = 0; r < rows; ++r) lse[r] = logsumexp(x + r * d, d);
}

void xent_grad_rows(const float* x, const int32_t* targets, const double* lse, int64_t rows, int64_t d,
                    int32_t ignore_index, double g, float* dx) {
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) continue;
    for (int64_t j = 0; j < d; ++j) {
      const double p = std::exp(static_cast<double>(x[r * d + j]) - lse[r]);
      dx[r * d + j] += static_cast<float>(g * (p - (j == targets[r] ? 1.0 : 0.0)));
    }
  }
}

void argmax(const float* x, int32_t* out, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    int64_t best = 0;
    for (int64_t j = 1; j < d; ++j)
      if (xr[j] > xr[best]) best = j;
    out[r] = static_cast<int32_t>(best);
  }
}

// O(k d) selection without scratch: pick t is the best element ranked strictly after pick t-1.
void topk(const float* x, float* vals, int32_t* idx, int64_t rows, int64_t d, int64_t k) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    for (int64_t t = 0; t < k; ++t) {
      int64_t best = -1;
      for (int64_t j = 0; j < d; ++j) {
        if (t > 0 && !before(vals[r * k + t - 1], idx[r * k + t - 1], xr[j], j)) continue;
        if (best < 0 || before(xr[j], j, xr[best], best)) best = j;
      }
      idx[r * k + t] = static_cast<int32_t>(best);
      vals[r * k + t] = xr[best];
    }
  }
}

}  // namespace llmkit::ref
