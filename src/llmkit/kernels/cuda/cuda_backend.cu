// CUDA allocator, stream and copies behind the tensor layer's DeviceBackend hook points.
// Errors from the CUDA runtime become llmkit::Error (kIo / kOutOfMemory) with the CUDA message.
#include <cuda_runtime.h>

#include "llmkit/base/check.h"
#include "llmkit/kernels/cuda/cuda_backend.h"
#include "llmkit/tensor/device.h"

namespace llmkit::cuda {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(e == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kIo,
                str_cat("CUDA ", what, " failed: ", cudaGetErrorString(e)));
}

class CudaAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    check_cuda(cudaMalloc(&p, bytes == 0 ? 256 : bytes), "cudaMalloc");
    return p;
  }
  void deallocate(void* p, size_t) override { cudaFree(p); }
};

class CudaStream final : public Stream {
 public:
  void synchronize() override { check_cuda(cudaDeviceSynchronize(), "synchronize"); }
};

void to_host(void* dst, const void* src, size_t n, int dev) {
  check_cuda(cudaSetDevice(dev), "cudaSetDevice");
  check_cuda(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy to host");
}
void from_host(void* dst, const void* src, size_t n, int dev) {
  check_cuda(cudaSetDevice(dev), "cudaSetDevice");
  check_cuda(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy to device");
}
void on_device(void* dst, const void* src, size_t n, int dev) {
  check_cuda(cudaSetDevice(dev), "cudaSetDevice");
  check_cuda(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "device copy");
}

}  // namespace

int register_backend() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return 0;
  static CudaAllocator alloc;
  static CudaStream stream;
  register_device_backend(DeviceKind::kCUDA, {&alloc, &stream, to_host, from_host, on_device});
  return n;
}

}  // namespace llmkit::cuda
