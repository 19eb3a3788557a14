// Objective terms other than the texture statistics (feature, TV^β and α-norm priors, activation,
// DeepDream, caricature, attribute) and Objective::evaluate. Every term: value and gradient on
// the CPU and on the CUDA kernels (host simulator) against a double-precision reference and its
// central differences; the prior kernels (kernels/priors.cu) against engine/cpu/priors.cpp in all
// three simulator thread orders; a whole objective through a random-weight VGG-19 on both
// backends. Tolerance: relative 1e-5 unless stated.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"
#include "test/device_buffer.h"
#include "test/term_harness.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::random_vector;

namespace {

constexpr double kTol = 1e-5;
const Device kDevices[] = {Device::CPU, Device::CUDA};

std::vector<double> scaled(const std::vector<double>& v, double s) {
  std::vector<double> out(v);
  for (auto& x : out) x *= s;
  return out;
}

// Σ ((x[i,j+1]−x[i,j])² + (x[i+1,j]−x[i,j])² + eps)^(β/2) over planes, differences past the
// border 0.
double tv_ref(const std::vector<double>& x, int planes, int h, int w, double beta, double eps) {
  double e = 0;
  for (int p = 0; p < planes; ++p)
    for (int i = 0; i < h; ++i)
      for (int j = 0; j < w; ++j) {
        const double* xp = x.data() + size_t(p) * h * w;
        const double v = xp[i * w + j];
        const double a = j + 1 < w ? xp[i * w + j + 1] - v : 0.0;
        const double b = i + 1 < h ? xp[(i + 1) * w + j] - v : 0.0;
        e += std::pow(a * a + b * b + eps, beta / 2);
      }
  return e;
}

double alpha_ref(const std::vector<double>& x, int planes, int plane, double alpha, double eps) {
  double e = 0;
  for (int p = 0; p < planes; ++p) {
    double mean = 0;
    for (int q = 0; q < plane; ++q) mean += x[size_t(p) * plane + q];
    mean /= plane;
    for (int q = 0; q < plane; ++q) {
      const double d = x[size_t(p) * plane + q] - mean;
      e += alpha < 2 ? std::pow(d * d + eps, alpha / 2) : std::pow(std::fabs(d), alpha);
    }
  }
  return e;
}

// Same-layer B-CNN descriptor of f (c×m), flattened, in double.
std::vector<double> bcnn_ref(const double* f, int c, int m, double eps) {
  std::vector<double> y(size_t(c) * c);
  double n2 = 0;
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j) {
      double b = 0;
      for (int p = 0; p < m; ++p) b += f[size_t(i) * m + p] * f[size_t(j) * m + p];
      b /= m;
      const double r = std::sqrt(std::fabs(b) + eps);
      y[size_t(i) * c + j] = b < 0 ? -r : r;
      n2 += r * r;
    }
  for (auto& v : y) v /= std::sqrt(n2);
  return y;
}

}  // namespace

TEST_CASE("objective tv prior gradient", "[objective][grad]") {
  const Shape s{2, 3, 5, 6};
  const auto x = test::random_tensor(s, 71, 0.f, 1.f);
  const auto xd = test::to_double(x.data);
  for (float beta : {1.f, 1.5f, 2.f, 3.f}) {
    const float eps = 1e-3f;
    const double e = tv_ref(xd, 6, 5, 6, beta, eps);
    const auto g = test::central_differences(
        xd, 1e-5, [&](const std::vector<double>& v) { return tv_ref(v, 6, 5, 6, beta, eps); });
    for (Device d : kDevices) {
      INFO("beta " << beta << " " << device_name(d));
      auto term = make_tv_term(beta, 0.5f, eps);
      const auto r = test::run_term(*term, d, {}, &x);
      CHECK(r.value == Approx(0.5 * e).epsilon(kTol));
      CHECK(max_rel_error(r.image_grad, scaled(g, 0.5)) <= kTol);
    }
  }
  CHECK_THROWS_AS(make_tv_term(0.5f, 1.f), Error);
  CHECK_THROWS_AS(make_tv_term(1.f, 1.f, 0.f), Error);
}

TEST_CASE("objective alpha prior gradient", "[objective][grad]") {
  const Shape s{2, 3, 4, 7};
  const auto x = test::random_tensor(s, 72, 0.f, 1.f);
  const auto xd = test::to_double(x.data);
  for (float alpha : {1.f, 1.5f, 2.f, 3.f, 6.f}) {
    const float eps = 1e-3f;
    const double e = alpha_ref(xd, 6, 28, alpha, eps);
    const auto g = test::central_differences(
        xd, 1e-5, [&](const std::vector<double>& v) { return alpha_ref(v, 6, 28, alpha, eps); });
    for (Device d : kDevices) {
      INFO("alpha " << alpha << " " << device_name(d));
      auto term = make_alpha_term(alpha, 2.f, eps);
      const auto r = test::run_term(*term, d, {}, &x);
      CHECK(r.value == Approx(2.0 * e).epsilon(kTol));
      CHECK(max_rel_error(r.image_grad, scaled(g, 2.0)) <= kTol);
    }
  }
  CHECK_THROWS_AS(make_alpha_term(0.9f, 1.f), Error);
}

// Values: sums of 37K float terms; the per-pixel powf/contraction can differ by an ulp between
// the two builds, hence 1e-8 relative on the sums.
TEST_CASE("objective prior kernels vs cpu", "[objective][kernels]") {
  preimage::kernels::Workspace ws;  // the launchers' device scratch
  const int planes = 6, h = 67, w = 93;
  const size_t n = size_t(planes) * h * w;
  const auto x = random_vector(n, 81, 0.f, 1.f);
  const auto seed = random_vector(n, 82);
  DeviceBuffer d_x(x), d_g(n);
  for (float beta : {1.f, 2.f, 2.5f}) {
    auto ref = seed;
    const double v_ref = cpu::tv_loss_grad(x.data(), ref.data(), planes, h, w, beta, 1e-4f, 0.3f);
    for_each_schedule([&](const char* order) {
      INFO("tv beta " << beta << " " << order);
      d_g.upload(seed);
      CHECK(kernels::tv_loss_grad(ws, d_x.get(), d_g.get(), planes, h, w, beta, 1e-4f, 0.3f) ==
            Approx(v_ref).epsilon(1e-8));
      CHECK(max_rel_error(d_g.download(), ref) <= 1e-6);
    });
  }
  for (float alpha : {1.f, 2.f, 6.f}) {
    auto ref = seed;
    const double v_ref =
        cpu::alpha_loss_grad(x.data(), ref.data(), planes, size_t(h) * w, alpha, 1e-4f, 0.7f);
    for_each_schedule([&](const char* order) {
      INFO("alpha " << alpha << " " << order);
      d_g.upload(seed);
      CHECK(kernels::alpha_loss_grad(ws, d_x.get(), d_g.get(), planes, size_t(h) * w, alpha, 1e-4f,
                                     0.7f) == Approx(v_ref).epsilon(1e-8));
      CHECK(max_rel_error(d_g.download(), ref) <= 1e-6);
    });
  }
}

TEST_CASE("objective feature term gradient with and without mask", "[objective][grad]") {
  const Shape s{2, 4, 3, 5};
  const auto f = test::random_tensor(s, 91);
  const auto t = test::random_tensor({1, 4, 3, 5}, 92);
  const auto mask = test::random_tensor({1, 1, 3, 5}, 93, 0.f, 1.f);
  const auto td = test::to_double(t.data);
  for (bool masked : {false, true}) {
    auto ref = [&](const std::vector<double>& x) {
      double num = 0, den = 0;
      for (size_t i = 0; i < td.size(); ++i) {
        const double m = masked ? mask.data[i % 15] : 1.0;
        den += m * td[i] * td[i];
        for (int n = 0; n < 2; ++n) {
          const double dd = x[n * td.size() + i] - td[i];
          num += m * dd * dd;
        }
      }
      return num / den;
    };
    const auto fd = test::to_double(f.data);
    const double e = ref(fd);
    const auto g = test::central_differences(fd, 1e-5, ref);
    for (Device d : kDevices) {
      INFO((masked ? "masked " : "") << device_name(d));
      const Tensor tt = Tensor::from_vector(t.shape, t.data, d);
      const Tensor mt = Tensor::from_vector(mask.shape, mask.data, d);
      const View mv = mt.view();
      auto term = make_feature_term("conv4_2", tt.view(), masked ? &mv : nullptr, 3.f);
      const auto r = test::run_term(*term, d, {{"conv4_2", f}});
      CHECK(r.value == Approx(3.0 * e).epsilon(kTol));
      CHECK(max_rel_error(r.tap_grads.at("conv4_2"), scaled(g, 3.0)) <= kTol);
    }
  }
  const Tensor tt = Tensor::from_vector(t.shape, t.data);
  const Tensor bad = Tensor::zeros({1, 1, 3, 4});
  const View bv = bad.view();
  CHECK_THROWS_AS(make_feature_term("conv4_2", tt.view(), &bv), Error);
}

TEST_CASE("objective activation terms gradient", "[objective][grad]") {
  const Shape s{2, 4, 3, 5};
  const auto f = test::random_tensor(s, 101);
  const auto fd = test::to_double(f.data);
  struct Case {
    int channel, y, x;
    const char* name;
  };
  for (const Case& c : {Case{2, -1, -1, "channel mean"}, Case{1, 2, 3, "neuron"}}) {
    auto ref = [&](const std::vector<double>& v) {
      double e = 0;
      for (int n = 0; n < 2; ++n) {
        const double* p = v.data() + (size_t(n) * 4 + c.channel) * 15;
        if (c.y >= 0) {
          e -= p[c.y * 5 + c.x];
        } else {
          for (int q = 0; q < 15; ++q) e -= p[q] / 15.0;
        }
      }
      return e;
    };
    const auto g = test::central_differences(fd, 1e-5, ref);
    for (Device d : kDevices) {
      INFO(c.name << " " << device_name(d));
      auto term = make_activation_term("relu5_1", c.channel, c.y, c.x, 0.5f);
      const auto r = test::run_term(*term, d, {{"relu5_1", f}});
      CHECK(r.value == Approx(0.5 * ref(fd)).epsilon(kTol));
      CHECK(max_rel_error(r.tap_grads.at("relu5_1"), scaled(g, 0.5)) <= kTol);
    }
  }
  // class score: an fc tap (1, K, 1, 1), channel = class
  const auto logits = test::random_tensor({1, 10, 1, 1}, 102);
  for (Device d : kDevices) {
    auto term = make_activation_term("fc8", 7);
    const auto r = test::run_term(*term, d, {{"fc8", logits}});
    CHECK(r.value == Approx(-logits.data[7]).epsilon(kTol));
    std::vector<float> want(10, 0.f);
    want[7] = -1.f;
    CHECK(r.tap_grads.at("fc8") == want);
    auto outside = make_activation_term("fc8", 10);
    CHECK_THROWS_AS(test::run_term(*outside, d, {{"fc8", logits}}), Error);
  }
}

TEST_CASE("objective dream and caricature gradients", "[objective][grad]") {
  const Shape s{2, 4, 3, 5};
  const auto f = test::random_tensor(s, 111);
  const auto t = test::random_tensor({1, 4, 3, 5}, 112);
  const auto fd = test::to_double(f.data), td = test::to_double(t.data);
  auto dream = [&](const std::vector<double>& v) {
    double e = 0;
    for (double x : v) e -= 0.5 * x * x;
    return e;
  };
  double tn = 0;
  for (double x : td) tn += x * x;
  tn = std::sqrt(tn);
  auto caricature = [&](const std::vector<double>& v) {
    double e = 0;
    for (size_t i = 0; i < v.size(); ++i) e -= v[i] * td[i % td.size()] / tn;
    return e;
  };
  const auto gd = test::central_differences(fd, 1e-5, dream);
  const auto gc = test::central_differences(fd, 1e-5, caricature);
  for (Device d : kDevices) {
    INFO(device_name(d));
    auto term = make_dream_term("relu4_1", 2.f);
    auto r = test::run_term(*term, d, {{"relu4_1", f}});
    CHECK(r.value == Approx(2.0 * dream(fd)).epsilon(kTol));
    CHECK(max_rel_error(r.tap_grads.at("relu4_1"), scaled(gd, 2.0)) <= kTol);
    const Tensor tt = Tensor::from_vector(t.shape, t.data, d);
    auto car = make_caricature_term("relu4_1", tt.view(), 0.25f);
    r = test::run_term(*car, d, {{"relu4_1", f}});
    CHECK(r.value == Approx(0.25 * caricature(fd)).epsilon(kTol));
    CHECK(max_rel_error(r.tap_grads.at("relu4_1"), scaled(gc, 0.25)) <= kTol);
  }
}

TEST_CASE("objective attribute term gradient", "[objective][grad]") {
  // z = [bcnn(relu1_1) (3×3), bcnn(relu2_1) (4×4)] → D = 25, K = 5 classes, target class 2.
  const auto f1 = test::random_tensor({1, 3, 4, 5}, 121);
  const auto f2 = test::random_tensor({1, 4, 2, 3}, 122);
  const int k = 5, dim = 25, target = 2;
  const auto w = test::random_tensor({1, 1, k, dim}, 123, -3.f, 3.f);
  const auto b = test::random_tensor({1, 1, 1, k}, 124);
  const double eps = 1e-8;
  auto loss = [&](const std::vector<double>& x1, const std::vector<double>& x2) {
    std::vector<double> z = bcnn_ref(x1.data(), 3, 20, eps);
    const auto z2 = bcnn_ref(x2.data(), 4, 6, eps);
    z.insert(z.end(), z2.begin(), z2.end());
    std::vector<double> s(k);
    double mx = -1e300;
    for (int c = 0; c < k; ++c) {
      s[c] = b.data[c];
      for (int i = 0; i < dim; ++i) s[c] += w.data[size_t(c) * dim + i] * z[i];
      mx = std::max(mx, s[c]);
    }
    double sum = 0;
    for (double v : s) sum += std::exp(v - mx);
    return mx + std::log(sum) - s[target];
  };
  const auto x1 = test::to_double(f1.data), x2 = test::to_double(f2.data);
  const double e = loss(x1, x2);
  const auto g1 = test::central_differences(
      x1, 1e-5, [&](const std::vector<double>& v) { return loss(v, x2); });
  const auto g2 = test::central_differences(
      x2, 1e-5, [&](const std::vector<double>& v) { return loss(x1, v); });
  for (Device d : kDevices) {
    INFO(device_name(d));
    const Tensor wt = Tensor::from_vector(w.shape, w.data, d);
    const Tensor bt = Tensor::from_vector(b.shape, b.data, d);
    auto term = make_attribute_term({"relu1_1", "relu2_1"}, wt.view(), bt.view(), target, 0.5f);
    const auto r = test::run_term(*term, d, {{"relu1_1", f1}, {"relu2_1", f2}});
    CHECK(r.value == Approx(0.5 * e).epsilon(kTol));
    CHECK(max_rel_error(r.tap_grads.at("relu1_1"), scaled(g1, 0.5)) <= kTol);
    CHECK(max_rel_error(r.tap_grads.at("relu2_1"), scaled(g2, 0.5)) <= kTol);
    auto wrong = make_attribute_term({"relu1_1"}, wt.view(), bt.view(), target);
    CHECK_THROWS_AS(test::run_term(*wrong, d, {{"relu1_1", f1}}), Error);
  }
}

TEST_CASE("objective evaluate through vgg19 on cpu and cuda", "[objective]") {
  const Shape img{1, 3, 18, 20};
  const auto x = test::random_tensor(img, 131, 0.f, 1.f);
  const auto style = test::random_tensor(img, 132, 0.f, 1.f);
  struct Run {
    double value;
    std::vector<double> per_term;
    std::vector<float> grad;
  };
  std::vector<Run> runs;
  for (Device d : kDevices) {
    INFO(device_name(d));
    Network net(random_weights(Arch::VGG19, 7), d);
    const Tensor st = Tensor::from_vector(img, style.data, d);
    net.forward(st.view(), {"relu1_1", "relu1_2", "relu2_1"});
    Objective obj;
    obj.add(make_gram_term("relu1_1", net.tap("relu1_1").view(), 1e3f));
    obj.add(
        make_bcnn_term("relu2_1", "relu2_1", net.tap("relu2_1").view(), net.tap("relu2_1").view()));
    obj.add(make_feature_term("relu1_2", net.tap("relu1_2").view()));
    obj.add(make_activation_term("relu2_1", 5, -1, -1, 0.1f));
    obj.add(make_tv_term(2.f, 1e-2f));
    obj.add(make_alpha_term(6.f, 1e-2f));
    CHECK(obj.taps() == std::vector<std::string>{"relu1_1", "relu2_1", "relu1_2"});
    const Tensor xt = Tensor::from_vector(img, x.data, d);
    Tensor grad;
    std::vector<double> per;
    const double v = obj.evaluate(net, xt.view(), grad, &per);
    REQUIRE(per.size() == 6);
    double sum = 0;
    for (double p : per) sum += p;
    CHECK(v == Approx(sum).epsilon(1e-12));
    CHECK(grad.shape() == img);
    runs.push_back({v, per, grad.to_vector()});
    if (d == Device::CPU) {
      // Directional derivative along the gradient, FP32 forward: loose tolerance (1e-2).
      auto g = grad.to_vector();
      double gn = 0;
      for (float q : g) gn += double(q) * q;
      gn = std::sqrt(gn);
      const double h = 1e-2;
      std::vector<float> xp(x.data), xm(x.data);
      for (size_t i = 0; i < g.size(); ++i) {
        xp[i] += float(h * g[i] / gn);
        xm[i] -= float(h * g[i] / gn);
      }
      Tensor gp, gm;
      const double ep = obj.evaluate(net, Tensor::from_vector(img, xp, d).view(), gp);
      const double em = obj.evaluate(net, Tensor::from_vector(img, xm, d).view(), gm);
      CHECK((ep - em) / (2 * h) == Approx(gn).epsilon(1e-2));
    }
  }
  CHECK(runs[1].value == Approx(runs[0].value).epsilon(1e-4));
  for (size_t i = 0; i < runs[0].per_term.size(); ++i) {
    INFO("term " << i);
    CHECK(runs[1].per_term[i] == Approx(runs[0].per_term[i]).epsilon(1e-4));
  }
  CHECK(max_rel_error(runs[1].grad, runs[0].grad) <= 1e-4);
}

TEST_CASE("objective with priors only and error messages", "[objective]") {
  const Shape img{1, 3, 7, 9};
  const auto x = test::random_tensor(img, 141, 0.f, 1.f);
  Network net(random_weights(Arch::VGG19, 1), Device::CPU);
  Objective obj;
  Tensor grad;
  const Tensor xt = Tensor::from_vector(img, x.data);
  CHECK_THROWS_AS(obj.evaluate(net, xt.view(), grad), Error);  // no terms
  obj.add(make_tv_term(2.f, 1.f));
  const double v = obj.evaluate(net, xt.view(), grad);
  std::vector<float> ref(img.numel(), 0.f);
  const double v_ref = cpu::tv_loss_grad(x.data.data(), ref.data(), 3, 7, 9, 2.f, 1e-4f, 1.f);
  CHECK(v == Approx(v_ref).epsilon(1e-12));
  CHECK(max_rel_error(grad.to_vector(), ref) == 0.0);
  // Without a network (descriptor inversion): priors alone evaluate, the same value and
  // gradient; a term that reads a tap is refused with an error naming it.
  Tensor grad_nn;
  CHECK(obj.evaluate(nullptr, xt.view(), grad_nn) == v);
  CHECK(max_rel_error(grad_nn.to_vector(), ref) == 0.0);
  Objective with_tap;
  with_tap.add(make_dream_term("relu2_1"));
  try {
    with_tap.evaluate(nullptr, xt.view(), grad_nn);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("relu2_1") != std::string::npos);
  }
  // a term whose layer the activations lack names it
  auto term = make_dream_term("relu3_1");
  try {
    test::run_term(*term, Device::CPU, {{"relu1_1", test::random_tensor({1, 2, 3, 3}, 1)}});
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("relu3_1") != std::string::npos);
  }
}
