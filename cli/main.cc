// llmkit: one binary, subcommands. Turns every error into one clear message and an exit code:
// 0 ok, 1 the command failed, 2 usage error, 3 not built yet.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "commands.h"
#include "llmkit/error.h"
#include "llmkit/version.h"

namespace {
char** g_argv = nullptr;
}  // namespace
char** llmkit::cli::main_argv() { return g_argv; }

int main(int argc, char** argv) {
  using namespace llmkit::cli;
  g_argv = argv;
  CLI::App app{"llmkit: one engine for the whole life of a large language model -- run, serve, train,\n"
               "fine-tune, align, compress, evaluate and build apps, on a laptop CPU or a GPU cluster."};
  app.name("llmkit");
  app.require_subcommand(0, 1);
  app.fallthrough(false);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and build information, then exit");
  app.footer("Run `llmkit SUBCOMMAND --help` for the flags of one subcommand.\n"
             "Models: " + models_dir() + " (set LLMKIT_HOME to move it).");

  std::function<int()> runner;
  for (const auto& cmd : commands()) {
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.summary);
    auto fn = cmd.setup(*sub);
    sub->callback([&runner, fn] { runner = fn; });
  }

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto& cmd : commands()) known = known || std::string(argv[1]) == cmd.name;
    if (!known) {
      std::fprintf(stderr, "llmkit: unknown subcommand '%s'\nRun `llmkit --help` for the list of subcommands.\n",
                   argv[1]);
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "llmkit: %s\nRun `llmkit --help` for usage.\n", e.what());
    return kExitUsage;
  }
  llmkit::init();
  if (show_version) {
    std::printf("%s\n", llmkit::build_info().c_str());
    return kExitOk;
  }
  if (!runner) {
    std::cout << app.help();
    return kExitOk;
  }
  try {
    return runner();
  } catch (const llmkit::Error& e) {
    std::fprintf(stderr, "llmkit: %s: %s\n", llmkit::error_code_name(e.code()), e.what());
    if (!e.hint().empty()) std::fprintf(stderr, "  fix: %s\n", e.hint().c_str());
    if (e.code() == llmkit::ErrorCode::kNotImplemented) return kExitNotBuilt;
    return e.code() == llmkit::ErrorCode::kInvalidArgument ? kExitUsage : kExitError;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "llmkit: out of memory; try a smaller model, batch or context\n");
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmkit: unexpected error: %s\n", e.what());
    return kExitError;
  }
}
