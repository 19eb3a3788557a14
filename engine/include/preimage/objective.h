// Pre-image objectives: a weighted sum of terms over named network taps plus image priors.
// Each term returns its value and adds its gradient (w.r.t. the tap activations it reads, or
// w.r.t. the image for priors) on the network's device; Objective::evaluate runs the network
// forward, the terms, and one backward pass, and returns E(x) and dE/dx. Only scalars cross to
// the host.
//
// Terms (see docs/objectives.md for the formulas and normalizations):
//   gram         Gatys: E = Σ(G − Ĝ)² / (4 N² M²), G = F Fᵀ (N channels, M positions);
//                Ĝ is rescaled by M/M_target when the target image has another size
//   bcnn         Lin & Maji: z = normalize(ssqrt(B)), B = (1/M) Σ f_a f_bᵀ; E = ‖z − ẑ‖²
//                (one term per layer pair; a multi-layer texture loss is a sum of terms)
//   feature      Mahendran & Vedaldi: Σ m(Φ − Φ₀)² / Σ m Φ₀² (mask m: H×W, broadcast over
//                channels; m = 1 without one); also Gatys' content loss
//   tv           TV^β: Σ ((∂x)² + (∂y)² + ε)^(β/2)  (smoothed by ε for β < 2)
//   alpha        bounded α-norm: Σ |x − mean_c|^α  (|·| smoothed by ε for α < 2)
//   activation   −mean of a channel / −a neuron / −a class score (to maximize)
//   dream        −½‖Φ‖² (DeepDream, maximized)
//   caricature   −⟨Φ, Φ₀⟩ / ‖Φ₀‖
//   attribute    −log softmax(W z + b)[c] for a linear classifier on B-CNN features
// Tap terms sum over the images of a batch (each image against the same target); targets are
// single images (1,C,H,W).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "preimage/network.h"
#include "preimage/tensor.h"

namespace preimage {

// Activations by tap name (views into the network's buffers) and gradient accumulators.
using TapViews = std::map<std::string, View>;

class Term {
 public:
  virtual ~Term() = default;
  virtual std::string kind() const = 0;               // "gram", "tv", ...
  virtual std::vector<std::string> taps() const = 0;  // empty for image priors
  // Returns the (weighted) value; adds weight·dE/dA into tap_grads[tap] (already sized, may
  // hold other terms' contributions) and weight·dE/dx into image_grad for priors.
  virtual double evaluate(const TapViews& acts, const TapViews& tap_grads, const View& image,
                          const View& image_grad) = 0;
  float weight = 1.f;
  std::string label;  // for per-term loss reports, e.g. "gram:relu1_1"
};

class Objective {
 public:
  void add(std::unique_ptr<Term> term);
  const std::vector<std::unique_ptr<Term>>& terms() const { return terms_; }
  std::vector<std::string> taps() const;

  // E(x) and dE/dx (grad is resized to x's shape). per_term, if given, receives each term's
  // weighted value in order.
  double evaluate(Network& net, const View& image, Tensor& grad,
                  std::vector<double>* per_term = nullptr) {
    return evaluate(&net, image, grad, per_term);
  }
  // The same; net may be null when no term reads a network tap (image priors, descriptor
  // terms). Throws Error when a term needs taps and there is no network.
  double evaluate(Network* net, const View& image, Tensor& grad,
                  std::vector<double>* per_term = nullptr);

 private:
  std::vector<std::unique_ptr<Term>> terms_;
  std::map<std::string, Tensor> tap_grads_;  // reused across evaluations
  Tensor prior_grad_;                        // image-prior gradients, added after backward
};

// ---- texture statistics (also used by search and attributes) -----------------------------
// Gram matrix G = F Fᵀ of a tap activation (1,C,H,W) → (1,1,C,C) on the same device.
Tensor gram_matrix(const View& features);
// B-CNN descriptor z of one or two taps at the same resolution → (1,1,Ca,Cb) (signed sqrt,
// L2-normalized).
Tensor bcnn_descriptor(const View& a, const View& b, float eps = 1e-8f);

// ---- term factories ------------------------------------------------------------------------
// Targets are computed from the given activation(s) at construction (moved to the device).
std::unique_ptr<Term> make_gram_term(const std::string& tap, const View& target_features,
                                     float weight = 1.f);
std::unique_ptr<Term> make_bcnn_term(const std::string& tap_a, const std::string& tap_b,
                                     const View& target_a, const View& target_b, float weight = 1.f,
                                     float eps = 1e-8f);
std::unique_ptr<Term> make_feature_term(const std::string& tap, const View& target,
                                        const View* mask = nullptr, float weight = 1.f);
std::unique_ptr<Term> make_tv_term(float beta, float weight, float eps = 1e-4f);
std::unique_ptr<Term> make_alpha_term(float alpha, float weight, float eps = 1e-4f);
// channel >= 0; (y, x) < 0 means the spatial mean of the channel; for fc taps channel = class.
std::unique_ptr<Term> make_activation_term(const std::string& tap, int channel, int y = -1,
                                           int x = -1, float weight = 1.f);
std::unique_ptr<Term> make_dream_term(const std::string& tap, float weight = 1.f);
std::unique_ptr<Term> make_caricature_term(const std::string& tap, const View& target,
                                           float weight = 1.f);
// Linear classifier over the concatenated B-CNN descriptors of the given taps (each tap paired
// with itself): W (K, D), b (K); target class c.
std::unique_ptr<Term> make_attribute_term(const std::vector<std::string>& taps, const View& w,
                                          const View& b, int target_class, float weight = 1.f,
                                          float eps = 1e-8f);

}  // namespace preimage
