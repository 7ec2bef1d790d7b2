// The three levels of checks (see docs/ARCHITECTURE.md):
//   LLMKIT_CHECK(cond, code, msg, hint)  user input -> throws llmkit::Error (never aborts)
//   LLMKIT_ASSERT(cond, msg)             internal invariant -> always on; prints file:line, aborts
//   LLMKIT_DASSERT(cond)                 hot loops -> debug builds only
#pragma once

#include <cstdint>
#include <sstream>
#include <string>

#include "llmkit/error.h"

namespace llmkit {

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

// Builds a message from any streamable values: str_cat("bad dim ", 3, " > ", 2).
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Overflow-checked size arithmetic for untrusted sizes. Returns false on overflow.
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

}  // namespace llmkit

#define LLMKIT_CHECK(cond, code, ...)                                                   \
  do {                                                                                   \
    if (!(cond)) throw ::llmkit::Error(::llmkit::ErrorCode::code, ::llmkit::str_cat(__VA_ARGS__)); \
  } while (0)

#define LLMKIT_ASSERT(cond, ...)                                                         \
  do {                                                                                   \
    if (!(cond)) ::llmkit::assert_fail(#cond, __FILE__, __LINE__, ::llmkit::str_cat("" __VA_OPT__(,) __VA_ARGS__)); \
  } while (0)

#ifdef NDEBUG
#define LLMKIT_DASSERT(cond) ((void)0)
#else
#define LLMKIT_DASSERT(cond) LLMKIT_ASSERT(cond)
#endif
