// Transposed convolution and leaky ReLU (engine/cpu/conv_transpose.cpp, kernels/conv_transpose.cu).
//
// CPU: forward against a direct double-precision reference of PyTorch's ConvTranspose2d;
// backward-data and backward-filter (+ bias) against central differences of that reference in
// double (the loss Σ r⊙y is linear, so differences are exact up to rounding). Kernels: every
// version against the CPU under the three simulator thread orders, NaN-prefilled outputs, odd
// shapes with strides 1–3, padding and output padding. PyTorch itself: test/conv_transpose_torch.py
// (ctest conv_transpose_vs_torch).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::ConvTransposeShape;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

std::vector<ConvTransposeShape> shapes() {
  return {
      {2, 3, 5, 7, 4, 3, 1, 1, 0},    // stride 1 = a "same" convolution's adjoint
      {1, 5, 6, 5, 3, 4, 2, 1, 0},    // the decoder's up-conv: 4×4 / 2, pad 1 → 2× size
      {3, 4, 7, 9, 5, 4, 2, 1, 1},    // output padding
      {2, 3, 4, 5, 2, 3, 3, 0, 2},    // stride 3, no padding, out_pad 2
      {1, 2, 3, 3, 3, 5, 2, 2, 1},    // kernel wider than the input
      {1, 17, 9, 11, 13, 4, 2, 1, 0}  // more channels
  };
}

std::string describe(const ConvTransposeShape& s) {
  std::ostringstream os;
  os << "n=" << s.n << " c=" << s.c << " " << s.h << "x" << s.w << " o=" << s.o << " k=" << s.k
     << " s=" << s.stride << " p=" << s.pad << " op=" << s.out_pad << " → " << s.ho() << "x"
     << s.wo();
  return os.str();
}

size_t x_size(const ConvTransposeShape& s) {
  return size_t(s.n) * s.c * s.h * s.w;
}
size_t y_size(const ConvTransposeShape& s) {
  return size_t(s.n) * s.o * s.ho() * s.wo();
}
size_t w_size(const ConvTransposeShape& s) {
  return size_t(s.c) * s.o * s.k * s.k;
}

// Direct double reference of ConvTranspose2d (scatter form, independent of the gather kernels).
std::vector<double> ref_fwd(const std::vector<double>& x, const std::vector<double>& w,
                            const std::vector<double>& b, const ConvTransposeShape& s) {
  const int ho = s.ho(), wo = s.wo();
  std::vector<double> y(y_size(s));
  for (int n = 0; n < s.n; ++n)
    for (int o = 0; o < s.o; ++o)
      for (int i = 0; i < ho * wo; ++i) y[(size_t(n) * s.o + o) * ho * wo + i] = b[o];
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int ih = 0; ih < s.h; ++ih)
        for (int iw = 0; iw < s.w; ++iw) {
          const double xv = x[((size_t(n) * s.c + c) * s.h + ih) * s.w + iw];
          for (int o = 0; o < s.o; ++o)
            for (int kh = 0; kh < s.k; ++kh)
              for (int kw = 0; kw < s.k; ++kw) {
                const int oh = ih * s.stride - s.pad + kh, ow = iw * s.stride - s.pad + kw;
                if (oh < 0 || oh >= ho || ow < 0 || ow >= wo) continue;
                y[((size_t(n) * s.o + o) * ho + oh) * wo + ow] +=
                    xv * w[((size_t(c) * s.o + o) * s.k + kh) * s.k + kw];
              }
        }
  return y;
}

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0;
  for (size_t i = 0; i < a.size(); ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

TEST_CASE("conv_transpose cpu forward vs double reference", "[conv_transpose]") {
  const auto all = shapes();
  const int ci = GENERATE_COPY(range(0, int(all.size())));
  const ConvTransposeShape s = all[ci];
  INFO(describe(s));
  const auto x = random_vector(x_size(s), 1 + ci), w = random_vector(w_size(s), 2 + ci),
             b = random_vector(s.o, 3 + ci);
  auto y = nan_vector(y_size(s));
  cpu::conv_transpose_fwd(x.data(), w.data(), b.data(), y.data(), s);
  CHECK(max_rel_error(y, ref_fwd(to_double(x), to_double(w), to_double(b), s)) <= 1e-5);
  // without bias
  cpu::conv_transpose_fwd(x.data(), w.data(), nullptr, y.data(), s);
  CHECK(max_rel_error(y, ref_fwd(to_double(x), to_double(w), std::vector<double>(s.o, 0.0), s)) <=
        1e-5);
}

TEST_CASE("conv_transpose cpu gradients vs central differences", "[conv_transpose]") {
  const auto all = shapes();
  const int ci = GENERATE_COPY(range(0, int(all.size())));
  const ConvTransposeShape s = all[ci];
  INFO(describe(s));
  const auto x = random_vector(x_size(s), 11 + ci), w = random_vector(w_size(s), 12 + ci),
             b = random_vector(s.o, 13 + ci), r = random_vector(y_size(s), 14 + ci);
  auto xd = to_double(x), wd = to_double(w), bd = to_double(b);
  const auto rd = to_double(r);
  // L = Σ r ⊙ y: dL/dy = r.
  auto dx = nan_vector(x_size(s)), dw = nan_vector(w_size(s)), db = nan_vector(s.o);
  cpu::conv_transpose_bwd_data(r.data(), w.data(), dx.data(), s);
  cpu::conv_transpose_bwd_filter(x.data(), r.data(), dw.data(), db.data(), s, false);
  const double h = 1e-3;
  auto numeric = [&](std::vector<double>& v) {
    std::vector<double> g(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const double keep = v[i];
      v[i] = keep + h;
      const double lp = dot(rd, ref_fwd(xd, wd, bd, s));
      v[i] = keep - h;
      const double lm = dot(rd, ref_fwd(xd, wd, bd, s));
      v[i] = keep;
      g[i] = (lp - lm) / (2 * h);
    }
    return g;
  };
  CHECK(max_rel_error(dx, numeric(xd)) <= 1e-5);
  CHECK(max_rel_error(dw, numeric(wd)) <= 1e-5);
  CHECK(max_rel_error(db, numeric(bd)) <= 1e-5);
  // accumulate adds to what is there
  auto dw2 = dw, db2 = db;
  cpu::conv_transpose_bwd_filter(x.data(), r.data(), dw2.data(), db2.data(), s, true);
  for (auto& v : dw) v *= 2;
  for (auto& v : db) v *= 2;
  CHECK(max_rel_error(dw2, dw) <= 1e-6);
  CHECK(max_rel_error(db2, db) <= 1e-6);
}

TEST_CASE("conv_transpose kernels all versions vs cpu", "[kernels][conv_transpose]") {
  const auto all = shapes();
  const int ci = GENERATE_COPY(range(0, int(all.size())));
  const ConvTransposeShape s = all[ci];
  INFO(describe(s));
  const auto x = random_vector(x_size(s), 21 + ci), w = random_vector(w_size(s), 22 + ci),
             b = random_vector(s.o, 23 + ci), dy = random_vector(y_size(s), 24 + ci),
             dw0 = random_vector(w_size(s), 25 + ci), db0 = random_vector(s.o, 26 + ci);
  std::vector<float> y(y_size(s)), dx(x_size(s)), dw(w_size(s)), db(s.o), dwa = dw0, dba = db0;
  cpu::conv_transpose_fwd(x.data(), w.data(), b.data(), y.data(), s);
  cpu::conv_transpose_bwd_data(dy.data(), w.data(), dx.data(), s);
  cpu::conv_transpose_bwd_filter(x.data(), dy.data(), dw.data(), db.data(), s, false);
  cpu::conv_transpose_bwd_filter(x.data(), dy.data(), dwa.data(), dba.data(), s, true);
  DeviceBuffer gx(x), gw(w), gb(b), gdy(dy), out_y(y.size()), out_dx(dx.size()), out_dw(dw.size()),
      out_db(db.size());
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out_y.upload(nan_vector(y.size()));
    kernels::conv_transpose_fwd(gx.get(), gw.get(), gb.get(), out_y.get(), s);
    CHECK(max_rel_error(out_y.download(), y) <= 1e-5);
    out_dx.upload(nan_vector(dx.size()));
    kernels::conv_transpose_bwd_data(gdy.get(), gw.get(), out_dx.get(), s);
    CHECK(max_rel_error(out_dx.download(), dx) <= 1e-5);
    for (int v = 0; v <= kernels::conv_transpose_versions(); ++v) {
      INFO("bwd_filter version " << v);
      out_dw.upload(nan_vector(dw.size()));
      out_db.upload(nan_vector(db.size()));
      kernels::conv_transpose_bwd_filter(gx.get(), gdy.get(), out_dw.get(), out_db.get(), s, false,
                                         v);
      CHECK(max_rel_error(out_dw.download(), dw) <= 1e-5);
      CHECK(max_rel_error(out_db.download(), db) <= 1e-5);
      out_dw.upload(dw0);
      out_db.upload(db0);
      kernels::conv_transpose_bwd_filter(gx.get(), gdy.get(), out_dw.get(), out_db.get(), s, true,
                                         v);
      CHECK(max_rel_error(out_dw.download(), dwa) <= 1e-5);
      CHECK(max_rel_error(out_db.download(), dba) <= 1e-5);
      // db may be null
      out_dw.upload(nan_vector(dw.size()));
      kernels::conv_transpose_bwd_filter(gx.get(), gdy.get(), out_dw.get(), nullptr, s, false, v);
      CHECK(max_rel_error(out_dw.download(), dw) <= 1e-5);
    }
  });
}

TEST_CASE("leaky_relu cpu and kernels", "[kernels][conv_transpose]") {
  const size_t n = GENERATE(size_t(1), size_t(37), size_t(4099));
  const float slope = 0.2f;
  const auto x = random_vector(n, 31);
  const auto dy = random_vector(n, 32);
  std::vector<float> y(n), dx(n), want_y(n), want_dx(n);
  for (size_t i = 0; i < n; ++i) {
    want_y[i] = x[i] > 0 ? x[i] : slope * x[i];
    want_dx[i] = x[i] > 0 ? dy[i] : slope * dy[i];
  }
  cpu::leaky_relu_fwd(x.data(), y.data(), n, slope);
  cpu::leaky_relu_bwd(y.data(), dy.data(), dx.data(), n, slope);
  CHECK(max_rel_error(y, want_y) == 0.0);
  CHECK(max_rel_error(dx, want_dx) == 0.0);
  DeviceBuffer gx(x), gy(n), gdy(dy), gdx(n);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    gy.upload(nan_vector(n));
    gdx.upload(nan_vector(n));
    kernels::leaky_relu_fwd(gx.get(), gy.get(), n, slope);
    kernels::leaky_relu_bwd(gy.get(), gdy.get(), gdx.get(), n, slope);
    CHECK(max_rel_error(gy.download(), want_y) == 0.0);
    CHECK(max_rel_error(gdx.download(), want_dx) == 0.0);
  });
}

TEST_CASE("conv_transpose kernels reject invalid arguments", "[kernels][conv_transpose]") {
  DeviceBuffer a(64), b(64), c(64);
  const ConvTransposeShape ok{1, 1, 2, 2, 1, 2, 2, 0, 0};
  CHECK_THROWS_AS(
      kernels::conv_transpose_bwd_filter(a.get(), b.get(), c.get(), nullptr, ok, false, 3),
      std::invalid_argument);
  CHECK_THROWS_AS(kernels::conv_transpose_fwd(a.get(), b.get(), nullptr, c.get(), ok, 2),
                  std::invalid_argument);
  const ConvTransposeShape bad_pad{1, 1, 2, 2, 1, 2, 2, 0, 2};  // out_pad ≥ stride
  CHECK_THROWS_AS(kernels::conv_transpose_fwd(a.get(), b.get(), nullptr, c.get(), bad_pad),
                  std::invalid_argument);
}

namespace {

std::vector<float> read_bin(const std::string& path, size_t n) {
  std::vector<float> v(n);
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  const size_t got = std::fread(v.data(), sizeof(float), n, f);
  std::fclose(f);
  REQUIRE(got == n);
  return v;
}

}  // namespace

// Data from test/conv_transpose_torch.py (ctest conv_transpose_vs_torch sets the directory).
TEST_CASE("conv_transpose and adam vs torch", "[torch][conv_transpose]") {
  const char* env = std::getenv("PREIMAGE_CT_TORCH_DATA");
  if (!env) {
    WARN("PREIMAGE_CT_TORCH_DATA unset: run ctest -R conv_transpose_vs_torch");
    return;
  }
  const std::string dir = env;
  for (int i = 0;; ++i) {
    const std::string base = dir + "/ct" + std::to_string(i) + "_";
    FILE* sf = std::fopen((base + "shape.txt").c_str(), "r");
    if (!sf) {
      CHECK(i == 5);
      break;
    }
    ConvTransposeShape s{};
    REQUIRE(std::fscanf(sf, "%d %d %d %d %d %d %d %d %d", &s.n, &s.c, &s.h, &s.w, &s.o, &s.k,
                        &s.stride, &s.pad, &s.out_pad) == 9);
    std::fclose(sf);
    INFO(describe(s));
    const auto x = read_bin(base + "x.bin", x_size(s)), w = read_bin(base + "w.bin", w_size(s)),
               b = read_bin(base + "b.bin", s.o), dy = read_bin(base + "dy.bin", y_size(s));
    const auto y = read_bin(base + "y.bin", y_size(s)), dx = read_bin(base + "dx.bin", x_size(s)),
               dw = read_bin(base + "dw.bin", w_size(s)), db = read_bin(base + "db.bin", s.o);
    auto gy = nan_vector(y.size()), gdx = nan_vector(dx.size()), gdw = nan_vector(dw.size()),
         gdb = nan_vector(db.size());
    cpu::conv_transpose_fwd(x.data(), w.data(), b.data(), gy.data(), s);
    cpu::conv_transpose_bwd_data(dy.data(), w.data(), gdx.data(), s);
    cpu::conv_transpose_bwd_filter(x.data(), dy.data(), gdw.data(), gdb.data(), s, false);
    CHECK(max_rel_error(gy, y) <= 1e-5);
    CHECK(max_rel_error(gdx, dx) <= 1e-5);
    CHECK(max_rel_error(gdw, dw) <= 1e-5);
    CHECK(max_rel_error(gdb, db) <= 1e-5);
    DeviceBuffer kx(x), kw(w), kb(b), kdy(dy), ky(y.size()), kdx(dx.size()), kdw(dw.size()),
        kdb(db.size());
    kernels::conv_transpose_fwd(kx.get(), kw.get(), kb.get(), ky.get(), s);
    kernels::conv_transpose_bwd_data(kdy.get(), kw.get(), kdx.get(), s);
    kernels::conv_transpose_bwd_filter(kx.get(), kdy.get(), kdw.get(), kdb.get(), s, false);
    CHECK(max_rel_error(ky.download(), y) <= 1e-5);
    CHECK(max_rel_error(kdx.download(), dx) <= 1e-5);
    CHECK(max_rel_error(kdw.download(), dw) <= 1e-5);
    CHECK(max_rel_error(kdb.download(), db) <= 1e-5);
  }
  const size_t n = 257;
  auto p = read_bin(dir + "/adam_p0.bin", n);
  DeviceBuffer kp(p), km(std::vector<float>(n, 0.f)), kv(std::vector<float>(n, 0.f));
  std::vector<float> m(n, 0.f), v(n, 0.f);
  for (long t = 1; t <= 5; ++t) {
    const auto g = read_bin(dir + "/adam_g" + std::to_string(t) + ".bin", n);
    DeviceBuffer kg(g);
    cpu::adam_update(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, t, 1.f);
    kernels::adam_update(kp.get(), kg.get(), km.get(), kv.get(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, t,
                         1.f);
  }
  const auto want = read_bin(dir + "/adam_p.bin", n);
  CHECK(max_rel_error(p, want) <= 1e-6);
  CHECK(max_rel_error(kp.download(), want) <= 1e-6);
}
