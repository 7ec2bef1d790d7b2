// Version and build information of the llmkit library.
#pragma once

#include <string>

namespace llmkit {

const char* version();
// One line: version, build type, compiled SIMD targets, the target chosen on this CPU.
std::string build_info();

}  // namespace llmkit
