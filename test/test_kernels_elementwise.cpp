// Element-wise kernels, reductions (kernels/elementwise.cu) and the device runtime wrappers
// (kernels/runtime.cu), against the CPU backend (preimage::cpu).
//
// Sizes: 1, 13, 91 (7×13), 6231 (67×93), 405015 (65×67×93); each at a 16-byte aligned start
// (float4 paths) and at an offset of one float (scalar paths). Outputs start as NaN; every case
// runs under the three simulator thread orders; tolerance: relative 1e-5.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::ChannelAffine;
using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::max_rel_error;
using preimage::test::nan_vector;
using preimage::test::random_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

constexpr double kTol = 1e-5;
constexpr size_t kCounts[] = {1, 13, 91, 6231, 405015};

// A device array of `count` floats starting `offset` floats into its allocation.
struct Slice {
  DeviceBuffer buf;
  size_t offset, count;
  Slice(size_t count_, size_t offset_) : buf(count_ + offset_), offset(offset_), count(count_) {}
  float* get() { return buf.get() + offset; }
  void upload(const std::vector<float>& h) { kernels::copy_h2d(get(), h.data(), count); }
  std::vector<float> download() {
    std::vector<float> h(count);
    kernels::copy_d2h(h.data(), get(), count);
    return h;
  }
};

double rel(double got, double want) {
  return std::fabs(got - want) / std::max(std::fabs(want), 1e-3);
}

}  // namespace

TEST_CASE("kernels relu_fwd relu_bwd mul vs cpu", "[kernels][elementwise]") {
  const size_t n = GENERATE(from_range(std::begin(kCounts), std::end(kCounts)));
  const size_t off = GENERATE(0, 1);
  INFO("count " << n << " offset " << off);
  const auto a = random_vector(n, 1 + n), b = random_vector(n, 2 + n);
  std::vector<float> want_relu(n), want_bwd(n), want_mul(n);
  cpu::relu_fwd(a.data(), want_relu.data(), n);
  cpu::relu_bwd(a.data(), b.data(), want_bwd.data(), n);
  cpu::mul(a.data(), b.data(), want_mul.data(), n);

  Slice da(n, off), db(n, off), out(n, off);
  da.upload(a);
  db.upload(b);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out.upload(nan_vector(n));
    kernels::relu_fwd(da.get(), out.get(), n);
    CHECK(max_rel_error(out.download(), want_relu) <= kTol);
    out.upload(a);
    kernels::relu_fwd(out.get(), out.get(), n);  // in place
    CHECK(max_rel_error(out.download(), want_relu) <= kTol);
    out.upload(nan_vector(n));
    kernels::relu_bwd(da.get(), db.get(), out.get(), n);
    CHECK(max_rel_error(out.download(), want_bwd) <= kTol);
    out.upload(nan_vector(n));
    kernels::mul(da.get(), db.get(), out.get(), n);
    CHECK(max_rel_error(out.download(), want_mul) <= kTol);
  });
}

TEST_CASE("kernels fill axpby vs cpu", "[kernels][elementwise]") {
  const size_t n = GENERATE(from_range(std::begin(kCounts), std::end(kCounts)));
  const size_t off = GENERATE(0, 1);
  INFO("count " << n << " offset " << off);
  const auto x = random_vector(n, 3 + n), y0 = random_vector(n, 4 + n);
  std::vector<float> want_fill(n), want_axpby = y0, want_b0 = nan_vector(n);
  cpu::fill(want_fill.data(), 0.75f, n);
  cpu::axpby(-1.5f, x.data(), 0.25f, want_axpby.data(), n);
  cpu::axpby(2.f, x.data(), 0.f, want_b0.data(), n);  // b = 0: the NaN in y must not leak

  Slice dx(n, off), out(n, off);
  dx.upload(x);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    out.upload(nan_vector(n));
    kernels::fill(out.get(), 0.75f, n);
    CHECK(max_rel_error(out.download(), want_fill) <= kTol);
    out.upload(y0);
    kernels::axpby(-1.5f, dx.get(), 0.25f, out.get(), n);
    CHECK(max_rel_error(out.download(), want_axpby) <= kTol);
    out.upload(nan_vector(n));
    kernels::axpby(2.f, dx.get(), 0.f, out.get(), n);
    CHECK(max_rel_error(out.download(), want_b0) <= kTol);
  });
}

TEST_CASE("kernels channel_affine vs cpu", "[kernels][elementwise]") {
  const int n = GENERATE(1, 3);
  const size_t plane = GENERATE(size_t(91), size_t(96), size_t(6231));
  const int c = GENERATE(3, 8);
  INFO("n " << n << " c " << c << " plane " << plane);
  ChannelAffine a;
  a.c = c;
  const auto sc = random_vector(8, 5), sh = random_vector(8, 6);
  for (int i = 0; i < c; ++i) {
    a.perm[i] = (c - 1 - i + (c == 8 ? 3 : 0)) % c;  // a permutation other than the identity
    a.scale[i] = sc[i];
    a.shift[i] = sh[i];
  }
  const size_t count = size_t(n) * c * plane;
  const auto x = random_vector(count, 7);
  std::vector<float> want(count);
  cpu::channel_affine(x.data(), want.data(), n, plane, a);
  DeviceBuffer dx(x), dy(count);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    dy.upload(nan_vector(count));
    kernels::channel_affine(dx.get(), dy.get(), n, plane, a);
    CHECK(max_rel_error(dy.download(), want) <= kTol);
  });
}

TEST_CASE("kernels dot sum sum_squares vs cpu", "[kernels][elementwise]") {
  preimage::kernels::Workspace ws;  // the launchers' device scratch
  const size_t n = GENERATE(from_range(std::begin(kCounts), std::end(kCounts)));
  const size_t off = GENERATE(0, 1);
  INFO("count " << n << " offset " << off);
  const auto a = random_vector(n, 8 + n), b = random_vector(n, 9 + n, 0.f, 2.f);
  const double want_dot = cpu::dot(a.data(), b.data(), n);
  const double want_sum = cpu::sum(a.data(), n);
  const double want_sq = cpu::sum_squares(a.data(), n);
  Slice da(n, off), db(n, off);
  da.upload(a);
  db.upload(b);
  for_each_schedule([&](const char* order) {
    INFO(order << " order");
    CHECK(rel(kernels::dot(ws, da.get(), db.get(), n), want_dot) <= kTol);
    CHECK(rel(kernels::sum(ws, da.get(), n), want_sum) <= kTol);
    CHECK(rel(kernels::sum_squares(ws, da.get(), n), want_sq) <= kTol);
  });
  CHECK(kernels::sum(ws, da.get(), 0) == 0.0);
}

TEST_CASE("kernels device_alloc copy_h2d copy_d2h copy_d2d round trip", "[kernels][runtime]") {
  const size_t n = 1000;
  const auto h = random_vector(n, 11);
  preimage::test::DeviceBuffer a(h), b(n);
  kernels::copy_d2d(b.get(), a.get(), n);
  kernels::synchronize();
  CHECK(b.download() == h);
  CHECK(kernels::device_alloc(0) == nullptr);
  kernels::device_free(nullptr);  // no-op
  CHECK(kernels::device_free_memory() > 0);
}

TEST_CASE("kernels device_alloc failure names the size", "[kernels][runtime]") {
  const size_t huge = std::numeric_limits<size_t>::max() / 2;
  try {
    (void)kernels::device_alloc(huge);
    FAIL("device_alloc of " << huge << " floats did not throw");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains(std::to_string(huge)));
  }
}

TEST_CASE("kernels device_count reports the device", "[kernels][runtime]") {
  std::string reason = "stale";
  const int count = kernels::device_count(&reason);
  // The simulator is one device; a real GPU run only starts when a device exists.
  CHECK(count >= 1);
  CHECK(reason.empty());
  CHECK(kernels::device_count(nullptr) == count);
}
