// `preimage attributes`: B-CNN attribute classifiers and attribute pre-images (Lin & Maji;
// engine side preimage/attributes.h, docs/attributes.md):
//   train  --data DIR | --list FILE --out C.h5   B-CNN features per layer → logistic regression
//   show   --classifier C --attribute NAME|all --out X.png           the attribute's pre-image
//   apply  --input IMG --classifier C --attribute NAME|all --strength β --out X.png
//          texture + attribute, or with --keep-content content (relu4_2) + attribute
#pragma once
#include <string>

namespace preimage::cli {

// argv[1] == "attributes"; runs the subcommand argv[2] on argv[3..]; returns the exit code.
int run_attributes(int argc, char** argv);
// One usage line per attributes subcommand.
const char* attributes_usage();
// --help of "attributes train|show|apply": every flag with its help and default.
std::string attributes_help(const std::string& command);

}  // namespace preimage::cli
