// Devices and their hook points. The tensor layer knows only this interface; a backend (the CPU
// one here, CUDA in kernels/cuda) registers an allocator, a stream and copy functions for its
// device kind. A CPU-only build registers only the CPU backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace llmkit {

enum class DeviceKind : uint8_t { kCPU = 0, kCUDA = 1 };

struct Device {
  DeviceKind kind = DeviceKind::kCPU;
  int index = 0;
  // Written out (not `= default`) so the header also compiles as C++17 under nvcc.
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
  static Device cpu() { return {}; }
  static Device cuda(int i = 0) { return {DeviceKind::kCUDA, i}; }
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Returns memory aligned to at least 64 bytes; throws Error(kOutOfMemory) on failure.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
};

// An ordered queue of device work; CPU work is synchronous, so its stream is a no-op.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual void synchronize() = 0;
};

// What a device backend provides. Copies are byte copies between host and device or within one.
struct DeviceBackend {
  Allocator* allocator = nullptr;
  Stream* stream = nullptr;
  void (*copy_to_host)(void* dst, const void* src, size_t bytes, int device_index) = nullptr;
  void (*copy_from_host)(void* dst, const void* src, size_t bytes, int device_index) = nullptr;
  void (*copy_on_device)(void* dst, const void* src, size_t bytes, int device_index) = nullptr;
};

void register_device_backend(DeviceKind kind, const DeviceBackend& backend);
// Throws Error(kUnsupported) naming the device and the build option if none is registered.
const DeviceBackend& device_backend(Device d);

Allocator& cpu_allocator();

// Keeps up to max_bytes of freed CPU blocks of 256 KiB or more for reuse by allocations of the same
// size (0, the default, frees at once and releases what is cached). For loops that allocate the same
// sizes every iteration (a training step); a process that calls it holds that much more memory.
void set_cpu_allocator_cache(size_t max_bytes);
size_t cpu_allocator_cached_bytes();

}  // namespace llmkit
