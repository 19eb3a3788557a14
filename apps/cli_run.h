// What every subcommand shares: the session (device, weights, network), input images and octave
// sizes, the L-BFGS driver with progress, Ctrl-C handling, periodic saves and checkpoints, and
// the outputs (PNG + JSON sidecar, both written atomically).
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
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
  std::string banner;  // printed by announce() once every input has been validated
  bool announced = false;
  int resume_from = -1;            // the stage --resume continues (resume_stage())
  double prior_wall_s = 0;         // wall time of the interrupted runs this one continues
  long long prior_peak_bytes = 0;  // and their measured peak
  int interrupt_at = 0;  // test hook: PREIMAGE_TEST_INTERRUPT_AT=k interrupts after iteration k
  int kill_at = 0;       // test hook: PREIMAGE_TEST_KILL_AT=k dies (SIGKILL) after iteration k

  // Sidecar material.
  std::vector<std::string> term_labels;
  std::vector<std::vector<double>> term_history;  // per iteration, per term
  std::vector<double> loss_history;
  std::vector<int> stage_of_iteration;
  std::string stop_reason = "none";
  size_t predicted_peak_bytes = 0;
  int out_h = 0, out_w = 0;  // final image size
  Json results;              // command-specific results (e.g. reconstruction error), an open object
  bool interrupted = false;
  std::string checkpoint;  // written on interruption
  int signal = 0;          // the signal that interrupted the run (exit code 128 + signal)
};

// Device, weights and network; installs SIGINT/SIGTERM handlers. Prints nothing: the banner
// (weights, announcing random features, and device) waits for announce(), so that a bad input
// found afterwards is reported on one line.
Session open_session(const Options& opt, bool avg_pool = false);
// Prints the banner (once, unless --quiet). run_lbfgs/run_ascent call it.
void announce(Session& s);

// Loads an image as RGB [0,1] on the host (errors name the flag and the file), at its own size.
Tensor load_rgb(const std::string& path, const std::string& flag);
// The output size for an image of size (h, w) under --size (unchanged without --size).
// --tv / --alpha-weight priors for an h×w image, weighted as per-value means.
void add_priors(Objective& obj, const Options& o, int h, int w);

std::pair<int, int> target_size(int h, int w, const Options& opt);
// Octave sizes from coarse to fine ending at (h, w).
std::vector<std::pair<int, int>> octave_sizes(int h, int w, const Options& opt);
// Initial image of the given size: noise (seeded), input (the given image resized), or a file.
Tensor initial_image(const Options& opt, int h, int w, const Tensor* input);

// Refuses (Error with the estimate and a suggestion) when the estimated peak memory of an
// optimization at this image size and these taps exceeds what the device has available. Call
// it at the final (largest) size before any image of that size is allocated.
void check_memory(Session& s, int h, int w, const std::vector<std::string>& taps);

// Runs L-BFGS on x (host tensor, updated) for one stage; progress, checkpoints (stage-aware),
// --save-every and Ctrl-C. Returns the solver result; s.interrupted is set on Ctrl-C.
LbfgsResult run_lbfgs(Session& s, Objective& obj, Tensor& x, int stage, int stages, int iters);

// Gradient ascent loop for visualize/dream: step(x, iteration, terms) performs one update on
// the host tensor x, fills the per-term values (labels: the objective's) and returns the
// objective value; handles progress, checkpoints (with the RNG state) and Ctrl-C.
void run_ascent(Session& s, const Objective& obj, Tensor& x, int stage, int stages, int iters,
                std::mt19937_64& rng,
                const std::function<double(Tensor& x, int it, std::vector<double>& terms)>& step);

// Writes --out (PNG) and --out.json; prints where the result is. Returns the process exit code
// (0, or 128 + signal after Ctrl-C / SIGTERM: the image and checkpoint are saved, --resume
// continues).
int finish(Session& s, const Tensor& x);

// Checkpoint path of a stage: "<out>.stage<k>.ckpt.h5".
std::string checkpoint_path(const Options& opt, int stage);
// With --resume: the stage to continue (recorded in s.resume_from; throws when there is no
// checkpoint). Without: 0.
int resume_stage(Session& s, int stages);

// Normalized difference ‖a − b‖ / ‖b‖ of two device views.
double relative_error(const View& a, const View& b);

}  // namespace preimage::cli
