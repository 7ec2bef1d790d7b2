// First CUDA kernels, mirroring the KernelTable entries of the same name (see kernel_table.h).
// One block per row for RMSNorm with a shared-memory tree reduction.
#include <cuda_runtime.h>

#include "llmkit/kernels/cuda/cuda_backend.h"

namespace llmkit::cuda {
namespace {

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a[i] + b[i];
}

__global__ void rmsnorm_kernel(const float* x, const float* w, float* y, int64_t d, float eps, float w_offset) {
  extern __shared__ float partial[];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s += xr[i] * xr[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  float inv = rsqrtf(partial[0] / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * inv * (w[i] + w_offset);
}

}  // namespace

void add(const float* a, const float* b, float* y, int64_t n) {
  if (n <= 0) return;
  const int threads = 256;
  add_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads>>>(a, b, y, n);
}

void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset) {
  if (rows <= 0) return;
  const int threads = 256;
  rmsnorm_kernel<<<static_cast<unsigned>(rows), threads, threads * sizeof(float)>>>(x, w, y, d, eps, w_offset);
}

}  // namespace llmkit::cuda
