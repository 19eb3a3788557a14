// Texture search distances (kernels/search.cu), every version, against the CPU backend
// (engine/cpu/search.cpp) and a brute-force double reference Σ_s ‖q_s − e_s‖ of the same unit
// vectors.
//
// Sizes are odd on purpose: queries nq ∈ {1, 3, 33, 70} (one and several 32-row tiles), entries
// ne ∈ {1, 5, 65, 131} (partial 64-column tiles), segment lengths that are not multiples of the
// 16-wide k slice (7, 23, 15, 1) and an empty segment. Outputs start as NaN; every case runs
// under the three simulator thread orders. Tolerance: absolute 2e-3 on distances near 0 (sqrt
// amplifies the float32 rounding of 2 − 2⟨a, b⟩) and relative 1e-4 elsewhere, the same for the
// CPU op against the reference.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <sstream>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/kernels.h"
#include "test/device_buffer.h"
#include "test/test_util.h"

namespace {

using preimage::test::DeviceBuffer;
using preimage::test::for_each_schedule;
using preimage::test::nan_vector;
namespace kernels = preimage::kernels;
namespace cpu = preimage::cpu;

// Rows of unit vectors per segment; `near` rows copy row 0 of `base` plus a small perturbation,
// so that tiny distances (the interesting rounding case) are exercised.
std::vector<float> unit_rows(int rows, const std::vector<int>& seg, uint64_t seed,
                             const std::vector<float>* base = nullptr) {
  const int dim = seg.back();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<float> v(size_t(rows) * dim);
  for (int r = 0; r < rows; ++r)
    for (size_t s = 0; s + 1 < seg.size(); ++s) {
      std::vector<double> x(size_t(seg[s + 1] - seg[s]));
      double ss = 0;
      for (size_t k = 0; k < x.size(); ++k) {
        x[k] = nd(rng);
        if (base && r % 2 == 0) x[k] = (*base)[size_t(seg[s]) + k] + 1e-3 * x[k];
        ss += x[k] * x[k];
      }
      for (size_t k = 0; k < x.size(); ++k)
        v[size_t(r) * dim + seg[s] + k] = float(x[k] / std::sqrt(ss));
    }
  return v;
}

std::vector<double> brute_force(const std::vector<float>& q, const std::vector<float>& e, int nq,
                                int ne, const std::vector<int>& seg) {
  const int dim = seg.back();
  std::vector<double> d(size_t(nq) * ne, 0.0);
  for (int i = 0; i < nq; ++i)
    for (int j = 0; j < ne; ++j) {
      double total = 0;
      for (size_t s = 0; s + 1 < seg.size(); ++s) {
        double ss = 0;
        for (int k = seg[s]; k < seg[s + 1]; ++k) {
          const double diff = double(q[size_t(i) * dim + k]) - e[size_t(j) * dim + k];
          ss += diff * diff;
        }
        // An empty segment holds two zero "unit" vectors: the op's formula gives sqrt(2).
        total += seg[s + 1] > seg[s] ? std::sqrt(ss) : std::sqrt(2.0);
      }
      d[size_t(i) * ne + j] = total;
    }
  return d;
}

bool close(const std::vector<float>& got, const std::vector<double>& want, double* worst) {
  *worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      *worst = INFINITY;
      return false;
    }
    const double err = std::fabs(got[i] - want[i]);
    const double tol = std::max(2e-3, 1e-4 * std::fabs(want[i]));
    *worst = std::max(*worst, err / tol);
  }
  return *worst <= 1.0;
}

struct Case {
  int nq, ne;
  std::vector<int> seg;
};

std::vector<Case> cases() {
  const std::vector<std::vector<int>> segs = {{0, 7}, {0, 23, 38, 39}, {0, 15, 15, 46}};
  std::vector<Case> v;
  for (const auto& s : segs)
    for (int nq : {1, 3, 33, 70})
      for (int ne : {1, 5, 65, 131}) {
        if (nq == 70 && ne == 131 && s.size() > 2) continue;  // keep the simulator quick
        v.push_back({nq, ne, s});
      }
  return v;
}

}  // namespace

TEST_CASE("search kernel: every version matches the CPU op and the brute-force reference",
          "[search][kernels]") {
  uint64_t seed = 1;
  for (const Case& c : cases()) {
    const int dim = c.seg.back(), nseg = int(c.seg.size()) - 1;
    const std::vector<float> e = unit_rows(c.ne, c.seg, seed++);
    const std::vector<float> q = unit_rows(c.nq, c.seg, seed++, &e);
    const std::vector<double> want = brute_force(q, e, c.nq, c.ne, c.seg);
    std::ostringstream os;
    os << "nq=" << c.nq << " ne=" << c.ne << " dim=" << dim << " segments=" << nseg;
    INFO(os.str());
    std::vector<float> host = nan_vector(size_t(c.nq) * c.ne);
    cpu::search_distances(q.data(), e.data(), host.data(), c.nq, c.ne, dim, c.seg.data(), nseg);
    double worst = 0;
    CHECK(close(host, want, &worst));
    DeviceBuffer dq(q), de(e), out(size_t(c.nq) * c.ne);
    for (int v = 0; v <= kernels::search_versions(); ++v) {
      for_each_schedule([&](const char* order) {
        INFO("version " << v << ", " << order << " order");
        out.upload(nan_vector(out.size()));
        kernels::search_distances(dq.get(), de.get(), out.get(), c.nq, c.ne, dim, c.seg.data(),
                                  nseg, v);
        const std::vector<float> got = out.download();
        CHECK(close(got, want, &worst));
        // Against the CPU op: both are float32 products, so they agree closely.
        double diff = 0;
        for (size_t i = 0; i < got.size(); ++i)
          diff = std::max(diff, double(std::fabs(got[i] - host[i])));
        CHECK(diff <= 2e-3);
      });
    }
  }
}

TEST_CASE("search kernel: bad arguments are refused", "[search][kernels]") {
  const std::vector<int> seg = {0, 4};
  const std::vector<int> bad_cover = {0, 3};
  DeviceBuffer q(8), e(8), d(4);
  CHECK_THROWS(kernels::search_distances(q.get(), e.get(), d.get(), 2, 2, 4, seg.data(), 1, 3));
  CHECK_THROWS(kernels::search_distances(q.get(), e.get(), d.get(), 2, 2, 4, bad_cover.data(), 1));
  CHECK_THROWS(kernels::search_distances(q.get(), e.get(), d.get(), 2, 2, 4, seg.data(), 0));
  // Nothing to do: no launch, no error.
  CHECK_NOTHROW(kernels::search_distances(q.get(), e.get(), d.get(), 0, 2, 4, seg.data(), 1));
}
