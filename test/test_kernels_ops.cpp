// test_kernels_ops.cpp: the op-generic backend test (like ggml's test-backend-ops): every op of
// kernels/ops.def, its case taken from the op list itself, CPU backend (the reference) against
// every CUDA kernel version on the simulator, in all three thread orders, with odd random sizes,
// NaN-prefilled outputs and every buffer compared afterwards (inputs included: an op must not write
// them). An op without a case cannot be added (the case is a column of the list), and the registry
// check below fails when the list and the cases run here disagree.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "device_buffer.h"
#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test_util.h"

namespace preimage::backend_ops {
namespace {

enum class Side { Cpu, Cuda };
Side g_side = Side::Cpu;  // which copy the buffers below hand to a call

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct FloatArray {
  std::vector<float> init, host;
  test::DeviceBuffer dev;
};

// A float buffer in both worlds: converts to the host copy while the CPU op runs and to the
// device copy while a CUDA launcher runs. Copies share the array (fb = fa: the same pointer).
class Floats {
 public:
  Floats() = default;
  explicit Floats(std::shared_ptr<FloatArray> a) : a_(std::move(a)) {}
  operator float*() const {
    if (!a_) return nullptr;
    return g_side == Side::Cpu ? a_->host.data() : a_->dev.get();
  }
  explicit operator bool() const { return a_ != nullptr; }

 private:
  std::shared_ptr<FloatArray> a_;
};

// A host array of doubles: an input both sides read (coef), or an output each side writes into
// its own NaN-prefilled copy (out).
struct DoubleArray {
  bool output = false;
  std::vector<double> init, cpu, cuda;
};
class HostDoubles {
 public:
  explicit HostDoubles(std::shared_ptr<DoubleArray> a) : a_(std::move(a)) {}
  operator double*() const { return g_side == Side::Cpu ? a_->cpu.data() : a_->cuda.data(); }

 private:
  std::shared_ptr<DoubleArray> a_;
};

class HostInts {
 public:
  explicit HostInts(std::vector<int> v) : v_(std::move(v)) {}
  operator const int*() const { return v_.data(); }
  int back() const { return v_.back(); }

 private:
  std::vector<int> v_;
};

template <class F>
double as_double(F&& f) {
  if constexpr (std::is_void_v<decltype(f())>) {
    f();
    return 0.0;
  } else {
    return double(f());
  }
}

// max |a − b| ≤ tol · max |ref| (NaN only where both are NaN).
bool close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
           std::string* why) {
  double scale = 1e-6, err = 0;
  for (double r : ref)
    if (std::isfinite(r)) scale = std::max(scale, std::fabs(r));
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(ref[i]) || std::isnan(got[i])) {
      if (std::isnan(ref[i]) != std::isnan(got[i])) {
        *why = "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs reference " +
               std::to_string(ref[i]);
        return false;
      }
      continue;
    }
    err = std::max(err, std::fabs(got[i] - ref[i]));
  }
  if (err <= tol * scale) return true;
  *why = "max error " + std::to_string(err) + " > " + std::to_string(tol) + " x " +
         std::to_string(scale);
  return false;
}

// The harness `tc` of the op list's test column.
class Case {
 public:
  explicit Case(uint64_t seed) : rng_(seed) {}
  double tol = 1e-4;

  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool coin() { return pick(0, 1) == 1; }
  float uniform(double lo, double hi) {
    return float(std::uniform_real_distribution<double>(lo, hi)(rng_));
  }
  // Odd element counts: a scalar tail after the float4 groups, sometimes several blocks.
  size_t count() { return size_t(coin() ? pick(1, 300) : pick(300, 5000)) | 1u; }

  Floats in(size_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return add(std::move(v));
  }
  Floats out(size_t n) { return add(std::vector<float>(n, kNaN)); }
  // Overwritten (NaN-prefilled) or accumulated into (random).
  Floats result(size_t n, bool accumulate) { return accumulate ? in(n) : out(n); }
  Floats none() { return Floats(); }
  // In [0, 1] with about a quarter of the values exactly at a bound (the box logic).
  Floats in_box(size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) {
      const int k = pick(0, 7);
      x = k == 0 ? 0.f : k == 1 ? 1.f : uniform(0, 1);
    }
    return add(std::move(v));
  }
  Floats away_from_zero(size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = (coin() ? 1.f : -1.f) * uniform(0.2, 1);
    return add(std::move(v));
  }
  HostDoubles host_in(size_t n) {
    auto a = std::make_shared<DoubleArray>();
    a->init.resize(n);
    for (auto& x : a->init) x = coin() ? 0.0 : uniform(-1, 1);  // zero rows are skipped
    doubles_.push_back(a);
    return HostDoubles(a);
  }
  HostDoubles host_out(size_t n) {
    auto a = std::make_shared<DoubleArray>();
    a->output = true;
    a->init.assign(n, std::numeric_limits<double>::quiet_NaN());
    doubles_.push_back(a);
    return HostDoubles(a);
  }
  // Segment offsets 0 = o_0 < … < o_nseg = dim.
  HostInts segments(int nseg) {
    std::vector<int> o{0};
    for (int s = 0; s < nseg; ++s) o.push_back(o.back() + pick(1, 19));
    return HostInts(std::move(o));
  }

  ConvShape conv_shape() {
    ConvShape s{};
    const int k = 2 * pick(0, 2) + 1;
    s.n = pick(1, 2), s.c = pick(1, 5), s.o = pick(1, 6), s.kh = s.kw = k;
    s.stride = pick(1, 2), s.pad = pick(0, k / 2);
    s.h = pick(k, 13), s.w = pick(k, 13);
    return s;
  }
  PoolShape pool_shape() {
    PoolShape s{};
    s.n = pick(1, 2), s.c = pick(1, 4), s.k = pick(2, 3), s.stride = pick(1, 2);
    s.pad = pick(0, s.k / 2), s.h = pick(s.k, 13), s.w = pick(s.k, 13);
    return s;
  }
  ConvTransposeShape conv_transpose_shape() {
    ConvTransposeShape s{};
    s.n = pick(1, 2), s.c = pick(1, 4), s.o = pick(1, 4), s.k = pick(1, 4);
    s.stride = pick(1, 2), s.pad = pick(0, (s.k - 1) / 2), s.out_pad = pick(0, s.stride - 1);
    s.h = pick(2, 7), s.w = pick(2, 7);
    return s;
  }
  ChannelAffine channel_affine() {
    ChannelAffine a;
    a.c = pick(1, 8);
    std::iota(a.perm, a.perm + a.c, 0);
    std::shuffle(a.perm, a.perm + a.c, rng_);
    for (int i = 0; i < a.c; ++i) a.scale[i] = uniform(-2, 2), a.shift[i] = uniform(-1, 1);
    return a;
  }
  HogCellShape hog_cell_shape() {
    HogCellShape s;
    s.n = pick(1, 2), s.c = coin() ? 1 : 3, s.cell = pick(3, 6), s.bins = pick(5, 9);
    s.signed_bins = coin(), s.soft_bins = true, s.bilinear_cells = coin();
    s.h = s.cell * pick(2, 4) + pick(0, s.cell - 1);
    s.w = s.cell * pick(2, 4) + pick(0, s.cell - 1);
    return s;
  }
  HogBlockShape hog_block_shape() {
    HogBlockShape s;
    s.n = pick(1, 2), s.bins = pick(3, 9), s.block = pick(1, 3), s.stride = pick(1, 2);
    s.hc = s.block + pick(0, 4), s.wc = s.block + pick(0, 4);
    return s;
  }
  HogUocttiShape hog_uoctti_shape() {
    HogUocttiShape s;
    s.n = pick(1, 2), s.hc = pick(3, 8), s.wc = pick(3, 8);
    return s;
  }

  // Runs the CPU op once and the CUDA op for every version (0 = the launcher's choice; ops
  // without versions once), each from the same initial buffers, and compares everything.
  template <class CpuCall, class CudaCall>
  void check(const std::string& op, int versions, CpuCall&& cpu_call, CudaCall&& cuda_call) {
    for (auto& a : floats_) a->host = a->init;
    for (auto& a : doubles_) a->cpu = a->init;
    g_side = Side::Cpu;
    const double ref = as_double(cpu_call);
    for (int v = 0; v <= versions; ++v) {
      for (auto& a : floats_) a->dev.upload(a->init);
      for (auto& a : doubles_) a->cuda = a->init;
      g_side = Side::Cuda;
      const double got = as_double([&] { return cuda_call(ws_, v); });
      g_side = Side::Cpu;
      const std::string where = op + " version " + std::to_string(v);
      std::string why;
      for (size_t i = 0; i < floats_.size(); ++i) {
        const std::vector<float> d = floats_[i]->dev.download();
        const std::vector<double> g(d.begin(), d.end()),
            r(floats_[i]->host.begin(), floats_[i]->host.end());
        if (!close(g, r, tol, &why)) FAIL_CHECK(where << ", buffer " << i << ": " << why);
      }
      for (size_t i = 0; i < doubles_.size(); ++i) {
        if (!close(doubles_[i]->cuda, doubles_[i]->cpu, tol, &why))
          FAIL_CHECK(where << ", host array " << i << ": " << why);
      }
      if (!close({got}, {ref}, tol, &why))
        FAIL_CHECK(where << ": returned " << got << ", reference " << ref << ": " << why);
      ++checked_;
    }
  }

 private:
  Floats add(std::vector<float> v) {
    auto a = std::make_shared<FloatArray>();
    a->dev = test::DeviceBuffer(v.size() ? v.size() : 1);
    if (v.empty()) v.push_back(0.f);  // keeps the device buffer's size equal
    a->init = std::move(v);
    floats_.push_back(a);
    return Floats(a);
  }

  std::mt19937_64 rng_;
  std::vector<std::shared_ptr<FloatArray>> floats_;
  std::vector<std::shared_ptr<DoubleArray>> doubles_;
  kernels::Workspace ws_;

 public:
  int checked_ = 0;  // CUDA runs compared
};

// One function per op, generated from the list: the test column, then the check.
#define PREIMAGE_OP(ret, name, params, args, tag, test)                                   \
  void case_##name(Case& tc) {                                                            \
    PREIMAGE_OP_UNPAREN test; /* the test column: defines every name of args */           \
    const int versions = [] {                                                             \
      using namespace kernels;                                                            \
      return PREIMAGE_OP_VERSIONS(tag);                                                   \
    }();                                                                                  \
    tc.check(                                                                             \
        #name, versions, [&] { return cpu::name args; },                                  \
        [&](kernels::Workspace& ws, int version) {                                        \
          (void)ws;                                                                       \
          (void)version;                                                                  \
          return as_double(                                                               \
              [&] { return kernels::name PREIMAGE_OP_KARGS_V(tag, ws, args, version); }); \
        });                                                                               \
  }
#include "kernels/ops.def"
#undef PREIMAGE_OP

struct OpCase {
  const char* name;
  void (*run)(Case&);
};
const OpCase kCases[] = {
#define PREIMAGE_OP(ret, name, params, args, tag, test) {#name, &case_##name},
#include "kernels/ops.def"
#undef PREIMAGE_OP
};

}  // namespace
}  // namespace preimage::backend_ops

using preimage::backend_ops::Case;
using preimage::backend_ops::kCases;

TEST_CASE("every op of the op list: CPU vs every CUDA version", "[backend_ops][simulator]") {
  // The registry: one case per entry of kernels/ops.def, no name twice, none missing — the
  // declarations of Backend, cpu:: and kernels:: are generated from the same list.
  std::set<std::string> names;
  for (const auto& c : kCases) names.insert(c.name);
  CHECK(names.size() == std::size(kCases));
  constexpr size_t kOps = 0
#define PREIMAGE_OP(ret, name, params, args, tag, test) +1
#include "kernels/ops.def"
#undef PREIMAGE_OP
      ;
  REQUIRE(std::size(kCases) == kOps);
  REQUIRE(kOps >= 47);  // the ops there were when this test was written: none may drop out

  uint64_t seed = 20;
  preimage::test::for_each_schedule([&](const char* order) {
    for (const auto& c : kCases) {
      INFO(c.name << ", simulator order " << order);
      Case tc(seed++);
      c.run(tc);
      CHECK(tc.checked_ >= 1);
    }
  });
}
