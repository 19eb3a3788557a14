// HOG / dense SIFT (engine/cpu/hog.cpp, kernels/hog.cu, engine/features/descriptors/hog.cpp).
//
// Gradient checks: every op's backward against central differences of its forward, in double
// (the CPU reference is templated), on random odd-sized inputs: f(x) = Σ r·op(x) for a random r,
// ∂f/∂x from op_bwd(x, r) at every input (images 11×13 and 9×14) — tolerance relative 1e-6 of
// the largest derivative (h = 1e-6; the ops are smooth except on measure-zero sets that random
// inputs miss: zero gradients, bin boundaries with hard votes, the clip).
// Kernels: every op of kernels/hog.cu against preimage::cpu on odd shapes (C = 1 and 3, N = 1
// and 2, unsigned/signed, soft/hard orientation votes, bilinear/box cells, block strides 1 and 2),
// outputs NaN-prefilled, under the three simulator thread orders; tolerance relative 1e-4
// (different summation orders in float).
// Descriptor class: output shapes, too-small images and bad options throw clear errors, the
// descriptor term's value and gradient, and the CPU and CUDA (simulator) descriptors agree.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "preimage/descriptors.h"
#include "preimage/error.h"
#include "preimage/objective.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using namespace preimage;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;

std::vector<double> random_double(size_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Max |analytic − numeric| / max |numeric| of ∂(r·F(x))/∂x, F: double vector → double vector.
double gradient_error(const std::function<void(const double*, double*)>& fwd,
                      const std::function<void(const double*, const double*, double*)>& bwd,
                      std::vector<double> x, size_t out_size, uint64_t seed) {
  const std::vector<double> r = random_double(out_size, seed, -1, 1);
  std::vector<double> g(x.size(), std::nan("")), y(out_size, std::nan(""));
  bwd(x.data(), r.data(), g.data());
  const double h = 1e-6;
  double num = 0, den = 1e-300;
  auto f = [&]() {
    fwd(x.data(), y.data());
    double s = 0;
    for (size_t i = 0; i < out_size; ++i) s += r[i] * y[i];
    return s;
  };
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f();
    x[i] = x0 - h;
    const double fm = f();
    x[i] = x0;
    const double d = (fp - fm) / (2 * h);
    if (!std::isfinite(g[i])) return INFINITY;
    num = std::max(num, std::fabs(d - g[i]));
    den = std::max(den, std::fabs(d));
  }
  return num / den;
}

std::string describe(const HogCellShape& s) {
  std::ostringstream os;
  os << "n=" << s.n << " c=" << s.c << " " << s.h << "x" << s.w << " cell=" << s.cell
     << " bins=" << s.bins << (s.signed_bins ? " signed" : " unsigned")
     << (s.soft_bins ? " soft" : " hard") << (s.bilinear_cells ? " bilinear" : " box");
  return os.str();
}

std::vector<HogCellShape> cell_shapes() {
  std::vector<HogCellShape> v;
  HogCellShape s;
  s = {1, 1, 11, 13, 3, 9, false, true, true};
  v.push_back(s);
  s = {1, 3, 9, 14, 4, 8, true, true, true};
  v.push_back(s);
  s = {2, 1, 11, 13, 3, 9, false, false, false};
  v.push_back(s);
  s = {1, 3, 13, 11, 5, 18, true, true, false};
  v.push_back(s);
  s = {1, 1, 9, 14, 3, 5, false, false, true};
  v.push_back(s);
  return v;
}

size_t image_size(const HogCellShape& s) {
  return size_t(s.n) * s.c * s.h * s.w;
}
size_t hist_size(const HogCellShape& s) {
  return size_t(s.n) * s.bins * s.hc() * s.wc();
}

}  // namespace

TEST_CASE("hog_cells gradient check in double", "[hog]") {
  const auto shapes = cell_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const HogCellShape s = shapes[ci];
  INFO(describe(s));
  const double err = gradient_error(
      [&](const double* x, double* y) { cpu::hog_cells_fwd(x, y, s); },
      [&](const double* x, const double* r, double* g) { cpu::hog_cells_bwd(x, r, g, s); },
      random_double(image_size(s), 100 + ci, 0, 1), hist_size(s), 200 + ci);
  CHECK(err < 1e-6);
}

TEST_CASE("hog_block gradient check in double", "[hog]") {
  // Dalal–Triggs 2×2 stride 1, a 3×3 stride 2 block, dense SIFT's 4×4 with stride 1.
  HogBlockShape a, b, c;
  a.n = 2, a.bins = 9, a.hc = 5, a.wc = 4, a.block = 2, a.stride = 1;
  b.n = 1, b.bins = 5, b.hc = 7, b.wc = 8, b.block = 3, b.stride = 2;
  c.n = 1, c.bins = 8, c.hc = 5, c.wc = 6, c.block = 4, c.stride = 1;
  const HogBlockShape shapes[] = {a, b, c};
  const int ci = GENERATE(0, 1, 2);
  const HogBlockShape s = shapes[ci];
  INFO("case " << ci);
  // Histograms are non-negative; a few large entries make the clip active.
  std::vector<double> h = random_double(size_t(s.n) * s.bins * s.hc * s.wc, 300 + ci, 0, 1);
  for (size_t i = 0; i < h.size(); i += 7) h[i] *= 6;
  const double err = gradient_error(
      [&](const double* x, double* y) { cpu::hog_block_fwd(x, y, s); },
      [&](const double* x, const double* r, double* g) { cpu::hog_block_bwd(x, r, g, s); }, h,
      size_t(s.n) * s.channels() * s.hb() * s.wb(), 400 + ci);
  CHECK(err < 1e-6);
}

TEST_CASE("hog_uoctti gradient check in double", "[hog]") {
  HogUocttiShape s;
  s.n = GENERATE(1, 2);
  s.hc = 5;
  s.wc = 4;
  std::vector<double> h = random_double(size_t(s.n) * kUocttiBins * s.hc * s.wc, 500 + s.n, 0, 0.1);
  for (size_t i = 0; i < h.size(); i += 5) h[i] *= 8;  // some entries over the clip
  const double err = gradient_error(
      [&](const double* x, double* y) { cpu::hog_uoctti_fwd(x, y, s); },
      [&](const double* x, const double* r, double* g) { cpu::hog_uoctti_bwd(x, r, g, s); }, h,
      size_t(s.n) * kUocttiDims * s.ho() * s.wo(), 600 + s.n);
  CHECK(err < 1e-6);
}

TEST_CASE("hog_cells kernels vs cpu", "[hog][kernels]") {
  auto shapes = cell_shapes();
  HogCellShape big = {2, 3, 37, 45, 6, 9, false, true, true};
  shapes.push_back(big);
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const HogCellShape s = shapes[ci];
  INFO(describe(s));
  const auto x = random_vector(image_size(s), 700 + ci, 0.f, 1.f);
  const auto dh = random_vector(hist_size(s), 800 + ci);
  std::vector<float> want_f(hist_size(s)), want_b(image_size(s));
  cpu::hog_cells_fwd(x.data(), want_f.data(), s);
  cpu::hog_cells_bwd(x.data(), dh.data(), want_b.data(), s);
  DeviceBuffer dx(x), ddh(dh), out_f(want_f.size()), out_b(want_b.size());
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out_f.upload(nan_vector(out_f.size()));
    kernels::hog_cells_fwd(dx.get(), out_f.get(), s);
    CHECK(max_rel_error(out_f.download(), want_f) <= 1e-4);
    out_b.upload(nan_vector(out_b.size()));
    kernels::hog_cells_bwd(dx.get(), ddh.get(), out_b.get(), s);
    CHECK(max_rel_error(out_b.download(), want_b) <= 1e-4);
  });
}

TEST_CASE("hog_block kernels vs cpu", "[hog][kernels]") {
  HogBlockShape a, b, c;
  a.n = 2, a.bins = 9, a.hc = 7, a.wc = 5, a.block = 2, a.stride = 1;
  b.n = 1, b.bins = 5, b.hc = 9, b.wc = 8, b.block = 3, b.stride = 2;
  c.n = 1, c.bins = 8, c.hc = 7, c.wc = 6, c.block = 4, c.stride = 1;
  const HogBlockShape shapes[] = {a, b, c};
  const int ci = GENERATE(0, 1, 2);
  const HogBlockShape s = shapes[ci];
  INFO("case " << ci);
  auto h = random_vector(size_t(s.n) * s.bins * s.hc * s.wc, 900 + ci, 0.f, 1.f);
  for (size_t i = 0; i < h.size(); i += 7) h[i] *= 6;
  const size_t out = size_t(s.n) * s.channels() * s.hb() * s.wb();
  const auto dy = random_vector(out, 1000 + ci);
  std::vector<float> want_f(out), want_b(h.size());
  cpu::hog_block_fwd(h.data(), want_f.data(), s);
  cpu::hog_block_bwd(h.data(), dy.data(), want_b.data(), s);
  DeviceBuffer dh(h), ddy(dy), out_f(out), out_b(h.size());
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out_f.upload(nan_vector(out_f.size()));
    kernels::hog_block_fwd(dh.get(), out_f.get(), s);
    CHECK(max_rel_error(out_f.download(), want_f) <= 1e-4);
    out_b.upload(nan_vector(out_b.size()));
    kernels::hog_block_bwd(dh.get(), ddy.get(), out_b.get(), s);
    CHECK(max_rel_error(out_b.download(), want_b) <= 1e-4);
  });
}

TEST_CASE("hog_uoctti kernels vs cpu", "[hog][kernels]") {
  HogUocttiShape s;
  s.n = GENERATE(1, 2);
  s.hc = 7;
  s.wc = 6;
  auto h = random_vector(size_t(s.n) * kUocttiBins * s.hc * s.wc, 1100 + s.n, 0.f, 0.1f);
  for (size_t i = 0; i < h.size(); i += 5) h[i] *= 8;
  const size_t out = size_t(s.n) * kUocttiDims * s.ho() * s.wo();
  const auto dy = random_vector(out, 1200 + s.n);
  std::vector<float> want_f(out), want_b(h.size());
  cpu::hog_uoctti_fwd(h.data(), want_f.data(), s);
  cpu::hog_uoctti_bwd(h.data(), dy.data(), want_b.data(), s);
  DeviceBuffer dh(h), ddy(dy), out_f(out), out_b(h.size());
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out_f.upload(nan_vector(out_f.size()));
    kernels::hog_uoctti_fwd(dh.get(), out_f.get(), s);
    CHECK(max_rel_error(out_f.download(), want_f) <= 1e-4);
    out_b.upload(nan_vector(out_b.size()));
    kernels::hog_uoctti_bwd(dh.get(), ddy.get(), out_b.get(), s);
    CHECK(max_rel_error(out_b.download(), want_b) <= 1e-4);
  });
}

TEST_CASE("hog descriptor shapes and clear errors", "[hog]") {
  const Descriptor hog(DescriptorOptions::defaults(DescriptorKind::Hog));
  CHECK(hog.output_shape({1, 3, 67, 93}) == Shape{1, 36, 7, 10});
  const Descriptor uo(DescriptorOptions::defaults(DescriptorKind::HogUoctti));
  CHECK(uo.output_shape({1, 3, 67, 93}) == Shape{1, 31, 6, 9});
  const Descriptor ds(DescriptorOptions::defaults(DescriptorKind::Dsift));
  CHECK(ds.output_shape({1, 1, 67, 93}) == Shape{1, 128, 13, 20});
  CHECK_THROWS_WITH(hog.output_shape({1, 3, 15, 40}),
                    Catch::Contains("smaller than one block") && Catch::Contains("16x16"));
  CHECK_THROWS_WITH(uo.output_shape({1, 3, 40, 20}), Catch::Contains("at least 24x24"));
  CHECK_THROWS_WITH(hog.output_shape({1, 2, 64, 64}), Catch::Contains("grey or RGB"));
  auto bad = DescriptorOptions::defaults(DescriptorKind::Hog);
  bad.cell = 0;
  CHECK_THROWS_WITH(Descriptor(bad), Catch::Contains("cell size"));
  bad = DescriptorOptions::defaults(DescriptorKind::HogUoctti);
  bad.bins = 9;
  CHECK_THROWS_WITH(Descriptor(bad), Catch::Contains("18 signed"));
}

TEST_CASE("hog descriptor cpu vs cuda and the descriptor term", "[hog]") {
  const DescriptorKind kind =
      GENERATE(DescriptorKind::Hog, DescriptorKind::HogUoctti, DescriptorKind::Dsift);
  auto o = DescriptorOptions::defaults(kind);
  o.cell = 5;
  INFO(descriptor_name(kind));
  const Shape is{1, 3, 31, 27};
  Tensor a = Tensor::from_vector(is, random_vector(is.numel(), 1300, 0.f, 1.f));
  Tensor b = Tensor::from_vector(is, random_vector(is.numel(), 1301, 0.f, 1.f));
  Descriptor cpu_d(o), cuda_d(o);
  const std::vector<float> fc = cpu_d.forward(a.view()).to_vector();
  Tensor ac = a.to(Device::CUDA);
  const std::vector<float> fg = cuda_d.forward(ac.view()).to_vector();
  CHECK(max_rel_error(fg, fc) <= 1e-4);
  const auto r = random_vector(fc.size(), 1302);
  Tensor rc = Tensor::from_vector(cpu_d.output_shape(is), r);
  Tensor rg = rc.to(Device::CUDA);
  Tensor dc, dg;
  cpu_d.backward(rc.view(), dc);
  cuda_d.backward(rg.view(), dg);
  CHECK(max_rel_error(dg.to_vector(), dc.to_vector()) <= 1e-4);

  // The term: 0 at its target; value and directional derivative elsewhere.
  auto term = make_descriptor_term(o, a.view());
  Tensor g = Tensor::zeros(is);
  CHECK(term->evaluate({}, {}, a.view(), g.view()) == Approx(0).margin(1e-12));
  g = Tensor::zeros(is);
  const double e = term->evaluate({}, {}, b.view(), g.view());
  CHECK(e == Approx(std::pow(descriptor_error(o, b.view(), a.view()), 2)).epsilon(1e-4));
  // Directional derivative along a random direction v, by central differences in float (a small
  // step: on a noise image many pixels have tiny gradients, where the orientation is strongly
  // curved; the ops themselves are checked in double above).
  const auto v = random_vector(is.numel(), 1303);
  const std::vector<float> bv = b.to_vector(), gv = g.to_vector();
  double analytic = 0;
  for (size_t i = 0; i < v.size(); ++i) analytic += double(gv[i]) * v[i];
  const float h = 4e-5f;
  auto at = [&](float t) {
    std::vector<float> x(bv);
    for (size_t i = 0; i < x.size(); ++i) x[i] += t * v[i];
    Tensor xt = Tensor::from_vector(is, x), gt = Tensor::zeros(is);
    return term->evaluate({}, {}, xt.view(), gt.view());
  };
  const double numeric = (at(h) - at(-h)) / (2 * h);
  CHECK(analytic == Approx(numeric).epsilon(2e-2));
}
