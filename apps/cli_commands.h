// The subcommands of the preimage command line that run an optimization.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "cli_options.h"

namespace preimage::cli {

struct Command {
  std::string name, summary;
  std::set<std::string> flags;  // accepted flags, without "--"
  int (*run)(Options);
};

const std::vector<Command>& commands();
// The command's --help text: every flag with its value, help and default.
std::string command_help(const Command& c);

}  // namespace preimage::cli
