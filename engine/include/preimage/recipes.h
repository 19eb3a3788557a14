// Recipes: the complete pre-image methods the command line runs, as library calls. Each takes a
// network (the caller loads weights and picks the device), host images (1,3,H,W) in [0,1] and a
// typed options struct whose defaults are the `preimage` CLI's, and returns the image with the
// per-iteration, per-term loss history. Everything between Objective/Lbfgs and a finished
// result lives here: the seeded initial image, coarse-to-fine octaves, the source-resize rules,
// image priors weighted as per-pixel means, the memory estimate (checked before any image of the
// final size is allocated), checkpoints with resume, snapshots, progress and cancellation.
//
// Errors are preimage::Error; messages name the option at fault as `options.<field>` (e.g.
// "options.layers: ..."), or the layer / file. The analysis calls (saliency, adversarial
// attacks, features, neighbors, patches) are already library calls: preimage/analysis.h.
//
// Networks: texture and style transfer follow Gatys et al. with average pooling; build their
// network with NetworkOptions{.avg_pool = true} (the CLI does). The other recipes use max pooling.
//
//   Network net(load_weights("random:0", Arch::VGG19), Device::CPU, {.avg_pool = true});
//   TextureOptions o;  o.size = "128";  o.iterations = 50;
//   RecipeResult r = synthesize_texture(net, load_image("brick.png"), o);
//   save_png(r.image.view(), "out.png");
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "preimage/descriptors.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/tensor.h"

namespace preimage {

struct LayerWeight {
  std::string layer;
  float weight = 1.f;
};
// "relu1_1:0.5,relu2_1" → [{relu1_1, 0.5}, {relu2_1, 1}]; `what` names the option in errors.
std::vector<LayerWeight> parse_layer_weights(const std::string& spec, const std::string& what);

// Reported after every iteration. Return false from the callback to cancel (like the flag).
struct ProgressInfo {
  int stage = 0, stages = 1;  // octave (0-based) and octave count
  int iteration = 0;          // 1-based, within the stage
  int iterations = 0;         // the stage's iteration budget
  double loss = 0;            // objective value at this iteration
  int recorded = 0;           // iterations recorded so far, all stages (resumed included)
  const std::vector<std::string>* labels = nullptr;  // term labels, e.g. "gram:relu1_1"
  const std::vector<double>* terms = nullptr;        // each term's weighted value
};
using ProgressFn = std::function<bool(const ProgressInfo&)>;

// What every recipe shares. Each recipe's options struct derives from it and sets its own
// defaults (layers, iterations, tv, init) in its constructor.
struct RecipeOptions {
  std::vector<LayerWeight> layers;  // the taps and their weights
  std::string size;                 // output size: "512" (long side) or "WxH"; "" = input's size
  int iterations = 100;             // per octave
  int history = 10;                 // L-BFGS memory
  uint64_t seed = 0;                // noise init (and ascent jitter)
  int octaves = 1;                  // coarse-to-fine stages
  float octave_scale = 2.f;         // size ratio between octaves
  // Initial image: "noise" (seeded uniform [0.25, 0.75]; "random" is an alias), "input" (the
  // recipe's input image, resized), or "image" (init_image, resized).
  std::string init = "noise";
  std::shared_ptr<const Tensor> init_image;  // shared, so that options stay copyable
  float tv = 0.f, tv_beta = 2.f;             // TV^β prior, weight of its per-value mean
  float alpha = 6.f, alpha_weight = 0.f;     // α-norm prior, weight of its per-value mean
  int jitter = 0;                            // ascent recipes: random shift in pixels

  // Checkpoints: with a prefix, stage k's state goes to "<prefix>.stage<k>.ckpt.h5" when the
  // run is cancelled and at every snapshot; a finished run removes them. resume continues the
  // latest stage found there (bit-identical on the CPU); settings (any key → value, e.g. the
  // command line) are recorded and a resume with other settings is refused, naming the keys.
  std::string checkpoint_prefix;
  bool resume = false;
  std::map<std::string, std::string> settings;
  int snapshot_every = 0;  // every N iterations: on_snapshot, and a checkpoint with a prefix
  std::function<void(const Tensor& image, int stage, int iteration)> on_snapshot;

  ProgressFn progress;             // after every iteration
  std::function<void()> on_start;  // once, after validation, before iterating
  std::function<void(const std::string& checkpoint, int iteration)> on_resume;
  const std::atomic<bool>* cancel = nullptr;  // set → stop after this iteration, checkpoint
};

struct RecipeResult {
  Tensor image;  // host (1,3,H,W) in [0,1]; on cancellation the latest iterate
  std::vector<std::string> term_labels;
  std::vector<double> loss;                // per iteration (all stages, resumed ones included)
  std::vector<std::vector<double>> terms;  // per iteration, per term (term_labels' order)
  std::vector<int> stage;                  // the stage of each iteration
  std::string stop_reason = "none";        // stop_reason_name() of the last stage
  int evaluations = 0;  // objective evaluations, all stages (resumed ones included)
  bool cancelled = false;
  std::string checkpoint;  // written on cancellation (with a checkpoint_prefix)
  bool resumed = false;
  size_t predicted_peak_bytes = 0;  // the memory estimate at the final size
  double wall_time_s = 0;           // including the interrupted runs this one resumed
  long long peak_rss_bytes = 0;     // likewise (host resident set)
  // Recipe-specific scalars, e.g. "normalized_reconstruction_error:relu4_1".
  std::vector<std::pair<std::string, double>> metrics;
  std::vector<std::pair<std::string, std::string>> notes;  // e.g. descriptor description
};

// ---- L-BFGS recipes ------------------------------------------------------------------------

struct TextureOptions : RecipeOptions {
  std::string stats = "gram";  // gram (Gatys) | bcnn (Lin & Maji)
  TextureOptions() { layers = parse_layer_weights("relu1_1,relu2_1,relu3_1,relu4_1,relu5_1", ""); }
};
// The source is resized like the output relative to the final size, at every octave.
RecipeResult synthesize_texture(Network& net, const Tensor& source, const TextureOptions& options);

struct InvertOptions : RecipeOptions {
  // Invert a HOG / dense-SIFT descriptor instead of the network's taps (no network is used).
  std::optional<DescriptorOptions> descriptor;
  InvertOptions() {
    layers = parse_layer_weights("relu4_1", "");
    iterations = 200;
    tv = 5.f;
  }
};
// Mahendran & Vedaldi. metrics: normalized_reconstruction_error:<tap> per tap (descriptor:
// initial_descriptor_error and normalized_reconstruction_error:<descriptor>).
RecipeResult invert(Network* net, const Tensor& image, const InvertOptions& options);

struct StyleOptions : RecipeOptions {
  std::vector<LayerWeight> content_layers;
  float content_weight = 1.f, style_weight = 1.f;
  // Each style image is resized so that its long side is style_scale × the output's long side
  // (at every octave), as neural-style's -style_scale.
  float style_scale = 1.f;
  std::vector<float> style_blend_weights;  // one per style image (normalized); empty: equal
  bool original_colors = false;            // keep the content's colours (luminance transfer)
  StyleOptions() {
    layers = parse_layer_weights("relu1_1,relu2_1,relu3_1,relu4_1,relu5_1", "");
    content_layers = parse_layer_weights("relu4_2", "");
    iterations = 150;
    init = "input";
  }
};
// Gatys et al.: content taps of `content`, Gram statistics blended over the style images.
RecipeResult style_transfer(Network& net, const Tensor& content, const std::vector<Tensor>& styles,
                            const StyleOptions& options);

struct CaricatureOptions : RecipeOptions {
  CaricatureOptions() {
    layers = parse_layer_weights("relu4_1", "");
    tv = 5.f;
    init = "input";
  }
};
RecipeResult caricature(Network& net, const Tensor& image, const CaricatureOptions& options);

// ---- gradient-ascent recipes ---------------------------------------------------------------

struct VisualizeOptions : RecipeOptions {
  int channel = -1;  // the channel to maximize (spatial mean, or at the neuron)
  int neuron_y = -1, neuron_x = -1;
  int class_index = -1;  // a class score of a classifier layer (layers: fc8)
  float l2_decay = 0.f;  // per step, towards mid-grey
  int blur_every = 0;    // Gaussian blur every N steps
  float blur_sigma = 0.5f;
  float clip_small = 0.f;  // zero pixels below this fraction of the largest norm
  float step = 1.5f;       // step / 255 per mean |gradient|
  VisualizeOptions() {
    layers.clear();  // exactly one layer is required (fc8 by default with class_index)
    size = "128";
    iterations = 200;
  }
};
// Activation maximization (Yosinski et al.). `input` is used with init "input" (may be empty
// otherwise); noise init is mid-grey with a little seeded noise. metrics: final_activation.
RecipeResult visualize(Network& net, const Tensor& input, const VisualizeOptions& options);

struct DreamOptions : RecipeOptions {
  float step = 1.5f;
  DreamOptions() {
    layers = parse_layer_weights("relu4_1", "");
    iterations = 10;
    octaves = 3;
    octave_scale = 1.4f;
    jitter = 8;
  }
};
// DeepDream: detail carried up the octaves as x = base + upsample(x_prev − base_prev).
RecipeResult dream(Network& net, const Tensor& image, const DreamOptions& options);

// ---- building blocks the recipes share (also useful to callers) ---------------------------

// The L-BFGS driver under the recipes, for a custom objective: octaves ending at height×width;
// build(objective, stage, h, w) adds the stage's terms (the options' priors are added after);
// the first stage starts from options.init ("input": `input`, resized), later ones from the
// previous result, upsampled. `name` tags checkpoints; memory_taps feed the memory estimate.
RecipeResult optimize_image(Network& net, const std::string& name, int height, int width,
                            const Tensor& input, const std::vector<std::string>& memory_taps,
                            const RecipeOptions& options,
                            const std::function<void(Objective&, int stage, int h, int w)>& build);

// Estimated peak bytes of an optimization of an h×w image reading `taps` with an L-BFGS memory
// of `history`; throws Error (with the estimate and what to reduce) when it exceeds what the
// network's device has available.
size_t check_recipe_memory(const Network& net, int h, int w, const std::vector<std::string>& taps,
                           int history);
// Octave sizes from coarse to fine, ending at (h, w); at least 16 px each.
std::vector<std::pair<int, int>> octave_sizes(int h, int w, int octaves, float octave_scale);

}  // namespace preimage
