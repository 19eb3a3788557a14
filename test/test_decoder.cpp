// Up-convolutional decoder (engine/features/decoder/decoder.cpp): parameter and input gradients
// against central differences of its own forward pass, the CUDA backend (kernels on the host
// simulator) against the CPU through forward/backward/Adam, a few Adam steps reducing a loss, file
// round trips, and the errors for incompatible layers/weights and for files that are not decoders.
#include <unistd.h>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "preimage/decoder.h"
#include "preimage/error.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::max_rel_error;
using preimage::test::random_vector;

namespace {

DecoderConfig tiny_config() {
  DecoderConfig c;
  c.in_c = 5;
  c.in_h = 3;
  c.in_w = 4;
  c.out_h = 6;
  c.out_w = 8;
  c.width = 6;
  c.slope = 0.2f;
  return c;
}

DecoderMeta tiny_meta() {
  DecoderMeta m;
  m.layer = "relu2_1";
  m.weights_spec = "random:0";
  m.feature_scale = 0.7f;
  return m;
}

// L = Σ r ⊙ decoder(f)
double loss(Decoder& d, const Tensor& f, const std::vector<float>& r) {
  const auto y = d.forward(f.view()).to_vector();
  double acc = 0;
  for (size_t i = 0; i < y.size(); ++i) acc += double(y[i]) * r[i];
  return acc;
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("preimage_test_decoder_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST_CASE("decoder gradients vs central differences", "[decoder]") {
  // slope 0.9: the same code paths, with small derivative jumps at the kinks
  DecoderConfig cfg = tiny_config();
  cfg.slope = 0.9f;
  Decoder d(cfg, tiny_meta(), Device::CPU, 3);
  const Shape fs{2, 5, 3, 4};
  Tensor f = Tensor::from_vector(fs, random_vector(fs.numel(), 4));
  const Shape ys = d.forward(f.view()).shape();
  REQUIRE(ys == Shape{2, 3, 6, 8});
  const auto r = random_vector(ys.numel(), 5);
  Tensor rt = Tensor::from_vector(ys, r);
  d.forward(f.view());
  Tensor df;
  d.backward(rt.view(), &df);
  // Leaky ReLUs make the loss piecewise linear: a step can cross a kink (biases move a whole
  // channel), and float32 rounding grows as the step shrinks. Each entry must agree with the
  // central difference at one of three step sizes.
  const double steps[] = {1e-2, 1e-3, 1e-4};
  auto close = [](double num, double an) {
    return std::fabs(num - an) <= 2e-2 * std::max(1.0, std::fabs(num));
  };
  auto params = d.parameters();
  auto grads = d.gradients();
  for (size_t t = 0; t < params.size(); ++t) {
    auto g = grads[t]->to_vector();
    const size_t n = params[t]->numel();
    for (size_t i = 0; i < n; i += std::max<size_t>(1, n / 7)) {
      bool ok = false;
      double last = 0;
      for (double h : steps) {
        if (ok) break;
        auto p = params[t]->to_vector();
        const float keep = p[i];
        p[i] = keep + float(h);
        params[t]->copy_from(Tensor::from_vector(params[t]->shape(), p).view());
        const double lp = loss(d, f, r);
        p[i] = keep - float(h);
        params[t]->copy_from(Tensor::from_vector(params[t]->shape(), p).view());
        const double lm = loss(d, f, r);
        p[i] = keep;
        params[t]->copy_from(Tensor::from_vector(params[t]->shape(), p).view());
        last = (lp - lm) / (2 * h);
        ok = ok || close(last, g[i]);
      }
      INFO("parameter tensor " << t << " entry " << i << ": analytic " << g[i] << ", numeric "
                               << last);
      CHECK(ok);
    }
  }
  auto fv = f.to_vector();
  const auto dfv = df.to_vector();
  for (size_t i = 0; i < fv.size(); i += 5) {
    bool ok = false;
    for (double h : steps) {
      if (ok) break;
      const float keep = fv[i];
      fv[i] = keep + float(h);
      const double lp = loss(d, Tensor::from_vector(fs, fv), r);
      fv[i] = keep - float(h);
      const double lm = loss(d, Tensor::from_vector(fs, fv), r);
      fv[i] = keep;
      ok = ok || close((lp - lm) / (2 * h), dfv[i]);
    }
    INFO("input entry " << i);
    CHECK(ok);
  }
}

TEST_CASE("decoder cuda (simulated) matches cpu through forward, backward and adam",
          "[decoder][kernels]") {
  if (!cuda_available()) return;
  Decoder a(tiny_config(), tiny_meta(), Device::CPU, 9);
  Decoder b(tiny_config(), tiny_meta(), Device::CUDA, 9);
  const Shape fs{2, 5, 3, 4};
  const auto fv = random_vector(fs.numel(), 10);
  Tensor fa = Tensor::from_vector(fs, fv), fb = Tensor::from_vector(fs, fv, Device::CUDA);
  for (int step = 0; step < 3; ++step) {
    const auto ya = a.forward(fa.view()).to_vector();
    const auto yb = b.forward(fb.view()).to_vector();
    CHECK(max_rel_error(yb, ya) <= 1e-4);
    const auto r = random_vector(ya.size(), 11 + step);
    Tensor ra = Tensor::from_vector({2, 3, 6, 8}, r),
           rb = Tensor::from_vector({2, 3, 6, 8}, r, Device::CUDA);
    a.backward(ra.view());
    b.backward(rb.view());
    auto ga = a.gradients(), gb = b.gradients();
    for (size_t t = 0; t < ga.size(); ++t) {
      INFO("gradient tensor " << t);
      CHECK(max_rel_error(gb[t]->to_vector(), ga[t]->to_vector()) <= 1e-4);
    }
    a.adam_step(0.5f);
    b.adam_step(0.5f);
  }
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t t = 0; t < pa.size(); ++t)
    CHECK(max_rel_error(pb[t]->to_vector(), pa[t]->to_vector()) <= 1e-4);
}

TEST_CASE("decoder adam steps fit a fixed target", "[decoder]") {
  DecoderMeta m = tiny_meta();
  m.lr = 1e-2;
  Decoder d(tiny_config(), m, Device::CPU, 1);
  const Shape fs{4, 5, 3, 4};
  Tensor f = Tensor::from_vector(fs, random_vector(fs.numel(), 2));
  Tensor target = Tensor::from_vector({4, 3, 6, 8}, random_vector(4 * 3 * 6 * 8, 3, 0.f, 1.f));
  auto step = [&] {
    const Tensor& y = d.forward(f.view());
    const double e = mse(y.view(), target.view());
    auto g = y.to_vector();
    const auto t = target.to_vector();
    for (size_t i = 0; i < g.size(); ++i) g[i] = 2.f * (g[i] - t[i]) / float(g.size());
    d.backward(Tensor::from_vector(y.shape(), g).view());
    d.adam_step();
    return e;
  };
  const double first = step();
  double last = first;
  for (int i = 0; i < 150; ++i) last = step();
  CHECK(d.meta().step == 151);
  CHECK(last < 0.5 * first);
}

TEST_CASE("decoder file round trip and bad input", "[decoder]") {
  Weights w = random_weights(Arch::VGG19, 0);
  DecoderMeta m = tiny_meta();
  m.weights_identity = w.identity;
  m.weights_hash = features_hash(w, m.layer);
  Decoder d(tiny_config(), m, Device::CPU, 5);
  d.mean_image() = Tensor::full({1, 3, 6, 8}, 0.25f);
  Tensor f = Tensor::from_vector({1, 5, 3, 4}, random_vector(60, 6));
  d.forward(f.view());
  d.backward(Tensor::full({1, 3, 6, 8}, 0.1f).view());
  d.adam_step();
  const std::string path = tmp_path("dec.h5");
  d.save(path, true);
  Decoder e = Decoder::load(path, Device::CPU);
  CHECK(e.meta().layer == "relu2_1");
  CHECK(e.meta().step == 1);
  CHECK(e.has_optimizer_state());
  CHECK(e.mean_image().to_vector() == d.mean_image().to_vector());
  CHECK(e.forward(f.view()).to_vector() == d.forward(f.view()).to_vector());
  // compatible with the same weights at the same layer
  CHECK_NOTHROW(e.check_compatible("relu2_1", w, "decoder"));
  // another layer, other weights
  CHECK_THROWS_WITH(e.check_compatible("relu3_1", w, "decoder 'x'"),
                    Catch::Contains("trained on features of layer relu2_1, not relu3_1"));
  CHECK_THROWS_WITH(e.check_compatible("relu2_1", random_weights(Arch::VGG19, 1), "decoder 'x'"),
                    Catch::Contains("trained on the features of weights random:0"));
  // features of the wrong shape
  CHECK_THROWS_WITH(e.forward(Tensor::zeros({1, 6, 3, 4}).view()),
                    Catch::Contains("expected Nx5x3x4"));
  // a file that is not a decoder / missing
  const std::string junk = tmp_path("junk.h5");
  { std::ofstream(junk) << "not hdf5"; }
  CHECK_THROWS_WITH(Decoder::load(junk, Device::CPU), Catch::Contains("decoder file"));
  CHECK_THROWS_WITH(Decoder::load(tmp_path("missing.h5"), Device::CPU),
                    Catch::Contains("no such file"));
  // the features hash depends only on the layers up to the tap
  Weights w2 = random_weights(Arch::VGG19, 0);
  CHECK(features_hash(w2, "relu2_1") == m.weights_hash);
  std::vector<float> v = w2.layers["conv5_1"].weight.to_vector();
  v[0] += 1.f;
  w2.layers["conv5_1"].weight = Tensor::from_vector(w2.layers["conv5_1"].weight.shape(), v);
  CHECK(features_hash(w2, "relu2_1") == m.weights_hash);
  CHECK(features_hash(w2, "relu5_1") != features_hash(w, "relu5_1"));
  std::remove(path.c_str());
  std::remove(junk.c_str());
}

TEST_CASE("decoder config rejects sizes that are not a power-of-two multiple", "[decoder]") {
  DecoderConfig c = tiny_config();
  c.out_h = 7;
  CHECK_THROWS_WITH(Decoder(c, tiny_meta(), Device::CPU, 0), Catch::Contains("power of two"));
}

TEST_CASE("decoder for descriptor features: padding and compatibility", "[decoder]") {
  DecoderConfig c = tiny_config();
  c.in_h = 2;  // 2 cells + 1 padding on each side = 4 → 8 after one up stage
  c.in_w = 2;
  c.in_pad = 1;
  c.out_h = c.out_w = 8;
  DecoderMeta m = tiny_meta();
  m.layer = "hog-uoctti";
  m.arch = "descriptor";
  m.weights_identity = "HOG UoCTTI, 8 px cells";
  m.weights_hash = descriptor_hash(m.weights_identity);
  Decoder d(c, m, Device::CPU, 2);
  CHECK(d.forward(Tensor::zeros({2, 5, 2, 2}).view()).shape() == Shape{2, 3, 8, 8});
  const std::string path = tmp_path("hog.h5");
  d.save(path, false);
  Decoder e = Decoder::load(path, Device::CPU);
  CHECK(e.config().in_pad == 1);
  CHECK_FALSE(e.has_optimizer_state());
  CHECK_NOTHROW(e.check_compatible_descriptor("hog-uoctti", m.weights_hash, "x", "decoder"));
  CHECK_THROWS_WITH(e.check_compatible_descriptor("dsift", m.weights_hash, "x", "decoder"),
                    Catch::Contains("trained on the descriptor hog-uoctti, not dsift"));
  CHECK_THROWS_WITH(
      e.check_compatible_descriptor("hog-uoctti", descriptor_hash("other"), "other", "decoder"),
      Catch::Contains("not on other"));
  CHECK_THROWS_WITH(e.check_compatible("relu2_1", random_weights(Arch::VGG19, 0), "decoder"),
                    Catch::Contains("not on VGG features"));
  std::remove(path.c_str());
}
