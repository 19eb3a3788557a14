// VGG graph execution: layer list, shape propagation, forward to the deepest tap (conv+ReLU fused
// when the conv's own output is not tapped), backward from tap gradients to the RGB image (ReLU
// mask fused into the next conv's backward-data when nothing is injected between them).
#include "preimage/network.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/backend.h"
#include "preimage/error.h"

namespace preimage {

std::vector<Layer> vgg_layers(Arch arch) {
  const std::vector<int> per_block =
      arch == Arch::VGG16 ? std::vector<int>{2, 2, 3, 3, 3} : std::vector<int>{2, 2, 4, 4, 4};
  const int widths[5] = {64, 128, 256, 512, 512};
  std::vector<Layer> out;
  for (int b = 0; b < 5; ++b) {
    for (int i = 1; i <= per_block[b]; ++i) {
      const std::string id = std::to_string(b + 1) + "_" + std::to_string(i);
      out.push_back({"conv" + id, LayerKind::Conv, 3, 1, 1, widths[b]});
      out.push_back({"relu" + id, LayerKind::Relu});
    }
    out.push_back({"pool" + std::to_string(b + 1), LayerKind::MaxPool, 2, 2, 0});
  }
  out.push_back({"flatten", LayerKind::Flatten});
  out.push_back({"fc6", LayerKind::Linear, 0, 1, 0, 4096});
  out.push_back({"relu6", LayerKind::Relu});
  out.push_back({"fc7", LayerKind::Linear, 0, 1, 0, 4096});
  out.push_back({"relu7", LayerKind::Relu});
  out.push_back({"fc8", LayerKind::Linear, 0, 1, 0, 1000});
  return out;
}

std::vector<std::string> tap_names(Arch arch) {
  std::vector<std::string> names;
  for (const Layer& l : vgg_layers(arch))
    if (l.kind != LayerKind::Flatten) names.push_back(l.name);
  return names;
}

namespace {

ChannelAffine make_preprocess(const Preprocess& p) {
  require(p.color_order == "RGB" || p.color_order == "BGR",
          "weights preprocessing: color_order must be RGB or BGR, got '" + p.color_order + "'");
  ChannelAffine a;
  a.c = 3;
  for (int c = 0; c < 3; ++c) {
    require(p.std[c] != 0.f && std::isfinite(p.std[c]),
            "weights preprocessing: std must be "
            "finite and non-zero");
    a.perm[c] = p.color_order == "BGR" ? 2 - c : c;
    a.scale[c] = p.value_range / p.std[c];
    a.shift[c] = -p.mean[c] / p.std[c];
  }
  return a;
}

// Transpose of make_preprocess's linear part: gradient w.r.t. the net input → w.r.t. RGB [0,1].
ChannelAffine transpose_preprocess(const ChannelAffine& a) {
  ChannelAffine t;
  t.c = a.c;
  for (int c = 0; c < a.c; ++c) {
    t.perm[a.perm[c]] = c;
    t.scale[a.perm[c]] = a.scale[c];
    t.shift[a.perm[c]] = 0.f;
  }
  return t;
}

void ensure(Tensor& t, const Shape& s, Device d) {
  if (t.shape() != s || t.device() != d || t.empty() != (s.numel() == 0)) t = Tensor(s, d);
}

}  // namespace

struct Network::Impl {
  Weights w;
  Device dev;
  NetworkOptions opt;
  std::vector<Layer> layers;
  ChannelAffine pre, pre_t;
  std::vector<Tensor> act;  // act[0]: preprocessed input; act[i+1]: output of layer i
  std::vector<bool> have;   // act[i] computed by the last forward
  std::set<std::string> requested;
  int depth = -1;  // index of the deepest layer run by the last forward
  Tensor grad_a, grad_b;
  std::map<std::string, Tensor> wgrad, bgrad;

  int index_of(const std::string& name) const {
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i].name == name && layers[i].kind != LayerKind::Flatten) return int(i);
    return -1;
  }

  std::string valid_list() const {
    std::string s;
    for (const Layer& l : layers) {
      if (l.kind == LayerKind::Flatten) continue;
      if (l.kind == LayerKind::Linear && !w.layers.count(l.name)) break;
      s += (s.empty() ? "" : ", ") + l.name;
    }
    return s;
  }

  const LayerWeights& params(const Layer& l) const {
    auto it = w.layers.find(l.name);
    require(it != w.layers.end(), "layer '" + l.name + "' needs weights that '" + w.identity +
                                      "' does not have (convolutional-only weights); valid "
                                      "layers: " +
                                      valid_list());
    return it->second;
  }

  Shape out_shape(const Layer& l, const Shape& in) const {
    switch (l.kind) {
      case LayerKind::Conv: {
        const Shape ws = params(l).weight.shape();
        require(in.c == ws.c, "layer " + l.name + ": input has " + std::to_string(in.c) +
                                  " channels, weights expect " + std::to_string(ws.c));
        require(in.h + 2 * l.pad >= ws.h && in.w + 2 * l.pad >= ws.w,
                "layer " + l.name + ": input " + std::to_string(in.h) + "x" + std::to_string(in.w) +
                    " is smaller than its " + std::to_string(ws.h) + "x" + std::to_string(ws.w) +
                    " kernel (image too small for this depth)");
        return {in.n, ws.n, (in.h + 2 * l.pad - ws.h) / l.stride + 1,
                (in.w + 2 * l.pad - ws.w) / l.stride + 1};
      }
      case LayerKind::Relu:
        return in;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool: {
        // Checked before dividing: C++ division truncates toward zero, so (1 - 2) / 2 + 1
        // would claim a 1x1 output from a 1x1 input.
        require(in.h + 2 * l.pad >= l.k && in.w + 2 * l.pad >= l.k,
                "layer " + l.name + ": input " + std::to_string(in.h) + "x" + std::to_string(in.w) +
                    " is too small to pool (image too small for this "
                    "depth)");
        return {in.n, in.c, (in.h + 2 * l.pad - l.k) / l.stride + 1,
                (in.w + 2 * l.pad - l.k) / l.stride + 1};
      }
      case LayerKind::Flatten:
        return {in.n, in.c * in.h * in.w, 1, 1};
      case LayerKind::Linear: {
        const Shape ws = params(l).weight.shape();
        require(in.c == ws.c, "layer " + l.name + " expects " + std::to_string(ws.c) +
                                  " input features (a 224x224 image for VGG's fc6), got " +
                                  std::to_string(in.c));
        return {in.n, ws.n, 1, 1};
      }
    }
    return in;
  }

  PoolShape pool_shape(const Layer& l, const Shape& in) const {
    return {in.n, in.c, in.h, in.w, l.k, l.stride, l.pad};
  }
  ConvShape conv_shape(const Layer& l, const Shape& in) const {
    const Shape ws = params(l).weight.shape();
    return {in.n, in.c, in.h, in.w, ws.n, ws.h, ws.w, l.stride, l.pad};
  }
  bool is_avg(const Layer& l) const {
    return l.kind == LayerKind::AvgPool || (l.kind == LayerKind::MaxPool && opt.avg_pool);
  }
};

Network::Network(Weights weights, Device device, NetworkOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.dev = device;
  m.opt = options;
  m.layers = vgg_layers(weights.arch);
  m.pre = make_preprocess(weights.preprocess);
  m.pre_t = transpose_preprocess(m.pre);
  for (auto& [name, lw] : weights.layers) {
    if (lw.weight.device() != device) lw.weight = lw.weight.to(device);
    if (lw.bias.device() != device) lw.bias = lw.bias.to(device);
  }
  // fc8 may have any number of classes: take it from the weights.
  for (Layer& l : m.layers)
    if (l.kind != LayerKind::Relu && l.kind != LayerKind::Flatten && weights.layers.count(l.name))
      l.out_channels = weights.layers.at(l.name).weight.shape().n;
  m.w = std::move(weights);
  m.act.resize(m.layers.size() + 1);
  m.have.assign(m.layers.size() + 1, false);
}

Network::~Network() = default;
Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;

const Weights& Network::weights() const {
  return impl_->w;
}
Device Network::device() const {
  return impl_->dev;
}
Arch Network::arch() const {
  return impl_->w.arch;
}
const std::vector<Layer>& Network::layers() const {
  return impl_->layers;
}
NetworkOptions& Network::options() {
  return impl_->opt;
}

void Network::check_taps(const std::vector<std::string>& taps) const {
  const Impl& m = *impl_;
  require(!taps.empty(), "no layers requested");
  for (const std::string& t : taps) {
    const int i = m.index_of(t);
    require(i >= 0, "unknown layer '" + t + "'; valid layers: " + m.valid_list());
    if (m.layers[i].kind == LayerKind::Linear) m.params(m.layers[i]);
    if (m.layers[i].kind == LayerKind::Relu && i > 0 && m.layers[i - 1].kind == LayerKind::Linear)
      m.params(m.layers[i - 1]);
  }
}

Shape Network::tap_shape(const std::string& tap, const Shape& image) const {
  check_taps({tap});
  const Impl& m = *impl_;
  Shape s = image;
  const int last = m.index_of(tap);
  for (int i = 0; i <= last; ++i) s = m.out_shape(m.layers[i], s);
  return s;
}

void Network::forward(const View& image, const std::vector<std::string>& taps) {
  Impl& m = *impl_;
  check_taps(taps);
  require(image.shape.c == 3 && image.shape.n >= 1 && image.shape.h >= 1 && image.shape.w >= 1,
          "network input: expected an (N,3,H,W) RGB image, got " + image.shape.str());
  require(image.device == m.dev, std::string("network input is on ") + device_name(image.device) +
                                     ", the network on " + device_name(m.dev));
  m.requested = std::set<std::string>(taps.begin(), taps.end());
  int deepest = 0;
  for (const auto& t : taps) deepest = std::max(deepest, m.index_of(t));
  // Validate every shape before computing anything.
  std::vector<Shape> shapes{image.shape};
  for (int i = 0; i <= deepest; ++i) shapes.push_back(m.out_shape(m.layers[i], shapes.back()));

  Backend& be = backend(m.dev);
  std::fill(m.have.begin(), m.have.end(), false);
  ensure(m.act[0], image.shape, m.dev);
  be.channel_affine(image.data, m.act[0].data(), image.shape.n, image.shape.plane(), m.pre);
  m.have[0] = true;
  for (int i = 0; i <= deepest; ++i) {
    const Layer& l = m.layers[i];
    const Tensor& x = m.act[i];
    switch (l.kind) {
      case LayerKind::Conv: {
        const bool fuse = i + 1 <= deepest && m.layers[i + 1].kind == LayerKind::Relu &&
                          !m.requested.count(l.name);
        const int dst = fuse ? i + 2 : i + 1;
        ensure(m.act[dst], shapes[i + 1], m.dev);
        const LayerWeights& p = m.params(l);
        be.conv2d_fwd(x.data(), p.weight.data(), p.bias.data(), m.act[dst].data(),
                      m.conv_shape(l, x.shape()), fuse);
        m.have[dst] = true;
        if (fuse) ++i;
        break;
      }
      case LayerKind::Relu:
        ensure(m.act[i + 1], shapes[i + 1], m.dev);
        be.relu_fwd(x.data(), m.act[i + 1].data(), x.numel());
        break;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
        ensure(m.act[i + 1], shapes[i + 1], m.dev);
        if (m.is_avg(l))
          be.avgpool_fwd(x.data(), m.act[i + 1].data(), m.pool_shape(l, x.shape()));
        else
          be.maxpool_fwd(x.data(), m.act[i + 1].data(), m.pool_shape(l, x.shape()));
        break;
      case LayerKind::Flatten:
        ensure(m.act[i + 1], shapes[i + 1], m.dev);
        be.copy(m.act[i + 1].data(), x.data(), x.numel());
        break;
      case LayerKind::Linear: {
        ensure(m.act[i + 1], shapes[i + 1], m.dev);
        const LayerWeights& p = m.params(l);
        be.linear_fwd(x.data(), p.weight.data(), p.bias.data(), m.act[i + 1].data(), x.shape().n,
                      x.shape().c, shapes[i + 1].c);
        break;
      }
    }
    m.have[i + 1] = true;
  }
  m.depth = deepest;
}

const Tensor& Network::tap(const std::string& name) const {
  const Impl& m = *impl_;
  require(m.requested.count(name) > 0,
          "layer '" + name + "' was not requested by the last forward pass");
  return m.act[m.index_of(name) + 1];
}

void Network::backward(const std::map<std::string, View>& tap_grads, Tensor& image_grad,
                       bool weight_grads) {
  Impl& m = *impl_;
  require(m.depth >= 0, "Network::backward called before forward");
  require(!tap_grads.empty(), "Network::backward: no tap gradients given");
  int deepest = -1;
  for (const auto& [name, g] : tap_grads) {
    require(m.requested.count(name) > 0,
            "gradient given for layer '" + name + "', which the last forward did not tap");
    const int i = m.index_of(name);
    check_shape(g.shape, m.act[i + 1].shape(), "gradient at " + name);
    require(g.device == m.dev, "gradient at " + name + " is on the wrong device");
    deepest = std::max(deepest, i);
  }
  Backend& be = backend(m.dev);
  size_t max_numel = 0;
  for (int i = 0; i <= deepest + 1; ++i) max_numel = std::max(max_numel, m.act[i].numel());
  // Shapes of both ping-pong buffers are irrelevant: views give them per layer.
  if (m.grad_a.numel() < max_numel) m.grad_a = Tensor({1, 1, 1, int(max_numel)}, m.dev);
  if (m.grad_b.numel() < max_numel) m.grad_b = Tensor({1, 1, 1, int(max_numel)}, m.dev);
  float* g = m.grad_a.data();
  float* other = m.grad_b.data();
  bool started = false;
  bool relu_done = false;  // the conv below already applied the ReLU mask of layer i
  for (int i = deepest; i >= 0; --i) {
    const Layer& l = m.layers[i];
    const Shape out = m.act[i + 1].shape().numel() ? m.act[i + 1].shape() : m.act[i].shape();
    auto inj = tap_grads.find(l.name);
    if (inj != tap_grads.end()) {
      if (!started)
        be.copy(g, inj->second.data, inj->second.numel());
      else
        be.axpby(1.f, inj->second.data, 1.f, g, inj->second.numel());
      started = true;
    }
    const Tensor& x = m.act[i];
    switch (l.kind) {
      case LayerKind::Relu: {
        if (relu_done) {
          relu_done = false;
          break;
        }
        const Tensor& y = m.act[i + 1];
        be.relu_bwd(y.data(), g, g, y.numel());
        if (m.opt.guided_relu) be.relu_fwd(g, g, y.numel());
        break;
      }
      case LayerKind::Conv: {
        const ConvShape cs = m.conv_shape(l, x.shape());
        const LayerWeights& p = m.params(l);
        if (weight_grads) {
          ensure(m.wgrad[l.name], p.weight.shape(), m.dev);
          ensure(m.bgrad[l.name], p.bias.shape(), m.dev);
          be.conv2d_bwd_filter(x.data(), g, m.wgrad[l.name].data(), m.bgrad[l.name].data(), cs,
                               false);
        }
        // Fuse the previous ReLU's mask when nothing is injected at its output.
        const bool fuse = i > 0 && m.layers[i - 1].kind == LayerKind::Relu &&
                          !tap_grads.count(m.layers[i - 1].name) && !m.opt.guided_relu;
        be.conv2d_bwd_data(g, p.weight.data(), fuse ? x.data() : nullptr, other, cs);
        std::swap(g, other);
        relu_done = fuse;
        break;
      }
      case LayerKind::MaxPool:
      case LayerKind::AvgPool: {
        const PoolShape ps = m.pool_shape(l, x.shape());
        if (m.is_avg(l))
          be.avgpool_bwd(g, other, ps);
        else
          be.maxpool_bwd(x.data(), g, other, ps);
        std::swap(g, other);
        break;
      }
      case LayerKind::Flatten:
        break;  // same elements, same order
      case LayerKind::Linear: {
        const LayerWeights& p = m.params(l);
        const int n = x.shape().n, in = x.shape().c, outf = out.c;
        if (weight_grads) {
          ensure(m.wgrad[l.name], p.weight.shape(), m.dev);
          ensure(m.bgrad[l.name], p.bias.shape(), m.dev);
          be.linear_bwd_weights(x.data(), g, m.wgrad[l.name].data(), m.bgrad[l.name].data(), n, in,
                                outf, false);
        }
        be.linear_bwd_data(g, p.weight.data(), other, n, in, outf);
        std::swap(g, other);
        break;
      }
    }
  }
  const Shape& img = m.act[0].shape();
  ensure(image_grad, img, m.dev);
  be.channel_affine(g, image_grad.data(), img.n, img.plane(), m.pre_t);
}

const Tensor& Network::weight_grad(const std::string& layer) const {
  auto it = impl_->wgrad.find(layer);
  require(it != impl_->wgrad.end(), "no weight gradient for layer '" + layer + "'");
  return it->second;
}

const Tensor& Network::bias_grad(const std::string& layer) const {
  auto it = impl_->bgrad.find(layer);
  require(it != impl_->bgrad.end(), "no bias gradient for layer '" + layer + "'");
  return it->second;
}

}  // namespace preimage
