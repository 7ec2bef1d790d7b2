// Version, build information and initialisation of the llmkit library.
#pragma once

#include <string>

namespace llmkit {

const char* version();
// One line: version, build type, compiled SIMD targets, the target chosen on this CPU.
std::string build_info();

// Initialises optional backends (registers the CUDA device when built with it and a GPU is
// present). Idempotent; the CLI calls it once at start.
void init();

}  // namespace llmkit
