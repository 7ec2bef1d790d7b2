// Device backend registry and the CPU backend.
#include "llmkit/tensor/device.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "llmkit/base/check.h"

namespace llmkit {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t rounded = (bytes + 63) & ~size_t{63};
    if (rounded == 0) rounded = 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw Error(ErrorCode::kOutOfMemory, str_cat("could not allocate ", bytes, " bytes of CPU memory"),
                        "reduce the model, batch or context size");
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
};

class CpuStream final : public Stream {
 public:
  void synchronize() override {}
};

void cpu_copy(void* dst, const void* src, size_t bytes, int) { std::memcpy(dst, src, bytes); }

struct Registry {
  std::mutex mu;
  DeviceBackend backends[2];
  bool present[2] = {false, false};
  Registry() {
    static CpuAllocator alloc;
    static CpuStream stream;
    backends[0] = {&alloc, &stream, cpu_copy, cpu_copy, cpu_copy};
    present[0] = true;
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::string Device::str() const {
  return kind == DeviceKind::kCPU ? std::string("cpu") : str_cat("cuda:", index);
}

void register_device_backend(DeviceKind kind, const DeviceBackend& backend) {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.backends[static_cast<int>(kind)] = backend;
  r.present[static_cast<int>(kind)] = true;
}

const DeviceBackend& device_backend(Device d) {
  auto& r = registry();
  int k = static_cast<int>(d.kind);
  LLMKIT_CHECK(k >= 0 && k < 2 && r.present[k], kUnsupported, "device ", d.str(),
               " is not available in this build; rebuild with -DLLMKIT_CUDA=ON on a machine with a GPU");
  return r.backends[k];
}

Allocator& cpu_allocator() { return *registry().backends[0].allocator; }

}  // namespace llmkit
