// B-CNN attribute classifiers (see preimage/attributes.h): datasets, batched B-CNN feature
// extraction through bcnn_descriptor() on the network's device, multinomial logistic regression
// trained with the engine's L-BFGS on the device (the loss and gradient run through backend()
// ops: linear_fwd, softmax_xent_loss_grad, linear_bwd_weights), the weights fingerprint, and the
// classifier's HDF5 file.
#include "preimage/attributes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "engine/core/backend.h"
#include "engine/core/strings.h"
#include "engine/io/h5_util.h"
#include "engine/io/weights_hash.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/lbfgs.h"
#include "preimage/objective.h"

namespace preimage {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFormat = "preimage-attribute-classifier 1";

// Regular, non-hidden files of a folder, sorted.
std::vector<std::string> files_of(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_regular_file(ec)) out.push_back(e.path().string());
  }
  require(!ec, "folder '" + dir.string() + "': cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

const Layer* find_layer(const Network& net, const std::string& tap) {
  for (const Layer& l : net.layers())
    if (l.name == tap) return &l;
  return nullptr;
}

// Mean per-class accuracy over the classes that have rows (NaN entries skipped).
double mean_defined(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, ++n;
  return n ? s / n : -1.0;
}

// The training objective's buffers on one device.
class TrainingLoss {
 public:
  TrainingLoss(const View& x, std::vector<int> labels, int k, float l2)
      : x_(x), labels_(std::move(labels)), k_(k), l2_(l2) {
    n_ = int(labels_.size());
    d_ = int(x.numel() / std::max<size_t>(1, size_t(n_)));
    require(n_ > 0 && size_t(n_) * d_ == x.numel(),
            "attribute training: features do not form an (N, D) matrix for N labels");
    for (int y : labels_)
      require(y >= 0 && y < k_, "attribute training: label " + std::to_string(y) + " outside [0, " +
                                    std::to_string(k_) + ")");
    logits_ = Tensor({1, 1, n_, k_}, x.device);
    dlogits_ = Tensor({1, 1, n_, k_}, x.device);
  }
  size_t params() const { return size_t(k_) * d_ + k_; }

  double operator()(const View& theta, const View& grad) {
    require(theta.numel() == params() && grad.numel() == params() && theta.device == x_.device &&
                grad.device == x_.device,
            "attribute training: θ must hold K·D + K values on the features' device");
    Backend& be = backend(x_.device);
    const size_t kd = size_t(k_) * d_;
    const float* w = theta.data;
    const float* b = theta.data + kd;
    be.linear_fwd(x_.data, w, b, logits_.data(), n_, d_, k_);
    double loss = 0;
    const float inv_n = 1.f / float(n_);
    for (int i = 0; i < n_; ++i)
      loss += be.softmax_xent_loss_grad(logits_.data() + size_t(i) * k_,
                                        dlogits_.data() + size_t(i) * k_, k_, labels_[size_t(i)],
                                        inv_n);
    loss /= n_;
    be.linear_bwd_weights(x_.data, dlogits_.data(), grad.data, grad.data + kd, n_, d_, k_, false);
    if (l2_ > 0) {
      loss += 0.5 * l2_ * be.sum_squares(w, kd);
      be.axpby(l2_, w, 1.f, grad.data, kd);
    }
    return loss;
  }

 private:
  View x_;
  std::vector<int> labels_;
  int k_, n_ = 0, d_ = 0;
  float l2_;
  Tensor logits_, dlogits_;
};

}  // namespace

// ---- layers and weights ----------------------------------------------------------------------

std::vector<std::string> default_attribute_layers(Arch arch) {
  if (arch == Arch::VGG16) return {"relu2_2", "relu3_3", "relu4_3", "relu5_3"};
  return {"relu2_2", "relu3_4", "relu4_4", "relu5_4"};
}

std::vector<int> bcnn_layer_channels(const Network& net, const std::vector<std::string>& layers) {
  require(!layers.empty(), "B-CNN features: no layers given");
  std::set<std::string> seen;
  for (const auto& l : layers)
    require(seen.insert(l).second, "B-CNN features: layer '" + l + "' given twice");
  net.check_taps(layers);
  std::vector<int> out;
  for (const auto& l : layers) {
    const Layer* layer = find_layer(net, l);
    require(layer && layer->kind != LayerKind::Linear && layer->kind != LayerKind::Flatten,
            "B-CNN features: layer '" + l +
                "' is not convolutional (bilinear pooling needs a conv, relu or pool layer)");
    out.push_back(net.tap_shape(l, {1, 3, 224, 224}).c);
  }
  return out;
}

std::string weights_fingerprint(const Network& net, const std::vector<std::string>& layers) {
  const auto& all = net.layers();
  int deepest = -1;
  for (const auto& l : layers)
    for (size_t i = 0; i < all.size(); ++i)
      if (all[i].name == l) deepest = std::max(deepest, int(i));
  require(deepest >= 0, "weights fingerprint: none of the layers is in the network");
  std::vector<std::string> hashed;
  for (int i = 0; i <= deepest; ++i)
    if (all[size_t(i)].kind == LayerKind::Conv) hashed.push_back(all[size_t(i)].name);
  return weights_hash(net.weights(), hashed, WeightsHashLayout::Tagged, "", "weights fingerprint");
}

// ---- datasets --------------------------------------------------------------------------------

AttributeDataset attribute_dataset_from_dir(const std::string& dir, double test_fraction,
                                            uint64_t seed) {
  require(test_fraction > 0 && test_fraction < 1,
          "--test-fraction: expected a number in (0, 1), got " + std::to_string(test_fraction));
  std::error_code ec;
  require(fs::is_directory(dir, ec), "--data: folder '" + dir + "' does not exist");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] != '.' && e.is_directory(ec)) classes.push_back(name);
  }
  require(!ec, "--data: folder '" + dir + "': cannot list: " + ec.message());
  std::sort(classes.begin(), classes.end());
  require(classes.size() >= 2, "--data: folder '" + dir +
                                   "' needs one subfolder of images per class, at least 2 "
                                   "classes; found " +
                                   std::to_string(classes.size()) +
                                   (classes.size() == 1 ? " ('" + classes[0] + "')" : ""));
  AttributeDataset ds;
  ds.classes = classes;
  for (size_t k = 0; k < classes.size(); ++k) {
    const fs::path cdir = fs::path(dir) / classes[k];
    std::vector<std::string> files = files_of(cdir);
    require(!files.empty(), "--data: class folder '" + cdir.string() + "' is empty");
    require(files.size() >= 2, "--data: class folder '" + cdir.string() +
                                   "' holds a single image; at least 2 are needed (one to train, "
                                   "one to test)");
    // Seeded Fisher–Yates (portable: no std::shuffle / distribution implementation details).
    std::mt19937_64 rng(seed * 1000003ull + k);
    for (size_t i = files.size() - 1; i > 0; --i) std::swap(files[i], files[rng() % (i + 1)]);
    const size_t n = files.size();
    const size_t nt = std::clamp<size_t>(size_t(std::llround(test_fraction * double(n))), 1, n - 1);
    std::vector<std::string> test(files.begin(), files.begin() + long(nt));
    std::vector<std::string> train(files.begin() + long(nt), files.end());
    std::sort(test.begin(), test.end());
    std::sort(train.begin(), train.end());
    ds.test.push_back(std::move(test));
    ds.train.push_back(std::move(train));
  }
  return ds;
}

AttributeDataset attribute_dataset_from_list(const std::string& list_file) {
  std::ifstream in(list_file);
  require(in.good(), "--list: cannot open '" + list_file + "'");
  const fs::path base = fs::path(list_file).parent_path();
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> by_class;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    std::istringstream is(line.substr(first));
    std::string split, cls;
    is >> split >> cls;
    std::string path;
    std::getline(is, path);
    const size_t p0 = path.find_first_not_of(" \t");
    path = p0 == std::string::npos ? "" : path.substr(p0);
    while (!path.empty() && (path.back() == ' ' || path.back() == '\t')) path.pop_back();
    const std::string where = "--list: '" + list_file + "' line " + std::to_string(lineno);
    require(split == "train" || split == "test",
            where + ": expected 'train|test CLASS PATH', got '" + line + "'");
    require(!cls.empty() && !path.empty(),
            where + ": expected 'train|test CLASS PATH', got '" + line + "'");
    const fs::path p = fs::path(path).is_absolute() ? fs::path(path) : base / path;
    auto& slot = by_class[cls];
    (split == "train" ? slot.first : slot.second).push_back(p.string());
  }
  require(by_class.size() >= 2, "--list: '" + list_file + "' names " +
                                    std::to_string(by_class.size()) +
                                    " class(es); at least 2 are needed");
  AttributeDataset ds;
  for (auto& [name, files] : by_class) {
    require(!files.first.empty(),
            "--list: '" + list_file + "': class '" + name + "' has no training images");
    require(!files.second.empty(),
            "--list: '" + list_file + "': class '" + name + "' has no test images");
    ds.classes.push_back(name);
    ds.train.push_back(std::move(files.first));
    ds.test.push_back(std::move(files.second));
  }
  return ds;
}

// ---- features --------------------------------------------------------------------------------

std::vector<float> bcnn_features(Network& net, const View& images,
                                 const std::vector<std::string>& layers, float eps) {
  const std::vector<int> ch = bcnn_layer_channels(net, layers);
  size_t dim = 0;
  for (int c : ch) dim += size_t(c) * c;
  net.forward(images, layers);
  const int n = images.shape.n;
  std::vector<float> out(size_t(n) * dim);
  for (int i = 0; i < n; ++i) {
    size_t off = 0;
    for (size_t l = 0; l < layers.size(); ++l) {
      const View v = net.tap(layers[l]).view().batch(i);
      const Tensor z = bcnn_descriptor(v, v, eps);
      const std::vector<float> h = z.to_vector();
      std::copy(h.begin(), h.end(), out.begin() + long(size_t(i) * dim + off));
      off += h.size();
    }
  }
  return out;
}

BcnnFeatures extract_bcnn_features(Network& net, const std::vector<std::string>& files,
                                   const BcnnFeatureSettings& s, int batch,
                                   const std::function<void(int, int)>& progress) {
  require(s.size >= 16 && s.size <= 4096,
          "B-CNN features: image size must be in [16, 4096], got " + std::to_string(s.size));
  require(batch >= 1, "B-CNN features: batch must be positive");
  BcnnFeatures f;
  f.channels = bcnn_layer_channels(net, s.layers);
  for (int c : f.channels) f.dim += c * c;
  std::vector<float> buf;
  std::vector<std::string> pending;
  auto flush = [&]() {
    if (pending.empty()) return;
    Tensor bt = Tensor::from_vector({int(pending.size()), 3, s.size, s.size}, buf, net.device());
    const std::vector<float> z = bcnn_features(net, bt.view(), s.layers, s.eps);
    f.features.insert(f.features.end(), z.begin(), z.end());
    f.paths.insert(f.paths.end(), pending.begin(), pending.end());
    pending.clear();
    buf.clear();
  };
  for (size_t i = 0; i < files.size(); ++i) {
    try {
      const Tensor img = load_image(files[i]);
      const std::vector<float> v = resize(img.view(), s.size, s.size).to_vector();
      buf.insert(buf.end(), v.begin(), v.end());
      pending.push_back(files[i]);
    } catch (const Error& e) {
      f.skipped.push_back(e.what());
    }
    if (int(pending.size()) == batch) {
      flush();
      if (progress) progress(int(i + 1), int(files.size()));
    }
  }
  flush();
  if (progress) progress(int(files.size()), int(files.size()));
  return f;
}

// ---- training --------------------------------------------------------------------------------

double attribute_training_loss(const View& features, const std::vector<int>& labels, int classes,
                               float l2, const View& theta, Tensor& grad) {
  TrainingLoss loss(features, labels, classes, l2);
  if (grad.shape() != theta.shape || grad.device() != theta.device)
    grad = Tensor(theta.shape, theta.device);
  return loss(theta, grad.view());
}

AttributeClassifier train_attribute_classifier(const std::vector<float>& features, int dim,
                                               const std::vector<int>& labels,
                                               const std::vector<std::string>& classes,
                                               Device device, const AttributeTrainOptions& o) {
  const int n = int(labels.size()), k = int(classes.size());
  require(k >= 2, "attribute training: at least 2 classes are needed, got " + std::to_string(k));
  require(n > 0 && dim > 0 && features.size() == size_t(n) * dim,
          "attribute training: expected (N, D) features for N labels");
  require(o.l2 >= 0 && std::isfinite(o.l2), "attribute training: l2 must be >= 0");
  require(o.iterations >= 1, "attribute training: iterations must be >= 1");
  std::vector<int> per_class(size_t(k), 0);
  for (int y : labels) {
    require(y >= 0 && y < k, "attribute training: label " + std::to_string(y) + " outside [0, " +
                                 std::to_string(k) + ")");
    ++per_class[size_t(y)];
  }
  for (int c = 0; c < k; ++c)
    require(per_class[size_t(c)] > 0,
            "attribute training: class '" + classes[size_t(c)] + "' has no training images");
  // Standardize per dimension: x̃_j = (z_j − μ_j) / s_j, s_j = σ_j + floor·mean_j σ_j (the floor
  // keeps dimensions that barely vary from being blown up into noise).
  const size_t D = size_t(dim);
  std::vector<double> mu(D, 0.0), sd(D, 0.0);
  for (int i = 0; i < n; ++i)
    for (size_t j = 0; j < D; ++j) mu[j] += features[size_t(i) * D + j];
  for (auto& m : mu) m /= n;
  for (int i = 0; i < n; ++i)
    for (size_t j = 0; j < D; ++j) {
      const double v = features[size_t(i) * D + j] - mu[j];
      sd[j] += v * v / n;
    }
  double mean_sd = 0;
  for (auto& v : sd) mean_sd += (v = std::sqrt(v)) / double(D);
  require(mean_sd > 1e-12 && std::isfinite(mean_sd),
          "attribute training: the training images' features are all identical (or not finite)");
  std::vector<double> scale(D);
  for (size_t j = 0; j < D; ++j) scale[j] = sd[j] + o.sd_floor * mean_sd;
  std::vector<float> xs(features.size());
  for (int i = 0; i < n; ++i)
    for (size_t j = 0; j < D; ++j)
      xs[size_t(i) * D + j] = float((features[size_t(i) * D + j] - mu[j]) / scale[j]);
  const Tensor x = Tensor::from_vector({1, 1, n, dim}, xs, device);
  xs.clear();
  xs.shrink_to_fit();
  TrainingLoss loss(x.view(), labels, k, o.l2);
  Tensor theta = Tensor::zeros({1, 1, 1, int(loss.params())}, device);
  LbfgsOptions lo;
  lo.max_iterations = o.iterations;
  lo.gtol = o.gtol;
  Lbfgs solver(device, loss.params(), lo);
  const LbfgsResult r =
      solver.minimize(theta, [&](const View& xv, const View& gv) { return loss(xv, gv); });
  require(std::isfinite(r.f), "attribute training: the loss is not finite");
  const std::vector<float> th = theta.to_vector();
  AttributeClassifier c;
  c.classes = classes;
  c.dim = dim;
  c.l2 = o.l2;
  c.iterations = r.iterations;
  c.w.resize(size_t(k) * D);
  c.b.resize(size_t(k));
  for (int cl = 0; cl < k; ++cl) {
    double b = th[size_t(k) * D + size_t(cl)];
    for (size_t j = 0; j < D; ++j) {
      const double wj = th[size_t(cl) * D + j] / scale[j];
      c.w[size_t(cl) * D + j] = float(wj);
      b -= wj * mu[j];
    }
    c.b[size_t(cl)] = float(b);
  }
  c.train_accuracy = mean_defined(attribute_class_accuracy(c, features, labels));
  return c;
}

std::vector<double> attribute_probabilities(const AttributeClassifier& c,
                                            const std::vector<float>& features) {
  const size_t D = size_t(c.dim), K = c.classes.size();
  require(D > 0 && features.size() % D == 0,
          "attribute probabilities: features are not rows of the classifier's " +
              std::to_string(D) + " dimensions");
  const size_t n = features.size() / D;
  std::vector<double> p(n * K);
  for (size_t i = 0; i < n; ++i) {
    double mx = -1e300;
    for (size_t k = 0; k < K; ++k) {
      double s = c.b[k];
      const float* w = c.w.data() + k * D;
      const float* x = features.data() + i * D;
      for (size_t j = 0; j < D; ++j) s += double(w[j]) * x[j];
      p[i * K + k] = s;
      mx = std::max(mx, s);
    }
    double sum = 0;
    for (size_t k = 0; k < K; ++k) sum += (p[i * K + k] = std::exp(p[i * K + k] - mx));
    for (size_t k = 0; k < K; ++k) p[i * K + k] /= sum;
  }
  return p;
}

std::vector<double> attribute_class_accuracy(const AttributeClassifier& c,
                                             const std::vector<float>& features,
                                             const std::vector<int>& labels) {
  const size_t K = c.classes.size();
  const std::vector<double> p = attribute_probabilities(c, features);
  require(p.size() == labels.size() * K, "attribute accuracy: one label per feature row expected");
  std::vector<double> right(K, 0), total(K, 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    const auto* row = p.data() + i * K;
    const size_t best = size_t(std::max_element(row, row + K) - row);
    const size_t y = size_t(labels[i]);
    require(y < K, "attribute accuracy: label outside the classifier's classes");
    total[y] += 1;
    right[y] += best == y;
  }
  std::vector<double> acc(K);
  for (size_t k = 0; k < K; ++k) acc[k] = total[k] > 0 ? right[k] / total[k] : NAN;
  return acc;
}

int attribute_index(const AttributeClassifier& c, const std::string& name) {
  for (size_t i = 0; i < c.classes.size(); ++i)
    if (c.classes[i] == name) return int(i);
  throw Error("--attribute: unknown attribute '" + name +
              "'; the classifier knows: " + join(c.classes, ", ") + " (or 'all')");
}

void check_attribute_classifier(const AttributeClassifier& c, const Network& net,
                                const std::string& what) {
  const std::string arch = arch_name(net.arch());
  require(c.arch == arch, what + " was trained on " + c.arch + " features; this run uses " + arch +
                              " (pass --arch " + c.arch + ")");
  std::vector<int> ch;
  try {
    ch = bcnn_layer_channels(net, c.features.layers);
  } catch (const Error& e) {
    throw Error(what + ": its layers (" + join(c.features.layers, ", ") +
                ") do not fit this network: " + e.what());
  }
  for (size_t l = 0; l < ch.size(); ++l)
    require(ch[l] == c.channels[l], what + ": layer " + c.features.layers[l] + " has " +
                                        std::to_string(ch[l]) +
                                        " channels in this network, the classifier expects " +
                                        std::to_string(c.channels[l]));
  const std::string fp = weights_fingerprint(net, c.features.layers);
  require(fp == c.fingerprint,
          what + " was trained with weights " + c.weights + " (fingerprint " + c.fingerprint +
              " at layers " + join(c.features.layers, ",") + "); this run's weights " +
              net.weights().identity + " have fingerprint " + fp +
              ": the classifier does not apply to them (pass the weights it was trained with)");
}

// ---- HDF5 ------------------------------------------------------------------------------------

void save_attribute_classifier(const AttributeClassifier& c, const std::string& path) {
  const size_t K = c.classes.size(), L = c.features.layers.size();
  size_t dim = 0;
  for (int ch : c.channels) dim += size_t(ch) * ch;
  require(K >= 2 && L >= 1 && c.channels.size() == L && dim == size_t(c.dim) &&
              c.w.size() == K * dim && c.b.size() == K,
          "save_attribute_classifier: inconsistent classifier (" + std::to_string(K) +
              " classes, " + std::to_string(L) + " layers, dim " + std::to_string(c.dim) + ")");
  require(c.test_class_accuracy.empty() || c.test_class_accuracy.size() == K,
          "save_attribute_classifier: expected one test accuracy per class");
  write_atomically(path, [&](const std::string& tmp) {
    h5::Quiet quiet;
    h5::File f = h5::File::create(tmp, "classifier file '" + path + "'");
    f.write("/weight", c.w.data(), {int64_t(K), int64_t(dim)});
    f.write("/bias", c.b.data(), {int64_t(K)});
    f.write_strings("/classes", c.classes);
    f.write_strings("/layers", c.features.layers);
    std::vector<int64_t> ch(c.channels.begin(), c.channels.end());
    f.write("/channels", ch.data(), {int64_t(L)});
    if (!c.test_class_accuracy.empty())
      f.write("/test_class_accuracy", c.test_class_accuracy.data(), {int64_t(K)});
    f.write_attr_string("/", "format", kFormat);
    f.write_attr_string("/", "arch", c.arch);
    f.write_attr_string("/", "weights", c.weights);
    f.write_attr_string("/", "weights_fingerprint", c.fingerprint);
    f.write_attr_string("/", "pool", c.features.pool);
    f.write_attr_int64s("/", "size", {c.features.size});
    f.write_attr_int64s("/", "signed_sqrt", {1});
    f.write_attr_int64s("/", "l2_normalize", {1});
    f.write_attr_doubles("/", "eps", {double(c.features.eps)});
    f.write_attr_doubles("/", "l2", {double(c.l2)});
    f.write_attr_int64s("/", "iterations", {c.iterations});
    f.write_attr_doubles("/", "train_accuracy", {c.train_accuracy});
    f.write_attr_doubles("/", "test_accuracy", {c.test_accuracy});
    f.close();
  });
}

AttributeClassifier load_attribute_classifier(const std::string& path) {
  h5::Quiet quiet;
  const std::string ctx = "classifier file '" + path + "'";
  h5::File f = h5::File::open(path, ctx);
  for (const char* a : {"format", "arch", "weights", "weights_fingerprint", "pool", "size",
                        "signed_sqrt", "l2_normalize", "eps"})
    require(f.has_attr("/", a), ctx + ": root attribute '" + a +
                                    "' missing (not written by preimage attributes train?)");
  const std::string format = f.read_attr_string("/", "format");
  require(format == kFormat, ctx + ": unknown format '" + format + "', expected '" + kFormat + "'");
  AttributeClassifier c;
  c.arch = f.read_attr_string("/", "arch");
  require(c.arch == "vgg16" || c.arch == "vgg19",
          ctx + ": attribute 'arch' must be vgg16 or vgg19, got '" + c.arch + "'");
  c.weights = f.read_attr_string("/", "weights");
  c.fingerprint = f.read_attr_string("/", "weights_fingerprint");
  c.features.pool = f.read_attr_string("/", "pool");
  require(c.features.pool == "max" || c.features.pool == "avg",
          ctx + ": attribute 'pool' must be max or avg, got '" + c.features.pool + "'");
  const auto size = f.read_attr_int64s("/", "size");
  require(size.size() == 1 && size[0] >= 16 && size[0] <= 4096,
          ctx + ": attribute 'size' must be one integer in [16, 4096]");
  c.features.size = int(size[0]);
  for (const char* a : {"signed_sqrt", "l2_normalize"}) {
    const auto v = f.read_attr_int64s("/", a);
    require(v.size() == 1 && v[0] == 1,
            ctx + ": attribute '" + a + "' must be 1 (the only B-CNN normalization supported)");
  }
  const auto eps = f.read_attr_doubles("/", "eps");
  require(eps.size() == 1 && eps[0] > 0 && eps[0] < 1,
          ctx + ": attribute 'eps' must be one number in (0, 1)");
  c.features.eps = float(eps[0]);
  auto opt_double = [&](const char* a, double def) {
    if (!f.has_attr("/", a)) return def;
    const auto v = f.read_attr_doubles("/", a);
    return v.size() == 1 ? v[0] : def;
  };
  c.l2 = float(opt_double("l2", 0));
  c.train_accuracy = opt_double("train_accuracy", -1);
  c.test_accuracy = opt_double("test_accuracy", -1);
  if (f.has_attr("/", "iterations")) {
    const auto it = f.read_attr_int64s("/", "iterations");
    if (it.size() == 1) c.iterations = int(it[0]);
  }
  c.features.layers = f.read_strings("/layers");
  const size_t L = c.features.layers.size();
  require(L >= 1, ctx + ": dataset '/layers' is empty");
  f.check_dataset("/channels", h5::Kind::Integer, {int64_t(L)}, "int64");
  const auto ch = f.read_vector<int64_t>("/channels");
  size_t dim = 0;
  for (size_t l = 0; l < L; ++l) {
    require(ch[l] >= 1 && ch[l] <= 4096, ctx + ": dataset '/channels' entry for layer " +
                                             c.features.layers[l] + " is out of range");
    c.channels.push_back(int(ch[l]));
    dim += size_t(ch[l]) * size_t(ch[l]);
  }
  const h5::Dims ws =
      f.check_dataset("/weight", h5::Kind::Float, {h5::any_dim, int64_t(dim)}, "float32");
  const size_t K = size_t(ws[0]);
  require(K >= 2, ctx + ": dataset '/weight' has " + std::to_string(K) +
                      " row(s); a classifier needs at least 2 classes");
  f.check_dataset("/bias", h5::Kind::Float, {int64_t(K)}, "float32");
  c.classes = f.read_strings("/classes");
  require(c.classes.size() == K, ctx + ": dataset '/classes' has " +
                                     std::to_string(c.classes.size()) + " names, expected " +
                                     std::to_string(K) + " (one per row of /weight)");
  std::set<std::string> names(c.classes.begin(), c.classes.end());
  require(names.size() == K && !names.count("") && !names.count("all"),
          ctx + ": dataset '/classes' must hold distinct non-empty names other than 'all'");
  c.dim = int(dim);
  c.w = f.read_vector<float>("/weight");
  c.b = f.read_vector<float>("/bias");
  for (float v : c.w)
    require(std::isfinite(v), ctx + ": dataset '/weight' holds non-finite values");
  for (float v : c.b) require(std::isfinite(v), ctx + ": dataset '/bias' holds non-finite values");
  if (f.exists("/test_class_accuracy")) {
    f.check_dataset("/test_class_accuracy", h5::Kind::Float, {int64_t(K)}, "float64");
    c.test_class_accuracy = f.read_vector<double>("/test_class_accuracy");
  }
  return c;
}

}  // namespace preimage
