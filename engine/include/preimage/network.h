// Network: VGG-16/19 as a sequence of named layers (conv, relu, max/avg pool, flatten, linear)
// with taps by the standard names (conv1_1 … relu5_4, pool1 … pool5, fc6, relu6, fc7, relu7,
// fc8). Forward runs only as deep as the deepest requested tap; backward takes gradients at any
// set of taps and returns the gradient w.r.t. the RGB [0,1] input image (and, on request, the
// weights). Activations and scratch buffers are kept between calls and reused while shapes stay
// the same, so an optimization loop allocates nothing after its first iteration.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "preimage/tensor.h"
#include "preimage/weights.h"

namespace preimage {

enum class LayerKind { Conv, Relu, MaxPool, AvgPool, Flatten, Linear };

struct Layer {
  std::string name;  // tap name of this layer's output
  LayerKind kind;
  int k = 0, stride = 1, pad = 0;  // conv kernel / pool window
  int out_channels = 0;            // conv, linear
};

// The layer list of an architecture (conv/relu/pool through fc8).
std::vector<Layer> vgg_layers(Arch arch);
// All valid tap names of an architecture, in network order.
std::vector<std::string> tap_names(Arch arch);

struct NetworkOptions {
  bool avg_pool = false;     // replace max-pool by avg-pool (Gatys)
  bool guided_relu = false;  // backward passes only positive gradients through ReLUs (guided BP)
};

class Network {
 public:
  Network(Weights weights, Device device, NetworkOptions options = {});
  ~Network();
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  const Weights& weights() const;  // on the network's device
  Device device() const;
  Arch arch() const;
  const std::vector<Layer>& layers() const;
  NetworkOptions& options();

  // Throws Error("unknown layer 'X'; valid: …") for names that are not taps of this network or
  // that need weights the file lacks (e.g. fc6 with notop weights).
  void check_taps(const std::vector<std::string>& taps) const;
  Shape tap_shape(const std::string& tap, const Shape& image) const;

  // image: (N,3,H,W) RGB in [0,1] on the network's device. Keeps what backward needs.
  void forward(const View& image, const std::vector<std::string>& taps);
  // Activation at a tap requested by the last forward.
  const Tensor& tap(const std::string& name) const;

  // Gradients at taps (each the shape of tap(name)) → d/d image into image_grad (allocated if its
  // shape differs). With weight_grads, also fills weight_grad()/bias_grad() of every conv/linear
  // layer the pass went through.
  void backward(const std::map<std::string, View>& tap_grads, Tensor& image_grad,
                bool weight_grads = false);
  const Tensor& weight_grad(const std::string& layer) const;
  const Tensor& bias_grad(const std::string& layer) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace preimage
