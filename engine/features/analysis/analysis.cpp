// Analysis tools (see preimage/analysis.h): saliency, occlusion, attacks, feature files,
// neighbours, PCA / t-SNE, top patches and the image composition. Backend-independent: the
// network runs on its device through the public API; scores, tap gradients and every map are
// computed on the host.
#include "preimage/analysis.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "engine/io/h5_util.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/lbfgs.h"

namespace preimage {
namespace {

std::vector<float> host(const View& v) {
  Tensor t(v.shape, Device::CPU);
  t.copy_from(v);
  return t.to_vector();
}

const Layer* find_layer(const Network& net, const std::string& tap) {
  for (const Layer& l : net.layers())
    if (l.name == tap && l.kind != LayerKind::Flatten) return &l;
  return nullptr;
}

// Restores the network's guided-ReLU option on scope exit.
class GuidedScope {
 public:
  GuidedScope(Network& net, bool guided) : net_(net), saved_(net.options().guided_relu) {
    net_.options().guided_relu = guided;
  }
  ~GuidedScope() { net_.options().guided_relu = saved_; }
  GuidedScope(const GuidedScope&) = delete;
  GuidedScope& operator=(const GuidedScope&) = delete;

 private:
  Network& net_;
  bool saved_;
};

}  // namespace

// ---- linear heads ---------------------------------------------------------------------------

LinearHead load_head(const std::string& path) {
  h5::Quiet quiet;
  h5::File f = h5::File::open(path, "head file '" + path + "'");
  require(f.has_attr("/", "layer"),
          "head file '" + path + "': root attribute 'layer' missing (the tap the head reads)");
  LinearHead h;
  h.tap = f.read_attr_string("/", "layer");
  const h5::Dims ws =
      f.check_dataset("/weight", h5::Kind::Float, {h5::any_dim, h5::any_dim}, "float32");
  f.check_dataset("/bias", h5::Kind::Float, {ws[0]}, "float32");
  h.classes = int(ws[0]);
  h.dim = int(ws[1]);
  h.w = f.read_vector<float>("/weight");
  h.b = f.read_vector<float>("/bias");
  if (f.exists("/classes")) {
    h.names = f.read_strings("/classes");
    require(h.names.size() == size_t(h.classes),
            "head file '" + path + "': dataset '/classes' has " + std::to_string(h.names.size()) +
                " names, expected " + std::to_string(h.classes));
  }
  for (float v : h.w) require(std::isfinite(v), "head file '" + path + "': non-finite weight");
  return h;
}

void save_head(const LinearHead& h, const std::string& path) {
  require(h.classes > 0 && h.dim > 0 && h.w.size() == size_t(h.classes) * h.dim &&
              h.b.size() == size_t(h.classes),
          "save_head: inconsistent head (" + std::to_string(h.classes) + " classes, dim " +
              std::to_string(h.dim) + ")");
  require(h.names.empty() || h.names.size() == size_t(h.classes),
          "save_head: expected one name per class");
  write_atomically(path, [&](const std::string& tmp) {
    h5::Quiet quiet;
    h5::File f = h5::File::create(tmp, "head file '" + path + "'");
    f.write("/weight", h.w.data(), {h.classes, h.dim});
    f.write("/bias", h.b.data(), {h.classes});
    if (!h.names.empty()) f.write_strings("/classes", h.names);
    f.write_attr_string("/", "layer", h.tap);
    f.close();
  });
}

LinearHead train_linear_head(const std::string& tap, const std::vector<float>& features, int dim,
                             const std::vector<int>& labels, int classes, float l2,
                             int iterations) {
  const int n = int(labels.size());
  require(n > 0 && dim > 0 && classes >= 2 && features.size() == size_t(n) * dim,
          "train_linear_head: expected (N, dim) features with N labels and >= 2 classes");
  for (int y : labels)
    require(y >= 0 && y < classes, "train_linear_head: label " + std::to_string(y) +
                                       " outside [0, " + std::to_string(classes) + ")");
  // Standardize inside the objective for conditioning; fold back into W, b at the end.
  std::vector<double> mu(dim, 0.0), sd(dim, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < dim; ++j) mu[j] += features[size_t(i) * dim + j] / double(n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < dim; ++j) {
      const double d = features[size_t(i) * dim + j] - mu[j];
      sd[j] += d * d / n;
    }
  for (auto& s : sd) s = std::sqrt(s) + 1e-6;
  const size_t np = size_t(classes) * dim + classes;
  Tensor theta = Tensor::zeros({1, 1, 1, int(np)});
  auto f = [&](const View& xv, const View& gv) {
    const float* th = xv.data;
    float* g = gv.data;
    std::fill(g, g + np, 0.f);
    double loss = 0;
    std::vector<double> z(classes), zs(dim);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < dim; ++j) zs[j] = (features[size_t(i) * dim + j] - mu[j]) / sd[j];
      double mx = -1e300;
      for (int k = 0; k < classes; ++k) {
        double acc = th[size_t(classes) * dim + k];
        for (int j = 0; j < dim; ++j) acc += th[size_t(k) * dim + j] * zs[j];
        z[k] = acc;
        mx = std::max(mx, acc);
      }
      double se = 0;
      for (int k = 0; k < classes; ++k) se += std::exp(z[k] - mx);
      loss += -(z[labels[i]] - mx - std::log(se)) / n;
      for (int k = 0; k < classes; ++k) {
        const double d = (std::exp(z[k] - mx) / se - (k == labels[i])) / n;
        for (int j = 0; j < dim; ++j) g[size_t(k) * dim + j] += float(d * zs[j]);
        g[size_t(classes) * dim + k] += float(d);
      }
    }
    for (size_t j = 0; j < size_t(classes) * dim; ++j) {
      loss += 0.5 * l2 * double(th[j]) * th[j];
      g[j] += l2 * th[j];
    }
    return loss;
  };
  LbfgsOptions lo;
  lo.max_iterations = iterations;
  Lbfgs solver(Device::CPU, np, lo);
  solver.minimize(theta, f);
  const std::vector<float> th = theta.to_vector();
  LinearHead h;
  h.tap = tap;
  h.classes = classes;
  h.dim = dim;
  h.w.resize(size_t(classes) * dim);
  h.b.resize(classes);
  for (int k = 0; k < classes; ++k) {
    double b = th[size_t(classes) * dim + k];
    for (int j = 0; j < dim; ++j) {
      const double wk = th[size_t(k) * dim + j] / sd[j];
      h.w[size_t(k) * dim + j] = float(wk);
      b -= wk * mu[j];
    }
    h.b[k] = float(b);
  }
  int right = 0;
  for (int i = 0; i < n; ++i) {
    int best = 0;
    double best_z = -1e300;
    for (int k = 0; k < classes; ++k) {
      double z = h.b[k];
      for (int j = 0; j < dim; ++j)
        z += double(h.w[size_t(k) * dim + j]) * features[size_t(i) * dim + j];
      if (z > best_z) best_z = z, best = k;
    }
    right += best == labels[i];
  }
  h.accuracy = float(right) / float(n);
  return h;
}

std::vector<float> mean_pool(const View& activation) {
  const Shape s = activation.shape;
  const std::vector<float> a = host(activation);
  std::vector<float> out(size_t(s.n) * s.c);
  const size_t plane = s.plane();
  for (size_t p = 0; p < out.size(); ++p) {
    double acc = 0;
    for (size_t i = 0; i < plane; ++i) acc += a[p * plane + i];
    out[p] = float(acc / double(plane));
  }
  return out;
}

// ---- targets and scores ---------------------------------------------------------------------

std::string Target::describe() const {
  if (head) {
    const bool named = class_index >= 0 && size_t(class_index) < head->names.size();
    return "class " + std::to_string(class_index) +
           (named ? " (" + head->names[size_t(class_index)] + ")" : "") + " of a head on " + tap;
  }
  if (class_index >= 0) return tap + " class " + std::to_string(class_index);
  std::string s = tap + " channel " + std::to_string(channel);
  if (y >= 0 && x >= 0) s += " at " + std::to_string(y) + "," + std::to_string(x);
  return s;
}

void check_target(const Network& net, const Target& t, const Shape& image) {
  net.check_taps({t.tap});
  const Shape ts = net.tap_shape(t.tap, image);
  if (t.head) {
    require(t.head->tap == t.tap,
            "--head: the head reads layer '" + t.head->tap + "', not '" + t.tap + "'");
    require(t.head->dim == ts.c, "--head: the head expects " + std::to_string(t.head->dim) +
                                     " features, layer " + t.tap + " has " + std::to_string(ts.c) +
                                     " channels");
    require(t.class_index >= 0 && t.class_index < t.head->classes,
            "--class " + std::to_string(t.class_index) + " out of range: the head has " +
                std::to_string(t.head->classes) + " classes");
    return;
  }
  if (t.class_index >= 0) {
    const Layer* l = find_layer(net, t.tap);
    require(l && l->kind == LayerKind::Linear,
            "--class needs a classifier layer (fc8) or --head FILE.h5, not '" + t.tap +
                "'; use --channel");
    require(t.class_index < ts.c, "--class " + std::to_string(t.class_index) +
                                      " out of range: layer " + t.tap + " has " +
                                      std::to_string(ts.c) + " classes");
    return;
  }
  require(t.channel >= 0, "give --channel C or --class K");
  require(t.channel < ts.c, "--channel " + std::to_string(t.channel) + " out of range: layer " +
                                t.tap + " has " + std::to_string(ts.c) + " channels");
  require(t.y < ts.h && t.x < ts.w, "--neuron " + std::to_string(t.y) + "," + std::to_string(t.x) +
                                        " outside layer " + t.tap + " (" + std::to_string(ts.h) +
                                        "x" + std::to_string(ts.w) + ")");
}

Scores evaluate_target(Network& net, const View& images, const Target& t, Tensor* image_grad,
                       bool log_prob) {
  const bool is_class = t.class_index >= 0;
  require(!log_prob || is_class, "evaluate_target: log probabilities need a class target");
  check_target(net, t, images.shape);
  net.forward(images, {t.tap});
  const Tensor& act = net.tap(t.tap);
  const Shape s = act.shape();
  const std::vector<float> a = act.to_vector();
  const size_t plane = s.plane();
  std::vector<float> g;
  if (image_grad) g.assign(a.size(), 0.f);
  Scores out;
  for (int n = 0; n < s.n; ++n) {
    const float* an = a.data() + size_t(n) * s.c * plane;
    if (!is_class) {
      const bool neuron = t.y >= 0 && t.x >= 0;
      const size_t at = neuron ? size_t(t.y) * s.w + t.x : 0, count = neuron ? 1 : plane;
      double acc = 0;
      for (size_t i = 0; i < count; ++i) acc += an[size_t(t.channel) * plane + at + i];
      out.score.push_back(acc / double(count));
      if (image_grad)
        for (size_t i = 0; i < count; ++i)
          g[(size_t(n) * s.c + t.channel) * plane + at + i] = float(1.0 / double(count));
      continue;
    }
    // Class: logits of the pooled features (through the head, or the tap's own values).
    std::vector<double> p(s.c);
    for (int c = 0; c < s.c; ++c) {
      double acc = 0;
      for (size_t i = 0; i < plane; ++i) acc += an[size_t(c) * plane + i];
      p[c] = acc / double(plane);
    }
    const int K = t.head ? t.head->classes : s.c;
    std::vector<double> z(K);
    for (int k = 0; k < K; ++k) {
      if (!t.head) {
        z[k] = p[k];
        continue;
      }
      double acc = t.head->b[k];
      for (int c = 0; c < s.c; ++c) acc += double(t.head->w[size_t(k) * s.c + c]) * p[c];
      z[k] = acc;
    }
    const double mx = *std::max_element(z.begin(), z.end());
    double se = 0;
    for (double v : z) se += std::exp(v - mx);
    const double prob = std::exp(z[t.class_index] - mx) / se;
    out.score.push_back(z[t.class_index]);
    out.probability.push_back(prob);
    if (!image_grad) continue;
    std::vector<double> dz(K, 0.0);
    if (log_prob)
      for (int k = 0; k < K; ++k) dz[k] = (k == t.class_index) - std::exp(z[k] - mx) / se;
    else
      dz[t.class_index] = 1.0;
    for (int c = 0; c < s.c; ++c) {
      double dp = t.head ? 0.0 : dz[c];
      if (t.head)
        for (int k = 0; k < K; ++k) dp += dz[k] * t.head->w[size_t(k) * s.c + c];
      const float v = float(dp / double(plane));
      std::fill_n(g.data() + (size_t(n) * s.c + c) * plane, plane, v);
    }
  }
  if (image_grad) {
    Tensor gt = Tensor::from_vector(s, g, act.device());
    net.backward({{t.tap, gt.view()}}, *image_grad);
  }
  return out;
}

// ---- saliency -------------------------------------------------------------------------------

Tensor saliency_gradient(Network& net, const View& image, const Target& t, bool guided) {
  require(image.shape.n == 1 && image.shape.c == 3,
          "saliency: expected one RGB image (1,3,H,W), got " + image.shape.str());
  GuidedScope scope(net, guided);
  Tensor grad;
  evaluate_target(net, image, t, &grad, false);
  const std::vector<float> g = grad.to_vector();
  const size_t plane = image.shape.plane();
  std::vector<float> m(plane);
  for (size_t i = 0; i < plane; ++i)
    m[i] = std::max({std::fabs(g[i]), std::fabs(g[plane + i]), std::fabs(g[2 * plane + i])});
  return Tensor::from_vector({1, 1, image.shape.h, image.shape.w}, m);
}

namespace {
std::vector<int> occluder_starts(int extent, int patch, int stride) {
  std::vector<int> s;
  if (patch >= extent) return {0};
  for (int p = 0; p + patch <= extent; p += stride) s.push_back(p);
  if (s.back() + patch < extent) s.push_back(extent - patch);
  return s;
}
}  // namespace

Tensor saliency_occlusion(Network& net, const View& image, const Target& t, int patch, int stride,
                          int batch) {
  const Shape is = image.shape;
  require(is.n == 1 && is.c == 3, "occlusion: expected one RGB image (1,3,H,W), got " + is.str());
  require(patch >= 1, "--patch: expected a positive size, got " + std::to_string(patch));
  require(stride >= 1, "--stride: expected a positive step, got " + std::to_string(stride));
  require(batch >= 1, "occlusion: batch must be positive");
  const double base = evaluate_target(net, image, t).score[0];
  const std::vector<float> x = host(image);
  const auto ys = occluder_starts(is.h, patch, stride), xs = occluder_starts(is.w, patch, stride);
  std::vector<std::pair<int, int>> pos;
  for (int y : ys)
    for (int xx : xs) pos.push_back({y, xx});
  const size_t plane = is.plane(), img = 3 * plane;
  std::vector<double> sum(plane, 0.0), cover(plane, 0.0);
  for (size_t first = 0; first < pos.size(); first += size_t(batch)) {
    const int nb = int(std::min(pos.size() - first, size_t(batch)));
    std::vector<float> b(size_t(nb) * img);
    for (int i = 0; i < nb; ++i) {
      float* bi = b.data() + size_t(i) * img;
      std::copy(x.begin(), x.end(), bi);
      const auto [y0, x0] = pos[first + i];
      for (int c = 0; c < 3; ++c)
        for (int y = y0; y < std::min(is.h, y0 + patch); ++y)
          for (int xx = x0; xx < std::min(is.w, x0 + patch); ++xx)
            bi[c * plane + size_t(y) * is.w + xx] = 0.5f;
    }
    Tensor bt = Tensor::from_vector({nb, 3, is.h, is.w}, b, image.device);
    const Scores sc = evaluate_target(net, bt.view(), t);
    for (int i = 0; i < nb; ++i) {
      const auto [y0, x0] = pos[first + i];
      const double drop = base - sc.score[i];
      for (int y = y0; y < std::min(is.h, y0 + patch); ++y)
        for (int xx = x0; xx < std::min(is.w, x0 + patch); ++xx) {
          sum[size_t(y) * is.w + xx] += drop;
          cover[size_t(y) * is.w + xx] += 1;
        }
    }
  }
  std::vector<float> m(plane);
  for (size_t i = 0; i < plane; ++i) m[i] = cover[i] > 0 ? float(sum[i] / cover[i]) : 0.f;
  return Tensor::from_vector({1, 1, is.h, is.w}, m);
}

// ---- adversarial and fooling images ---------------------------------------------------------

AttackResult attack(Network& net, const View& start, const Target& t, const AttackOptions& o,
                    double stop_prob) {
  require(start.shape.n == 1 && start.shape.c == 3,
          "adversarial: expected one RGB image (1,3,H,W), got " + start.shape.str());
  require(o.epsilon > 0 && o.epsilon <= 1,
          "--epsilon: expected a budget in (0, 1], got " + std::to_string(o.epsilon));
  require(o.steps >= 1, "--steps: expected a positive count, got " + std::to_string(o.steps));
  const bool is_class = t.class_index >= 0;
  const std::vector<float> x0 = host(start);
  std::vector<float> x = x0;
  AttackResult r;
  {
    const Scores s0 = evaluate_target(net, start, t);
    r.score_before = s0.score[0];
    if (is_class) r.prob_before = s0.probability[0];
  }
  const int steps = o.iterative ? o.steps : 1;
  const float a =
      o.iterative ? (o.step_size > 0 ? o.step_size : 2.5f * o.epsilon / float(steps)) : o.epsilon;
  double prob = r.prob_before;
  for (int it = 0; it < steps; ++it) {
    if (o.iterative && is_class && prob >= stop_prob) break;
    Tensor xt = Tensor::from_vector(start.shape, x, start.device), grad;
    evaluate_target(net, xt.view(), t, &grad, is_class);
    const std::vector<float> g = grad.to_vector();
    for (size_t i = 0; i < x.size(); ++i) {
      const float sgn = g[i] > 0 ? 1.f : (g[i] < 0 ? -1.f : 0.f);
      const float v = x[i] + a * sgn;
      x[i] = std::clamp(std::clamp(v, x0[i] - o.epsilon, x0[i] + o.epsilon), 0.f, 1.f);
    }
    ++r.steps;
    if (o.iterative && is_class) {
      Tensor xn = Tensor::from_vector(start.shape, x, start.device);
      prob = evaluate_target(net, xn.view(), t).probability[0];
    }
  }
  r.image = Tensor::from_vector(start.shape, x);
  const Scores s1 = evaluate_target(net, r.image.to(start.device).view(), t);
  r.score_after = s1.score[0];
  if (is_class) r.prob_after = s1.probability[0];
  double l2 = 0, linf = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - x0[i];
    l2 += d * d;
    linf = std::max(linf, std::fabs(d));
  }
  r.l2 = std::sqrt(l2);
  r.linf = linf;
  return r;
}

// ---- receptive fields -----------------------------------------------------------------------

ReceptiveField receptive_field(const Network& net, const std::string& tap) {
  net.check_taps({tap});
  ReceptiveField rf;
  for (const Layer& l : net.layers()) {
    require(l.kind != LayerKind::Flatten && l.kind != LayerKind::Linear,
            "layer '" + tap + "' is fully connected: its receptive field is the whole image");
    if (l.kind == LayerKind::Conv || l.kind == LayerKind::MaxPool || l.kind == LayerKind::AvgPool) {
      rf.offset -= l.pad * rf.stride;
      rf.size += (l.k - 1) * rf.stride;
      rf.stride *= l.stride;
    }
    if (l.name == tap) break;
  }
  return rf;
}

// ---- feature files --------------------------------------------------------------------------

std::vector<std::string> list_images(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  require(fs::is_directory(dir, ec), "directory '" + dir + "' does not exist");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (e.is_regular_file(ec)) files.push_back(e.path().string());
  }
  require(!ec, "directory '" + dir + "': cannot list: " + ec.message());
  require(!files.empty(), "directory '" + dir + "' holds no image files");
  std::sort(files.begin(), files.end());
  return files;
}

namespace {

// Loads and resizes; returns false (with the reason in *why) for unreadable files.
bool load_resized(const std::string& path, int size, Tensor* out, std::string* why) {
  try {
    Tensor img = load_image(path);
    *out = resize(img.view(), size, size);
    return true;
  } catch (const Error& e) {
    *why = e.what();
    return false;
  }
}

// Runs files through the network in batches; body(first_index, count, indices) after each
// forward (activations at tap in the network).
void for_batches(Network& net, const std::vector<std::string>& files, const std::string& tap,
                 int size, int batch, std::vector<std::string>* skipped,
                 const std::function<void(const std::vector<int>&)>& body,
                 const std::function<void(int, int)>& progress) {
  require(size >= 8, "image size must be at least 8, got " + std::to_string(size));
  require(batch >= 1, "batch must be positive");
  net.check_taps({tap});
  std::vector<int> idx;
  std::vector<float> buf;
  bool any = false;
  auto flush = [&]() {
    if (idx.empty()) return;
    any = true;
    Tensor bt = Tensor::from_vector({int(idx.size()), 3, size, size}, buf, net.device());
    net.forward(bt.view(), {tap});
    body(idx);
    idx.clear();
    buf.clear();
  };
  for (size_t i = 0; i < files.size(); ++i) {
    Tensor img;
    std::string why;
    if (load_resized(files[i], size, &img, &why)) {
      const std::vector<float> v = img.to_vector();
      buf.insert(buf.end(), v.begin(), v.end());
      idx.push_back(int(i));
      if (int(idx.size()) == batch) {
        flush();
        if (progress) progress(int(i + 1), int(files.size()));
      }
    } else if (skipped) {
      skipped->push_back(why);
    }
  }
  flush();
  if (progress && any) progress(int(files.size()), int(files.size()));
}

}  // namespace

FeatureSet extract_features(Network& net, const std::vector<std::string>& files,
                            const std::string& tap, int size, int batch,
                            const std::function<void(int, int)>& progress) {
  FeatureSet f;
  f.tap = tap;
  f.size = size;
  f.weights = net.weights().identity;
  f.arch = arch_name(net.arch());
  for_batches(
      net, files, tap, size, batch, &f.skipped,
      [&](const std::vector<int>& idx) {
        const std::vector<float> p = mean_pool(net.tap(tap).view());
        f.dim = net.tap(tap).shape().c;
        f.features.insert(f.features.end(), p.begin(), p.end());
        for (int i : idx) f.paths.push_back(files[i]);
      },
      progress);
  require(!f.paths.empty(), "no readable image among " + std::to_string(files.size()) + " file(s)" +
                                (f.skipped.empty() ? "" : ": " + f.skipped[0]));
  return f;
}

std::vector<float> image_features(Network& net, const Tensor& image, const std::string& tap,
                                  int size) {
  net.check_taps({tap});
  Tensor r = resize(image.view(), size, size).to(net.device());
  net.forward(r.view(), {tap});
  return mean_pool(net.tap(tap).view());
}

void save_features(const FeatureSet& f, const std::string& path) {
  require(f.dim > 0 && f.features.size() == f.count() * size_t(f.dim),
          "save_features: inconsistent feature set");
  write_atomically(path, [&](const std::string& tmp) {
    h5::Quiet quiet;
    h5::File file = h5::File::create(tmp, "feature file '" + path + "'");
    file.write("/features", f.features.data(), {int64_t(f.count()), f.dim});
    file.write_strings("/paths", f.paths);
    file.write_strings("/skipped", f.skipped);
    file.write_attr_string("/", "format", "preimage-features 1");
    file.write_attr_string("/", "layer", f.tap);
    file.write_attr_string("/", "weights", f.weights);
    file.write_attr_string("/", "arch", f.arch);
    file.write_attr_string("/", "pool", f.pool);
    file.write_attr_int64s("/", "size", {f.size});
    file.close();
  });
}

FeatureSet load_features(const std::string& path) {
  h5::Quiet quiet;
  const std::string ctx = "feature file '" + path + "'";
  h5::File file = h5::File::open(path, ctx);
  for (const char* a : {"format", "layer", "weights", "arch", "pool", "size"})
    require(file.has_attr("/", a),
            ctx + ": root attribute '" + a + "' missing (not written by preimage features?)");
  require(file.read_attr_string("/", "format") == "preimage-features 1",
          ctx + ": unknown format '" + file.read_attr_string("/", "format") +
              "', expected 'preimage-features 1'");
  FeatureSet f;
  f.tap = file.read_attr_string("/", "layer");
  f.weights = file.read_attr_string("/", "weights");
  f.arch = file.read_attr_string("/", "arch");
  f.pool = file.read_attr_string("/", "pool");
  const auto sz = file.read_attr_int64s("/", "size");
  require(sz.size() == 1 && sz[0] >= 8 && sz[0] <= 16384,
          ctx + ": attribute 'size' must be one integer in [8, 16384]");
  f.size = int(sz[0]);
  const h5::Dims d =
      file.check_dataset("/features", h5::Kind::Float, {h5::any_dim, h5::any_dim}, "float32");
  f.dim = int(d[1]);
  f.features = file.read_vector<float>("/features");
  f.paths = file.read_strings("/paths");
  require(f.paths.size() == size_t(d[0]),
          ctx + ": dataset '/paths' has " + std::to_string(f.paths.size()) + " entries, expected " +
              std::to_string(d[0]) + " (one per row of /features)");
  if (file.exists("/skipped")) f.skipped = file.read_strings("/skipped");
  for (float v : f.features)
    require(std::isfinite(v), ctx + ": dataset '/features' holds non-finite values");
  return f;
}

// ---- neighbours and layouts -----------------------------------------------------------------

std::vector<Neighbor> nearest_neighbors(const FeatureSet& f, const std::vector<float>& q, int k,
                                        bool cosine) {
  require(q.size() == size_t(f.dim), "query has " + std::to_string(q.size()) +
                                         " features, the feature file " + std::to_string(f.dim));
  require(k >= 1, "-k: expected a positive count, got " + std::to_string(k));
  double qn = 0;
  for (float v : q) qn += double(v) * v;
  qn = std::sqrt(qn);
  std::vector<Neighbor> all(f.count());
  for (size_t i = 0; i < f.count(); ++i) {
    const float* r = f.features.data() + i * f.dim;
    double dot = 0, rn = 0, l2 = 0;
    for (int j = 0; j < f.dim; ++j) {
      dot += double(r[j]) * q[j];
      rn += double(r[j]) * r[j];
      l2 += (double(r[j]) - q[j]) * (double(r[j]) - q[j]);
    }
    all[i].index = int(i);
    all[i].distance = cosine ? 1.0 - dot / std::max(std::sqrt(rn) * qn, 1e-30) : std::sqrt(l2);
  }
  std::stable_sort(all.begin(), all.end(),
                   [](const Neighbor& a, const Neighbor& b) { return a.distance < b.distance; });
  all.resize(std::min(all.size(), size_t(k)));
  return all;
}

std::vector<double> pca(const std::vector<float>& x, int n, int d, int dims) {
  require(n >= 2 && d >= 1 && x.size() == size_t(n) * d, "pca: expected (N, D) data, N >= 2");
  require(dims >= 1 && dims <= d, "pca: dims must be in [1, D]");
  Eigen::MatrixXd m(n, d);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) m(i, j) = x[size_t(i) * d + j];
  m.rowwise() -= m.colwise().mean();
  Eigen::MatrixXd comps;
  if (d <= n) {
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(m.transpose() * m);
    comps = es.eigenvectors().rightCols(dims).rowwise().reverse();  // largest first
  } else {  // Gram trick: eigenvectors of M Mᵀ mapped back through Mᵀ
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(m * m.transpose());
    comps = m.transpose() * es.eigenvectors().rightCols(dims).rowwise().reverse();
    // ‖Mᵀv‖ = √λ; directions of (numerically) zero variance project to 0, not to noise.
    const double top = std::max(es.eigenvalues().maxCoeff(), 0.0);
    for (int c = 0; c < dims; ++c) {
      const double lambda = es.eigenvalues()(n - 1 - c);
      if (lambda > 1e-12 * top && lambda > 0)
        comps.col(c) /= comps.col(c).norm();
      else
        comps.col(c).setZero();
    }
  }
  // Deterministic signs: the largest-magnitude loading of each component is positive.
  for (int c = 0; c < dims; ++c) {
    Eigen::Index at = 0;
    comps.col(c).cwiseAbs().maxCoeff(&at);
    if (comps(at, c) < 0) comps.col(c) *= -1;
  }
  const Eigen::MatrixXd y = m * comps;
  std::vector<double> out(size_t(n) * dims);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < dims; ++c) out[size_t(i) * dims + c] = y(i, c);
  return out;
}

namespace {

// Row i of the conditional P(j|i) with the bandwidth found by bisection on the entropy
// (perplexity), from squared distances d2 to the candidates.
void conditional_row(const std::vector<double>& d2, double perplexity, std::vector<double>& p) {
  const double target = std::log(perplexity);
  double beta = 1, lo = 0, hi = 1e300;
  const size_t m = d2.size();
  p.assign(m, 0.0);
  double dmin = 1e300;
  for (double v : d2) dmin = std::min(dmin, v);
  for (int it = 0; it < 200; ++it) {
    double sum = 0, hsum = 0;
    for (size_t j = 0; j < m; ++j) {
      p[j] = std::exp(-(d2[j] - dmin) * beta);
      sum += p[j];
    }
    for (size_t j = 0; j < m; ++j) hsum += (d2[j] - dmin) * p[j];
    const double h = std::log(sum) + beta * hsum / sum;
    for (auto& v : p) v /= sum;
    if (std::fabs(h - target) < 1e-5) break;
    if (h > target) {
      lo = beta;
      beta = hi >= 1e299 ? beta * 2 : 0.5 * (beta + hi);
    } else {
      hi = beta;
      beta = 0.5 * (beta + lo);
    }
  }
}

// Barnes–Hut quadtree over 2-D points: centre of mass and count per cell.
struct QuadTree {
  struct Node {
    double cx = 0, cy = 0, half = 0;  // cell centre and half width
    double mx = 0, my = 0;            // centre of mass (sum while building)
    int count = 0;
    int child = -1;  // first of 4 children, -1 for a leaf
    int point = -1;  // the point of a leaf with count == 1
  };
  std::vector<Node> nodes;
  const std::vector<double>* y = nullptr;

  void build(const std::vector<double>& pts, int n) {
    y = &pts;
    double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
    for (int i = 0; i < n; ++i) {
      x0 = std::min(x0, pts[2 * i]);
      x1 = std::max(x1, pts[2 * i]);
      y0 = std::min(y0, pts[2 * i + 1]);
      y1 = std::max(y1, pts[2 * i + 1]);
    }
    nodes.clear();
    nodes.reserve(size_t(4) * n);
    Node root;
    root.cx = 0.5 * (x0 + x1);
    root.cy = 0.5 * (y0 + y1);
    root.half = 0.5 * std::max(x1 - x0, y1 - y0) + 1e-5;
    nodes.push_back(root);
    for (int i = 0; i < n; ++i) insert(i);
    for (auto& nd : nodes)
      if (nd.count > 0) {
        nd.mx /= nd.count;
        nd.my /= nd.count;
      }
  }

  void insert(int i) {
    const double px = (*y)[2 * i], py = (*y)[2 * i + 1];
    int at = 0;
    for (int depth = 0;; ++depth) {
      nodes[at].mx += px;
      nodes[at].my += py;
      nodes[at].count++;
      if (nodes[at].child < 0) {
        if (nodes[at].count == 1) {
          nodes[at].point = i;
          return;
        }
        // Coincident points (or very deep trees) stay together in one leaf.
        if (depth > 40) return;
        const int old = nodes[at].point;
        nodes[at].point = -1;
        split(at);
        if (old >= 0) place(at, old);
      }
      at = child_for(at, px, py);
    }
  }

  void split(int at) {
    const int first = int(nodes.size());
    const double h = nodes[at].half / 2, cx = nodes[at].cx, cy = nodes[at].cy;
    for (int q = 0; q < 4; ++q) {
      Node c;
      c.half = h;
      c.cx = cx + ((q & 1) ? h : -h);
      c.cy = cy + ((q & 2) ? h : -h);
      nodes.push_back(c);
    }
    nodes[at].child = first;
  }

  int child_for(int at, double px, double py) const {
    const Node& nd = nodes[at];
    return nd.child + (px >= nd.cx ? 1 : 0) + (py >= nd.cy ? 2 : 0);
  }

  // Moves an existing point's contribution into a child (its sums stay in the parent).
  void place(int at, int i) {
    const double px = (*y)[2 * i], py = (*y)[2 * i + 1];
    const int c = child_for(at, px, py);
    Node& nd = nodes[c];
    nd.mx += px;
    nd.my += py;
    nd.count++;
    nd.point = i;
  }

  // Repulsive force numerators on point i and its share of Z.
  void repulse(int at, int i, double theta, double& fx, double& fy, double& z) const {
    const Node& nd = nodes[at];
    if (nd.count == 0 || (nd.child < 0 && nd.point == i && nd.count == 1)) return;
    const double px = (*y)[2 * i], py = (*y)[2 * i + 1];
    const double dx = px - nd.mx, dy = py - nd.my, d2 = dx * dx + dy * dy;
    if (nd.child < 0 || (2 * nd.half) * (2 * nd.half) < theta * theta * d2) {
      int cnt = nd.count;
      if (nd.child < 0 && d2 == 0) return;  // coincident with i: no direction
      const double q = 1.0 / (1.0 + d2);
      z += cnt * q;
      fx += cnt * q * q * dx;
      fy += cnt * q * q * dy;
      return;
    }
    for (int c = 0; c < 4; ++c) repulse(nd.child + c, i, theta, fx, fy, z);
  }
};

}  // namespace

std::vector<double> tsne(const std::vector<float>& x, int n, int d, const TsneOptions& o) {
  require(n >= 4 && x.size() == size_t(n) * d, "t-SNE needs at least 4 points");
  require(o.perplexity > 0, "--perplexity must be positive");
  const double perp = std::min(o.perplexity, (n - 1) / 3.0);
  // Reduce wide inputs to 50 dimensions (the usual preprocessing).
  std::vector<double> z;
  int dz = d;
  if (d > 50 && n > 50) {
    z = pca(x, n, d, 50);
    dz = 50;
  } else {
    z.assign(x.begin(), x.end());
  }
  const bool exact = n < o.exact_below;
  // Sparse symmetric P: for each i the candidates (all others, or 3·perplexity nearest).
  const int kn = exact ? n - 1 : std::min(n - 1, int(3 * perp));
  // P: dense n×n when exact (n is below a few thousand), sparse rows (j, p_ij) otherwise.
  std::vector<double> dense;
  std::vector<std::vector<std::pair<int, double>>> P(n);
  if (exact) dense.assign(size_t(n) * n, 0.0);
  {
    std::vector<double> d2(n), pr;
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        double acc = 0;
        for (int c = 0; c < dz; ++c) {
          const double t = z[size_t(i) * dz + c] - z[size_t(j) * dz + c];
          acc += t * t;
        }
        d2[j] = acc;
      }
      order.resize(n);
      std::iota(order.begin(), order.end(), 0);
      order.erase(order.begin() + i);
      if (kn < n - 1)
        std::partial_sort(order.begin(), order.begin() + kn, order.end(),
                          [&](int a, int b) { return d2[a] < d2[b]; });
      std::vector<double> cand(kn);
      for (int j = 0; j < kn; ++j) cand[j] = d2[order[j]];
      conditional_row(cand, perp, pr);
      // Symmetrized on the fly: p_ij = (p_j|i + p_i|j) / 2N.
      for (int j = 0; j < kn; ++j) {
        const double v = pr[j] / (2.0 * n);
        if (exact) {
          dense[size_t(i) * n + order[j]] += v;
          dense[size_t(order[j]) * n + i] += v;
        } else {
          P[i].push_back({order[j], v});
          P[order[j]].push_back({i, v});
        }
      }
    }
  }
  for (auto& row : P) {  // merge the duplicate (j, ·) entries of the sparse rows
    std::sort(row.begin(), row.end());
    size_t w = 0;
    for (size_t r = 0; r < row.size(); ++r) {
      if (w > 0 && row[w - 1].first == row[r].first)
        row[w - 1].second += row[r].second;
      else
        row[w++] = row[r];
    }
    row.resize(w);
  }

  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> nd(0.0, 1e-4);
  std::vector<double> y(size_t(2) * n), g(y.size()), upd(y.size(), 0.0), gains(y.size(), 1.0);
  for (auto& v : y) v = nd(rng);
  const double exag0 = 12.0;
  const double lr = o.learning_rate > 0 ? o.learning_rate : std::max(n / exag0 / 4.0, 50.0);
  const int iters = std::max(o.iterations, 50);
  const int exag_until = std::min(250, iters / 4);
  QuadTree tree;
  for (int it = 0; it < iters; ++it) {
    const double exag = it < exag_until ? exag0 : 1.0;
    const double mom = it < exag_until ? 0.5 : 0.8;
    std::fill(g.begin(), g.end(), 0.0);
    // Repulsion: Σ_j q_ij² (y_i − y_j) / Z (exact or Barnes–Hut).
    // Per-point sums, Z added up serially: the same layout for any number of threads.
    std::vector<double> rx(n, 0.0), ry(n, 0.0), zi(n, 0.0);
    if (!exact) tree.build(y, n);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) {
      if (!exact) {
        tree.repulse(0, i, o.theta, rx[i], ry[i], zi[i]);
        continue;
      }
      for (int j = 0; j < n; ++j) {
        if (i == j) continue;
        const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        const double q = 1.0 / (1.0 + dx * dx + dy * dy);
        zi[i] += q;
        rx[i] += q * q * dx;
        ry[i] += q * q * dy;
      }
    }
    double Z = 0;
    for (double v : zi) Z += v;
    Z = std::max(Z, 1e-300);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; ++i) {
      double ax = 0, ay = 0;
      auto attract = [&](int j, double p) {
        const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
        const double q = 1.0 / (1.0 + dx * dx + dy * dy);
        ax += exag * p * q * dx;
        ay += exag * p * q * dy;
      };
      if (exact)
        for (int j = 0; j < n; ++j) attract(j, dense[size_t(i) * n + j]);
      else
        for (auto [j, p] : P[i]) attract(j, p);
      g[2 * i] = 4.0 * (ax - rx[i] / Z);
      g[2 * i + 1] = 4.0 * (ay - ry[i] / Z);
    }
    for (size_t k = 0; k < y.size(); ++k) {
      gains[k] = (g[k] > 0) != (upd[k] > 0) ? gains[k] + 0.2 : std::max(gains[k] * 0.8, 0.01);
      upd[k] = mom * upd[k] - lr * gains[k] * g[k];
      y[k] += upd[k];
    }
    double mx = 0, my = 0;
    for (int i = 0; i < n; ++i) {
      mx += y[2 * i] / n;
      my += y[2 * i + 1] / n;
    }
    for (int i = 0; i < n; ++i) {
      y[2 * i] -= mx;
      y[2 * i + 1] -= my;
    }
  }
  return y;
}

// ---- maximally activating patches -----------------------------------------------------------

std::vector<Patch> top_patches(Network& net, const std::vector<std::string>& files,
                               const std::string& tap, int channel, int size, int k,
                               std::vector<std::string>* skipped) {
  require(k >= 1, "-k: expected a positive count, got " + std::to_string(k));
  const ReceptiveField rf = receptive_field(net, tap);
  const Shape ts = net.tap_shape(tap, {1, 3, size, size});
  require(channel >= 0 && channel < ts.c, "--channel " + std::to_string(channel) +
                                              " out of range: layer " + tap + " has " +
                                              std::to_string(ts.c) + " channels");
  std::vector<Patch> all;
  for_batches(net, files, tap, size, 8, skipped,
              [&](const std::vector<int>& idx) {
                const Tensor& a = net.tap(tap);
                const Shape s = a.shape();
                const std::vector<float> v = a.to_vector();
                for (int b = 0; b < s.n; ++b) {
                  const float* pl = v.data() + (size_t(b) * s.c + channel) * s.plane();
                  const size_t at = size_t(std::max_element(pl, pl + s.plane()) - pl);
                  Patch p;
                  p.image = idx[b];
                  p.y = int(at / s.w);
                  p.x = int(at % s.w);
                  p.activation = pl[at];
                  p.size = rf.size;
                  p.y0 = rf.offset + p.y * rf.stride;
                  p.x0 = rf.offset + p.x * rf.stride;
                  all.push_back(p);
                }
              },
              {});
  require(!all.empty(), "no readable image among " + std::to_string(files.size()) + " file(s)");
  std::stable_sort(all.begin(), all.end(),
                   [](const Patch& a, const Patch& b) { return a.activation > b.activation; });
  all.resize(std::min(all.size(), size_t(k)));
  return all;
}

Tensor crop_patch(const Tensor& image, const Patch& p) {
  const Shape s = image.shape();
  const std::vector<float> v = image.to_vector();
  std::vector<float> out(size_t(3) * p.size * p.size, 0.5f);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < p.size; ++y)
      for (int x = 0; x < p.size; ++x) {
        const int sy = p.y0 + y, sx = p.x0 + x;
        if (sy >= 0 && sy < s.h && sx >= 0 && sx < s.w)
          out[(size_t(c) * p.size + y) * p.size + x] = v[(size_t(c) * s.h + sy) * s.w + sx];
      }
  return Tensor::from_vector({1, 3, p.size, p.size}, out);
}

// ---- image composition ----------------------------------------------------------------------

Tensor colorize(const Tensor& map) {
  const Shape s = map.shape();
  require(s.n == 1 && s.c == 1, "colorize: expected a (1,1,H,W) map, got " + s.str());
  const std::vector<float> m = map.to_vector();
  float mx = 0;
  for (float v : m) mx = std::max(mx, v);
  const size_t plane = s.plane();
  std::vector<float> out(3 * plane);
  for (size_t i = 0; i < plane; ++i) {
    const float t = mx > 0 ? std::max(m[i], 0.f) / mx : 0.f;
    out[i] = std::clamp(3 * t, 0.f, 1.f);
    out[plane + i] = std::clamp(3 * t - 1, 0.f, 1.f);
    out[2 * plane + i] = std::clamp(3 * t - 2, 0.f, 1.f);
  }
  return Tensor::from_vector({1, 3, s.h, s.w}, out);
}

Tensor overlay(const Tensor& image, const Tensor& map, float alpha) {
  const Shape s = image.shape();
  require(s.n == 1 && s.c == 3 && map.shape().h == s.h && map.shape().w == s.w,
          "overlay: image " + s.str() + " and map " + map.shape().str() + " differ in size");
  const std::vector<float> a = image.to_vector(), b = colorize(map).to_vector();
  std::vector<float> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = (1 - alpha) * a[i] + alpha * b[i];
  return Tensor::from_vector(s, out);
}

namespace {
void paste(std::vector<float>& canvas, int ch, int cw, const Tensor& tile, int y0, int x0) {
  const Shape s = tile.shape();
  const std::vector<float> v = tile.to_vector();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < s.h; ++y)
      for (int x = 0; x < s.w; ++x) {
        const int ty = y0 + y, tx = x0 + x;
        if (ty < 0 || ty >= ch || tx < 0 || tx >= cw) continue;
        canvas[(size_t(c) * ch + ty) * cw + tx] = v[(size_t(c % s.c) * s.h + y) * s.w + x];
      }
}
}  // namespace

Tensor tile_grid(const std::vector<Tensor>& tiles, int columns, int tile) {
  require(!tiles.empty() && columns >= 1 && tile >= 1, "tile_grid: nothing to draw");
  const int border = 2, n = int(tiles.size());
  const int cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  const int h = rows * (tile + border) + border, w = cols * (tile + border) + border;
  std::vector<float> canvas(size_t(3) * h * w, 0.5f);
  for (int i = 0; i < n; ++i) {
    const Tensor& t = tiles[i];
    Tensor r =
        (t.shape().h == tile && t.shape().w == tile) ? t.clone() : resize(t.view(), tile, tile);
    paste(canvas, h, w, r, border + (i / cols) * (tile + border),
          border + (i % cols) * (tile + border));
  }
  return Tensor::from_vector({1, 3, h, w}, canvas);
}

Tensor image_map(const std::vector<Tensor>& thumbs, const std::vector<double>& xy, int canvas,
                 int thumb) {
  require(!thumbs.empty() && xy.size() == 2 * thumbs.size(), "image_map: one position per image");
  require(canvas > thumb && thumb >= 1, "image_map: the canvas must be larger than a thumbnail");
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (size_t i = 0; i < thumbs.size(); ++i) {
    x0 = std::min(x0, xy[2 * i]);
    x1 = std::max(x1, xy[2 * i]);
    y0 = std::min(y0, xy[2 * i + 1]);
    y1 = std::max(y1, xy[2 * i + 1]);
  }
  const double span = std::max({x1 - x0, y1 - y0, 1e-12});
  const int room = canvas - thumb;
  std::vector<float> c(size_t(3) * canvas * canvas, 1.f);
  for (size_t i = 0; i < thumbs.size(); ++i) {
    const Tensor& t = thumbs[i];
    Tensor r =
        (t.shape().h == thumb && t.shape().w == thumb) ? t.clone() : resize(t.view(), thumb, thumb);
    const int px = int(std::lround((xy[2 * i] - x0) / span * room));
    const int py = int(std::lround((xy[2 * i + 1] - y0) / span * room));
    paste(c, canvas, canvas, r, py, px);
  }
  return Tensor::from_vector({1, 3, canvas, canvas}, c);
}

Tensor filter_grid(const Tensor& w, int tile) {
  const Shape s = w.shape();
  require(s.c == 3,
          "filters: expected first-layer filters with 3 input channels (conv1_1), got " + s.str());
  const std::vector<float> v = w.to_vector();
  float mx = 1e-30f;
  for (float e : v) mx = std::max(mx, std::fabs(e));
  std::vector<Tensor> tiles;
  for (int o = 0; o < s.n; ++o) {
    std::vector<float> t(size_t(3) * tile * tile);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < tile; ++y)
        for (int x = 0; x < tile; ++x) {
          const int ky = y * s.h / tile, kx = x * s.w / tile;
          t[(size_t(c) * tile + y) * tile + x] =
              0.5f + 0.5f * v[((size_t(o) * 3 + c) * s.h + ky) * s.w + kx] / mx;
        }
    tiles.push_back(Tensor::from_vector({1, 3, tile, tile}, t));
  }
  const int cols = int(std::ceil(std::sqrt(double(s.n))));
  return tile_grid(tiles, cols, tile);
}

}  // namespace preimage
