// Public error type. Every failure caused by user input (a file, a request, a flag) surfaces as an
// llmkit::Error that names the bad value and, where there is one, the fix. Internal invariants use
// LLMKIT_ASSERT (src/llmkit/base/check.h) instead; kernels never throw.
#pragma once

#include <stdexcept>
#include <string>

namespace llmkit {

enum class ErrorCode {
  kInvalidArgument,  // a flag, option or API argument is out of range or malformed
  kInvalidFile,      // a model/data file is corrupt, truncated or inconsistent
  kNotFound,         // a file, model, tensor or key does not exist
  kUnsupported,      // well-formed, but a feature llmkit does not (yet) support
  kOutOfMemory,      // an allocation or planned size exceeds what is available
  kIo,               // the operating system refused a read/write/mmap
  kNotImplemented,   // a subcommand or code path that is not built yet
  kInternal,         // a bug: an invariant failed where throwing is safe
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), code_(code), hint_(std::move(hint)) {}
  ErrorCode code() const { return code_; }
  // How to fix it ("convert the checkpoint to safetensors with ..."); may be empty.
  const std::string& hint() const { return hint_; }

 private:
  ErrorCode code_;
  std::string hint_;
};

}  // namespace llmkit
