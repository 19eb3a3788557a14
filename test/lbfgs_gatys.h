// The Gatys texture objective used to test the L-BFGS solver: random-feature VGG-19 (seed 1,
// average pooling), Gram terms at relu1_1 … relu5_1 with weight 1/5 each, a synthetic S×S
// texture as the target (crossed sinusoids, a different frequency per channel; `pattern` 1 uses
// other frequencies and phases) and uniform noise in [0, 1] (`seed`, 2 by default) as the start.
// With random features the loss is ~1e-4 … 1e-3 and the gradient ~1e-5: the regime in which solvers
// with absolute tolerances stall. Shared by test/test_lbfgs.cpp and test/lbfgs_scipy_driver.cpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "preimage/lbfgs.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"

namespace preimage::test {

struct GatysProblem {
  int size = 64;
  Device device = Device::CPU;
  std::unique_ptr<Network> net;
  Objective objective;
  Tensor grad;
  std::vector<float> x0;  // (1, 3, S, S)

  Shape shape() const { return {1, 3, size, size}; }
  size_t n() const { return size_t(3) * size * size; }

  // E(x) with ∇E written into g (x and g on `device`).
  double evaluate(const View& x, const View& g) {
    const double v = objective.evaluate(*net, x, grad);
    backend(device).copy(g.data, grad.data(), g.numel());
    return v;
  }
  Objective_fn objective_fn() {
    return [this](const View& x, const View& g) { return evaluate(x, g); };
  }
};

inline std::unique_ptr<GatysProblem> make_gatys_problem(int size, Device device, int seed = 2,
                                                        int pattern = 0) {
  auto p = std::make_unique<GatysProblem>();
  p->size = size;
  p->device = device;
  NetworkOptions no;
  no.avg_pool = true;
  p->net = std::make_unique<Network>(random_weights(Arch::VGG19, 1), device, no);
  const int s = size;
  std::vector<float> tex(size_t(3) * s * s);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < s; ++i)
      for (int j = 0; j < s; ++j)
        tex[(size_t(c) * s + i) * s + j] =
            pattern == 0
                ? 0.5f + 0.4f * std::sin(0.4f * i + 0.9f * c) * std::cos(0.25f * j * (c + 1))
                : 0.5f + 0.3f * std::sin(0.23f * (i + j) + 1.7f * c) +
                      0.15f * std::cos(0.61f * i * (c + 1) - 0.35f * j);
  const Tensor target = Tensor::from_vector(p->shape(), tex, device);
  const std::vector<std::string> taps = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
  p->net->forward(target.view(), taps);
  for (const auto& t : taps) p->objective.add(make_gram_term(t, p->net->tap(t).view(), 0.2f));
  std::mt19937_64 rng{uint64_t(seed)};
  std::uniform_real_distribution<float> u(0.f, 1.f);
  p->x0.resize(p->n());
  for (auto& v : p->x0) v = u(rng);
  return p;
}

}  // namespace preimage::test
