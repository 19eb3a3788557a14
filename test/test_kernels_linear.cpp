// Linear-layer kernels (kernels/linear.cu) against the CPU backend (preimage::cpu).
//
// Sizes: N ∈ {1, 3, 20} (≤ 16 → the thin 16×256 tile, 20 → the 64×64 tile in forward and
// backward-data), IN ∈ {65, 777}, OUT ∈ {5, 33, 133} (backward-weights has M = OUT, so both
// tiles there too); bias / db on and off, accumulate on and off. Outputs start as NaN (or as
// random values when accumulating); every case runs under the three simulator thread orders;
// tolerance: relative 1e-5.
#include <catch2/catch.hpp>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;
constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("kernels linear_fwd linear_bwd_data linear_bwd_weights vs cpu", "[kernels][linear]") {
  const int n = GENERATE(1, 3, 20);
  const int in = GENERATE(65, 777);
  const int out = GENERATE(5, 33, 133);
  const int variant = GENERATE(0, 1);  // bias/db off + overwrite, or on + accumulate
  const bool with_bias = variant == 1, accumulate = variant == 1;
  INFO("n " << n << " in " << in << " out " << out << (with_bias ? " bias accumulate" : ""));
  const uint64_t seed = uint64_t(n) * 100000 + in * 100 + out;
  const auto x = random_vector(size_t(n) * in, seed + 1);
  const auto w = random_vector(size_t(out) * in, seed + 2);
  const auto b = random_vector(size_t(out), seed + 3);
  const auto g = random_vector(size_t(n) * out, seed + 4);
  const auto dw0 = accumulate ? random_vector(w.size(), seed + 5) : nan_vector(w.size());
  const auto db0 = accumulate ? random_vector(b.size(), seed + 6) : nan_vector(b.size());

  std::vector<float> want_y(size_t(n) * out), want_dx(x.size()), want_dw = dw0, want_db = db0;
  cpu::linear_fwd(x.data(), w.data(), with_bias ? b.data() : nullptr, want_y.data(), n, in, out);
  cpu::linear_bwd_data(g.data(), w.data(), want_dx.data(), n, in, out);
  cpu::linear_bwd_weights(x.data(), g.data(), want_dw.data(), with_bias ? want_db.data() : nullptr,
                          n, in, out, accumulate);

  DeviceBuffer dx(x), dw(w), db(b), dg(g), y(want_y.size()), gx(x.size()), gw(w.size()),
      gb(b.size());
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    y.upload(nan_vector(y.size()));
    kernels::linear_fwd(dx.get(), dw.get(), with_bias ? db.get() : nullptr, y.get(), n, in, out);
    CHECK(max_rel_error(y.download(), want_y) <= kTol);

    gx.upload(nan_vector(gx.size()));
    kernels::linear_bwd_data(dg.get(), dw.get(), gx.get(), n, in, out);
    CHECK(max_rel_error(gx.download(), want_dx) <= kTol);

    gw.upload(dw0);
    gb.upload(db0);
    kernels::linear_bwd_weights(dx.get(), dg.get(), gw.get(), with_bias ? gb.get() : nullptr, n, in,
                                out, accumulate);
    CHECK(max_rel_error(gw.download(), want_dw) <= kTol);
    if (with_bias) CHECK(max_rel_error(gb.download(), want_db) <= kTol);
  });
}
