// Shared test helpers: random odd-shaped data, NaN-prefilled outputs, error measures, device
// round trips, and the loop over the simulator's thread orders.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#ifdef PREIMAGE_CUDA_SIM
#include "kernels/sim/cuda_sim.h"
#endif

namespace preimage::test {

inline std::vector<float> random_vector(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<float> nan_vector(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// max |a-b| / max(max|b|, tiny): one relative figure per tensor; NaN anywhere → infinity.
inline double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}
inline double max_rel_error(const std::vector<float>& a, const std::vector<double>& b) {
  return max_rel_error(a, std::vector<float>(b.begin(), b.end()));
}

// Runs body once per simulator thread order (forward, reverse, random) so that a missing
// barrier shows; on a real GPU (or without the simulator) runs it once.
inline void for_each_schedule(const std::function<void(const char*)>& body) {
#ifdef PREIMAGE_CUDA_SIM
  using preimage::sim::Schedule;
  const std::pair<Schedule, const char*> orders[] = {
      {Schedule::Forward, "forward"}, {Schedule::Reverse, "reverse"}, {Schedule::Random, "random"}};
  for (auto [s, name] : orders) {
    preimage::sim::set_schedule(s, 12345);
    body(name);
  }
  preimage::sim::set_schedule(Schedule::Forward, 0);
#else
  body("device");
#endif
}

}  // namespace preimage::test
