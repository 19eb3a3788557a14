// Up-convolutional decoders: architecture, forward/backward with weight gradients, Adam, HDF5
// files (preimage/decoder.h; file layout in docs/decoders.md).
#include "preimage/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "engine/core/backend.h"
#include "engine/core/ensure.h"
#include "engine/io/fnv_hash.h"
#include "engine/io/h5_util.h"
#include "engine/io/weights_hash.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"

namespace preimage {

namespace {

constexpr const char* kFormat = "preimage-decoder";
constexpr int64_t kVersion = 1;

enum class DKind { Conv, UpConv };

struct DLayer {
  DKind kind;
  int in, out, k, stride, pad;
  bool act;
  Tensor w, b, dw, db, mw, vw, mb, vb;
  Tensor y;  // output (after the activation)
};

std::vector<DLayer> make_layers(const DecoderConfig& c) {
  std::vector<DLayer> v;
  auto add = [&](DKind kind, int in, int out, int k, int stride, int pad, bool act) {
    DLayer l{kind, in, out, k, stride, pad, act, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    v.push_back(std::move(l));
  };
  int ch = c.width;
  add(DKind::Conv, c.in_c, ch, 3, 1, 1 + c.in_pad, true);  // zero-pads the features by in_pad
  for (int u = 0; u < c.ups(); ++u) {
    const int next = std::max(16, ch / 2);
    add(DKind::UpConv, ch, next, 4, 2, 1, true);
    add(DKind::Conv, next, next, 3, 1, 1, true);
    ch = next;
  }
  add(DKind::Conv, ch, 3, 3, 1, 1, false);
  return v;
}

Shape weight_shape(const DLayer& l) {
  // conv (O,C,K,K); transposed conv (C,O,K,K) as PyTorch
  return l.kind == DKind::Conv ? Shape{l.out, l.in, l.k, l.k} : Shape{l.in, l.out, l.k, l.k};
}

ConvShape conv_shape(const DLayer& l, const Shape& x) {
  return ConvShape{x.n, x.c, x.h, x.w, l.out, l.k, l.k, l.stride, l.pad};
}

ConvTransposeShape up_shape(const DLayer& l, const Shape& x) {
  return ConvTransposeShape{x.n, x.c, x.h, x.w, l.out, l.k, l.stride, l.pad, 0};
}

Shape out_shape(const DLayer& l, const Shape& x) {
  if (l.kind == DKind::Conv) {
    const ConvShape s = conv_shape(l, x);
    return {x.n, l.out, s.ho(), s.wo()};
  }
  const ConvTransposeShape s = up_shape(l, x);
  return {x.n, l.out, s.ho(), s.wo()};
}

}  // namespace

int DecoderConfig::ups() const {
  require(in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0, "decoder: empty input or output shape");
  require(in_pad >= 0 && in_pad <= 8, "decoder: input padding must be in [0, 8]");
  const int h = in_h + 2 * in_pad, w = in_w + 2 * in_pad;
  int u = 0;
  while ((h << u) < out_h && u < 8) ++u;
  require((h << u) == out_h && (w << u) == out_w,
          "decoder: image size " + std::to_string(out_w) + "x" + std::to_string(out_h) +
              " is not the feature size " + std::to_string(in_w) + "x" + std::to_string(in_h) +
              (in_pad ? " padded by " + std::to_string(in_pad) : std::string()) +
              " times a power of two");
  return u;
}

std::string features_hash(const Weights& w, const std::string& layer) {
  const std::vector<Layer> layers = vgg_layers(w.arch);
  bool found = false;
  for (const auto& l : layers) found = found || l.name == layer;
  require(found, "unknown layer '" + layer + "' for " + std::string(arch_name(w.arch)));
  std::vector<std::string> hashed;
  for (const auto& l : layers) {
    if (l.kind == LayerKind::Conv || l.kind == LayerKind::Linear) hashed.push_back(l.name);
    if (l.name == layer) break;
  }
  return weights_hash(w, hashed, WeightsHashLayout::Plain, arch_name(w.arch),
                      "decoder features '" + layer + "'");
}

struct Decoder::Impl {
  DecoderConfig cfg;
  DecoderMeta meta;
  Device dev;
  std::vector<DLayer> layers;
  Tensor scaled;               // feature_scale · input
  Tensor mean;                 // (1,3,H,W) host
  Tensor g0, g1;               // backward scratch
  Tensor dy, fdiff, img_grad;  // training-step scratch
  bool has_opt = false;

  Backend& be() const { return backend(dev); }
  void alloc_opt() {
    for (auto& l : layers) {
      ensure(l.mw, l.w.shape(), dev);
      ensure(l.vw, l.w.shape(), dev);
      ensure(l.mb, l.b.shape(), dev);
      ensure(l.vb, l.b.shape(), dev);
      be().fill(l.mw.data(), 0.f, l.mw.numel());
      be().fill(l.vw.data(), 0.f, l.vw.numel());
      be().fill(l.mb.data(), 0.f, l.mb.numel());
      be().fill(l.vb.data(), 0.f, l.vb.numel());
    }
    has_opt = true;
  }
};

Decoder::Decoder(DecoderConfig config, DecoderMeta meta, Device device, uint64_t seed)
    : impl_(std::make_unique<Impl>()) {
  impl_->cfg = config;
  impl_->meta = std::move(meta);
  impl_->dev = device;
  require(config.in_c > 0 && config.width > 0, "decoder: invalid channel counts");
  require(config.slope >= 0.f && config.slope < 1.f, "decoder: leaky ReLU slope must be in [0,1)");
  impl_->layers = make_layers(config);
  std::mt19937_64 rng(seed);
  for (auto& l : impl_->layers) {
    const Shape ws = weight_shape(l);
    // fan-in: conv C·K²; transposed conv with stride 2 sees C·K²/stride² inputs per output
    const double fan_in = double(l.in) * l.k * l.k / double(l.stride * l.stride);
    std::normal_distribution<float> nd(0.f, float(std::sqrt((l.act ? 2.0 : 1.0) / fan_in)));
    std::vector<float> wv(ws.numel());
    for (auto& v : wv) v = nd(rng);
    l.w = Tensor::from_vector(ws, wv, device);
    l.b = Tensor::zeros({l.out, 1, 1, 1}, device);
    l.dw = Tensor::zeros(ws, device);
    l.db = Tensor::zeros({l.out, 1, 1, 1}, device);
  }
}

Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

const DecoderConfig& Decoder::config() const {
  return impl_->cfg;
}
DecoderMeta& Decoder::meta() {
  return impl_->meta;
}
const DecoderMeta& Decoder::meta() const {
  return impl_->meta;
}
Device Decoder::device() const {
  return impl_->dev;
}
bool Decoder::has_optimizer_state() const {
  return impl_->has_opt;
}
Tensor& Decoder::mean_image() {
  return impl_->mean;
}
const Tensor& Decoder::mean_image() const {
  return impl_->mean;
}

size_t Decoder::parameter_count() const {
  size_t n = 0;
  for (const auto& l : impl_->layers) n += l.w.numel() + l.b.numel();
  return n;
}

void Decoder::init_output_bias(const Tensor& mean) {
  const std::vector<float> m = mean.to_vector();
  const size_t plane = mean.shape().plane();
  std::vector<float> b(3, 0.f);
  for (int c = 0; c < 3; ++c) {
    double acc = 0;
    for (size_t i = 0; i < plane; ++i) acc += m[c * plane + i];
    b[c] = float(acc / double(plane));
  }
  impl_->layers.back().b = Tensor::from_vector({3, 1, 1, 1}, b, impl_->dev);
}

void Decoder::check_compatible(const std::string& layer, const Weights& weights,
                               const std::string& what) const {
  const DecoderMeta& m = impl_->meta;
  require(m.arch != "descriptor", what + " was trained on the descriptor " + m.layer + " (" +
                                      m.weights_identity + "), not on VGG features");
  require(layer == m.layer, what + " was trained on features of layer " + m.layer + ", not " +
                                layer + " (train a decoder for " + layer + ")");
  require(arch_name(weights.arch) == m.arch,
          what + " was trained on " + m.arch + " features, not " + arch_name(weights.arch));
  const std::string h = features_hash(weights, layer);
  require(h == m.weights_hash, what + " was trained on the features of weights " +
                                   m.weights_identity + " (hash " + m.weights_hash +
                                   "), but the given weights " + weights.identity + " give hash " +
                                   h + " at " + layer);
}

std::string descriptor_hash(const std::string& description) {
  Fnv f;
  f.add(description.data(), description.size());
  return hex64(f.h);
}

void Decoder::check_compatible_descriptor(const std::string& layer, const std::string& hash,
                                          const std::string& identity,
                                          const std::string& what) const {
  const DecoderMeta& m = impl_->meta;
  require(m.arch == "descriptor", what + " was trained on " + m.arch + " features of layer " +
                                      m.layer + ", not on the descriptor " + layer);
  require(layer == m.layer, what + " was trained on the descriptor " + m.layer + ", not " + layer);
  require(hash == m.weights_hash, what + " was trained on " + m.weights_identity + " (hash " +
                                      m.weights_hash + "), not on " + identity + " (hash " + hash +
                                      ")");
}

const Tensor& Decoder::forward(const View& features) {
  Impl& d = *impl_;
  const DecoderConfig& c = d.cfg;
  require(features.device == d.dev, "decoder: features on the wrong device");
  require(features.shape.c == c.in_c && features.shape.h == c.in_h && features.shape.w == c.in_w,
          "decoder: features have shape " + features.shape.str() + ", expected Nx" +
              std::to_string(c.in_c) + "x" + std::to_string(c.in_h) + "x" + std::to_string(c.in_w) +
              " (the activation of " + d.meta.layer + ")");
  Backend& be = d.be();
  ensure(d.scaled, features.shape, d.dev);
  be.axpby(d.meta.feature_scale, features.data, 0.f, d.scaled.data(), features.numel());
  const Tensor* x = &d.scaled;
  for (auto& l : d.layers) {
    const Shape ys = out_shape(l, x->shape());
    ensure(l.y, ys, d.dev);
    if (l.kind == DKind::Conv)
      be.conv2d_fwd(x->data(), l.w.data(), l.b.data(), l.y.data(), conv_shape(l, x->shape()),
                    false);
    else
      be.conv_transpose_fwd(x->data(), l.w.data(), l.b.data(), l.y.data(), up_shape(l, x->shape()));
    if (l.act) be.leaky_relu_fwd(l.y.data(), l.y.data(), l.y.numel(), c.slope);
    x = &l.y;
  }
  return d.layers.back().y;
}

void Decoder::backward(const View& dy, Tensor* input_grad) {
  Impl& d = *impl_;
  Backend& be = d.be();
  require(!d.layers.back().y.empty(), "decoder: backward before forward");
  check_shape(dy.shape, d.layers.back().y.shape(), "decoder: output gradient");
  ensure(d.g0, dy.shape, d.dev);
  be.copy(d.g0.data(), dy.data, dy.numel());
  for (int i = int(d.layers.size()) - 1; i >= 0; --i) {
    DLayer& l = d.layers[i];
    const Tensor& x = i == 0 ? d.scaled : d.layers[i - 1].y;
    if (l.act) be.leaky_relu_bwd(l.y.data(), d.g0.data(), d.g0.data(), l.y.numel(), d.cfg.slope);
    const bool need_dx = i > 0 || input_grad;
    if (need_dx) ensure(d.g1, x.shape(), d.dev);
    if (l.kind == DKind::Conv) {
      const ConvShape s = conv_shape(l, x.shape());
      be.conv2d_bwd_filter(x.data(), d.g0.data(), l.dw.data(), l.db.data(), s, false);
      if (need_dx) be.conv2d_bwd_data(d.g0.data(), l.w.data(), nullptr, d.g1.data(), s);
    } else {
      const ConvTransposeShape s = up_shape(l, x.shape());
      be.conv_transpose_bwd_filter(x.data(), d.g0.data(), l.dw.data(), l.db.data(), s, false);
      if (need_dx) be.conv_transpose_bwd_data(d.g0.data(), l.w.data(), d.g1.data(), s);
    }
    if (need_dx) std::swap(d.g0, d.g1);
  }
  if (input_grad) {
    ensure(*input_grad, d.scaled.shape(), d.dev);
    be.axpby(d.meta.feature_scale, d.g0.data(), 0.f, input_grad->data(), d.g0.numel());
  }
}

void Decoder::adam_step(float grad_scale) {
  Impl& d = *impl_;
  if (!d.has_opt) d.alloc_opt();
  const long step = long(++d.meta.step);
  Backend& be = d.be();
  for (auto& l : d.layers) {
    be.adam_update(l.w.data(), l.dw.data(), l.mw.data(), l.vw.data(), l.w.numel(), float(d.meta.lr),
                   float(d.meta.beta1), float(d.meta.beta2), float(d.meta.eps), step, grad_scale);
    be.adam_update(l.b.data(), l.db.data(), l.mb.data(), l.vb.data(), l.b.numel(), float(d.meta.lr),
                   float(d.meta.beta1), float(d.meta.beta2), float(d.meta.eps), step, grad_scale);
  }
}

double Decoder::train_step(const View& features, const View& images, Network* net,
                           float feature_weight, double* pixel_mse) {
  Impl& d = *impl_;
  Backend& be = d.be();
  const Tensor& y = forward(features);
  check_shape(images.shape, y.shape(), "decoder: training images");
  require(images.device == d.dev, "decoder: training images on the wrong device");
  ensure(d.dy, y.shape(), d.dev);
  const size_t n = y.numel();
  be.copy(d.dy.data(), y.data(), n);
  be.axpby(-1.f, images.data, 1.f, d.dy.data(), n);  // y − t
  const double pix = be.sum_squares(d.dy.data(), n) / double(n);
  be.axpby(2.f / float(n), d.dy.data(), 0.f, d.dy.data(), n);
  double total = pix;
  if (net && feature_weight > 0.f) {
    const std::string& tap = d.meta.layer;
    net->forward(y.view(), {tap});
    const Tensor& phi = net->tap(tap);
    check_shape(phi.shape(), features.shape, "decoder: features of the reconstruction");
    ensure(d.fdiff, phi.shape(), d.dev);
    const size_t m = phi.numel();
    be.copy(d.fdiff.data(), phi.data(), m);
    be.axpby(-1.f, features.data, 1.f, d.fdiff.data(), m);
    const double denom = std::max(be.sum_squares(features.data, m), 1e-30);
    total += feature_weight * be.sum_squares(d.fdiff.data(), m) / denom;
    be.axpby(float(2.0 * feature_weight / denom), d.fdiff.data(), 0.f, d.fdiff.data(), m);
    net->backward({{tap, d.fdiff.view()}}, d.img_grad);
    be.axpby(1.f, d.img_grad.data(), 1.f, d.dy.data(), n);
  }
  backward(d.dy.view());
  adam_step();
  if (pixel_mse) *pixel_mse = pix;
  return total;
}

std::vector<Tensor*> Decoder::parameters() {
  std::vector<Tensor*> v;
  for (auto& l : impl_->layers) {
    v.push_back(&l.w);
    v.push_back(&l.b);
  }
  return v;
}

std::vector<Tensor*> Decoder::gradients() {
  std::vector<Tensor*> v;
  for (auto& l : impl_->layers) {
    v.push_back(&l.dw);
    v.push_back(&l.db);
  }
  return v;
}

// ---- files ---------------------------------------------------------------------------------

namespace {

h5::Dims dims_of(const Shape& s) {
  return {s.n, s.c, s.h, s.w};
}

void write_tensor(h5::File& f, const std::string& path, const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  f.write(path, v.data(), dims_of(t.shape()));
}

void read_tensor(const h5::File& f, const std::string& path, Tensor& t) {
  f.check_dataset(path, h5::Kind::Float, dims_of(t.shape()), "float32");
  std::vector<float> v(t.numel());
  f.read(path, v.data(), v.size());
  t = Tensor::from_vector(t.shape(), v, t.device());
}

}  // namespace

void Decoder::save(const std::string& path, bool with_optimizer) const {
  const Impl& d = *impl_;
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp, "decoder file '" + path + "'");
    const DecoderMeta& m = d.meta;
    const DecoderConfig& c = d.cfg;
    f.write_attr_string("/", "format", kFormat);
    f.write_attr_int64s("/", "version", {kVersion});
    f.write_attr_string("/", "layer", m.layer);
    f.write_attr_string("/", "arch", m.arch);
    f.write_attr_string("/", "weights_spec", m.weights_spec);
    f.write_attr_string("/", "weights_identity", m.weights_identity);
    f.write_attr_string("/", "weights_hash", m.weights_hash);
    f.write_attr_string("/", "architecture",
                        "conv3x3+lrelu, " + std::to_string(c.ups()) +
                            " x (upconv4x4/2+lrelu, conv3x3+lrelu), conv3x3");
    f.write_attr_int64s("/", "input_shape", {c.in_c, c.in_h, c.in_w});
    f.write_attr_int64s("/", "output_shape", {3, c.out_h, c.out_w});
    f.write_attr_int64s("/", "width", {c.width});
    f.write_attr_int64s("/", "input_pad", {c.in_pad});
    f.write_attr_doubles("/", "slope", {c.slope});
    f.write_attr_doubles("/", "feature_scale", {m.feature_scale});
    f.create_group("/train");
    f.write_attr_doubles("/train", "adam", {m.lr, m.beta1, m.beta2, m.eps});
    f.write_attr_int64s("/train", "batch", {m.batch});
    f.write_attr_int64s("/train", "seed", {int64_t(m.seed)});
    f.write_attr_int64s("/train", "step", {m.step});
    f.write_attr_int64s("/train", "total_steps", {m.total_steps});
    f.write_attr_int64s("/train", "images", {m.train_images, m.holdout});
    f.write_attr_string("/train", "data_dir", m.data_dir);
    f.write_attr_doubles("/train", "feature_loss", {m.feature_loss});
    f.write_attr_doubles("/train", "seconds", {m.train_seconds});
    if (!m.loss_history.empty())
      f.write("/train/loss", m.loss_history.data(), {int64_t(m.loss_history.size())});
    if (!d.mean.empty()) write_tensor(f, "/mean_image", d.mean);
    for (size_t i = 0; i < d.layers.size(); ++i) {
      const DLayer& l = d.layers[i];
      const std::string g = "/layers/" + std::to_string(i);
      write_tensor(f, g + "/weight", l.w);
      write_tensor(f, g + "/bias", l.b);
      f.write_attr_string(g, "kind", l.kind == DKind::Conv ? "conv" : "conv_transpose");
      f.write_attr_int64s(g, "geometry", {l.in, l.out, l.k, l.stride, l.pad, l.act ? 1 : 0});
      if (with_optimizer && d.has_opt) {
        write_tensor(f, "/adam/" + std::to_string(i) + "/m_weight", l.mw);
        write_tensor(f, "/adam/" + std::to_string(i) + "/v_weight", l.vw);
        write_tensor(f, "/adam/" + std::to_string(i) + "/m_bias", l.mb);
        write_tensor(f, "/adam/" + std::to_string(i) + "/v_bias", l.vb);
      }
    }
    f.close();
  });
}

Decoder Decoder::load(const std::string& path, Device device) {
  const std::string ctx = "decoder file '" + path + "'";
  h5::File f = h5::File::open(path, ctx);
  if (!f.has_attr("/", "format") || f.read_attr_string("/", "format") != kFormat)
    f.fail("not a preimage decoder (attribute 'format' is not '" + std::string(kFormat) +
           "'; make one with `preimage decoder train`)");
  const auto version = f.read_attr_int64s("/", "version");
  if (version.size() != 1 || version[0] != kVersion)
    f.fail("unsupported decoder version (expected " + std::to_string(kVersion) + ")");
  auto ints = [&](const std::string& obj, const std::string& name, size_t n) {
    if (!f.has_attr(obj, name)) f.fail("attribute '" + name + "' of '" + obj + "' missing");
    auto v = f.read_attr_int64s(obj, name);
    if (v.size() != n)
      f.fail("attribute '" + name + "' of '" + obj + "' has " + std::to_string(v.size()) +
             " values, expected " + std::to_string(n));
    return v;
  };
  auto doubles = [&](const std::string& obj, const std::string& name, size_t n) {
    if (!f.has_attr(obj, name)) f.fail("attribute '" + name + "' of '" + obj + "' missing");
    auto v = f.read_attr_doubles(obj, name);
    if (v.size() != n)
      f.fail("attribute '" + name + "' of '" + obj + "' has " + std::to_string(v.size()) +
             " values, expected " + std::to_string(n));
    return v;
  };
  auto str = [&](const std::string& obj, const std::string& name) {
    if (!f.has_attr(obj, name)) f.fail("attribute '" + name + "' of '" + obj + "' missing");
    return f.read_attr_string(obj, name);
  };
  DecoderConfig c;
  const auto in = ints("/", "input_shape", 3), out = ints("/", "output_shape", 3);
  c.in_c = int(in[0]);
  c.in_h = int(in[1]);
  c.in_w = int(in[2]);
  c.out_h = int(out[1]);
  c.out_w = int(out[2]);
  c.width = int(ints("/", "width", 1)[0]);
  if (f.has_attr("/", "input_pad")) c.in_pad = int(ints("/", "input_pad", 1)[0]);
  c.slope = float(doubles("/", "slope", 1)[0]);
  DecoderMeta m;
  m.layer = str("/", "layer");
  m.arch = str("/", "arch");
  m.weights_spec = str("/", "weights_spec");
  m.weights_identity = str("/", "weights_identity");
  m.weights_hash = str("/", "weights_hash");
  m.feature_scale = float(doubles("/", "feature_scale", 1)[0]);
  const auto adam = doubles("/train", "adam", 4);
  m.lr = adam[0];
  m.beta1 = adam[1];
  m.beta2 = adam[2];
  m.eps = adam[3];
  m.batch = int(ints("/train", "batch", 1)[0]);
  m.seed = uint64_t(ints("/train", "seed", 1)[0]);
  m.step = ints("/train", "step", 1)[0];
  m.total_steps = ints("/train", "total_steps", 1)[0];
  const auto imgs = ints("/train", "images", 2);
  m.train_images = int(imgs[0]);
  m.holdout = int(imgs[1]);
  m.data_dir = str("/train", "data_dir");
  m.feature_loss = doubles("/train", "feature_loss", 1)[0];
  m.train_seconds = doubles("/train", "seconds", 1)[0];
  if (f.exists("/train/loss")) m.loss_history = f.read_vector<double>("/train/loss");
  if (c.in_c <= 0 || c.in_h <= 0 || c.in_w <= 0 || c.width <= 0 || out[0] != 3)
    f.fail("invalid input_shape/output_shape/width attributes");
  try {
    (void)c.ups();
  } catch (const Error& e) {
    f.fail(e.what());
  }
  Decoder dec(c, m, device, 0);
  Impl& d = *dec.impl_;
  const size_t nl = d.layers.size();
  if (f.exists("/layers") && f.children("/layers").size() != nl)
    f.fail("group '/layers' has " + std::to_string(f.children("/layers").size()) +
           " layers, expected " + std::to_string(nl) + " for this architecture");
  bool opt = f.exists("/adam");
  for (size_t i = 0; i < nl; ++i) {
    DLayer& l = d.layers[i];
    const std::string g = "/layers/" + std::to_string(i);
    read_tensor(f, g + "/weight", l.w);
    read_tensor(f, g + "/bias", l.b);
    if (opt) {
      const std::string a = "/adam/" + std::to_string(i);
      l.mw = Tensor(l.w.shape(), device);
      l.vw = Tensor(l.w.shape(), device);
      l.mb = Tensor(l.b.shape(), device);
      l.vb = Tensor(l.b.shape(), device);
      read_tensor(f, a + "/m_weight", l.mw);
      read_tensor(f, a + "/v_weight", l.vw);
      read_tensor(f, a + "/m_bias", l.mb);
      read_tensor(f, a + "/v_bias", l.vb);
    }
  }
  d.has_opt = opt;
  if (f.exists("/mean_image")) {
    d.mean = Tensor({1, 3, c.out_h, c.out_w});
    read_tensor(f, "/mean_image", d.mean);
  }
  return dec;
}

// ---- helpers -------------------------------------------------------------------------------

Tensor extract_features(Network& net, const View& images, const std::string& layer, int batch) {
  require(batch > 0, "extract_features: batch must be positive");
  const Shape is = images.shape;
  net.check_taps({layer});
  const Shape ts = net.tap_shape(layer, {1, 3, is.h, is.w});
  Tensor out({is.n, ts.c, ts.h, ts.w});
  Tensor chunk;
  for (int i = 0; i < is.n; i += batch) {
    const int k = std::min(batch, is.n - i);
    const View src = images.batch(i, k);
    View dev_view = src;
    if (src.device != net.device()) {
      chunk = Tensor({k, 3, is.h, is.w}, net.device());
      chunk.copy_from(src);
      dev_view = chunk.view();
    }
    net.forward(dev_view, {layer});
    copy_view(net.tap(layer).view(), out.batch(i, k));
  }
  return out;
}

double mse(const View& a, const View& b) {
  require(a.numel() == b.numel(),
          "mse: sizes differ (" + a.shape.str() + " vs " + b.shape.str() + ")");
  Tensor ha({1, 1, 1, int(a.numel())}), hb({1, 1, 1, int(b.numel())});
  copy_view(a, ha.view());
  copy_view(b, hb.view());
  double acc = 0;
  const float* pa = ha.data();
  const float* pb = hb.data();
  for (size_t i = 0; i < a.numel(); ++i) {
    const double d = double(pa[i]) - pb[i];
    acc += d * d;
  }
  return a.numel() ? acc / double(a.numel()) : 0.0;
}

}  // namespace preimage
