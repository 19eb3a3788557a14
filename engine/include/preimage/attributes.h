// B-CNN attribute classifiers (Lin & Maji, "Visualizing and understanding deep texture
// representations"): a multinomial logistic regression on bilinear (B-CNN) features of several
// layers, trained with the engine's L-BFGS on the network's device, stored in HDF5 together with
// everything the features depend on (layers, image size, pooling, normalization, and the identity
// and a content fingerprint of the VGG weights), so that the attribute term
// (make_attribute_term in preimage/objective.h) of a later run reads exactly the features the
// classifier was trained on.
//
// Features: for every layer l of the classifier, z_l = normalize(ssqrt(B_l)) with
// B_l = (1/M) Σ f fᵀ the same-layer bilinear pool (signed square root, then L2 per layer), and
// z = [z_1, …, z_L] concatenated in the classifier's layer order: D = Σ C_l². This is the vector
// bcnn_descriptor() computes and the attribute term differentiates.
//
// Training (train_attribute_classifier): minimizes
//   (1/N) Σ_n −log softmax(W x̃_n + b)[y_n] + (λ/2)‖W‖²,   x̃_j = (z_j − μ_j) / s_j
// with μ the mean training feature and s_j = σ_j + sd_floor·mean(σ) (per-dimension standard
// deviation, floored so that dimensions that barely vary are not blown up into noise); W and b are
// folded back so that the stored classifier applies to z directly: logits = W' z + b',
// W'_kj = W_kj / s_j, b' = b − W' μ.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "preimage/network.h"
#include "preimage/tensor.h"
#include "preimage/weights.h"

namespace preimage {

// relu2_2, relu3_3, relu4_3, relu5_3 (VGG-16) / relu2_2, relu3_4, relu4_4, relu5_4 (VGG-19): the
// last ReLU of blocks 2–5.
std::vector<std::string> default_attribute_layers(Arch arch);

// Content fingerprint (16 hex digits, FNV-1a 64) of what the features at `layers` depend on: the
// preprocessing and the shapes and values of every convolution's weights and biases up to the
// deepest of the layers.
std::string weights_fingerprint(const Network& net, const std::vector<std::string>& layers);

// ---- datasets --------------------------------------------------------------------------------
struct AttributeDataset {
  std::vector<std::string> classes;             // sorted names
  std::vector<std::vector<std::string>> train;  // files per class
  std::vector<std::vector<std::string>> test;   // held-out files per class
};

// One subfolder of `dir` per class (its regular files are the images; hidden entries ignored).
// Each class is split deterministically (a seeded shuffle of the sorted files): round(fraction·n)
// files, at least one, are held out. Throws naming the folder for a missing directory, fewer
// than two class folders, or an empty class folder (or one with a single image, which cannot be
// split).
AttributeDataset attribute_dataset_from_dir(const std::string& dir, double test_fraction = 0.25,
                                            uint64_t seed = 0);

// A list file: one image per line, "train|test CLASS PATH" (whitespace-separated; PATH may hold
// spaces; relative paths are relative to the list file's folder; blank lines and lines starting
// with '#' are ignored). Throws naming the file and line for a malformed line, and for fewer
// than two classes or a class without training or test images.
AttributeDataset attribute_dataset_from_list(const std::string& list_file);

// ---- features --------------------------------------------------------------------------------
struct BcnnFeatureSettings {
  std::vector<std::string> layers;
  int size = 224;            // images are resized to size×size
  std::string pool = "max";  // the network's pooling ("max" or "avg"); recorded, not applied here
  float eps = 1e-8f;         // signed-sqrt / normalization epsilon (bcnn_descriptor)
};

struct BcnnFeatures {
  int dim = 0;                       // D = Σ C_l²
  std::vector<int> channels;         // C_l per layer
  std::vector<std::string> paths;    // images read, in input order
  std::vector<float> features;       // (N, D) row-major
  std::vector<std::string> skipped;  // "path: reason" of unreadable files
  size_t count() const { return paths.size(); }
};

// Checks the layers against the network (taps of it, not fc layers) and returns C_l per layer.
std::vector<int> bcnn_layer_channels(const Network& net, const std::vector<std::string>& layers);

// Concatenated B-CNN descriptors of a batch of images (N,3,H,W) on the network's device → host
// (N, D) row-major.
std::vector<float> bcnn_features(Network& net, const View& images,
                                 const std::vector<std::string>& layers, float eps = 1e-8f);

// Loads each file (unreadable files are skipped and listed, never fatal here), resizes it to
// size×size and extracts features in batches of `batch`; progress(done, total) after each batch.
BcnnFeatures extract_bcnn_features(Network& net, const std::vector<std::string>& files,
                                   const BcnnFeatureSettings& s, int batch = 8,
                                   const std::function<void(int, int)>& progress = {});

// ---- the classifier --------------------------------------------------------------------------
struct AttributeClassifier {
  std::vector<std::string> classes;  // K names
  BcnnFeatureSettings features;
  std::vector<int> channels;  // C_l per layer (D = Σ C_l²)
  int dim = 0;
  std::vector<float> w, b;  // (K, D) row-major, (K): logits = W z + b
  std::string arch;         // "vgg16" | "vgg19"
  std::string weights;      // the weights' identity ("random:0", "FILE (sha256 …)")
  std::string fingerprint;  // weights_fingerprint() of the training network
  float l2 = 0;             // λ used in training
  int iterations = 0;       // L-BFGS iterations run
  double train_accuracy = -1, test_accuracy = -1;  // mean per-class accuracy (−1: unknown)
  std::vector<double> test_class_accuracy;         // per class (empty: unknown)
  int classes_count() const { return int(classes.size()); }
};

struct AttributeTrainOptions {
  float l2 = 1e-2f;       // λ on the standardized features
  int iterations = 300;   // L-BFGS iterations at most
  double gtol = 1e-6;     // relative gradient tolerance
  double sd_floor = 1.0;  // s_j = σ_j + sd_floor · mean_j σ_j (0: plain per-dimension z-scores)
};

// Trains on features (N, D) row-major with labels in [0, classes.size()) on `device` with the
// engine's L-BFGS. Fills w, b, dim, classes, iterations and train_accuracy; the caller fills the
// feature settings and weights identity.
AttributeClassifier train_attribute_classifier(const std::vector<float>& features, int dim,
                                               const std::vector<int>& labels,
                                               const std::vector<std::string>& classes,
                                               Device device, const AttributeTrainOptions& o = {});

// The training objective at θ = [W (K·D) | b (K)] on the standardized features, for tests:
// value, and its gradient into grad (resized). features are (N, D) row-major on `device`.
double attribute_training_loss(const View& features, const std::vector<int>& labels, int classes,
                               float l2, const View& theta, Tensor& grad);

// Softmax probabilities (N, K) of features (N, D) under the classifier (host, double).
std::vector<double> attribute_probabilities(const AttributeClassifier& c,
                                            const std::vector<float>& features);
// Per-class accuracy (fraction of each class's rows predicted as that class; NaN for a class
// without rows) of features with labels.
std::vector<double> attribute_class_accuracy(const AttributeClassifier& c,
                                             const std::vector<float>& features,
                                             const std::vector<int>& labels);

// Class index of a name; throws "unknown attribute 'x'; the classifier knows: a, b, c".
int attribute_index(const AttributeClassifier& c, const std::string& name);

// Checks that the network produces the classifier's features: same architecture, every layer a
// tap with the recorded channel count, the same weights fingerprint. Throws naming the
// classifier file (`what`), the layer or the weights on both sides, and what to pass instead.
void check_attribute_classifier(const AttributeClassifier& c, const Network& net,
                                const std::string& what);

// HDF5 layout: /weight (K,D) float32, /bias (K) float32, /classes (K) strings, /layers (L)
// strings, /channels (L) int64, /test_class_accuracy (K) float64 (when known); root attributes
// format "preimage-attribute-classifier 1", arch, weights, weights_fingerprint, size, pool,
// signed_sqrt (1), l2_normalize (1), eps, l2, iterations, train_accuracy, test_accuracy.
void save_attribute_classifier(const AttributeClassifier& c, const std::string& path);  // atomic
// Checks every dataset and attribute; errors name the file and the dataset or attribute.
AttributeClassifier load_attribute_classifier(const std::string& path);

}  // namespace preimage
