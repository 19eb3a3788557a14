// The analysis subcommands of the preimage command line (engine side: preimage/analysis.h):
//   saliency     gradient / guided / occlusion heat map and overlay of --input
//   adversarial  FGSM or iterative targeted attack (or --from-noise fooling image)
//   features     mean-pooled tap features of every image in a directory → HDF5
//   neighbors    nearest neighbours of --query in a feature file → contact sheet
//   embed        PCA / t-SNE layout of a feature file → image map PNG + CSV
//   patches      top-k receptive-field patches of a channel over a directory → grid
//   filters      the conv1_1 filter grid
//   head         a linear classifier on pooled features (one subdirectory per class), for --head
// They share the option vocabulary of the other subcommands (--weights, --arch, --device,
// --size, --layer, --channel, --neuron, --class, --out, --quiet); positional arguments (a
// directory or a feature file) come first or anywhere, flags as --flag VALUE or --flag=VALUE.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace preimage::cli {

bool is_analysis_command(const std::string& command);
// Runs an analysis subcommand on argv[2..]; returns the exit code (errors are thrown as
// preimage::Error and printed by main on one line).
int run_analysis(const std::string& command, int argc, char** argv);
// One usage line per analysis subcommand.
void print_analysis_usage();
// Name and summary of every analysis subcommand; one command's --help text.
std::vector<std::pair<std::string, std::string>> analysis_commands();
std::string analysis_help(const std::string& command);

}  // namespace preimage::cli
