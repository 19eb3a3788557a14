// Network wiring: weight and input gradients against finite differences of the network's own
// forward pass, the CUDA backend (the kernels on the host simulator) against the CPU through the
// whole graph, options (avg-pool, guided ReLU), and errors for unknown taps.
#include <catch2/catch.hpp>

#include <cmath>

#include "preimage/error.h"
#include "preimage/network.h"
#include "preimage/weights.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::max_rel_error;
using preimage::test::random_vector;

namespace {

// L = Σ r ⊙ A_tap for a fixed random r: linear in A, so dL/dA = r.
double linear_loss(Network& net, const Tensor& img, const std::string& tap, const Tensor& r) {
  net.forward(img.view(), {tap});
  const auto a = net.tap(tap).to_vector(), rv = r.to_vector();
  double acc = 0;
  for (size_t i = 0; i < a.size(); ++i) acc += double(a[i]) * rv[i];
  return acc;
}

}  // namespace

TEST_CASE("network weight and input gradients vs finite differences", "[network][grad]") {
  Weights w = random_weights(Arch::VGG16, 3);
  Network net(std::move(w), Device::CPU);
  const Shape is{1, 3, 20, 23};
  Tensor img = Tensor::from_vector(is, random_vector(is.numel(), 5, 0.f, 1.f));
  const std::string tap = "relu2_1";
  const Shape ts = net.tap_shape(tap, is);
  Tensor r = Tensor::from_vector(ts, random_vector(ts.numel(), 6));
  net.forward(img.view(), {tap});
  Tensor gimg;
  net.backward({{tap, r.view()}}, gimg, true);
  const auto gi = gimg.to_vector();

  // Input gradient at a few pixels: central differences in float with a step large enough
  // that rounding stays far below the tolerance (the loss is piecewise linear in x).
  for (size_t i : {size_t(7), size_t(300), size_t(1000), size_t(1379)}) {
    // The loss is piecewise linear in x: a step that moves a unit across zero bends the
    // difference quotient, so the analytic value must match the quotient at one of three
    // steps (large enough that float rounding stays below the tolerance); a wrong gradient
    // matches none.
    bool ok = false;
    for (float h : {1e-2f, 3e-3f, 1e-3f}) {
      auto v = img.to_vector();
      v[i] += h;
      const double fp = linear_loss(net, Tensor::from_vector(is, v), tap, r);
      v[i] -= 2 * h;
      const double fm = linear_loss(net, Tensor::from_vector(is, v), tap, r);
      const double fd = (fp - fm) / (2 * h);
      ok = ok || std::abs(gi[i] - fd) <= 2e-2 * std::abs(fd) + 1e-3;
      UNSCOPED_INFO("pixel " << i << " h=" << h << ": analytic " << gi[i] << " vs " << fd);
    }
    CHECK(ok);
  }
  // Weight and bias gradients of conv1_1 and conv2_1.
  for (const std::string layer : {"conv1_1", "conv2_1"}) {
    const auto gw = net.weight_grad(layer).to_vector(), gb = net.bias_grad(layer).to_vector();
    for (size_t i : {size_t(0), size_t(17), size_t(100)}) {
      auto perturbed = [&](float delta, bool bias) {
        Weights w2 = random_weights(Arch::VGG16, 3);
        Tensor& t = bias ? w2.layers[layer].bias : w2.layers[layer].weight;
        auto tv = t.to_vector();
        tv[i % tv.size()] += delta;
        t = Tensor::from_vector(t.shape(), tv);
        Network n2(std::move(w2), Device::CPU);
        return linear_loss(n2, img, tap, r);
      };
      // The loss is piecewise linear in the parameters: a step that moves some unit across
      // zero bends the difference quotient (a bias moves a whole channel), so the analytic
      // value must match the quotient at one of three steps; a wrong gradient matches none.
      auto matches = [&](double analytic, bool bias) {
        for (float h : {1e-2f, 3e-3f, 1e-3f}) {
          const double fd = (perturbed(h, bias) - perturbed(-h, bias)) / (2 * h);
          if (std::abs(analytic - fd) <= 2e-2 * std::abs(fd) + 1e-3) return true;
          UNSCOPED_INFO(layer << (bias ? " bias" : " weight") << " h=" << h << ": analytic "
                              << analytic << " vs central difference " << fd);
        }
        return false;
      };
      CHECK(matches(gw[i], false));
      CHECK(matches(gb[i % gb.size()], true));
    }
  }
}

TEST_CASE("network on simulated CUDA matches the CPU, forward and backward", "[network][cuda]") {
  for (bool avg : {false, true}) {
    DYNAMIC_SECTION((avg ? "avg-pool" : "max-pool")) {
      NetworkOptions opt;
      opt.avg_pool = avg;
      Network cpu_net(random_weights(Arch::VGG19, 1), Device::CPU, opt);
      Network gpu_net(random_weights(Arch::VGG19, 1), Device::CUDA, opt);
      const Shape is{2, 3, 19, 23};
      auto pixels = random_vector(is.numel(), 9, 0.f, 1.f);
      Tensor xc = Tensor::from_vector(is, pixels),
             xg = Tensor::from_vector(is, pixels, Device::CUDA);
      const std::vector<std::string> taps = {"conv1_2", "relu2_1", "pool2", "relu3_1"};
      cpu_net.forward(xc.view(), taps);
      gpu_net.forward(xg.view(), taps);
      std::map<std::string, View> gc, gg;
      std::vector<Tensor> keep;
      for (const auto& t : taps) {
        CHECK(max_rel_error(gpu_net.tap(t).to_vector(), cpu_net.tap(t).to_vector()) <= 1e-5);
        const Shape s = cpu_net.tap(t).shape();
        auto r = random_vector(s.numel(), 10 + keep.size());
        keep.push_back(Tensor::from_vector(s, r));
        gc[t] = keep.back().view();
        keep.push_back(Tensor::from_vector(s, r, Device::CUDA));
        gg[t] = keep.back().view();
      }
      Tensor dc, dg;
      cpu_net.backward(gc, dc, true);
      gpu_net.backward(gg, dg, true);
      CHECK(dg.device() == Device::CUDA);
      CHECK(max_rel_error(dg.to_vector(), dc.to_vector()) <= 1e-5);
      for (const std::string l : {"conv1_1", "conv2_1", "conv3_1"}) {
        CHECK(max_rel_error(gpu_net.weight_grad(l).to_vector(),
                            cpu_net.weight_grad(l).to_vector()) <= 1e-5);
        CHECK(max_rel_error(gpu_net.bias_grad(l).to_vector(), cpu_net.bias_grad(l).to_vector()) <=
              1e-5);
      }
    }
  }
}

TEST_CASE("network guided backprop gives non-negative ReLU gradients", "[network]") {
  NetworkOptions opt;
  opt.guided_relu = true;
  Network net(random_weights(Arch::VGG16, 2), Device::CPU, opt);
  const Shape is{1, 3, 21, 17};
  Tensor img = Tensor::from_vector(is, random_vector(is.numel(), 4, 0.f, 1.f));
  net.forward(img.view(), {"relu2_2"});
  const Shape ts = net.tap("relu2_2").shape();
  Tensor g = Tensor::full(ts, 1.f);
  Tensor gi;
  net.backward({{"relu2_2", g.view()}}, gi);
  bool finite = true;
  for (float v : gi.to_vector()) finite = finite && std::isfinite(v);
  CHECK(finite);
}

TEST_CASE("network rejects unknown taps, fc taps without fc weights, tiny images", "[network]") {
  Network net(random_weights(Arch::VGG19, 0), Device::CPU);
  try {
    net.check_taps({"relu9_9"});
    FAIL("no error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("unknown layer 'relu9_9'") != std::string::npos);
    CHECK(m.find("relu5_4") != std::string::npos);  // lists the valid ones
  }
  CHECK_THROWS_WITH(net.check_taps({"fc7"}), Catch::Contains("fc7") && Catch::Contains("random:0"));
  // relu5_1 sits after four 2×2 pools: 15×15 → 7 → 3 → 1 → 0.
  Tensor tiny = Tensor::full({1, 3, 15, 15}, 0.5f);
  CHECK_THROWS_WITH(net.forward(tiny.view(), {"relu5_1"}), Catch::Contains("too small"));
  Tensor grey = Tensor::full({1, 1, 9, 9}, 0.5f);
  CHECK_THROWS_WITH(net.forward(grey.view(), {"relu1_1"}), Catch::Contains("(N,3,H,W)"));
}
