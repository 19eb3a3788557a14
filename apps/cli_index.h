// The texture index commands of the command line (apps/cli_index.cpp):
//   preimage index build|add|info|verify …   and   preimage search INDEX QUERY… -k N
#pragma once
#include <string>

namespace preimage::cli {

// argv[1] is "index" or "search"; returns the process exit code (errors are thrown as
// preimage::Error and printed by main).
int run_index_command(int argc, char** argv);
// Usage lines for `preimage --help`.
const char* index_usage();
// --help of "index build|add|info|verify" or "search": every flag with its help and default.
std::string index_help(const std::string& command);

}  // namespace preimage::cli
