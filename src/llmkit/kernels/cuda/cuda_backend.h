// The CUDA device backend: registers allocator, stream and copies for DeviceKind::kCUDA, and
// declares the device kernels. Only built with -DLLMKIT_CUDA=ON.
#pragma once

#include <cstdint>

namespace llmkit::cuda {

// Registers the backend if a CUDA device is present; returns the number of devices (0: none).
int register_backend();

// Device kernels (pointers are device memory; launched on the backend's stream).
void add(const float* a, const float* b, float* y, int64_t n);
void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, float eps, float w_offset);

}  // namespace llmkit::cuda
