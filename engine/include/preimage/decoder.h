// Up-convolutional decoders (Dosovitskiy & Brox, "Inverting visual representations with
// convolutional networks"): a small feed-forward network trained to map the activation of a VGG
// tap (C,h,w) back to the RGB image (3,H,W) it came from, so that inversion is one forward pass
// instead of an L-BFGS optimization.
//
// Architecture (DecoderConfig): conv3×3 C→width + leaky ReLU; then `ups` stages of
// [up-conv 4×4 stride 2 pad 1 (transposed convolution, channels halved down to 16) + leaky ReLU,
// conv3×3 + leaky ReLU], H = h·2^ups; last conv3×3 → 3 channels, no activation. The input is
// multiplied by feature_scale (1 / RMS of the training features) first. All compute goes through
// backend(device): conv2d (engine/cpu, kernels/conv2d.cu), conv_transpose and leaky ReLU
// (kernels/conv_transpose.cu), the Adam step (kernels/adam.cu).
//
// Files (HDF5, docs/decoders.md): the layer name, the VGG weights' identity and a hash of the
// weights of the layers the features depend on, the architecture, the training settings and
// progress, the training mean image, the parameters and optionally the Adam state (checkpoints).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "preimage/network.h"
#include "preimage/tensor.h"
#include "preimage/weights.h"

namespace preimage {

struct DecoderConfig {
  int in_c = 0, in_h = 0, in_w = 0;  // the tap's activation shape (per image)
  int out_h = 0, out_w = 0;          // image size; out = (in + 2·in_pad) · 2^ups exactly
  int in_pad = 0;      // feature cells of zero padding on each side (descriptors that drop borders)
  int width = 64;      // channels after the first conv
  float slope = 0.2f;  // leaky ReLU slope
  // log2(out_h / (in_h + 2·in_pad)); throws Error when not a power of two
  int ups() const;
};

// What the decoder was trained on and how; stored in its file, checked on use.
struct DecoderMeta {
  std::string layer;             // tap name, e.g. "relu2_2", or a descriptor ("hog-uoctti")
  std::string arch = "vgg19";    // VGG architecture of the features, or "descriptor"
  std::string weights_spec;      // what --weights said ("random:0", a path)
  std::string weights_identity;  // Weights::identity
  std::string weights_hash;      // features_hash() of the weights
  float feature_scale = 1.f;
  // training settings and progress
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int batch = 8;
  uint64_t seed = 0;
  long long step = 0;         // Adam steps done
  long long total_steps = 0;  // steps asked for
  int train_images = 0, holdout = 0;
  std::string data_dir;
  double feature_loss = 0;  // weight of the optional feature-space loss
  double train_seconds = 0;
  std::vector<double> loss_history;  // training loss, one per step
};

// FNV-1a 64 (hex) over the architecture, the preprocessing and the weights and biases of every
// conv/linear layer up to `layer`: two weight sets give the same features at `layer` iff the
// hashes agree (up to collisions). Throws Error for an unknown layer.
std::string features_hash(const Weights& w, const std::string& layer);

// FNV-1a 64 (hex) of a text (a descriptor's full option description).
std::string descriptor_hash(const std::string& description);

class Decoder {
 public:
  // He-initialized (std = sqrt(2 / fan_in)), biases 0, seeded.
  Decoder(DecoderConfig config, DecoderMeta meta, Device device, uint64_t seed);
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  // Reads a decoder file; errors name the file and the dataset/attribute at fault. The Adam
  // state is loaded when present (has_optimizer_state()).
  static Decoder load(const std::string& path, Device device);
  // Writes atomically (temp + rename); with_optimizer adds the Adam moments (a checkpoint).
  void save(const std::string& path, bool with_optimizer) const;

  const DecoderConfig& config() const;
  DecoderMeta& meta();
  const DecoderMeta& meta() const;
  Device device() const;
  size_t parameter_count() const;
  bool has_optimizer_state() const;

  // Throws Error naming `what` (e.g. the decoder file) when this decoder was trained for
  // another layer, architecture or weights (compared by features_hash).
  void check_compatible(const std::string& layer, const Weights& weights,
                        const std::string& what) const;
  // The same for decoders of a hand-crafted descriptor (meta().arch == "descriptor"):
  // `layer` is the descriptor's name ("hog-uoctti"), `hash` descriptor_hash() of its options.
  void check_compatible_descriptor(const std::string& layer, const std::string& hash,
                                   const std::string& identity, const std::string& what) const;

  // Mean training image (1,3,H,W) on the host; empty when unknown.
  Tensor& mean_image();
  const Tensor& mean_image() const;
  // Sets the last layer's bias to the per-channel mean of the mean image (a good start).
  void init_output_bias(const Tensor& mean_image);

  // features (N,C,h,w) raw tap activations on the decoder's device → image (N,3,H,W). Keeps
  // the activations for backward.
  const Tensor& forward(const View& features);
  // dL/d(output) of the last forward → parameter gradients (overwritten). With input_grad,
  // also dL/d(features) (resized as needed).
  void backward(const View& dy, Tensor* input_grad = nullptr);
  // One Adam step on every parameter with the gradients of the last backward (× grad_scale);
  // meta().step is incremented.
  void adam_step(float grad_scale = 1.f);

  // One training step on a batch: loss = pixel MSE(decoder(features), images) [+ feature_weight
  // · Σ(Φ(decoder(features)) − features)² / Σ features², Φ = net's activation at meta().layer],
  // backward, one Adam step. images (N,3,H,W) and features on the decoder's device. Returns the
  // loss (pixel MSE alone in *pixel_mse when given).
  double train_step(const View& features, const View& images, Network* net = nullptr,
                    float feature_weight = 0.f, double* pixel_mse = nullptr);

  // Parameters and their gradients, in layer order (weight, bias, weight, bias, ...): for tests.
  std::vector<Tensor*> parameters();
  std::vector<Tensor*> gradients();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Features of images (N,3,H,W, host or device) at `layer`, computed in batches of `batch` on
// the network's device; returned on the host.
Tensor extract_features(Network& net, const View& images, const std::string& layer, int batch);

// Mean squared error per element between two tensors of equal shape (any devices).
double mse(const View& a, const View& b);

}  // namespace preimage
