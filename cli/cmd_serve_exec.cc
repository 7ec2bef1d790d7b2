// `llmkit serve` in the main binary: re-executes as the `llmkit-serve` binary next to it, which is
// the same CLI with the server linked in. The HTTP stack (cpp-httplib, which loads and initialises
// OpenSSL, brotli and zlib) then costs nothing to every other subcommand: ~4 MB of resident memory
// and the start-up time of those libraries (measured: bench's peak RSS on SmolLM2-135M).
// Flags were already parsed and checked here, so a bad flag still fails before the exec.
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "commands.h"
#include "llmkit/error.h"

namespace llmkit::cli {

int run_serve(const ServeFlags&) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) throw Error(ErrorCode::kIo, std::string("cannot find the llmkit binary's folder: ") + std::strerror(errno));
  self[n] = '\0';
  std::string path(self);
  path = path.substr(0, path.rfind('/') + 1) + "llmkit-serve";
  char** argv = main_argv();
  execv(path.c_str(), argv);
  throw Error(ErrorCode::kNotFound, "cannot run the server binary '" + path + "': " + std::strerror(errno),
              "llmkit serve needs llmkit-serve next to llmkit; rebuild (cmake --build build) or reinstall");
}

}  // namespace llmkit::cli
