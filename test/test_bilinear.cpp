// Bilinear pooling (B-CNN): kernels/bilinear.cu (every version, same-layer and two-layer, on the
// simulator in all three thread orders) against engine/cpu/bilinear.cpp; the texture term's
// value and gradient against a double reference with central differences, CUDA against CPU, and
// PyTorch float64 autograd.
//
// Shapes: Ca, Cb ∈ {1, 33, 65, 70, 130}, M ∈ {7×13, 37×41, 67×93, 8×12, 36×40}; outputs start as
// NaN, the backward accumulates onto random gradients. Tolerance: relative 1e-5.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <sstream>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "preimage/objective.h"
#include "test/device_buffer.h"
#include "test/term_harness.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;

namespace {

constexpr double kTol = 1e-5;
constexpr float kEps = 1e-8f;

struct PoolShape2 {
  int ca, cb, h, w;  // cb == 0: same layer (fb == fa)
};
const PoolShape2 kShapes[] = {{65, 0, 7, 13},  {33, 0, 37, 41},  {130, 0, 7, 13},
                              {65, 0, 8, 12},  {65, 33, 7, 13},  {33, 65, 67, 93},
                              {1, 130, 7, 13}, {70, 65, 36, 40}, {1, 0, 7, 13}};

// v1 kernels use neither shared memory nor barriers: one thread order is enough for them.
void run_orders(int version, const std::function<void(const char*)>& body) {
  if (version == 1)
    body("forward");
  else
    for_each_schedule(body);
}

std::string describe(const PoolShape2& s) {
  std::ostringstream os;
  os << "Ca=" << s.ca << " Cb=" << (s.cb ? s.cb : s.ca) << (s.cb ? "" : " (same layer)")
     << " M=" << s.h << "x" << s.w;
  return os.str();
}

// Double reference of the descriptor z (ca×cb) and of the texture loss ‖z − ẑ‖².
std::vector<double> descriptor_ref(const std::vector<double>& fa, const std::vector<double>& fb,
                                   int ca, int cb, int m, double eps) {
  std::vector<double> y(size_t(ca) * cb);
  double n2 = 0;
  for (int i = 0; i < ca; ++i)
    for (int j = 0; j < cb; ++j) {
      double b = 0;
      for (int p = 0; p < m; ++p) b += fa[size_t(i) * m + p] * fb[size_t(j) * m + p];
      b /= m;
      const double r = std::sqrt(std::fabs(b) + eps);
      y[size_t(i) * cb + j] = b < 0 ? -r : r;
      n2 += r * r;
    }
  for (auto& v : y) v /= std::sqrt(n2);
  return y;
}

double texture_loss_ref(const std::vector<double>& z, const std::vector<double>& zt) {
  double e = 0;
  for (size_t i = 0; i < z.size(); ++i) e += (z[i] - zt[i]) * (z[i] - zt[i]);
  return e;
}

}  // namespace

TEST_CASE("bilinear pooling kernel vs cpu", "[bilinear][kernels]") {
  for (const PoolShape2& s : kShapes) {
    const bool same = s.cb == 0;
    const int ca = s.ca, cb = same ? s.ca : s.cb, m = s.h * s.w;
    const auto fa = random_vector(size_t(ca) * m, 100 + ca + m);
    const auto fb = random_vector(size_t(cb) * m, 200 + cb + m);
    std::vector<float> ref(size_t(ca) * cb);
    DeviceBuffer da(fa), db(fb), dout(ref.size());
    const float* pb = same ? da.get() : db.get();
    cpu::bilinear_pool_fwd(fa.data(), same ? fa.data() : fb.data(), ref.data(), ca, cb, m);
    for (int v = 1; v <= kernels::bilinear_versions(); ++v) {
      run_orders(v, [&](const char* order) {
        INFO(describe(s) << " v" << v << " " << order);
        dout.upload(nan_vector(ref.size()));
        kernels::bilinear_pool_fwd(da.get(), pb, dout.get(), ca, cb, m, v);
        CHECK(max_rel_error(dout.download(), ref) <= kTol);
      });
    }
  }
}

TEST_CASE("bilinear pooling backward kernel vs cpu", "[bilinear][kernels]") {
  for (const PoolShape2& s : kShapes) {
    const bool same = s.cb == 0;
    const int ca = s.ca, cb = same ? s.ca : s.cb, m = s.h * s.w;
    const auto fa = random_vector(size_t(ca) * m, 300 + ca + m);
    const auto fb = random_vector(size_t(cb) * m, 400 + cb + m);
    const auto dbv = random_vector(size_t(ca) * cb, 500 + ca);  // not symmetric
    const auto seed_a = random_vector(size_t(ca) * m, 600),
               seed_b = random_vector(size_t(cb) * m, 700);
    auto ref_a = seed_a, ref_b = seed_b;
    cpu::bilinear_pool_bwd(dbv.data(), fa.data(), same ? fa.data() : fb.data(), ref_a.data(),
                           same ? ref_a.data() : ref_b.data(), ca, cb, m);
    DeviceBuffer d_fa(fa), d_fb(fb), d_db(dbv), d_ga(seed_a.size()), d_gb(seed_b.size());
    for (int v = 1; v <= kernels::bilinear_versions(); ++v) {
      run_orders(v, [&](const char* order) {
        INFO(describe(s) << " v" << v << " " << order);
        d_ga.upload(seed_a);
        d_gb.upload(seed_b);
        kernels::bilinear_pool_bwd(d_db.get(), d_fa.get(), same ? d_fa.get() : d_fb.get(),
                                   d_ga.get(), same ? d_ga.get() : d_gb.get(), ca, cb, m, v);
        CHECK(max_rel_error(d_ga.download(), ref_a) <= kTol);
        if (!same) CHECK(max_rel_error(d_gb.download(), ref_b) <= kTol);
      });
    }
  }
}

TEST_CASE("bilinear signed sqrt and normalization kernels vs cpu", "[bilinear][kernels]") {
  preimage::kernels::Workspace ws;  // the launchers' device scratch
  for (size_t n : {size_t(1), size_t(4225), size_t(70001)}) {
    auto b = random_vector(n, 800 + n, -0.3f, 0.3f);
    if (n > 10) b[3] = 0.f;  // sign(0) = +1
    const auto zt = random_vector(n, 900 + n, -0.1f, 0.1f);
    const auto dz = random_vector(n, 950 + n);
    std::vector<float> y_ref(n), db_ref(n), db2_ref(n);
    const double n2_ref = cpu::bilinear_ssqrt_fwd(b.data(), y_ref.data(), n, kEps);
    const double norm = std::sqrt(n2_ref), zg = 0.37, zg2 = -1.3;
    const double loss_ref =
        cpu::bilinear_ssqrt_bwd(y_ref.data(), zt.data(), nullptr, db_ref.data(), n, norm, zg, 0.5f);
    cpu::bilinear_ssqrt_bwd(y_ref.data(), nullptr, dz.data(), db2_ref.data(), n, norm, zg2, 2.f);
    if (n > 10) CHECK(y_ref[3] > 0.f);
    DeviceBuffer d_b(b), d_y(n), d_zt(zt), d_dz(dz), d_db(n);
    for_each_schedule([&](const char* order) {
      INFO("n=" << n << " " << order);
      d_y.upload(nan_vector(n));
      CHECK(kernels::bilinear_ssqrt_fwd(ws, d_b.get(), d_y.get(), n, kEps) ==
            Approx(n2_ref).epsilon(1e-12));
      CHECK(max_rel_error(d_y.download(), y_ref) == 0.0);
      d_db.upload(nan_vector(n));
      CHECK(kernels::bilinear_ssqrt_bwd(ws, d_y.get(), d_zt.get(), nullptr, d_db.get(), n, norm, zg,
                                        0.5f) == Approx(loss_ref).epsilon(1e-12));
      CHECK(max_rel_error(d_db.download(), db_ref) <= 1e-6);
      d_db.upload(nan_vector(n));
      CHECK(kernels::bilinear_ssqrt_bwd(ws, d_y.get(), nullptr, d_dz.get(), d_db.get(), n, norm,
                                        zg2, 2.f) == 0.0);
      CHECK(max_rel_error(d_db.download(), db2_ref) <= 1e-6);
    });
  }
}

TEST_CASE("bilinear softmax cross-entropy kernel vs cpu", "[bilinear][kernels]") {
  preimage::kernels::Workspace ws;  // the launchers' device scratch
  for (int k : {1, 7, 1001}) {
    const auto s = random_vector(size_t(k), 40 + k, -5.f, 5.f);
    const int target = k / 2;
    std::vector<float> ds_ref(k);
    const double loss_ref = cpu::softmax_xent_loss_grad(s.data(), ds_ref.data(), k, target, 0.7f);
    DeviceBuffer d_s(s), d_ds{size_t(k)};
    for_each_schedule([&](const char* order) {
      INFO("k=" << k << " " << order);
      d_ds.upload(nan_vector(k));
      CHECK(kernels::softmax_xent_loss_grad(ws, d_s.get(), d_ds.get(), k, target, 0.7f) ==
            Approx(loss_ref).epsilon(1e-9).margin(1e-12));
      CHECK(max_rel_error(d_ds.download(), ds_ref) <= 1e-6);
    });
  }
  std::vector<float> s(3, 0.f), ds(3);
  CHECK_THROWS_AS(cpu::softmax_xent_loss_grad(s.data(), ds.data(), 3, 3, 1.f),
                  std::invalid_argument);
}

TEST_CASE("bilinear backward vs central differences", "[bilinear][grad]") {
  // Same layer (5 channels) and two layers (5 and 4 channels) at 3×7.
  const int h = 3, w = 7, m = h * w;
  for (bool same : {true, false}) {
    const int ca = 5, cb = same ? 5 : 4;
    const auto fa = test::random_tensor({1, ca, h, w}, 51);
    const auto fb = test::random_tensor({1, cb, h, w}, 52);
    const auto ta = test::random_tensor({1, ca, h, w}, 53);
    const auto tb = test::random_tensor({1, cb, h, w}, 54);
    const auto fad = test::to_double(fa.data), fbd = test::to_double(fb.data);
    const auto zt = descriptor_ref(test::to_double(ta.data),
                                   test::to_double(same ? ta.data : tb.data), ca, cb, m, kEps);
    auto loss_a = [&](const std::vector<double>& x) {
      return texture_loss_ref(descriptor_ref(x, same ? x : fbd, ca, cb, m, kEps), zt);
    };
    auto loss_b = [&](const std::vector<double>& x) {
      return texture_loss_ref(descriptor_ref(fad, x, ca, cb, m, kEps), zt);
    };
    const double e_ref = loss_a(fad);
    const auto ga_ref = test::central_differences(fad, 1e-5, loss_a);
    const auto gb_ref = same ? std::vector<double>() : test::central_differences(fbd, 1e-5, loss_b);
    for (Device d : {Device::CPU, Device::CUDA}) {
      INFO((same ? "same layer " : "two layers ") << device_name(d));
      const Tensor xa = Tensor::from_vector(ta.shape, ta.data, d);
      const Tensor xb = Tensor::from_vector(tb.shape, tb.data, d);
      auto term = make_bcnn_term("relu1_1", same ? "relu1_1" : "relu1_2", xa.view(),
                                 same ? xa.view() : xb.view(), 1.5f);
      std::map<std::string, test::HostTensor> acts{{"relu1_1", fa}};
      if (!same) acts["relu1_2"] = fb;
      const auto r = test::run_term(*term, d, acts);
      CHECK(r.value == Approx(1.5 * e_ref).epsilon(kTol));
      std::vector<double> want(ga_ref.size());
      for (size_t i = 0; i < want.size(); ++i) want[i] = 1.5 * ga_ref[i];
      CHECK(max_rel_error(r.tap_grads.at("relu1_1"), want) <= kTol);
      if (!same) {
        want.resize(gb_ref.size());
        for (size_t i = 0; i < want.size(); ++i) want[i] = 1.5 * gb_ref[i];
        CHECK(max_rel_error(r.tap_grads.at("relu1_2"), want) <= kTol);
      }
    }
  }
}

// ReLU-like [0,1) features: every B ≈ 1/4, so z and ẑ agree to ≈ 1% and z − ẑ amplifies the
// FP32 rounding of z ≈ 100× in the gradient; the backends still agree within 1e-5 (measured
// ≤ 6e-6).
TEST_CASE("bilinear term cuda vs cpu and descriptor", "[bilinear]") {
  const int h = 37, w = 41;
  const auto fa = test::random_tensor({2, 65, h, w}, 61, 0.f, 1.f);
  const auto fb = test::random_tensor({2, 33, h, w}, 62, 0.f, 1.f);
  const auto ta = test::random_tensor({1, 65, h, w}, 63, 0.f, 1.f);
  const auto tb = test::random_tensor({1, 33, h, w}, 64, 0.f, 1.f);
  for (bool same : {true, false}) {
    std::vector<test::TermResult> r;
    for (Device d : {Device::CPU, Device::CUDA}) {
      const Tensor xa = Tensor::from_vector(ta.shape, ta.data, d);
      const Tensor xb = Tensor::from_vector(tb.shape, tb.data, d);
      auto term = make_bcnn_term("relu1_1", same ? "relu1_1" : "relu1_2", xa.view(),
                                 same ? xa.view() : xb.view());
      std::map<std::string, test::HostTensor> acts{{"relu1_1", fa}};
      if (!same) acts["relu1_2"] = fb;
      r.push_back(test::run_term(*term, d, acts));
      // the descriptor is unit-norm
      const Tensor z = bcnn_descriptor(xa.view(), same ? xa.view() : xb.view());
      double n2 = 0;
      for (float v : z.to_vector()) n2 += double(v) * v;
      CHECK(n2 == Approx(1.0).epsilon(1e-6));
    }
    INFO((same ? "same layer" : "two layers"));
    CHECK(r[1].value == Approx(r[0].value).epsilon(kTol));
    for (const auto& [name, g] : r[0].tap_grads)
      CHECK(max_rel_error(r[1].tap_grads.at(name), g) <= kTol);
  }
}

TEST_CASE("bilinear texture loss vs pytorch", "[bilinear][pytorch]") {
  const PoolShape2 cases[] = {{65, 0, 7, 13}, {33, 0, 67, 93}, {65, 33, 37, 41}};
  test::TempDir dir;
  struct Inputs {
    test::HostTensor fa, fb, ta, tb;
  };
  std::vector<Inputs> inputs;
  int k = 0;
  for (const PoolShape2& s : cases) {
    const bool same = s.cb == 0;
    const int cb = same ? s.ca : s.cb;
    inputs.push_back({test::random_tensor({1, s.ca, s.h, s.w}, 700 + k, 0.f, 1.f),
                      test::random_tensor({1, cb, s.h, s.w}, 710 + k, 0.f, 1.f),
                      test::random_tensor({1, s.ca, s.h, s.w}, 720 + k, 0.f, 1.f),
                      test::random_tensor({1, cb, s.h, s.w}, 730 + k, 0.f, 1.f)});
    const auto sub = dir.path() / ("case" + std::to_string(k));
    std::filesystem::create_directory(sub);
    std::ostringstream meta;
    meta << "bcnn " << s.ca << " " << cb << " " << s.h * s.w << " " << (same ? 1 : 0) << " "
         << "1e-8\n";
    test::write_text(sub / "meta.txt", meta.str());
    test::write_floats(sub / "fa.bin", inputs.back().fa.data);
    test::write_floats(sub / "ta.bin", inputs.back().ta.data);
    if (!same) {
      test::write_floats(sub / "fb.bin", inputs.back().fb.data);
      test::write_floats(sub / "tb.bin", inputs.back().tb.data);
    }
    ++k;
  }
  const int rc = test::run_texture_reference(dir.path());
  if (rc == 77) {
    WARN("/usr/bin/python3 cannot import torch (Debian's python3-torch): PyTorch check skipped");
    return;
  }
  REQUIRE(rc == 0);
  for (int i = 0; i < k; ++i) {
    const bool same = cases[i].cb == 0;
    const auto sub = dir.path() / ("case" + std::to_string(i));
    const double loss = test::read_doubles(sub / "loss.bin").at(0);
    const auto grad_a = test::read_doubles(sub / "grad_a.bin");
    const double bound_a = test::fp32_bound(grad_a, test::read_doubles(sub / "grad_a32.bin"));
    const auto grad_b = same ? std::vector<double>() : test::read_doubles(sub / "grad_b.bin");
    const double bound_b =
        same ? 0.0 : test::fp32_bound(grad_b, test::read_doubles(sub / "grad_b32.bin"));
    for (Device d : {Device::CPU, Device::CUDA}) {
      INFO(describe(cases[i]) << " " << device_name(d));
      const Inputs& in = inputs[i];
      const Tensor xa = Tensor::from_vector(in.ta.shape, in.ta.data, d);
      const Tensor xb = Tensor::from_vector(in.tb.shape, in.tb.data, d);
      auto term = make_bcnn_term("relu2_1", same ? "relu2_1" : "relu2_2", xa.view(),
                                 same ? xa.view() : xb.view(), 1.f, kEps);
      std::map<std::string, test::HostTensor> acts{{"relu2_1", in.fa}};
      if (!same) acts["relu2_2"] = in.fb;
      const auto r = test::run_term(*term, d, acts);
      INFO("loss " << r.value << " torch " << loss << "; gradient bounds " << bound_a << " "
                   << bound_b);
      CHECK(r.value == Approx(loss).epsilon(kTol));
      CHECK(max_rel_error(r.tap_grads.at("relu2_1"), grad_a) <= bound_a);
      if (!same) CHECK(max_rel_error(r.tap_grads.at("relu2_2"), grad_b) <= bound_b);
    }
  }
}
