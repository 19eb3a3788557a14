// Pooling kernels (kernels/pool.cu), every version, against the CPU backend (preimage::cpu).
//
// Shapes: C ∈ {3, 65}, H×W ∈ {7×13, 67×93}, N ∈ {1, 3}, pools k=2 s=2 (VGG's) and k=3 s=2 p=1
// (overlapping windows, padding); the full cross product except 67×93 × C=65, which runs with
// N=1 only (the simulator runs one CPU fiber per CUDA thread). Outputs start as NaN; every case
// runs under the three simulator thread orders; tolerance: relative 1e-5. A separate case
// draws inputs from {0, 1, 2} so that windows tie and the first-maximum rule decides.
#include <catch2/catch.hpp>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::PoolShape;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

constexpr double kTol = 1e-5;

std::vector<PoolShape> pool_shapes() {
  const int sizes[][2] = {{7, 13}, {67, 93}};
  const int windows[][3] = {{2, 2, 0}, {3, 2, 1}};  // k, stride, pad
  std::vector<PoolShape> v;
  for (auto& hw : sizes)
    for (int c : {3, 65})
      for (int n : {1, 3})
        for (auto& k : windows) {
          if (hw[0] == 67 && c == 65 && n == 3) continue;  // heavy: N = 1 only
          v.push_back({n, c, hw[0], hw[1], k[0], k[1], k[2]});
        }
  return v;
}

std::string describe(const PoolShape& s) {
  std::ostringstream os;
  os << "n=" << s.n << " c=" << s.c << " " << s.h << "x" << s.w << " k=" << s.k << " s=" << s.stride
     << " p=" << s.pad;
  return os.str();
}

size_t in_size(const PoolShape& s) {
  return size_t(s.n) * s.c * s.h * s.w;
}
size_t out_size(const PoolShape& s) {
  return size_t(s.n) * s.c * s.ho() * s.wo();
}

enum class Op { MaxFwd, MaxBwd, AvgFwd, AvgBwd };

// Runs `op` for every version and schedule on shape s, input x (and dy), against the CPU.
void check_pool(Op op, const PoolShape& s, const std::vector<float>& x,
                const std::vector<float>& g) {
  const bool fwd = op == Op::MaxFwd || op == Op::AvgFwd;
  std::vector<float> want(fwd ? out_size(s) : in_size(s));
  switch (op) {
    case Op::MaxFwd:
      cpu::maxpool_fwd(x.data(), want.data(), s);
      break;
    case Op::MaxBwd:
      cpu::maxpool_bwd(x.data(), g.data(), want.data(), s);
      break;
    case Op::AvgFwd:
      cpu::avgpool_fwd(x.data(), want.data(), s);
      break;
    case Op::AvgBwd:
      cpu::avgpool_bwd(g.data(), want.data(), s);
      break;
  }
  DeviceBuffer dx(x), dg(g), out(want.size());
  for (int v = 0; v <= kernels::pool_versions(); ++v) {
    for_each_schedule([&](const char* order) {
      INFO("version " << v << ", " << order << " order");
      out.upload(nan_vector(out.size()));
      switch (op) {
        case Op::MaxFwd:
          kernels::maxpool_fwd(dx.get(), out.get(), s, v);
          break;
        case Op::MaxBwd:
          kernels::maxpool_bwd(dx.get(), dg.get(), out.get(), s, v);
          break;
        case Op::AvgFwd:
          kernels::avgpool_fwd(dx.get(), out.get(), s, v);
          break;
        case Op::AvgBwd:
          kernels::avgpool_bwd(dg.get(), out.get(), s, v);
          break;
      }
      CHECK(max_rel_error(out.download(), want) <= kTol);
    });
  }
}

}  // namespace

TEST_CASE("kernels maxpool_fwd all versions vs cpu", "[kernels][pool]") {
  const auto shapes = pool_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const PoolShape s = shapes[ci];
  INFO(describe(s));
  check_pool(Op::MaxFwd, s, random_vector(in_size(s), 10 + ci), {});
}

TEST_CASE("kernels maxpool_bwd all versions vs cpu", "[kernels][pool]") {
  const auto shapes = pool_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const PoolShape s = shapes[ci];
  INFO(describe(s));
  check_pool(Op::MaxBwd, s, random_vector(in_size(s), 20 + ci),
             random_vector(out_size(s), 30 + ci));
}

TEST_CASE("kernels avgpool_fwd all versions vs cpu", "[kernels][pool]") {
  const auto shapes = pool_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const PoolShape s = shapes[ci];
  INFO(describe(s));
  check_pool(Op::AvgFwd, s, random_vector(in_size(s), 40 + ci), {});
}

TEST_CASE("kernels avgpool_bwd all versions vs cpu", "[kernels][pool]") {
  const auto shapes = pool_shapes();
  const int ci = GENERATE_COPY(range(0, int(shapes.size())));
  const PoolShape s = shapes[ci];
  INFO(describe(s));
  check_pool(Op::AvgBwd, s, {}, random_vector(out_size(s), 50 + ci));
}

TEST_CASE("kernels maxpool_bwd ties go to the first maximum", "[kernels][pool]") {
  const PoolShape s = GENERATE(PoolShape{3, 5, 7, 13, 2, 2, 0}, PoolShape{3, 5, 7, 13, 3, 2, 1},
                               PoolShape{2, 4, 9, 10, 3, 1, 1});
  INFO(describe(s));
  auto x = random_vector(in_size(s), 60, 0.f, 3.f);
  for (float& v : x) v = std::floor(v);  // values in {0, 1, 2}: most windows tie
  check_pool(Op::MaxFwd, s, x, {});
  check_pool(Op::MaxBwd, s, x, random_vector(out_size(s), 61));
}

TEST_CASE("kernels pool versions and invalid arguments", "[kernels][pool]") {
  CHECK(kernels::pool_versions() == 2);
  const PoolShape s{1, 3, 7, 13, 2, 2, 0};
  DeviceBuffer x(in_size(s)), y(out_size(s));
  CHECK_THROWS_AS(kernels::maxpool_fwd(x.get(), y.get(), s, 3), std::invalid_argument);
  const PoolShape bad{1, 3, 7, 13, 2, 2, 2};  // pad > k/2
  CHECK_THROWS_AS(kernels::avgpool_fwd(x.get(), y.get(), bad, 0), std::invalid_argument);
}
