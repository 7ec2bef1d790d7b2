// Read-only memory-mapped files: model weights are used in place, without copies. The mapping is
// held by a shared_ptr so tensor views into it keep it alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace llmkit {

class MappedFile {
 public:
  // Throws Error(kNotFound / kIo) naming the path and the OS error.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the whole pages inside [p, p + n) from this process's memory (madvise MADV_DONTNEED):
  // they stop counting in its RSS, and a later read maps them again from the file (the page cache).
  // For bytes a copy has replaced (weights repacked at load). Ranges outside the mapping are ignored.
  void release(const void* p, size_t n) const;

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace llmkit
