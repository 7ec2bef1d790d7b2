// Error names and the always-on assertion handler.
#include "llmkit/base/check.h"

#include <cstdio>
#include <cstdlib>

namespace llmkit {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kInvalidFile: return "invalid file";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kOutOfMemory: return "out of memory";
    case ErrorCode::kIo: return "I/O error";
    case ErrorCode::kNotImplemented: return "not implemented";
    case ErrorCode::kInternal: return "internal error";
  }
  return "error";
}

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "llmkit: internal invariant failed at %s:%d: %s%s%s\n"
               "This is a bug in llmkit; please report it with the command you ran.\n",
               file, line, expr, msg.empty() ? "" : " -- ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace llmkit
