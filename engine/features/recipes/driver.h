// The one driver every recipe runs through (internal): seeded initial images, priors, the
// memory estimate, checkpoints with resume, snapshots, progress and cancellation, for L-BFGS
// stages and for gradient-ascent stages.
#pragma once
#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "preimage/lbfgs.h"
#include "preimage/objective.h"
#include "preimage/recipes.h"

namespace preimage::recipes_detail {

class Driver {
 public:
  Driver(std::string recipe, const RecipeOptions& o, Network* net);

  const RecipeOptions& opt() const { return o_; }
  Device device() const { return device_; }
  RecipeResult& result() { return r_; }

  // The output size for an h×w input under options.size.
  std::pair<int, int> target_size(int h, int w) const;
  std::vector<std::pair<int, int>> octaves(int h, int w) const;
  // Memory estimate at h×w for these taps (recorded; throws when it does not fit).
  void check_memory(int h, int w, const std::vector<std::string>& taps);
  // Initial image by options.init; `input` is the recipe's input at this size (or null).
  Tensor initial_image(int h, int w, const Tensor* input) const;
  // options.tv / options.alpha_weight priors for an h×w image, weighted as per-value means.
  void add_priors(Objective& obj, int h, int w) const;

  // The stage to start from: with options.resume the latest stage with a checkpoint (throws
  // when there is none); otherwise 0.
  int resume_stage(int stages);

  // One L-BFGS stage on the host image x (updated).
  void lbfgs(Objective& obj, Tensor& x, int stage, int stages);
  // The octave loop of every L-BFGS recipe, written once: from the resumed stage (or 0) to the
  // last, the memory check at the stage's size (none without taps), build(objective, stage, h, w)
  // adds the stage's terms and returns the recipe's input at that size (or an empty tensor),
  // then the priors, the start (options.init at the first stage run, the previous result
  // upsampled after it) and the solver; stops on cancellation. Returns the last iterate.
  using StageBuilder = std::function<Tensor(Objective& obj, int stage, int h, int w)>;
  Tensor lbfgs_octaves(int height, int width, const std::vector<std::string>& memory_taps,
                       const StageBuilder& build);
  // One ascent stage: step(x, it, terms) updates x and returns the objective value.
  void ascent(const Objective& obj, Tensor& x, int stage, int stages, std::mt19937_64& rng,
              const std::function<double(Tensor& x, int it, std::vector<double>& terms)>& step);

  bool cancelled() const { return r_.cancelled; }
  // Fills the image, wall time and peak; removes the checkpoints of a finished run.
  RecipeResult finish(Tensor x);

 private:
  bool stopping() const;
  void record(int stage, int it, int iters, double f, const std::vector<double>& terms);
  std::string checkpoint_path(int stage) const;
  std::string make_blob(int stage, int iteration, const std::mt19937_64* rng) const;
  void apply_blob(const std::string& blob, const std::string& ckpt, int* iteration,
                  std::mt19937_64* rng);
  void clear_checkpoints(int keep) const;
  void started();
  double wall() const;

  std::string recipe_;
  const RecipeOptions& o_;
  Network* net_;
  Device device_;
  RecipeResult r_;
  int resume_from_ = -1;
  bool stop_ = false, started_ = false;
  double prior_wall_s_ = 0;
  long long prior_peak_ = 0;
  int done_evals_ = 0;  // evaluations of the finished stages (restored on resume)
  std::chrono::steady_clock::time_point start_;
};

std::vector<std::string> tap_list(const std::vector<LayerWeight>& lw);
double relative_error(const View& a, const View& b);

}  // namespace preimage::recipes_detail
