// Pre-image objectives: the terms of preimage/objective.h and Objective::evaluate. Every term
// computes on the device of the activations it is given, through backend(device) only, so the
// same code runs on the CPU backend and on the CUDA kernels; only scalars come back to the host.
// Formulas and normalizations: docs/objectives.md.
#include "preimage/objective.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "engine/core/backend.h"
#include "engine/core/ensure.h"
#include "preimage/error.h"

namespace preimage {

namespace {

// A tensor kept where it is needed: moved to d on first use there.
const Tensor& on_device(Tensor& t, Device d) {
  if (t.device() != d) t = t.to(d);
  return t;
}

Tensor copy_of(const View& v) {
  Tensor t(v.shape, v.device);
  t.copy_from(v);
  return t;
}

std::vector<float> host_copy(const View& v) {
  std::vector<float> h(v.numel());
  if (!h.empty()) backend(v.device).copy_to_host(h.data(), v.data, h.size());
  return h;
}

const View& find_tap(const TapViews& m, const std::string& tap, const std::string& label,
                     const char* what) {
  auto it = m.find(tap);
  require(it != m.end() && it->second.data != nullptr,
          "term '" + label + "': no " + what + " for layer '" + tap + "'");
  return it->second;
}

int positions(const Shape& s) {
  return s.h * s.w;
}

void require_single(const View& v, const std::string& what) {
  require(v.shape.n == 1 && v.shape.c >= 1 && v.shape.h >= 1 && v.shape.w >= 1,
          what + ": expected one (1,C,H,W) activation, got " + v.shape.str());
}

// ---- Gatys Gram term -----------------------------------------------------------------------
class GramTerm final : public Term {
 public:
  GramTerm(std::string tap, const View& target, float w) : tap_(std::move(tap)) {
    require_single(target, "gram target at " + tap_);
    c_ = target.shape.c;
    m_target_ = positions(target.shape);
    target_ = gram_matrix(target);
    weight = w;
    label = "gram:" + tap_;
  }
  std::string kind() const override { return "gram"; }
  std::vector<std::string> taps() const override { return {tap_}; }

  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_, label, "activation");
    const View& g = find_tap(tap_grads, tap_, label, "gradient");
    require(a.shape.c == c_, label + ": activation has " + std::to_string(a.shape.c) +
                                 " channels, the target " + std::to_string(c_));
    const Device d = a.device;
    Backend& be = backend(d);
    const int m = positions(a.shape);
    const size_t cc = size_t(c_) * c_;
    // Ĝ rescaled to this image's number of positions: targets of another size stay comparable.
    if (scaled_m_ != m || scaled_.device() != d) {
      ensure(scaled_, {1, 1, c_, c_}, d);
      be.axpby(float(double(m) / m_target_), on_device(target_, d).data(), 0.f, scaled_.data(), cc);
      scaled_m_ = m;
    }
    ensure(gram_, {1, 1, c_, c_}, d);
    const double norm = 4.0 * double(c_) * c_ * double(m) * m;  // 4 N² M²
    double total = 0.0;
    for (int n = 0; n < a.shape.n; ++n) {
      const size_t off = size_t(n) * c_ * m;
      be.gram_fwd(a.data + off, gram_.data(), c_, m);
      total += be.gram_loss_grad(a.data + off, gram_.data(), scaled_.data(), g.data + off, c_, m,
                                 float(4.0 * weight / norm)) /
               norm;
    }
    return weight * total;
  }

 private:
  std::string tap_;
  int c_ = 0, m_target_ = 0, scaled_m_ = -1;
  Tensor target_, scaled_, gram_;
};

// ---- B-CNN texture term ------------------------------------------------------------------
class BcnnTerm final : public Term {
 public:
  BcnnTerm(std::string tap_a, std::string tap_b, const View& ta, const View& tb, float w, float eps)
      : tap_a_(std::move(tap_a)), tap_b_(std::move(tap_b)), eps_(eps) {
    same_ = tap_a_ == tap_b_;
    target_ = bcnn_descriptor(ta, same_ ? ta : tb, eps);
    ca_ = target_.shape().h;
    cb_ = target_.shape().w;
    weight = w;
    label = "bcnn:" + tap_a_ + (same_ ? "" : "," + tap_b_);
  }
  std::string kind() const override { return "bcnn"; }
  std::vector<std::string> taps() const override {
    return same_ ? std::vector<std::string>{tap_a_} : std::vector<std::string>{tap_a_, tap_b_};
  }

  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_a_, label, "activation");
    const View& b = same_ ? a : find_tap(acts, tap_b_, label, "activation");
    const View& ga = find_tap(tap_grads, tap_a_, label, "gradient");
    const View& gb = same_ ? ga : find_tap(tap_grads, tap_b_, label, "gradient");
    require(a.shape.c == ca_ && b.shape.c == cb_,
            label + ": channel counts differ from the target's");
    require(a.shape.n == b.shape.n && a.shape.h == b.shape.h && a.shape.w == b.shape.w,
            label + ": both layers must have the same resolution (" + a.shape.str() + " vs " +
                b.shape.str() + ")");
    const Device d = a.device;
    Backend& be = backend(d);
    const int m = positions(a.shape);
    const size_t cc = size_t(ca_) * cb_;
    const Tensor& zt = on_device(target_, d);
    ensure(pool_, {1, 1, ca_, cb_}, d);
    ensure(y_, {1, 1, ca_, cb_}, d);
    double total = 0.0;
    for (int n = 0; n < a.shape.n; ++n) {
      const float* fa = a.data + size_t(n) * ca_ * m;
      const float* fb = same_ ? fa : b.data + size_t(n) * cb_ * m;
      float* dfa = ga.data + size_t(n) * ca_ * m;
      float* dfb = same_ ? dfa : gb.data + size_t(n) * cb_ * m;
      be.bilinear_pool_fwd(fa, fb, pool_.data(), ca_, cb_, m);
      const double norm = std::sqrt(be.bilinear_ssqrt_fwd(pool_.data(), y_.data(), cc, eps_));
      const double s = be.dot(y_.data(), zt.data(), cc);
      // z·g with g = 2(z − ẑ): 2(‖z‖² − z·ẑ) = 2(1 − y·ẑ/‖y‖). dB overwrites the pooled B.
      total += be.bilinear_ssqrt_bwd(y_.data(), zt.data(), nullptr, pool_.data(), cc, norm,
                                     2.0 * (1.0 - s / norm), weight);
      be.bilinear_pool_bwd(pool_.data(), fa, fb, dfa, dfb, ca_, cb_, m);
    }
    return weight * total;
  }

 private:
  std::string tap_a_, tap_b_;
  bool same_ = true;
  float eps_;
  int ca_ = 0, cb_ = 0;
  Tensor target_, pool_, y_;
};

// ---- feature reconstruction (Mahendran & Vedaldi; Gatys' content loss) --------------------
class FeatureTerm final : public Term {
 public:
  FeatureTerm(std::string tap, const View& target, const View* mask, float w)
      : tap_(std::move(tap)) {
    require_single(target, "feature target at " + tap_);
    target_ = copy_of(target);
    const std::vector<float> t = host_copy(target);
    const size_t plane = target.shape.plane();
    double norm = 0.0;
    if (mask) {
      require(mask->numel() == plane && mask->shape.h == target.shape.h &&
                  mask->shape.w == target.shape.w,
              "feature mask at " + tap_ + ": expected " + std::to_string(target.shape.h) + "x" +
                  std::to_string(target.shape.w) + " (the layer's resolution), got " +
                  mask->shape.str());
      const std::vector<float> m = host_copy(*mask);
      std::vector<float> full(t.size());
      for (size_t i = 0; i < full.size(); ++i) {
        full[i] = m[i % plane];
        require(full[i] >= 0.f && std::isfinite(full[i]),
                "feature mask at " + tap_ + ": weights must be finite and non-negative");
        norm += double(full[i]) * t[i] * t[i];
      }
      mask_ = Tensor::from_vector(target.shape, full, target.device);
    } else {
      for (float v : t) norm += double(v) * v;
    }
    require(norm > 0.0, "feature target at " + tap_ + " is zero (under the mask): ‖Φ₀‖² = 0");
    norm_ = norm;
    weight = w;
    label = "feature:" + tap_;
  }
  std::string kind() const override { return "feature"; }
  std::vector<std::string> taps() const override { return {tap_}; }

  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_, label, "activation");
    const View& g = find_tap(tap_grads, tap_, label, "gradient");
    const Shape& ts = target_.shape();
    require(a.shape.c == ts.c && a.shape.h == ts.h && a.shape.w == ts.w,
            label + ": activation " + a.shape.str() + " does not match the target " + ts.str());
    const Device d = a.device;
    Backend& be = backend(d);
    const size_t count = ts.numel();
    const float* t = on_device(target_, d).data();
    const float* mk = mask_.empty() ? nullptr : on_device(mask_, d).data();
    ensure(diff_, ts, d);
    if (mk) ensure(masked_, ts, d);
    const float gscale = float(2.0 * weight / norm_);
    double total = 0.0;
    for (int n = 0; n < a.shape.n; ++n) {
      const size_t off = size_t(n) * count;
      be.copy(diff_.data(), a.data + off, count);
      be.axpby(-1.f, t, 1.f, diff_.data(), count);  // Φ − Φ₀
      if (mk) {
        be.mul(mk, diff_.data(), masked_.data(), count);
        total += be.dot(masked_.data(), diff_.data(), count);
        be.axpby(gscale, masked_.data(), 1.f, g.data + off, count);
      } else {
        total += be.sum_squares(diff_.data(), count);
        be.axpby(gscale, diff_.data(), 1.f, g.data + off, count);
      }
    }
    return weight * total / norm_;
  }

 private:
  std::string tap_;
  double norm_ = 1.0;
  Tensor target_, mask_, diff_, masked_;
};

// ---- image priors ------------------------------------------------------------------------
void require_image(const View& image, const View& grad, const std::string& label) {
  require(image.data && grad.data && image.shape == grad.shape && image.device == grad.device,
          "term '" + label + "' needs the image and an image gradient of the same shape");
}

class TvTerm final : public Term {
 public:
  TvTerm(float beta, float w, float eps) : beta_(beta), eps_(eps) {
    require(beta >= 1.f && std::isfinite(beta),
            "tv prior: beta must be >= 1, got " + std::to_string(beta));
    require(eps >= 0.f && (beta >= 2.f || eps > 0.f),
            "tv prior: eps must be > 0 when beta < 2 (the gradient is singular otherwise)");
    weight = w;
    label = "tv";
  }
  std::string kind() const override { return "tv"; }
  std::vector<std::string> taps() const override { return {}; }
  double evaluate(const TapViews&, const TapViews&, const View& image,
                  const View& image_grad) override {
    require_image(image, image_grad, label);
    const Shape& s = image.shape;
    return weight *
           backend(image.device)
               .tv_loss_grad(image.data, image_grad.data, s.n * s.c, s.h, s.w, beta_, eps_, weight);
  }

 private:
  float beta_, eps_;
};

class AlphaTerm final : public Term {
 public:
  AlphaTerm(float alpha, float w, float eps) : alpha_(alpha), eps_(eps) {
    require(alpha >= 1.f && std::isfinite(alpha),
            "alpha prior: alpha must be >= 1, got " + std::to_string(alpha));
    require(eps >= 0.f && (alpha >= 2.f || eps > 0.f),
            "alpha prior: eps must be > 0 when alpha < 2");
    weight = w;
    label = "alpha";
  }
  std::string kind() const override { return "alpha"; }
  std::vector<std::string> taps() const override { return {}; }
  double evaluate(const TapViews&, const TapViews&, const View& image,
                  const View& image_grad) override {
    require_image(image, image_grad, label);
    const Shape& s = image.shape;
    return weight * backend(image.device)
                        .alpha_loss_grad(image.data, image_grad.data, s.n * s.c, s.plane(), alpha_,
                                         eps_, weight);
  }

 private:
  float alpha_, eps_;
};

// ---- activation maximization -------------------------------------------------------------
class ActivationTerm final : public Term {
 public:
  ActivationTerm(std::string tap, int channel, int y, int x, float w)
      : tap_(std::move(tap)), c_(channel), y_(y), x_(x) {
    require(channel >= 0, "activation term at " + tap_ + ": channel must be >= 0");
    neuron_ = y >= 0 && x >= 0;
    weight = w;
    label = "activation:" + tap_ + ":" + std::to_string(channel) +
            (neuron_ ? "@" + std::to_string(y) + "," + std::to_string(x) : "");
  }
  std::string kind() const override { return "activation"; }
  std::vector<std::string> taps() const override { return {tap_}; }
  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_, label, "activation");
    const View& g = find_tap(tap_grads, tap_, label, "gradient");
    const Shape& s = a.shape;
    require(c_ < s.c, label + ": channel " + std::to_string(c_) + " outside the layer's " +
                          std::to_string(s.c) + " channels");
    require(!neuron_ || (y_ < s.h && x_ < s.w), label + ": position outside the layer's " +
                                                    std::to_string(s.h) + "x" +
                                                    std::to_string(s.w) + " map");
    const Device d = a.device;
    Backend& be = backend(d);
    const size_t plane = s.plane();
    const size_t count = neuron_ ? 1 : plane;
    if (ones_.numel() != count || ones_.device() != d)
      ones_ = Tensor::full({1, 1, 1, int(count)}, 1.f, d);
    const size_t at = neuron_ ? size_t(y_) * s.w + x_ : 0;
    double total = 0.0;
    for (int n = 0; n < s.n; ++n) {
      const size_t off = (size_t(n) * s.c + c_) * plane + at;
      total -= be.sum(a.data + off, count) / double(count);
      be.axpby(-weight / float(count), ones_.data(), 1.f, g.data + off, count);
    }
    return weight * total;
  }

 private:
  std::string tap_;
  int c_, y_, x_;
  bool neuron_ = false;
  Tensor ones_;
};

class DreamTerm final : public Term {
 public:
  DreamTerm(std::string tap, float w) : tap_(std::move(tap)) {
    weight = w;
    label = "dream:" + tap_;
  }
  std::string kind() const override { return "dream"; }
  std::vector<std::string> taps() const override { return {tap_}; }
  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_, label, "activation");
    const View& g = find_tap(tap_grads, tap_, label, "gradient");
    Backend& be = backend(a.device);
    const double v = be.sum_squares(a.data, a.numel());
    be.axpby(-weight, a.data, 1.f, g.data, a.numel());
    return -0.5 * weight * v;
  }

 private:
  std::string tap_;
};

class CaricatureTerm final : public Term {
 public:
  CaricatureTerm(std::string tap, const View& target, float w) : tap_(std::move(tap)) {
    require_single(target, "caricature target at " + tap_);
    target_ = copy_of(target);
    double ss = 0.0;
    for (float v : host_copy(target)) ss += double(v) * v;
    require(ss > 0.0, "caricature target at " + tap_ + " is zero");
    norm_ = std::sqrt(ss);
    weight = w;
    label = "caricature:" + tap_;
  }
  std::string kind() const override { return "caricature"; }
  std::vector<std::string> taps() const override { return {tap_}; }
  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    const View& a = find_tap(acts, tap_, label, "activation");
    const View& g = find_tap(tap_grads, tap_, label, "gradient");
    const Shape& ts = target_.shape();
    require(a.shape.c == ts.c && a.shape.h == ts.h && a.shape.w == ts.w,
            label + ": activation " + a.shape.str() + " does not match the target " + ts.str());
    Backend& be = backend(a.device);
    const float* t = on_device(target_, a.device).data();
    const size_t count = ts.numel();
    double total = 0.0;
    for (int n = 0; n < a.shape.n; ++n) {
      const size_t off = size_t(n) * count;
      total -= be.dot(a.data + off, t, count) / norm_;
      be.axpby(float(-weight / norm_), t, 1.f, g.data + off, count);
    }
    return weight * total;
  }

 private:
  std::string tap_;
  double norm_ = 1.0;
  Tensor target_;
};

// ---- attribute: linear classifier on concatenated same-layer B-CNN descriptors -----------
class AttributeTerm final : public Term {
 public:
  AttributeTerm(std::vector<std::string> taps, const View& w, const View& b, int target, float wt,
                float eps)
      : taps_(std::move(taps)), target_(target), eps_(eps) {
    require(!taps_.empty(), "attribute term: no layers given");
    k_ = int(b.numel());
    require(k_ >= 1 && w.numel() % size_t(k_) == 0 && w.numel() > 0,
            "attribute term: classifier weights " + w.shape.str() + " and bias " + b.shape.str() +
                " do not form a (K, D) matrix and a (K) vector");
    d_ = w.numel() / size_t(k_);
    require(target >= 0 && target < k_, "attribute term: class " + std::to_string(target) +
                                            " outside 0.." + std::to_string(k_ - 1));
    w_ = copy_of(w);
    b_ = copy_of(b);
    weight = wt;
    label = "attribute:" + std::to_string(target);
  }
  std::string kind() const override { return "attribute"; }
  std::vector<std::string> taps() const override { return taps_; }

  double evaluate(const TapViews& acts, const TapViews& tap_grads, const View&,
                  const View&) override {
    std::vector<View> a, g;
    size_t dim = 0, biggest = 0;
    for (const auto& t : taps_) {
      a.push_back(find_tap(acts, t, label, "activation"));
      g.push_back(find_tap(tap_grads, t, label, "gradient"));
      const size_t cc = size_t(a.back().shape.c) * a.back().shape.c;
      dim += cc;
      biggest = std::max(biggest, cc);
      require(a.back().shape.n == a.front().shape.n, label + ": batch sizes of the layers differ");
    }
    require(dim == d_, label + ": the layers' descriptors have " + std::to_string(dim) +
                           " dimensions, the classifier expects " + std::to_string(d_));
    const Device d = a.front().device;
    Backend& be = backend(d);
    const float* w = on_device(w_, d).data();
    const float* bias = on_device(b_, d).data();
    const int D = int(d_);
    ensure(y_, {1, 1, 1, D}, d);
    ensure(z_, {1, 1, 1, D}, d);
    ensure(dz_, {1, 1, 1, D}, d);
    ensure(logits_, {1, 1, 1, k_}, d);
    ensure(dlogits_, {1, 1, 1, k_}, d);
    ensure(pool_, {1, 1, 1, int(biggest)}, d);
    std::vector<double> norms(taps_.size());
    double total = 0.0;
    for (int n = 0; n < a.front().shape.n; ++n) {
      size_t off = 0;
      for (size_t t = 0; t < taps_.size(); ++t) {
        const int c = a[t].shape.c, m = positions(a[t].shape);
        const size_t cc = size_t(c) * c;
        const float* f = a[t].data + size_t(n) * c * m;
        be.bilinear_pool_fwd(f, f, pool_.data(), c, c, m);
        norms[t] = std::sqrt(be.bilinear_ssqrt_fwd(pool_.data(), y_.data() + off, cc, eps_));
        be.axpby(float(1.0 / norms[t]), y_.data() + off, 0.f, z_.data() + off, cc);
        off += cc;
      }
      be.linear_fwd(z_.data(), w, bias, logits_.data(), 1, D, k_);
      total += be.softmax_xent_loss_grad(logits_.data(), dlogits_.data(), k_, target_, weight);
      be.linear_bwd_data(dlogits_.data(), w, dz_.data(), 1, D, k_);
      off = 0;
      for (size_t t = 0; t < taps_.size(); ++t) {
        const int c = a[t].shape.c, m = positions(a[t].shape);
        const size_t cc = size_t(c) * c;
        const float* f = a[t].data + size_t(n) * c * m;
        float* df = g[t].data + size_t(n) * c * m;
        const double z_dot_g = be.dot(y_.data() + off, dz_.data() + off, cc) / norms[t];
        be.bilinear_ssqrt_bwd(y_.data() + off, nullptr, dz_.data() + off, pool_.data(), cc,
                              norms[t], z_dot_g, 1.f);
        be.bilinear_pool_bwd(pool_.data(), f, f, df, df, c, c, m);
        off += cc;
      }
    }
    return weight * total;
  }

 private:
  std::vector<std::string> taps_;
  int target_ = 0, k_ = 0;
  size_t d_ = 0;
  float eps_;
  Tensor w_, b_, y_, z_, dz_, logits_, dlogits_, pool_;
};

}  // namespace

// ---- descriptors ---------------------------------------------------------------------------
Tensor gram_matrix(const View& features) {
  require_single(features, "gram_matrix");
  const int c = features.shape.c;
  Tensor g({1, 1, c, c}, features.device);
  backend(features.device).gram_fwd(features.data, g.data(), c, positions(features.shape));
  return g;
}

Tensor bcnn_descriptor(const View& a, const View& b, float eps) {
  require_single(a, "bcnn_descriptor");
  require_single(b, "bcnn_descriptor");
  require(a.shape.h == b.shape.h && a.shape.w == b.shape.w,
          "bcnn_descriptor: the two layers must have the same resolution (" + a.shape.str() +
              " vs " + b.shape.str() + ")");
  require(a.device == b.device, "bcnn_descriptor: the two layers are on different devices");
  require(eps > 0.f, "bcnn_descriptor: eps must be > 0");
  const int ca = a.shape.c, cb = b.shape.c;
  const size_t cc = size_t(ca) * cb;
  Backend& be = backend(a.device);
  Tensor pool({1, 1, ca, cb}, a.device), z({1, 1, ca, cb}, a.device);
  be.bilinear_pool_fwd(a.data, a.data == b.data ? a.data : b.data, pool.data(), ca, cb,
                       positions(a.shape));
  const double norm = std::sqrt(be.bilinear_ssqrt_fwd(pool.data(), z.data(), cc, eps));
  be.axpby(float(1.0 / norm), z.data(), 0.f, z.data(), cc);
  return z;
}

// ---- factories -----------------------------------------------------------------------------
std::unique_ptr<Term> make_gram_term(const std::string& tap, const View& target_features,
                                     float weight) {
  return std::make_unique<GramTerm>(tap, target_features, weight);
}
std::unique_ptr<Term> make_bcnn_term(const std::string& tap_a, const std::string& tap_b,
                                     const View& target_a, const View& target_b, float weight,
                                     float eps) {
  require(eps > 0.f, "bcnn term: eps must be > 0");
  return std::make_unique<BcnnTerm>(tap_a, tap_b, target_a, target_b, weight, eps);
}
std::unique_ptr<Term> make_feature_term(const std::string& tap, const View& target,
                                        const View* mask, float weight) {
  return std::make_unique<FeatureTerm>(tap, target, mask, weight);
}
std::unique_ptr<Term> make_tv_term(float beta, float weight, float eps) {
  return std::make_unique<TvTerm>(beta, weight, eps);
}
std::unique_ptr<Term> make_alpha_term(float alpha, float weight, float eps) {
  return std::make_unique<AlphaTerm>(alpha, weight, eps);
}
std::unique_ptr<Term> make_activation_term(const std::string& tap, int channel, int y, int x,
                                           float weight) {
  return std::make_unique<ActivationTerm>(tap, channel, y, x, weight);
}
std::unique_ptr<Term> make_dream_term(const std::string& tap, float weight) {
  return std::make_unique<DreamTerm>(tap, weight);
}
std::unique_ptr<Term> make_caricature_term(const std::string& tap, const View& target,
                                           float weight) {
  return std::make_unique<CaricatureTerm>(tap, target, weight);
}
std::unique_ptr<Term> make_attribute_term(const std::vector<std::string>& taps, const View& w,
                                          const View& b, int target_class, float weight,
                                          float eps) {
  require(eps > 0.f, "attribute term: eps must be > 0");
  return std::make_unique<AttributeTerm>(taps, w, b, target_class, weight, eps);
}

// ---- Objective -----------------------------------------------------------------------------
void Objective::add(std::unique_ptr<Term> term) {
  require(term != nullptr, "Objective::add: null term");
  terms_.push_back(std::move(term));
}

std::vector<std::string> Objective::taps() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& t : terms_)
    for (const auto& name : t->taps())
      if (seen.insert(name).second) out.push_back(name);
  return out;
}

double Objective::evaluate(Network* net, const View& image, Tensor& grad,
                           std::vector<double>* per_term) {
  require(!terms_.empty(), "Objective::evaluate: the objective has no terms");
  const Device d = image.device;
  Backend& be = backend(d);
  const std::vector<std::string> tap_list = taps();
  if (net == nullptr && !tap_list.empty())
    throw Error("Objective::evaluate: terms read network taps (" + tap_list.front() +
                ") but no network was given");
  TapViews acts, grads;
  if (!tap_list.empty()) {
    net->forward(image, tap_list);
    for (const auto& tap : tap_list) {
      const Tensor& a = net->tap(tap);
      Tensor& g = tap_grads_[tap];
      ensure(g, a.shape(), d);
      be.fill(g.data(), 0.f, g.numel());
      acts[tap] = a.view();
      grads[tap] = g.view();
    }
  }
  bool priors = false;
  for (const auto& t : terms_) priors = priors || t->taps().empty();
  View prior_view;
  if (priors) {
    ensure(prior_grad_, image.shape, d);
    be.fill(prior_grad_.data(), 0.f, prior_grad_.numel());
    prior_view = prior_grad_.view();
  }
  if (per_term) per_term->clear();
  double total = 0.0;
  for (const auto& t : terms_) {
    const double v = t->evaluate(acts, grads, image, prior_view);
    total += v;
    if (per_term) per_term->push_back(v);
  }
  if (!tap_list.empty()) {
    net->backward(grads, grad);
    if (priors) be.axpby(1.f, prior_grad_.data(), 1.f, grad.data(), grad.numel());
  } else {
    ensure(grad, image.shape, d);
    be.copy(grad.data(), prior_grad_.data(), grad.numel());
  }
  return total;
}

}  // namespace preimage
