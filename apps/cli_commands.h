// The subcommands of the preimage command line that run an optimization.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "cli_options.h"

namespace preimage::cli {

struct Command {
  std::string name, summary;
  FlagSet flags;  // accepted flags, their help and this command's defaults
  int (*run)(Options);
};

const std::vector<Command>& commands();
// The command's --help text: every flag with its value, help and default.
std::string command_help(const Command& c);
// "%g" of a number, as the help texts show defaults.
std::string number_text(double v);

}  // namespace preimage::cli
