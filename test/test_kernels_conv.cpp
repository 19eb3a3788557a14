// conv2d kernels (kernels/conv2d.cu), every version, against the CPU backend (preimage::cpu).
//
// Shapes: C ∈ {3, 65}, H×W ∈ {7×13, 67×93}, N ∈ {1, 3}, O ∈ {5, 33}, filters 1×1 (s1 p0),
// 3×3 (s1 p1), 5×5 (s2 p2). The simulator runs every CUDA thread on the CPU (≈120 ns per
// thread + ≈100 ns per thread and barrier), so only 7×13 gets the full cross product; 67×93
// with C = 3 runs (N=3, O=5) and (N=1, O=33) with every filter; the heavy 67×93 × C=65 corner
// runs once: N=1, O=5, 3×3.
// A few extra shapes reach the code paths the sweep cannot: O or C > 64 (128-row tiles),
// 32 < C ≤ 64 (64-row tile of backward-data), strided 3×3 (generic backward gather), K % 4 == 0
// (float4 weight loads) and HO·WO % 4 == 0 (float4 stores). Every shape runs every explicit
// version (so backward-data v3, the small-C kernel, also sees C = 65 in 17 channel groups) and
// version 0 (the launcher's choice: v3 for C = 3).
// Outputs start as NaN so that an element a kernel forgets to write fails; every case runs under
// the three simulator thread orders (test::for_each_schedule). Tolerance: relative 1e-5.
#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::ConvShape;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

constexpr double kTol = 1e-5;

std::vector<ConvShape> conv_shapes() {
  struct Filter {
    int k, stride, pad;
  };
  const Filter filters[] = {{1, 1, 0}, {3, 1, 1}, {5, 2, 2}};
  const int sizes[][2] = {{7, 13}, {67, 93}};
  std::vector<ConvShape> v;
  for (auto& hw : sizes)
    for (int c : {3, 65})
      for (int n : {1, 3})
        for (int o : {5, 33})
          for (const Filter& f : filters) {
            if (hw[0] == 67 && (c == 65 || (n == 3) != (o == 5))) continue;  // see above
            v.push_back({n, c, hw[0], hw[1], o, f.k, f.k, f.stride, f.pad});
          }
  v.push_back({1, 65, 67, 93, 5, 3, 3, 1, 1});   // heavy corner
  v.push_back({3, 33, 7, 13, 133, 3, 3, 1, 1});  // O > 64: 128-row tiles; C 33: 64-row bwd tile
  v.push_back({2, 133, 7, 13, 33, 3, 3, 1, 1});  // C > 64: 128-row backward-data tile
  v.push_back({2, 33, 9, 11, 7, 3, 3, 2, 1});    // strided 3×3: generic backward gather
  v.push_back({1, 70, 9, 11, 7, 3, 3, 2, 1});    // generic gather, C > 64 (capped tile)
  v.push_back({2, 8, 8, 12, 20, 3, 3, 1, 1});    // K = 72, HO·WO = 96: float4 paths
  v.push_back({1, 12, 16, 16, 70, 1, 1, 1, 0});  // 1×1, K = 12, O > 64, float4 paths
  v.push_back({2, 5, 10, 9, 3, 4, 2, 3, 1});     // non-square filter, stride 3
  return v;
}

std::string describe(const ConvShape& s) {
  std::ostringstream os;
  os << "n=" << s.n << " c=" << s.c << " " << s.h << "x" << s.w << " o=" << s.o << " k=" << s.kh
     << "x" << s.kw << " s=" << s.stride << " p=" << s.pad;
  return os.str();
}

size_t x_size(const ConvShape& s) {
  return size_t(s.n) * s.c * s.h * s.w;
}
size_t y_size(const ConvShape& s) {
  return size_t(s.n) * s.o * s.ho() * s.wo();
}
size_t w_size(const ConvShape& s) {
  return size_t(s.o) * s.c * s.kh * s.kw;
}

}  // namespace

TEST_CASE("kernels conv2d_fwd all versions vs cpu", "[kernels][conv2d]") {
  const auto shapes = conv_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const ConvShape s = shapes[ci];
  const bool relu = ci % 2 == 0, with_bias = ci % 3 != 1;
  INFO(describe(s) << (relu ? " relu" : "") << (with_bias ? " bias" : ""));

  const auto x = random_vector(x_size(s), 100 + ci);
  const auto w = random_vector(w_size(s), 200 + ci);
  const auto b = random_vector(size_t(s.o), 300 + ci);
  std::vector<float> want(y_size(s));
  cpu::conv2d_fwd(x.data(), w.data(), with_bias ? b.data() : nullptr, want.data(), s, relu);

  DeviceBuffer dx(x), dw(w), db(b), dy(y_size(s));
  for (int v = 0; v <= kernels::conv2d_fwd_versions(); ++v) {
    for_each_schedule([&](const char* order) {
      INFO("version " << v << ", " << order << " order");
      dy.upload(nan_vector(dy.size()));
      kernels::conv2d_fwd(dx.get(), dw.get(), with_bias ? db.get() : nullptr, dy.get(), s, relu, v);
      CHECK(max_rel_error(dy.download(), want) <= kTol);
    });
  }
}

TEST_CASE("kernels conv2d_bwd_data all versions vs cpu", "[kernels][conv2d]") {
  const auto shapes = conv_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const ConvShape s = shapes[ci];
  const bool with_mask = ci % 2 == 1;
  INFO(describe(s) << (with_mask ? " mask" : ""));

  const auto g = random_vector(y_size(s), 400 + ci);
  const auto w = random_vector(w_size(s), 500 + ci);
  const auto mask = random_vector(x_size(s), 600 + ci);  // about half the entries ≤ 0
  std::vector<float> want(x_size(s));
  cpu::conv2d_bwd_data(g.data(), w.data(), with_mask ? mask.data() : nullptr, want.data(), s);

  DeviceBuffer dg(g), dw(w), dm(mask), dx(x_size(s));
  for (int v = 0; v <= kernels::conv2d_bwd_data_versions(); ++v) {
    for_each_schedule([&](const char* order) {
      INFO("version " << v << ", " << order << " order");
      dx.upload(nan_vector(dx.size()));
      kernels::conv2d_bwd_data(dg.get(), dw.get(), with_mask ? dm.get() : nullptr, dx.get(), s, v);
      CHECK(max_rel_error(dx.download(), want) <= kTol);
    });
  }
}

TEST_CASE("kernels conv2d_bwd_filter all versions vs cpu", "[kernels][conv2d]") {
  const auto shapes = conv_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const ConvShape s = shapes[ci];
  const bool accumulate = ci % 2 == 1, with_db = ci % 3 != 2;
  INFO(describe(s) << (accumulate ? " accumulate" : "") << (with_db ? " db" : ""));

  const auto x = random_vector(x_size(s), 700 + ci);
  const auto g = random_vector(y_size(s), 800 + ci);
  // accumulate: dw/db start from these values; otherwise from NaN (must be overwritten)
  const auto dw0 = accumulate ? random_vector(w_size(s), 900 + ci) : nan_vector(w_size(s));
  const auto db0 = accumulate ? random_vector(size_t(s.o), 1000 + ci) : nan_vector(size_t(s.o));
  std::vector<float> want_w = dw0, want_b = db0;
  cpu::conv2d_bwd_filter(x.data(), g.data(), want_w.data(), with_db ? want_b.data() : nullptr, s,
                         accumulate);

  DeviceBuffer dx(x), dg(g), dw(w_size(s)), db(size_t(s.o));
  for (int v = 0; v <= kernels::conv2d_bwd_filter_versions(); ++v) {
    for_each_schedule([&](const char* order) {
      INFO("version " << v << ", " << order << " order");
      dw.upload(dw0);
      db.upload(db0);
      kernels::conv2d_bwd_filter(dx.get(), dg.get(), dw.get(), with_db ? db.get() : nullptr, s,
                                 accumulate, v);
      CHECK(max_rel_error(dw.download(), want_w) <= kTol);
      if (with_db) CHECK(max_rel_error(db.download(), want_b) <= kTol);
    });
  }
}

TEST_CASE("kernels conv2d versions and invalid arguments", "[kernels][conv2d]") {
  CHECK(kernels::conv2d_fwd_versions() == 3);
  CHECK(kernels::conv2d_bwd_data_versions() == 3);
  CHECK(kernels::conv2d_bwd_filter_versions() == 2);
  const ConvShape s{1, 3, 7, 13, 5, 3, 3, 1, 1};
  DeviceBuffer x(x_size(s)), w(w_size(s)), y(y_size(s));
  CHECK_THROWS_AS(kernels::conv2d_fwd(x.get(), w.get(), nullptr, y.get(), s, false, 4),
                  std::invalid_argument);
  CHECK_THROWS_AS(kernels::conv2d_bwd_data(y.get(), w.get(), nullptr, x.get(), s, 4),
                  std::invalid_argument);
  const ConvShape bad{1, 3, 2, 2, 5, 5, 5, 1, 0};  // filter larger than the input
  CHECK_THROWS_AS(kernels::conv2d_fwd(x.get(), w.get(), nullptr, y.get(), bad, false, 0),
                  std::invalid_argument);
}
