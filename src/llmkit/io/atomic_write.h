// Files that appear whole or not at all. A writer fills PATH.tmp, the bytes are fsynced, the file
// is renamed over PATH and the folder is fsynced so the rename itself survives a crash. A reader
// therefore sees either the previous file or the complete new one, never a torn write.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

namespace llmkit::io {

// Calls fill(FILE*) on PATH.tmp, then fsync + rename + directory fsync. On any failure (fill
// throws, a short write, fsync or rename refused) PATH.tmp is removed, PATH is left as it was and
// Error(kIo) (or fill's error) propagates.
void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& fill);

// Convenience: the whole contents at once.
void write_text_atomically(const std::string& path, const std::string& text);

// fwrite that throws Error(kIo) naming the path on a short write.
void write_bytes(std::FILE* f, const void* p, size_t n, const std::string& path);

// fsyncs a folder so a rename inside it is durable. Errors are ignored where the file system does
// not support it (EINVAL), otherwise Error(kIo).
void fsync_dir(const std::string& dir);

}  // namespace llmkit::io
