// VGG graph execution: layer list, shape propagation, forward to the deepest tap (conv+ReLU fused
// when the conv's own output is not tapped), backward from tap gradients to the RGB image (ReLU
// mask fused into the next conv's backward-data when nothing is injected between them).
//
// Memory: activations that are not requested taps live in one arena, in forward order. Going
// down, backward no longer needs the activations above the current layer, so the layer gradients
// ping-pong inside that dead tail of the arena (one at its low end, one at its top) instead of in
// two extra buffers of the largest layer's size: at 1024² that is 512 MiB less at the peak.
// Requested taps keep their own tensors, so tap() stays valid after backward.
#include "preimage/network.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "engine/core/backend.h"
#include "engine/core/ensure.h"
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

}  // namespace

struct Network::Impl {
  Weights w;
  Device dev;
  NetworkOptions opt;
  std::vector<Layer> layers;
  ChannelAffine pre, pre_t;
  // act[0]: preprocessed input; act[i+1]: output of layer i (empty when not stored: a conv's
  // output fused with its ReLU). Views into `arena`, or into tapped[k] for requested taps.
  std::vector<View> act;
  std::vector<Tensor> tapped;
  std::vector<size_t> offset;  // arena offset of act[k] (arena-resident ones)
  std::vector<bool> in_arena;
  Buffer arena;             // grows only: reused across iterations
  Buffer spill_a, spill_b;  // gradients that do not fit the arena's dead tail (not for VGG)
  std::set<std::string> requested;
  int depth = -1;  // index of the deepest layer run by the last forward
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
  m.tapped.resize(m.layers.size() + 1);
  m.offset.assign(m.layers.size() + 1, 0);
  m.in_arena.assign(m.layers.size() + 1, false);
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

  // Which outputs are stored: a conv fused with its ReLU writes straight to the ReLU's slot.
  const size_t slots = m.act.size();
  std::vector<bool> stored(slots, false);
  stored[0] = true;
  for (int i = 0; i <= deepest; ++i) {
    const bool fuse = m.layers[i].kind == LayerKind::Conv && i + 1 <= deepest &&
                      m.layers[i + 1].kind == LayerKind::Relu &&
                      !m.requested.count(m.layers[i].name);
    stored[fuse ? i + 2 : i + 1] = true;
    if (fuse) ++i;
  }
  size_t total = 0;
  for (size_t k = 0; k < slots; ++k) {
    m.in_arena[k] = false;
    m.act[k] = View{};
    if (k > size_t(deepest) + 1 || !stored[k]) continue;
    const Shape& s = shapes[k];
    if (k > 0 && m.requested.count(m.layers[k - 1].name)) {
      ensure(m.tapped[k], s, m.dev);
      m.act[k] = m.tapped[k].view();
    } else {
      m.in_arena[k] = true;
      m.offset[k] = total;
      total += s.numel();
    }
  }
  for (size_t k = 0; k < slots; ++k)
    if (!m.act[k].data && !m.in_arena[k]) m.tapped[k] = Tensor();  // no longer requested
  if (m.arena.size() < total) {
    m.arena = Buffer();  // free the old one first: the peak is the new size, not both
    m.arena = Buffer(total, m.dev);
  }
  for (size_t k = 0; k < slots; ++k)
    if (m.in_arena[k]) m.act[k] = View{m.arena.data() + m.offset[k], shapes[k], m.dev};

  Backend& be = backend(m.dev);
  be.channel_affine(image.data, m.act[0].data, image.shape.n, image.shape.plane(), m.pre);
  for (int i = 0; i <= deepest; ++i) {
    const Layer& l = m.layers[i];
    const View& x = m.act[i];
    switch (l.kind) {
      case LayerKind::Conv: {
        const bool fuse = !stored[i + 1];
        const int dst = fuse ? i + 2 : i + 1;
        const LayerWeights& p = m.params(l);
        be.conv2d_fwd(x.data, p.weight.data(), p.bias.data(), m.act[dst].data,
                      m.conv_shape(l, x.shape), fuse);
        if (fuse) ++i;
        break;
      }
      case LayerKind::Relu:
        be.relu_fwd(x.data, m.act[i + 1].data, x.numel());
        break;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
        if (m.is_avg(l))
          be.avgpool_fwd(x.data, m.act[i + 1].data, m.pool_shape(l, x.shape));
        else
          be.maxpool_fwd(x.data, m.act[i + 1].data, m.pool_shape(l, x.shape));
        break;
      case LayerKind::Flatten:
        be.copy(m.act[i + 1].data, x.data, x.numel());
        break;
      case LayerKind::Linear: {
        const LayerWeights& p = m.params(l);
        be.linear_fwd(x.data, p.weight.data(), p.bias.data(), m.act[i + 1].data, x.shape.n,
                      x.shape.c, shapes[i + 1].c);
        break;
      }
    }
  }
  m.depth = deepest;
}

const Tensor& Network::tap(const std::string& name) const {
  const Impl& m = *impl_;
  require(m.requested.count(name) > 0,
          "layer '" + name + "' was not requested by the last forward pass");
  return m.tapped[m.index_of(name) + 1];
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
    check_shape(g.shape, m.act[i + 1].shape, "gradient at " + name);
    require(g.device == m.dev, "gradient at " + name + " is on the wrong device");
    deepest = std::max(deepest, i);
  }
  Backend& be = backend(m.dev);
  // live_end[k]: end of the arena-resident activations act[0..k]; above it the arena is dead for
  // a step that reads nothing above act[k].
  std::vector<size_t> live_end(size_t(deepest) + 2, 0);
  for (int k = 0; k <= deepest + 1; ++k) {
    live_end[k] = k > 0 ? live_end[k - 1] : 0;
    if (m.in_arena[k]) live_end[k] = m.offset[k] + m.act[k].numel();
  }
  float* const base = m.arena.data();
  const size_t cap = m.arena.size();
  // Where the next gradient (n floats) goes: the dead tail's low end or its top, whichever does
  // not overlap the current gradient; a spill buffer only if neither fits.
  auto place = [&](size_t n, size_t live, const float* cur, size_t cur_n) -> float* {
    auto clear = [&](const float* p) { return !cur || p + n <= cur || cur + cur_n <= p; };
    if (live + n <= cap && clear(base + live)) return base + live;
    if (n <= cap && cap - n >= live && clear(base + cap - n)) return base + cap - n;
    Buffer& s = cur == m.spill_a.data() && cur ? m.spill_b : m.spill_a;
    if (s.size() < n) {
      s = Buffer();
      s = Buffer(n, m.dev);
    }
    return s.data();
  };
  const bool top_relu = m.layers[deepest].kind == LayerKind::Relu;
  size_t g_n = m.act[deepest + 1].numel();
  float* g = place(g_n, live_end[top_relu ? deepest + 1 : deepest], nullptr, 0);
  bool started = false;
  bool relu_done = false;  // the conv below already applied the ReLU mask of layer i
  for (int i = deepest; i >= 0; --i) {
    const Layer& l = m.layers[i];
    const Shape out = m.act[i + 1].shape.numel() ? m.act[i + 1].shape : m.act[i].shape;
    auto inj = tap_grads.find(l.name);
    if (inj != tap_grads.end()) {
      if (!started)
        be.copy(g, inj->second.data, inj->second.numel());
      else
        be.axpby(1.f, inj->second.data, 1.f, g, inj->second.numel());
      started = true;
    }
    const View& x = m.act[i];
    // The gradient w.r.t. this layer's input: placed above everything this step still reads.
    auto next = [&]() { return place(x.numel(), live_end[i], g, g_n); };
    switch (l.kind) {
      case LayerKind::Relu: {
        if (relu_done) {
          relu_done = false;
          break;
        }
        const View& y = m.act[i + 1];
        be.relu_bwd(y.data, g, g, y.numel());
        if (m.opt.guided_relu) be.relu_fwd(g, g, y.numel());
        break;
      }
      case LayerKind::Conv: {
        const ConvShape cs = m.conv_shape(l, x.shape);
        const LayerWeights& p = m.params(l);
        if (weight_grads) {
          ensure(m.wgrad[l.name], p.weight.shape(), m.dev);
          ensure(m.bgrad[l.name], p.bias.shape(), m.dev);
          be.conv2d_bwd_filter(x.data, g, m.wgrad[l.name].data(), m.bgrad[l.name].data(), cs,
                               false);
        }
        // Fuse the previous ReLU's mask when nothing is injected at its output.
        const bool fuse = i > 0 && m.layers[i - 1].kind == LayerKind::Relu &&
                          !tap_grads.count(m.layers[i - 1].name) && !m.opt.guided_relu;
        float* dst = next();
        be.conv2d_bwd_data(g, p.weight.data(), fuse ? x.data : nullptr, dst, cs);
        g = dst;
        g_n = x.numel();
        relu_done = fuse;
        break;
      }
      case LayerKind::MaxPool:
      case LayerKind::AvgPool: {
        const PoolShape ps = m.pool_shape(l, x.shape);
        float* dst = next();
        if (m.is_avg(l))
          be.avgpool_bwd(g, dst, ps);
        else
          be.maxpool_bwd(x.data, g, dst, ps);
        g = dst;
        g_n = x.numel();
        break;
      }
      case LayerKind::Flatten:
        break;  // same elements, same order
      case LayerKind::Linear: {
        const LayerWeights& p = m.params(l);
        const int n = x.shape.n, in = x.shape.c, outf = out.c;
        if (weight_grads) {
          ensure(m.wgrad[l.name], p.weight.shape(), m.dev);
          ensure(m.bgrad[l.name], p.bias.shape(), m.dev);
          be.linear_bwd_weights(x.data, g, m.wgrad[l.name].data(), m.bgrad[l.name].data(), n, in,
                                outf, false);
        }
        float* dst = next();
        be.linear_bwd_data(g, p.weight.data(), dst, n, in, outf);
        g = dst;
        g_n = x.numel();
        break;
      }
    }
  }
  const Shape& img = m.act[0].shape;
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
