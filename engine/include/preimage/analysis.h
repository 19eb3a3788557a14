// Analysis tools (the visualization lecture's toolkit): saliency maps (Simonyan's gradient,
// guided backprop, occlusion), FGSM / iterative targeted attacks and fooling images, feature
// files of image directories, nearest neighbours, PCA / t-SNE layouts, maximally activating
// receptive-field patches, first-layer filter grids, and the image composition they write
// (heat maps, overlays, contact sheets, image maps).
//
// Everything runs through the public Network API, so it works on any backend: images go in as
// (N,3,H,W) RGB [0,1] on the network's device; scores and their tap gradients are computed on
// the host (taps are small at the sizes these tools use) and the gradient comes back through
// Network::backward. Results (maps, coordinates) are host tensors / vectors.
//
// A "score" is a Target: the spatial mean of a channel (or one neuron) at a tap, or a class of
// a linear head. With random-feature weights class scores of fc8 are meaningless, so a class
// usually comes from a LinearHead: a linear classifier on the spatially mean-pooled features of
// a tap, loaded from HDF5 (save_head / load_head) or trained with train_linear_head (softmax
// cross-entropy, L2, the engine's L-BFGS).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "preimage/network.h"
#include "preimage/tensor.h"

namespace preimage {

// ---- linear heads ---------------------------------------------------------------------------
// logits = W · meanpool(tap) + b, W (classes, dim) row-major.
struct LinearHead {
  std::string tap;
  int classes = 0, dim = 0;
  std::vector<float> w, b;
  std::vector<std::string> names;  // optional class names (empty or one per class)
  float accuracy = -1;             // training accuracy of train_linear_head (−1: unknown)
};

// HDF5 layout: /weight (K,D) float32, /bias (K) float32, root attribute "layer" (tap name),
// optional /classes (K) strings. Errors name the file and dataset.
LinearHead load_head(const std::string& path);
void save_head(const LinearHead& head, const std::string& path);  // atomically

// Trains a head on pooled features (N, dim) row-major with labels in [0, classes): minimizes
// mean cross-entropy + l2/2·‖W‖² with L-BFGS on the host.
LinearHead train_linear_head(const std::string& tap, const std::vector<float>& features, int dim,
                             const std::vector<int>& labels, int classes, float l2 = 1e-3f,
                             int iterations = 200);

// Mean over positions of a tap activation (N,C,H,W) → (N·C) row-major host values.
std::vector<float> mean_pool(const View& activation);

// ---- targets and scores ---------------------------------------------------------------------
struct Target {
  std::string tap;
  int channel = -1;  // channel mean, or the neuron (y, x) when both are >= 0
  int y = -1, x = -1;
  const LinearHead* head = nullptr;  // with class_index: a class of the head
  int class_index = -1;

  bool is_class() const { return head != nullptr; }
  std::string describe() const;  // "relu2_1 channel 7", "class 1 of a head on relu2_1"
};

// Checks the target against the network at an image size (layer exists, channel / neuron /
// class in range, head dimension matches the tap); throws Error naming the flag-level field
// (e.g. "--channel 300 out of range: layer relu2_1 has 128 channels").
void check_target(const Network& net, const Target& t, const Shape& image);

// What attacks and scores maximize / report for a batch.
struct Scores {
  std::vector<double> score;        // channel mean / neuron / class logit, per image
  std::vector<double> probability;  // softmax probability of the class (class targets only)
};

// Forward of images (N,3,H,W) on the network's device; with image_grad, also the gradient of
// Σ_n objective_n w.r.t. the images, where objective is the score (log_prob = false) or the log
// softmax probability of the class (log_prob = true, class targets only).
Scores evaluate_target(Network& net, const View& images, const Target& t,
                       Tensor* image_grad = nullptr, bool log_prob = false);

// ---- saliency -------------------------------------------------------------------------------
// Simonyan et al.: map(y,x) = max_c |∂score/∂x_c(y,x)| → (1,1,H,W) host. guided: the backward
// pass lets only positive gradients through the ReLUs (Springenberg's guided backprop); the
// network's guided_relu option is set for the call and restored afterwards.
Tensor saliency_gradient(Network& net, const View& image, const Target& t, bool guided = false);

// Zeiler & Fergus: slide a grey (0.5) patch×patch square with the given stride (positions
// cover the whole image, the last one flush with the border); map(y,x) = mean over the
// occluder positions covering (y,x) of score(image) − score(occluded), evaluated in batches of
// `batch` images. (1,1,H,W) host; pixels no occluder covers are 0.
Tensor saliency_occlusion(Network& net, const View& image, const Target& t, int patch, int stride,
                          int batch = 16);

// ---- adversarial and fooling images ---------------------------------------------------------
struct AttackOptions {
  bool iterative = true;        // false: one FGSM step of size epsilon
  float epsilon = 8.f / 255.f;  // L∞ budget around the start image
  int steps = 20;               // iterative: projected signed-gradient steps
  float step_size = 0.f;        // 0: 2.5·epsilon/steps
};

struct AttackResult {
  Tensor image;  // (1,3,H,W) host, within the budget and [0,1]
  double score_before = 0, score_after = 0;
  double prob_before = -1, prob_after = -1;  // class targets only (−1 otherwise)
  double linf = 0, l2 = 0;                   // of image − start
  int steps = 0;                             // steps taken (stops early at prob ≥ stop_prob)
};

// Raises the target (its log probability for class targets, its score otherwise) from `start`
// (1,3,H,W) on the network's device, staying within the L∞ ball and [0,1]. Iterative attacks
// stop once the class probability exceeds stop_prob (class targets; 1 disables).
AttackResult attack(Network& net, const View& start, const Target& t, const AttackOptions& o,
                    double stop_prob = 1.0);

// ---- receptive fields -----------------------------------------------------------------------
// Receptive field of a tap's unit (y, x) in image coordinates: [y0, y0+size) × [x0, x0+size)
// (may reach outside the image where the network pads).
struct ReceptiveField {
  int size = 1, stride = 1, offset = 0;  // unit i covers [offset + i·stride, … + size)
};
ReceptiveField receptive_field(const Network& net, const std::string& tap);

// ---- feature files --------------------------------------------------------------------------
// A directory's features at one tap: mean-pooled (dim = channels) per image resized to
// size×size. HDF5 layout: /features (N,D) float32, /paths (N) strings, /skipped strings
// ("path: reason"), root attributes layer, weights (identity), arch, size, pool.
struct FeatureSet {
  std::string tap, weights, arch, pool = "mean";
  int size = 0;
  int dim = 0;
  std::vector<std::string> paths;
  std::vector<float> features;  // (N, dim) row-major
  std::vector<std::string> skipped;
  size_t count() const { return paths.size(); }
};

// Image files of a directory (sorted; not recursive). Throws when the directory is missing or
// holds no regular files.
std::vector<std::string> list_images(const std::string& dir);

// Loads each file (unreadable / non-image files are skipped and listed), resizes to size×size,
// runs batches of `batch` and mean-pools the tap. progress(done, total) after each batch.
// Throws when no file could be read.
FeatureSet extract_features(Network& net, const std::vector<std::string>& files,
                            const std::string& tap, int size, int batch = 8,
                            const std::function<void(int, int)>& progress = {});
// Features of one host image (1,3,H,W) resized like the set's.
std::vector<float> image_features(Network& net, const Tensor& image, const std::string& tap,
                                  int size);

void save_features(const FeatureSet& f, const std::string& path);  // atomically
FeatureSet load_features(const std::string& path);  // checks shapes and counts; errors name file

// ---- neighbours and layouts -----------------------------------------------------------------
struct Neighbor {
  int index = 0;
  double distance = 0;  // L2 distance, or 1 − cosine similarity
};
std::vector<Neighbor> nearest_neighbors(const FeatureSet& f, const std::vector<float>& query, int k,
                                        bool cosine);

// Rows of an (N, D) matrix projected on the top `dims` principal components → (N, dims).
std::vector<double> pca(const std::vector<float>& x, int n, int d, int dims = 2);

struct TsneOptions {
  double perplexity = 30;
  int iterations = 1000;
  double learning_rate = 0;  // 0: max(N / early_exaggeration / 4, 50)
  double theta = 0.5;        // Barnes–Hut accuracy
  int exact_below = 1000;    // exact O(N²) gradients below this many points, Barnes–Hut above
  uint64_t seed = 0;
};
// 2-D t-SNE of (N, D) rows → (N, 2). Input is first reduced to 50 dimensions by PCA when wider.
std::vector<double> tsne(const std::vector<float>& x, int n, int d, const TsneOptions& o = {});

// ---- maximally activating patches -----------------------------------------------------------
struct Patch {
  int image = 0;     // index into the file list
  int y = 0, x = 0;  // unit position at the tap
  float activation = 0;
  int y0 = 0, x0 = 0, size = 0;  // receptive field in the resized image
};
// Top-k units of a channel over the images (each image resized to size×size, at most one patch
// per image), sorted by activation, with their receptive fields. Unreadable files are skipped
// and listed in *skipped.
std::vector<Patch> top_patches(Network& net, const std::vector<std::string>& files,
                               const std::string& tap, int channel, int size, int k,
                               std::vector<std::string>* skipped = nullptr);
// Crop of a patch from its (resized) image; outside the image is grey.
Tensor crop_patch(const Tensor& image, const Patch& p);

// ---- image composition (host tensors) -------------------------------------------------------
// (1,1,H,W) map → (1,3,H,W) colour map (black → red → yellow → white), normalized to its max.
Tensor colorize(const Tensor& map);
// image · (1 − alpha) + colorize(map) · alpha.
Tensor overlay(const Tensor& image, const Tensor& map, float alpha = 0.5f);
// Tiles (each (1,3,h,w), resized to tile×tile) in a grid of `columns`, with a 2-px grey border.
Tensor tile_grid(const std::vector<Tensor>& tiles, int columns, int tile);
// Thumbnails at 2-D positions (normalized to the canvas) on a canvas of side `canvas`.
Tensor image_map(const std::vector<Tensor>& thumbs, const std::vector<double>& xy, int canvas,
                 int thumb);
// Filters of conv1_1 (O,3,k,k) as colour tiles (each filter scaled to [0,1] symmetrically
// around 0.5 by the largest |w| of all filters), magnified to `tile` px.
Tensor filter_grid(const Tensor& conv1_weight, int tile = 24);

}  // namespace preimage
