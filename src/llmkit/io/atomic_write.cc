// write_file_atomically(): tmp file, fsync, rename, directory fsync (see atomic_write.h).
#include "llmkit/io/atomic_write.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

#include "llmkit/base/check.h"

namespace llmkit::io {

void write_bytes(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n)
    throw Error(ErrorCode::kIo, str_cat("writing '", path, "' failed: ", std::strerror(errno)),
                "check free disk space and permissions");
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kIo, str_cat("cannot open folder '", dir, "': ", std::strerror(errno)));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0 && e != EINVAL && e != EROFS)
    throw Error(ErrorCode::kIo, str_cat("fsync of folder '", dir, "' failed: ", std::strerror(e)));
}

void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& fill) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  LLMKIT_CHECK(f != nullptr, kIo, "cannot create '", tmp, "': ", std::strerror(errno));
  try {
    fill(f);
    LLMKIT_CHECK(std::fflush(f) == 0 && ::fsync(fileno(f)) == 0, kIo, "flushing '", tmp,
                 "' failed: ", std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw Error(ErrorCode::kIo, str_cat("closing '", tmp, "' failed: ", std::strerror(e)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw Error(ErrorCode::kIo, str_cat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(e)));
  }
  fsync_dir(std::filesystem::path(path).parent_path().string());
}

void write_text_atomically(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](std::FILE* f) { write_bytes(f, text.data(), text.size(), path); });
}

}  // namespace llmkit::io
