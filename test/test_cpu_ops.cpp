// CPU backend ops against plain double loops (test/ref_ops.h) on random odd shapes, outputs
// pre-filled with NaN, and central-difference gradient checks in double.
#include <catch2/catch.hpp>

#include "engine/cpu/cpu_ops.h"
#include "test/ref_ops.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;

namespace {

struct ConvCase {
  ConvShape s;
  const char* name;
};

// Odd sizes, never only powers of two; C = 3 and 65; H×W = 7×13 and 67×93; batch 1 and 3.
const ConvCase kConvCases[] = {
    {{1, 3, 67, 93, 5, 3, 3, 1, 1}, "1x3x67x93 o5 3x3 p1"},
    {{3, 65, 7, 13, 33, 3, 3, 1, 1}, "3x65x7x13 o33 3x3 p1"},
    {{1, 65, 67, 93, 7, 3, 3, 1, 1}, "1x65x67x93 o7 3x3 p1"},
    {{2, 5, 11, 9, 7, 5, 5, 2, 2}, "2x5x11x9 o7 5x5 s2 p2"},
    {{3, 65, 7, 13, 5, 1, 1, 1, 0}, "3x65x7x13 o5 1x1"},
    {{1, 3, 67, 93, 5, 1, 1, 2, 0}, "1x3x67x93 o5 1x1 s2"},
};

// Gradient of L = Σ r·conv(x, w, b) with respect to everything, through the reference.
struct ConvGradCase {
  ConvShape s;
  const char* name;
};
const ConvGradCase kConvGradCases[] = {
    {{2, 5, 11, 9, 7, 3, 3, 1, 1}, "2x5x11x9 o7 3x3 p1"},
    {{1, 3, 7, 13, 5, 5, 5, 2, 2}, "1x3x7x13 o5 5x5 s2 p2"},
    {{3, 4, 5, 7, 3, 1, 1, 1, 0}, "3x4x5x7 o3 1x1"},
};

}  // namespace

TEST_CASE("cpu conv2d_fwd vs double reference", "[cpu][conv]") {
  for (const auto& cc : kConvCases) {
    for (bool relu : {false, true}) {
      DYNAMIC_SECTION(cc.name << (relu ? " relu" : "")) {
        const ConvShape& s = cc.s;
        auto x = random_vector(size_t(s.n) * s.c * s.h * s.w, 1);
        auto w = random_vector(size_t(s.o) * s.c * s.kh * s.kw, 2);
        auto b = random_vector(s.o, 3);
        auto y = nan_vector(size_t(s.n) * s.o * s.ho() * s.wo());
        cpu::conv2d_fwd(x.data(), w.data(), b.data(), y.data(), s, relu);
        auto bd = ref::to_double(b);
        auto yr = ref::conv2d_fwd(ref::to_double(x), ref::to_double(w), &bd, s, relu);
        CHECK(max_rel_error(y, yr) <= 1e-5);
      }
    }
  }
}

TEST_CASE("cpu conv2d backward vs central differences in double", "[cpu][conv][grad]") {
  for (const auto& cc : kConvGradCases) {
    DYNAMIC_SECTION(cc.name) {
      const ConvShape s = cc.s;
      const size_t nx = size_t(s.n) * s.c * s.h * s.w, nw = size_t(s.o) * s.c * s.kh * s.kw;
      const size_t ny = size_t(s.n) * s.o * s.ho() * s.wo();
      auto x = random_vector(nx, 11), w = random_vector(nw, 12), b = random_vector(s.o, 13);
      auto r = random_vector(ny, 14);
      auto xd = ref::to_double(x), wd = ref::to_double(w), bd = ref::to_double(b),
           rd = ref::to_double(r);
      auto loss = [&] { return ref::dot(rd, ref::conv2d_fwd(xd, wd, &bd, s, false)); };

      auto dx = nan_vector(nx);
      cpu::conv2d_bwd_data(r.data(), w.data(), nullptr, dx.data(), s);
      auto dw = nan_vector(nw), db = nan_vector(s.o);
      cpu::conv2d_bwd_filter(x.data(), r.data(), dw.data(), db.data(), s, false);

      std::vector<double> fd_x(nx), fd_w(nw), fd_b(s.o);
      for (size_t i = 0; i < nx; ++i) fd_x[i] = ref::central_difference(xd, i, 1e-3, loss);
      for (size_t i = 0; i < nw; ++i) fd_w[i] = ref::central_difference(wd, i, 1e-3, loss);
      for (int i = 0; i < s.o; ++i) fd_b[i] = ref::central_difference(bd, i, 1e-3, loss);
      CHECK(max_rel_error(dx, fd_x) <= 1e-5);
      CHECK(max_rel_error(dw, fd_w) <= 1e-5);
      CHECK(max_rel_error(db, fd_b) <= 1e-5);

      // accumulate adds onto what is there
      auto dw2 = dw, db2 = db;
      cpu::conv2d_bwd_filter(x.data(), r.data(), dw2.data(), db2.data(), s, true);
      for (size_t i = 0; i < nw; ++i) dw[i] *= 2;
      for (int i = 0; i < s.o; ++i) db[i] *= 2;
      CHECK(max_rel_error(dw2, dw) <= 1e-6);
      CHECK(max_rel_error(db2, db) <= 1e-6);

      // fused ReLU mask: dx·[mask > 0]
      auto mask = random_vector(nx, 15);
      auto dxm = nan_vector(nx);
      cpu::conv2d_bwd_data(r.data(), w.data(), mask.data(), dxm.data(), s);
      for (size_t i = 0; i < nx; ++i) fd_x[i] = mask[i] > 0 ? fd_x[i] : 0.0;
      CHECK(max_rel_error(dxm, fd_x) <= 1e-5);
    }
  }
}

TEST_CASE("cpu pooling vs double reference and central differences", "[cpu][pool][grad]") {
  const PoolShape cases[] = {{1, 3, 67, 93, 2, 2, 0},
                             {3, 65, 7, 13, 2, 2, 0},
                             {2, 5, 11, 9, 3, 2, 1},
                             {1, 3, 7, 13, 3, 1, 1}};
  for (const PoolShape& s : cases) {
    for (bool max : {true, false}) {
      DYNAMIC_SECTION((max ? "max " : "avg ") << s.n << "x" << s.c << "x" << s.h << "x" << s.w
                                              << " k" << s.k << " s" << s.stride << " p" << s.pad) {
        const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.c * s.ho() * s.wo();
        auto x = random_vector(nx, 21);
        auto y = nan_vector(ny);
        (max ? cpu::maxpool_fwd : cpu::avgpool_fwd)(x.data(), y.data(), s);
        auto xd = ref::to_double(x);
        CHECK(max_rel_error(y, ref::pool_fwd(xd, s, max)) <= 1e-6);

        auto r = random_vector(ny, 22);
        auto rd = ref::to_double(r);
        auto dx = nan_vector(nx);
        if (max)
          cpu::maxpool_bwd(x.data(), r.data(), dx.data(), s);
        else
          cpu::avgpool_bwd(r.data(), dx.data(), s);
        // Checked on the small cases only (the step must stay below the gap between values).
        if (nx < 20000) {
          auto loss = [&] { return ref::dot(rd, ref::pool_fwd(xd, s, max)); };
          std::vector<double> fd(nx);
          for (size_t i = 0; i < nx; ++i) fd[i] = ref::central_difference(xd, i, 1e-6, loss);
          CHECK(max_rel_error(dx, fd) <= 1e-5);
        }
      }
    }
  }
}

TEST_CASE("cpu maxpool backward sends ties to the first maximum", "[cpu][pool]") {
  const PoolShape s{1, 1, 4, 4, 2, 2, 0};
  std::vector<float> x(16, 0.f), dy = {1, 2, 3, 4}, dx = nan_vector(16);
  cpu::maxpool_bwd(x.data(), dy.data(), dx.data(), s);
  CHECK(dx[0] == 1.f);
  CHECK(dx[2] == 2.f);
  CHECK(dx[8] == 3.f);
  CHECK(dx[10] == 4.f);
  CHECK(dx[1] == 0.f);
}

TEST_CASE("cpu linear vs double reference and central differences", "[cpu][linear][grad]") {
  const int n = 3, in = 37, out = 11;
  auto x = random_vector(size_t(n) * in, 31), w = random_vector(size_t(out) * in, 32),
       b = random_vector(out, 33), r = random_vector(size_t(n) * out, 34);
  auto y = nan_vector(size_t(n) * out);
  cpu::linear_fwd(x.data(), w.data(), b.data(), y.data(), n, in, out);
  auto xd = ref::to_double(x), wd = ref::to_double(w), bd = ref::to_double(b),
       rd = ref::to_double(r);
  CHECK(max_rel_error(y, ref::linear_fwd(xd, wd, &bd, n, in, out)) <= 1e-5);
  auto loss = [&] { return ref::dot(rd, ref::linear_fwd(xd, wd, &bd, n, in, out)); };
  auto dx = nan_vector(x.size()), dw = nan_vector(w.size()), db = nan_vector(out);
  cpu::linear_bwd_data(r.data(), w.data(), dx.data(), n, in, out);
  cpu::linear_bwd_weights(x.data(), r.data(), dw.data(), db.data(), n, in, out, false);
  std::vector<double> fx(x.size()), fw(w.size()), fb(out);
  for (size_t i = 0; i < x.size(); ++i) fx[i] = ref::central_difference(xd, i, 1e-3, loss);
  for (size_t i = 0; i < w.size(); ++i) fw[i] = ref::central_difference(wd, i, 1e-3, loss);
  for (int i = 0; i < out; ++i) fb[i] = ref::central_difference(bd, i, 1e-3, loss);
  CHECK(max_rel_error(dx, fx) <= 1e-5);
  CHECK(max_rel_error(dw, fw) <= 1e-5);
  CHECK(max_rel_error(db, fb) <= 1e-5);
}

TEST_CASE("cpu element-wise ops and reductions", "[cpu][elementwise]") {
  const size_t n = 65 * 67 * 93 + 7;
  auto x = random_vector(n, 41), y = random_vector(n, 42);
  auto out = nan_vector(n);
  cpu::relu_fwd(x.data(), out.data(), n);
  for (size_t i = 0; i < n; i += 997) CHECK(out[i] == std::max(x[i], 0.f));
  auto dx = nan_vector(n);
  cpu::relu_bwd(out.data(), y.data(), dx.data(), n);
  for (size_t i = 0; i < n; i += 997) CHECK(dx[i] == (x[i] > 0 ? y[i] : 0.f));
  auto z = nan_vector(n);
  cpu::axpby(2.f, x.data(), 0.f, z.data(), n);  // b = 0 ignores NaN in y
  CHECK(std::isfinite(z[5]));
  cpu::axpby(0.5f, x.data(), -1.5f, z.data(), n);
  for (size_t i = 0; i < n; i += 997) CHECK(z[i] == Approx(-2.5f * x[i]).margin(1e-6));
  double d = 0, s = 0, q = 0;
  for (size_t i = 0; i < n; ++i) {
    d += double(x[i]) * y[i];
    s += x[i];
    q += double(x[i]) * x[i];
  }
  CHECK(cpu::dot(x.data(), y.data(), n) == Approx(d).epsilon(1e-10));
  CHECK(cpu::sum(x.data(), n) == Approx(s).epsilon(1e-10));
  CHECK(cpu::sum_squares(x.data(), n) == Approx(q).epsilon(1e-10));

  ChannelAffine a;
  a.c = 3;
  a.perm[0] = 2, a.perm[1] = 1, a.perm[2] = 0;
  a.scale[0] = 2, a.scale[1] = -1, a.scale[2] = 0.5f;
  a.shift[0] = 1, a.shift[1] = 0, a.shift[2] = -3;
  const size_t plane = 67 * 93;
  auto img = random_vector(2 * 3 * plane, 43);
  auto o = nan_vector(img.size());
  cpu::channel_affine(img.data(), o.data(), 2, plane, a);
  for (int b2 = 0; b2 < 2; ++b2)
    for (int c = 0; c < 3; ++c)
      for (size_t p = 0; p < plane; p += 101)
        CHECK(o[(b2 * 3 + c) * plane + p] ==
              Approx(a.scale[c] * img[(b2 * 3 + a.perm[c]) * plane + p] + a.shift[c]));
}
