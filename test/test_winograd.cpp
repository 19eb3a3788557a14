// Winograd F(4×4, 3×3) (engine/cpu/winograd.cpp) against the im2col path and plain double
// loops: forward (bias, fused ReLU) and backward-data (fused ReLU mask) on random odd shapes
// with NaN-prefilled outputs, the filter cache across in-place weight changes, and every VGG-19
// tap (random:SEED weights, 67×93 image) plus the input gradient, Winograd vs direct.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/isa.h"
#include "engine/cpu/winograd.h"
#include "preimage/network.h"
#include "preimage/weights.h"
#include "test/ref_ops.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;

namespace {

// Forces one algorithm for its lifetime, then returns to the environment's default.
struct ForceAlgo {
  explicit ForceAlgo(cpu::ConvAlgo a) { cpu::set_conv_algo(a); }
  ~ForceAlgo() { cpu::reset_conv_algo(); }
  ForceAlgo(const ForceAlgo&) = delete;
  ForceAlgo& operator=(const ForceAlgo&) = delete;
};

// dx[n,c,iy,ix] = Σ_o,ky,kx dy[n,o,iy−ky+1,ix−kx+1]·w[o,c,ky,kx] (3×3, stride 1, pad 1), masked.
std::vector<double> ref_bwd_data(const std::vector<double>& dy, const std::vector<double>& w,
                                 const std::vector<float>* mask, const ConvShape& s) {
  std::vector<double> dx(size_t(s.n) * s.c * s.h * s.w, 0.0);
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int iy = 0; iy < s.h; ++iy)
        for (int ix = 0; ix < s.w; ++ix) {
          double acc = 0;
          for (int o = 0; o < s.o; ++o)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const int oy = iy - ky + 1, ox = ix - kx + 1;
                if (oy < 0 || oy >= s.h || ox < 0 || ox >= s.w) continue;
                acc += dy[((size_t(n) * s.o + o) * s.h + oy) * s.w + ox] *
                       w[((size_t(o) * s.c + c) * 3 + ky) * 3 + kx];
              }
          const size_t i = ((size_t(n) * s.c + c) * s.h + iy) * s.w + ix;
          dx[i] = (mask && (*mask)[i] <= 0.f) ? 0.0 : acc;
        }
  return dx;
}

struct Case {
  ConvShape s;
  const char* name;
};
// C = 3 and 65 (and the other way round for backward), H×W 7×13 and 67×93, batch 1 and 3, and
// degenerate planes (1×1, 2×5: fewer pixels than a tile).
const Case kCases[] = {
    {{1, 3, 67, 93, 5, 3, 3, 1, 1}, "1x3x67x93 o5"},
    {{3, 65, 7, 13, 33, 3, 3, 1, 1}, "3x65x7x13 o33"},
    {{1, 65, 67, 93, 7, 3, 3, 1, 1}, "1x65x67x93 o7"},
    {{3, 3, 7, 13, 65, 3, 3, 1, 1}, "3x3x7x13 o65"},
    {{2, 17, 1, 1, 19, 3, 3, 1, 1}, "2x17x1x1 o19"},
    {{1, 16, 2, 5, 16, 3, 3, 1, 1}, "1x16x2x5 o16"},
};

}  // namespace

TEST_CASE("winograd conv3x3 forward vs direct and double loops", "[cpu][conv][winograd]") {
  for (const auto& cc : kCases) {
    for (bool relu : {false, true}) {
      DYNAMIC_SECTION(cc.name << (relu ? " relu" : "")) {
        const ConvShape& s = cc.s;
        REQUIRE(cpu::winograd_applicable(s));
        auto x = random_vector(size_t(s.n) * s.c * s.h * s.w, 21);
        auto w = random_vector(size_t(s.o) * s.c * 9, 22);
        auto b = random_vector(s.o, 23);
        const size_t ny = size_t(s.n) * s.o * s.h * s.w;
        auto yw = nan_vector(ny), yd = nan_vector(ny);
        {
          ForceAlgo f(cpu::ConvAlgo::Winograd);
          cpu::conv2d_fwd(x.data(), w.data(), b.data(), yw.data(), s, relu);
        }
        {
          ForceAlgo f(cpu::ConvAlgo::Direct);
          cpu::conv2d_fwd(x.data(), w.data(), b.data(), yd.data(), s, relu);
        }
        auto bd = ref::to_double(b);
        auto yr = ref::conv2d_fwd(ref::to_double(x), ref::to_double(w), &bd, s, relu);
        CHECK(max_rel_error(yw, yd) <= 1e-4);
        CHECK(max_rel_error(yw, yr) <= 1e-4);
        CHECK(max_rel_error(yd, yr) <= 1e-5);
        // no bias: the null pointer path
        auto yn = nan_vector(ny);
        {
          ForceAlgo f(cpu::ConvAlgo::Winograd);
          cpu::conv2d_fwd(x.data(), w.data(), nullptr, yn.data(), s, relu);
        }
        CHECK(max_rel_error(yn, ref::conv2d_fwd(ref::to_double(x), ref::to_double(w), nullptr, s,
                                                relu)) <= 1e-4);
      }
    }
  }
}

TEST_CASE("winograd conv3x3 backward-data vs direct and double loops", "[cpu][conv][winograd]") {
  for (const auto& cc : kCases) {
    for (bool masked : {false, true}) {
      DYNAMIC_SECTION(cc.name << (masked ? " mask" : "")) {
        const ConvShape& s = cc.s;
        const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.o * s.h * s.w;
        auto dy = random_vector(ny, 31), w = random_vector(size_t(s.o) * s.c * 9, 32);
        auto mask = random_vector(nx, 33);
        const float* m = masked ? mask.data() : nullptr;
        auto dxw = nan_vector(nx), dxd = nan_vector(nx);
        {
          ForceAlgo f(cpu::ConvAlgo::Winograd);
          cpu::conv2d_bwd_data(dy.data(), w.data(), m, dxw.data(), s);
        }
        {
          ForceAlgo f(cpu::ConvAlgo::Direct);
          cpu::conv2d_bwd_data(dy.data(), w.data(), m, dxd.data(), s);
        }
        auto dxr = ref_bwd_data(ref::to_double(dy), ref::to_double(w), masked ? &mask : nullptr, s);
        CHECK(max_rel_error(dxw, dxd) <= 1e-4);
        CHECK(max_rel_error(dxw, dxr) <= 1e-4);
        CHECK(max_rel_error(dxd, dxr) <= 1e-5);
      }
    }
  }
}

// Forces one instruction set for the dispatched loops, then returns to the default.
struct ForceIsa {
  explicit ForceIsa(cpu::Isa i) { cpu::set_cpu_isa(i); }
  ~ForceIsa() { cpu::reset_cpu_isa(); }
  ForceIsa(const ForceIsa&) = delete;
  ForceIsa& operator=(const ForceIsa&) = delete;
};

TEST_CASE("winograd on every instruction set (baseline, avx2, avx512) vs double loops",
          "[cpu][conv][winograd][isa]") {
  // The transforms are compiled three times (engine/cpu/isa/); each copy the CPU can run must
  // match the double-loop reference, forward (bias + ReLU) and backward-data (mask).
  std::vector<cpu::Isa> isas;
  for (cpu::Isa i : {cpu::Isa::Baseline, cpu::Isa::Avx2, cpu::Isa::Avx512})
    if (cpu::isa_supported(i)) isas.push_back(i);
  if (!cpu::isa_supported(cpu::Isa::Avx512))
    WARN("this CPU has no AVX-512: the avx512 copy is compiled but not exercised here");
  CHECK(cpu::isa_supported(cpu::Isa::Baseline));
  CHECK(cpu::best_isa() == isas.back());
  for (cpu::Isa isa : isas) {
    for (const auto& cc : kCases) {
      DYNAMIC_SECTION(cpu::isa_name(isa) << " " << cc.name) {
        ForceIsa fi(isa);
        ForceAlgo fa(cpu::ConvAlgo::Winograd);
        REQUIRE(cpu::cpu_isa() == isa);
        const ConvShape& s = cc.s;
        const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.o * s.h * s.w;
        auto x = random_vector(nx, 41), w = random_vector(size_t(s.o) * s.c * 9, 42);
        auto b = random_vector(s.o, 43), dy = random_vector(ny, 44), mask = random_vector(nx, 45);
        auto y = nan_vector(ny), dx = nan_vector(nx);
        cpu::conv2d_fwd(x.data(), w.data(), b.data(), y.data(), s, true);
        cpu::conv2d_bwd_data(dy.data(), w.data(), mask.data(), dx.data(), s);
        auto bd = ref::to_double(b);
        CHECK(max_rel_error(
                  y, ref::conv2d_fwd(ref::to_double(x), ref::to_double(w), &bd, s, true)) <= 1e-4);
        CHECK(max_rel_error(dx, ref_bwd_data(ref::to_double(dy), ref::to_double(w), &mask, s)) <=
              1e-4);
      }
    }
  }
}

TEST_CASE("winograd filter cache follows in-place weight changes", "[cpu][conv][winograd]") {
  const ConvShape s{2, 19, 11, 9, 17, 3, 3, 1, 1};
  auto x = random_vector(size_t(s.n) * s.c * s.h * s.w, 41);
  auto w = random_vector(size_t(s.o) * s.c * 9, 42);
  const size_t ny = size_t(s.n) * s.o * s.h * s.w, nx = size_t(s.n) * s.c * s.h * s.w;
  ForceAlgo f(cpu::ConvAlgo::Winograd);
  for (int round = 0; round < 3; ++round) {
    if (round == 1) w[77] += 0.25f;  // one value, same buffer
    if (round == 2) {
      w[3] = -w[3];  // two sign flips in the same hash lane
      w[3 + 16] = -w[3 + 16];
    }
    auto y = nan_vector(ny), dx = nan_vector(nx);
    cpu::conv2d_fwd(x.data(), w.data(), nullptr, y.data(), s, false);
    cpu::conv2d_bwd_data(y.data(), w.data(), nullptr, dx.data(), s);
    const auto yr = ref::conv2d_fwd(ref::to_double(x), ref::to_double(w), nullptr, s, false);
    CHECK(max_rel_error(y, yr) <= 1e-4);
    CHECK(max_rel_error(dx, ref_bwd_data(ref::to_double(y), ref::to_double(w), nullptr, s)) <=
          1e-4);
  }
  cpu::winograd_clear_cache();
}

TEST_CASE("winograd vs direct at every vgg19 tap and the input gradient",
          "[cpu][conv][winograd][network]") {
  Network net(random_weights(Arch::VGG19, 7), Device::CPU);
  const Shape is{1, 3, 67, 93};
  Tensor img = Tensor::from_vector(is, random_vector(is.numel(), 8, 0.f, 1.f));
  // Conv taps (unfused conv) and ReLU/pool taps (conv + ReLU fused) in separate passes.
  std::vector<std::string> conv_taps, other_taps;
  for (const Layer& l : net.layers()) {
    if (l.kind == LayerKind::Conv) conv_taps.push_back(l.name);
    if (l.kind == LayerKind::Relu || l.kind == LayerKind::MaxPool) other_taps.push_back(l.name);
    if (l.name == "relu5_1") break;
  }
  REQUIRE(conv_taps.size() == 13);
  const std::string deep = "relu5_1";
  const Shape ds = net.tap_shape(deep, is);
  Tensor r = Tensor::from_vector(ds, random_vector(ds.numel(), 9));
  // The gradient pass runs the forward on the direct path in both cases, so that ReLU masks and
  // max-pool choices are the same (Winograd's last-bit differences flip a few near ties, which
  // moves gradient mass discontinuously), and only backward-data differs.
  auto run = [&](cpu::ConvAlgo a, std::vector<std::vector<float>>& acts, std::vector<float>& g) {
    {
      ForceAlgo f(a);
      for (const auto* taps : {&conv_taps, &other_taps}) {
        net.forward(img.view(), *taps);
        for (const auto& t : *taps) acts.push_back(net.tap(t).to_vector());
      }
    }
    {
      ForceAlgo f(cpu::ConvAlgo::Direct);
      net.forward(img.view(), {deep});
    }
    ForceAlgo f(a);
    Tensor gimg;
    net.backward({{deep, r.view()}}, gimg);
    g = gimg.to_vector();
  };
  std::vector<std::vector<float>> aw, ad;
  std::vector<float> gw, gd;
  run(cpu::ConvAlgo::Winograd, aw, gw);
  run(cpu::ConvAlgo::Direct, ad, gd);
  REQUIRE(aw.size() == ad.size());
  std::vector<std::string> names = conv_taps;
  names.insert(names.end(), other_taps.begin(), other_taps.end());
  for (size_t i = 0; i < aw.size(); ++i) {
    INFO("tap " << names[i]);
    CHECK(max_rel_error(aw[i], ad[i]) <= 1e-4);
  }
  CHECK(max_rel_error(gw, gd) <= 1e-4);
}

TEST_CASE("PREIMAGE_CPU_CONV selects the convolution algorithm", "[cpu][conv][winograd]") {
  const char* old = std::getenv("PREIMAGE_CPU_CONV");
  const std::string saved = old ? old : "";
  cpu::reset_conv_algo();
  setenv("PREIMAGE_CPU_CONV", "direct", 1);
  CHECK(cpu::conv_algo() == cpu::ConvAlgo::Direct);
  setenv("PREIMAGE_CPU_CONV", "winograd", 1);
  CHECK(cpu::conv_algo() == cpu::ConvAlgo::Winograd);
  cpu::set_conv_algo(cpu::ConvAlgo::Direct);  // the override wins over the environment
  CHECK(cpu::conv_algo() == cpu::ConvAlgo::Direct);
  cpu::reset_conv_algo();
  setenv("PREIMAGE_CPU_CONV", "fast", 1);
  CHECK_THROWS_WITH(cpu::conv_algo(), Catch::Contains("PREIMAGE_CPU_CONV") &&
                                          Catch::Contains("auto, direct or winograd"));
  if (saved.empty())
    unsetenv("PREIMAGE_CPU_CONV");
  else
    setenv("PREIMAGE_CPU_CONV", saved.c_str(), 1);
}
