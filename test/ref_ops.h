// Plain double-precision reference loops for the ops, written for clarity only: the CPU backend
// is checked against these, and central differences of these give the true gradients.
#pragma once
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/op_shapes.h"

namespace preimage::ref {

inline std::vector<double> conv2d_fwd(const std::vector<double>& x, const std::vector<double>& w,
                                      const std::vector<double>* b, const ConvShape& s, bool relu) {
  const int ho = s.ho(), wo = s.wo();
  std::vector<double> y(size_t(s.n) * s.o * ho * wo);
  for (int n = 0; n < s.n; ++n)
    for (int o = 0; o < s.o; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          double acc = b ? (*b)[o] : 0.0;
          for (int c = 0; c < s.c; ++c)
            for (int ky = 0; ky < s.kh; ++ky)
              for (int kx = 0; kx < s.kw; ++kx) {
                const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                acc += x[((size_t(n) * s.c + c) * s.h + iy) * s.w + ix] *
                       w[((size_t(o) * s.c + c) * s.kh + ky) * s.kw + kx];
              }
          y[((size_t(n) * s.o + o) * ho + oy) * wo + ox] = relu ? std::max(acc, 0.0) : acc;
        }
  return y;
}

inline std::vector<double> pool_fwd(const std::vector<double>& x, const PoolShape& s, bool max) {
  const int ho = s.ho(), wo = s.wo();
  std::vector<double> y(size_t(s.n) * s.c * ho * wo);
  for (int p = 0; p < s.n * s.c; ++p)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int ky = 0; ky < s.k; ++ky)
          for (int kx = 0; kx < s.k; ++kx) {
            const int iy = oy * s.stride - s.pad + ky, ix = ox * s.stride - s.pad + kx;
            if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
            const double v = x[(size_t(p) * s.h + iy) * s.w + ix];
            acc = max ? std::max(acc, v) : acc + v;
          }
        y[(size_t(p) * ho + oy) * wo + ox] = max ? acc : acc / (s.k * s.k);
      }
  return y;
}

inline std::vector<double> linear_fwd(const std::vector<double>& x, const std::vector<double>& w,
                                      const std::vector<double>* b, int n, int in, int out) {
  std::vector<double> y(size_t(n) * out);
  for (int i = 0; i < n; ++i)
    for (int o = 0; o < out; ++o) {
      double acc = b ? (*b)[o] : 0.0;
      for (int k = 0; k < in; ++k) acc += x[size_t(i) * in + k] * w[size_t(o) * in + k];
      y[size_t(i) * out + o] = acc;
    }
  return y;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double acc = 0;
  for (size_t i = 0; i < a.size(); ++i) acc += a[i] * b[i];
  return acc;
}

// Central difference of f at coordinate i of v (double, step h).
template <class F>
double central_difference(std::vector<double>& v, size_t i, double h, F&& f) {
  const double keep = v[i];
  v[i] = keep + h;
  const double fp = f();
  v[i] = keep - h;
  const double fm = f();
  v[i] = keep;
  return (fp - fm) / (2 * h);
}

}  // namespace preimage::ref
