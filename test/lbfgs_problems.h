// Test problems for the L-BFGS solver, evaluated on the host in double precision. Shared by
// test/test_lbfgs.cpp and test/lbfgs_scipy_driver.cpp, so that our solver and SciPy's L-BFGS-B
// see the same definitions, starting points and (seeded) data.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace preimage::test {

struct LbfgsProblem {
  std::string name;
  size_t n = 0;
  bool bounded = false;
  float lower = 0.f, upper = 1.f;
  bool zero_minimum = false;  // min f = 0: compared absolutely
  std::vector<double> x0;
  // f(x); writes ∇f into g.
  std::function<double(const double* x, double* g)> fg;
};

// Chained Rosenbrock (SciPy's rosen) Σ 100 (x_{i+1} − x_i²)² + (1 − x_i)², x0 = (−1.2, 1, −1.2, 1,
// …); min 0 at 1.
inline LbfgsProblem rosenbrock(size_t n, double scale = 1.0) {
  LbfgsProblem p;
  p.name = "rosenbrock" + std::to_string(n);
  p.n = n;
  p.zero_minimum = true;
  p.x0.resize(n);
  for (size_t i = 0; i < n; ++i) p.x0[i] = i % 2 == 0 ? -1.2 : 1.0;
  p.fg = [n, scale](const double* x, double* g) {
    double f = 0;
    for (size_t i = 0; i < n; ++i) g[i] = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      const double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
      f += 100 * a * a + b * b;
      g[i] += -400 * a * x[i] - 2 * b;
      g[i + 1] += 200 * a;
    }
    for (size_t i = 0; i < n; ++i) g[i] *= scale;
    return f * scale;
  };
  return p;
}

// Extended Rosenbrock (Moré, Garbow & Hillstrom no. 21; Liu & Nocedal 1989): n/2 uncoupled pairs
// 100 (x_{2i+1} − x_{2i}²)² + (1 − x_{2i})², x0 = (−1.2, 1, …); min 0 at 1. The chained form
// needs ~5n iterations at m = 10, which is why n = 10 000 uses this one.
inline LbfgsProblem extended_rosenbrock(size_t n) {
  if (n % 2 != 0) throw std::invalid_argument("extended_rosenbrock: n must be even");
  LbfgsProblem p = rosenbrock(n);
  p.name = "xrosenbrock" + std::to_string(n);
  p.fg = [n](const double* x, double* g) {
    double f = 0;
    for (size_t i = 0; i < n; i += 2) {
      const double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
      f += 100 * a * a + b * b;
      g[i] = -400 * a * x[i] - 2 * b;
      g[i + 1] = 200 * a;
    }
    return f;
  };
  return p;
}

// Extended Powell singular function (n a multiple of 4), x0 = (3, −1, 0, 1, …); min 0 at 0 with a
// singular Hessian there.
inline LbfgsProblem extended_powell(size_t n) {
  if (n % 4 != 0) throw std::invalid_argument("extended_powell: n must be a multiple of 4");
  LbfgsProblem p;
  p.name = "powell" + std::to_string(n);
  p.n = n;
  p.zero_minimum = true;
  p.x0.resize(n);
  const double start[4] = {3, -1, 0, 1};
  for (size_t i = 0; i < n; ++i) p.x0[i] = start[i % 4];
  p.fg = [n](const double* x, double* g) {
    double f = 0;
    for (size_t i = 0; i < n; i += 4) {
      const double a = x[i] + 10 * x[i + 1], b = x[i + 2] - x[i + 3], c = x[i + 1] - 2 * x[i + 2],
                   d = x[i] - x[i + 3];
      f += a * a + 5 * b * b + c * c * c * c + 10 * d * d * d * d;
      g[i] = 2 * a + 40 * d * d * d;
      g[i + 1] = 20 * a + 4 * c * c * c;
      g[i + 2] = 10 * b - 8 * c * c * c;
      g[i + 3] = -10 * b - 40 * d * d * d;
    }
    return f;
  };
  return p;
}

// ½‖Bx − c‖² on [0, 1]ⁿ with B (3n/2 × n) Gaussian/√rows and c = B·z, z uniform in [−1, 2]:
// the unconstrained minimizer z lies outside the box in about two thirds of its coordinates,
// so many bounds are active at the solution (f* > 0).
inline LbfgsProblem bounded_quadratic(size_t n, uint64_t seed = 7) {
  LbfgsProblem p;
  p.name = "bquad" + std::to_string(n);
  p.n = n;
  p.bounded = true;
  p.lower = 0.f;
  p.upper = 1.f;
  const size_t rows = n * 3 / 2;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0 / std::sqrt(double(rows)));
  std::uniform_real_distribution<double> ud(-1.0, 2.0);
  auto B = std::make_shared<std::vector<double>>(rows * n);
  for (auto& v : *B) v = nd(rng);
  std::vector<double> z(n);
  for (auto& v : z) v = ud(rng);
  auto c = std::make_shared<std::vector<double>>(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < n; ++j) (*c)[r] += (*B)[r * n + j] * z[j];
  p.x0.assign(n, 0.5);
  p.fg = [n, rows, B, c](const double* x, double* g) {
    double f = 0;
    for (size_t j = 0; j < n; ++j) g[j] = 0;
    for (size_t r = 0; r < rows; ++r) {
      double e = -(*c)[r];
      for (size_t j = 0; j < n; ++j) e += (*B)[r * n + j] * x[j];
      f += 0.5 * e * e;
      for (size_t j = 0; j < n; ++j) g[j] += e * (*B)[r * n + j];
    }
    return f;
  };
  return p;
}

// L2-regularized logistic regression: (1/N) Σ log(1 + exp(−yᵢ xᵢᵀw)) + (λ/2)‖w‖², λ = 1e-2,
// Gaussian features (N = 500 samples, `features` columns), noisy labels of a random w.
inline LbfgsProblem logistic_regression(size_t features, uint64_t seed = 11) {
  LbfgsProblem p;
  p.name = "logreg" + std::to_string(features);
  p.n = features;
  const size_t samples = 500;
  const double lambda = 1e-2;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto X = std::make_shared<std::vector<double>>(samples * features);
  for (auto& v : *X) v = nd(rng);
  std::vector<double> w(features);
  for (auto& v : w) v = nd(rng);
  auto y = std::make_shared<std::vector<double>>(samples);
  for (size_t i = 0; i < samples; ++i) {
    double s = 0;
    for (size_t j = 0; j < features; ++j) s += (*X)[i * features + j] * w[j];
    (*y)[i] = s / std::sqrt(double(features)) + nd(rng) > 0 ? 1.0 : -1.0;
  }
  p.x0.assign(features, 0.0);
  p.fg = [features, samples, lambda, X, y](const double* wv, double* g) {
    double f = 0;
    for (size_t j = 0; j < features; ++j) g[j] = lambda * wv[j];
    for (size_t i = 0; i < samples; ++i) {
      const double* xi = X->data() + i * features;
      double m = 0;
      for (size_t j = 0; j < features; ++j) m += xi[j] * wv[j];
      const double z = -(*y)[i] * m;
      // log(1 + e^z) and its derivative σ(z), stable for both signs of z
      f += (z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z))) / samples;
      const double sig = z > 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
      const double coef = -(*y)[i] * sig / samples;
      for (size_t j = 0; j < features; ++j) g[j] += coef * xi[j];
    }
    double r = 0;
    for (size_t j = 0; j < features; ++j) r += wv[j] * wv[j];
    return f + 0.5 * lambda * r;
  };
  return p;
}

// By name: rosenbrock<N> (chained), xrosenbrock<N> (pairs), powell<N>, bquad<N>, logreg<N>.
inline LbfgsProblem make_lbfgs_problem(const std::string& name) {
  auto num = [&](size_t prefix) { return size_t(std::stoul(name.substr(prefix))); };
  if (name.rfind("rosenbrock", 0) == 0) return rosenbrock(num(10));
  if (name.rfind("xrosenbrock", 0) == 0) return extended_rosenbrock(num(11));
  if (name.rfind("powell", 0) == 0) return extended_powell(num(6));
  if (name.rfind("bquad", 0) == 0) return bounded_quadratic(num(5));
  if (name.rfind("logreg", 0) == 0) return logistic_regression(num(6));
  throw std::invalid_argument("unknown problem '" + name +
                              "' (rosenbrock<N>, xrosenbrock<N>, powell<N>, bquad<N>, logreg<N>)");
}

}  // namespace preimage::test
