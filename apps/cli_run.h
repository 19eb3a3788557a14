// What every subcommand shares: the session (device, weights, network), input images and octave
// sizes, the L-BFGS driver with progress, Ctrl-C handling, periodic saves and checkpoints, and
// the outputs (PNG + JSON sidecar, both written atomically).
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli_options.h"
#include "json.h"
#include "preimage/lbfgs.h"
#include "preimage/network.h"
#include "preimage/objective.h"

namespace preimage::cli {

struct Session {
  Options opt;
  Device device = Device::CPU;
  std::unique_ptr<Network> net;
  std::string weights_identity;
  bool random_weights = false;
  std::chrono::steady_clock::time_point start;

  // Sidecar material.
  std::vector<std::string> term_labels;
  std::vector<std::vector<double>> term_history;  // per iteration, per term
  std::vector<double> loss_history;
  std::vector<int> stage_of_iteration;
  std::string stop_reason = "none";
  size_t predicted_peak_bytes = 0;
  Json results;  // command-specific results (e.g. reconstruction error), an open object
  bool interrupted = false;
};

// Device, weights (announcing random features) and network; installs SIGINT/SIGTERM handlers.
Session open_session(const Options& opt, bool avg_pool = false);

// Loads an image as RGB [0,1] on the host, resized per --size when `apply_size`.
Tensor load_rgb(const std::string& path, const std::string& flag, const Options& opt,
                bool apply_size);
// Octave sizes from coarse to fine ending at (h, w).
std::vector<std::pair<int, int>> octave_sizes(int h, int w, const Options& opt);
// Initial image of the given size: noise (seeded), input (the given image resized), or a file.
Tensor initial_image(const Options& opt, int h, int w, const Tensor* input);

// Refuses (Error with the estimate and a suggestion) when the estimated peak memory of an
// optimization at this image size and these taps exceeds what the device has available.
void check_memory(Session& s, int h, int w, const std::vector<std::string>& taps);

// Runs L-BFGS on x (host tensor, updated) for one stage; progress, checkpoints (stage-aware),
// --save-every and Ctrl-C. Returns the solver result; s.interrupted is set on Ctrl-C.
LbfgsResult run_lbfgs(Session& s, Objective& obj, Tensor& x, int stage, int stages, int iters);

// Gradient ascent loop for visualize/dream: step(x, iteration) performs one update on the host
// tensor x and returns the objective value; handles progress, checkpoints and Ctrl-C.
void run_ascent(Session& s, Tensor& x, int stage, int stages, int iters,
                const std::function<double(Tensor& x, int it)>& step);

// Writes --out (PNG) and --out.json; prints where the result is. Returns the process exit code
// (0, or 130 after Ctrl-C: the image and checkpoint are saved, --resume continues).
int finish(Session& s, const Tensor& x);

// Checkpoint path of a stage: "<out>.stage<k>.ckpt.h5".
std::string checkpoint_path(const Options& opt, int stage);
// With --resume: the stage to continue and its checkpoint (throws when there is none).
int resume_stage(const Options& opt, int stages);

// Normalized difference ‖a − b‖ / ‖b‖ of two device views.
double relative_error(const View& a, const View& b);

}  // namespace preimage::cli
