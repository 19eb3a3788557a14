// Fused Adam step (engine/cpu/adam.cpp, kernels/adam.cu) against a double-precision transcription
// of torch.optim.Adam (weight_decay = 0, amsgrad = False) over several steps, and the kernel
// against the CPU under the three simulator thread orders. The torch.optim.Adam numbers
// themselves are cross-checked in test/conv_transpose_torch.py.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

struct RefAdam {
  std::vector<double> p, m, v;
  void step(const std::vector<float>& g, double lr, double b1, double b2, double eps, long t,
            double scale) {
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = scale * g[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

}  // namespace

TEST_CASE("adam cpu vs double reference over several steps", "[adam]") {
  const size_t n = GENERATE(size_t(1), size_t(31), size_t(1001));
  auto p = random_vector(n, 1);
  std::vector<float> m(n, 0.f), v(n, 0.f);
  RefAdam ref{{p.begin(), p.end()}, std::vector<double>(n), std::vector<double>(n)};
  for (long t = 1; t <= 5; ++t) {
    const auto g = random_vector(n, 10 + t, -2.f, 2.f);
    cpu::adam_update(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, t,
                     0.5f);
    ref.step(g, double(1e-2f), double(0.9f), double(0.999f), double(1e-8f), t, 0.5);
  }
  CHECK(max_rel_error(p, ref.p) <= 1e-5);
  CHECK(max_rel_error(m, ref.m) <= 1e-5);
  CHECK(max_rel_error(v, ref.v) <= 1e-5);
}

TEST_CASE("adam kernel vs cpu", "[kernels][adam]") {
  const size_t n = GENERATE(size_t(1), size_t(37), size_t(5003));
  const auto p0 = random_vector(n, 2);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    std::vector<float> p = p0, m(n, 0.f), v(n, 0.f);
    DeviceBuffer gp(p0), gm(m), gv(v);
    for (long t = 1; t <= 3; ++t) {
      const auto g = random_vector(n, 20 + t);
      DeviceBuffer gg(g);
      cpu::adam_update(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, t,
                       1.f);
      kernels::adam_update(gp.get(), gg.get(), gm.get(), gv.get(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, t,
                           1.f);
    }
    CHECK(max_rel_error(gp.download(), p) <= 1e-6);
    CHECK(max_rel_error(gm.download(), m) <= 1e-6);
    CHECK(max_rel_error(gv.download(), v) <= 1e-6);
  });
}

TEST_CASE("adam rejects step 0", "[kernels][adam]") {
  std::vector<float> p(3, 0.f), g(3, 1.f), m(3, 0.f), v(3, 0.f);
  CHECK_THROWS_AS(
      cpu::adam_update(p.data(), g.data(), m.data(), v.data(), 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1),
      std::invalid_argument);
  DeviceBuffer a(p), b(g), c(m), d(v);
  CHECK_THROWS_AS(
      kernels::adam_update(a.get(), b.get(), c.get(), d.get(), 3, 1e-3f, 0.9f, 0.999f, 1e-8f, 0, 1),
      std::invalid_argument);
}
