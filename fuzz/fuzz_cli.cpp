// libFuzzer target: the command line's argument parsing, everything that runs before a command
// does real work: cli::parse_options with each subcommand's flag set (cli::commands()),
// cli::parse_flags, --layers lists, --size specs (preimage::parse_size), --arch and --device.
// The input is split into argv on NUL and newline bytes; its first byte picks the subcommand.
// preimage::Error is expected for bad arguments; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/cli_commands.h"
#include "apps/cli_options.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& cmds = preimage::cli::commands();
  const size_t pick = data[0];
  std::vector<std::string> args{"preimage"};
  std::string cur;
  bool have = false;
  for (size_t i = 1; i < size; ++i) {
    const char c = char(data[i]);
    if (c == '\0' || c == '\n') {
      args.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) args.push_back(cur);
  const std::string command =
      pick < cmds.size() ? cmds[pick].name : (pick % 2 ? "forward" : "unknown");
  args.insert(args.begin() + 1, command);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int argc = int(args.size());
  try {
    if (pick < cmds.size()) {
      const preimage::cli::Options o =
          preimage::cli::parse_options(command, argc, argv.data(), 2, cmds[pick].flags);
      if (!o.size.empty()) {
        int h = 0, w = 0;
        preimage::parse_size(o.size, 37, 53, &h, &w);
      }
      if (o.given("arch")) preimage::parse_arch(o.arch);
      preimage::resolve_device(o.device);
    } else {
      static const preimage::cli::FlagSet set(
          {"weights", "arch", "input", "size", "layers", "device", "quiet", "batch"});
      const auto fa = preimage::cli::parse_flags(command, argc, argv.data(), 2, set);
      if (fa.given("layers")) preimage::cli::parse_layers(fa.text("layers"), "layers");
      fa.integer("batch", 1, 4096);
    }
  } catch (const preimage::Error&) {
  }
  return 0;
}
