// The up-convolutional decoder commands of the command line (apps/cli_decoder.cpp,
// docs/decoders.md):
//   preimage decoder train|invert|eval …
#pragma once
#include <string>

namespace preimage::cli {

// argv[1] is "decoder"; returns the process exit code (errors are thrown as preimage::Error and
// printed by main).
int run_decoder_command(int argc, char** argv);
// Usage lines for `preimage --help`.
const char* decoder_usage();
// --help of "decoder train|invert|eval": every flag with its help and default.
std::string decoder_help(const std::string& command);

}  // namespace preimage::cli
