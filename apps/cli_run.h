// What the recipe subcommands share on the command-line side: the session (device, weights,
// network, banner), input images, the translation of flags into the library's RecipeOptions
// (with the one progress printer, Ctrl-C and the test hooks), and the outputs (PNG + JSON
// sidecar, both written atomically). The optimization itself — octaves, resume, memory check —
// is the library's (preimage/recipes.h).
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cli_options.h"
#include "json.h"
#include "preimage/network.h"
#include "preimage/recipes.h"

namespace preimage::cli {

// argv of this process, for the sidecar (set by main).
void set_command_line(int argc, char** argv);
const std::vector<std::string>& command_line();
// "0.1.0" and the git commit the binary was built from ("unknown" outside a git checkout).
const char* version_string();
const char* git_commit();

struct Session {
  Options opt;
  Device device = Device::CPU;
  std::unique_ptr<Network> net;  // null for commands without a network
  std::string weights_identity;
  bool random_weights = false;
  std::string banner;  // printed once every input has been validated (on_start)
  std::vector<std::pair<std::string, std::string>> inputs;  // flag → image file, for sidecar
  bool print_terms = false;  // last per-term values to stderr at the end
  Json results;              // command-specific results, an open object
};

// Device, weights and network (no network with `network` false); installs SIGINT/SIGTERM
// handlers. Prints nothing: the banner waits for the recipe's on_start.
Session open_session(const Options& opt, bool avg_pool, bool network = true);

// Loads an image as RGB [0,1] (errors name the flag and the file) and records it for the
// sidecar's SHA-256s.
Tensor load_rgb(Session& s, const std::string& path, const std::string& flag);

// The library options of the common flags; defaults of `r` stay where a flag is not given.
// Hooks up the progress printer, Ctrl-C, --save-every snapshots, --out checkpoints / --resume.
void apply_common(Session& s, RecipeOptions& r);

// Writes --out (PNG) and --out.json (or prints the JSON with --json); returns the exit code
// (0, or 128 + signal after Ctrl-C / SIGTERM: the image and checkpoint are saved).
int finish(Session& s, const RecipeResult& r);

// "options.layers: …" → "--layers: …": library option names as the flags that set them.
std::string cli_message(const std::string& library_message);

}  // namespace preimage::cli
