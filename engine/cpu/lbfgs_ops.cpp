// CPU versions of the L-BFGS vector ops (contracts in engine/cpu/cpu_ops.h; CUDA in
// kernels/lbfgs.cu). Every reduction is deterministic whatever the thread count: the vector is cut
// into fixed chunks, each chunk reduces in a fixed order into its own slot, and the slots are
// combined serially. This is what makes a resumed run bit-identical to an uninterrupted one.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {
namespace {

constexpr size_t kChunk = 4096;
constexpr size_t kDotChunk = 2048;  // lbfgs_dots: 3 converted query chunks stay in L1/L2
// GCC/Clang vector extensions for the dots' accumulators.
typedef double V4d __attribute__((vector_size(32)));
typedef float V4f __attribute__((vector_size(16)));
constexpr size_t kPrefetch = 512;  // floats ahead in the current row
// Below this many elements an op runs on the calling thread: waking the OpenMP team costs more
// than the work (and much more when the cores are oversubscribed).
constexpr size_t kParallelMin = 32768;

struct Box {
  float lo, hi;
  bool bounded;
  bool fixed(float x, float g) const {
    return bounded && ((x <= lo && g > 0.f) || (x >= hi && g < 0.f));
  }
  float project(float v) const { return bounded ? std::min(std::max(v, lo), hi) : v; }
};

inline bool finite(float v) {
  return std::fabs(v) <= 3.402823466e38f;
}

size_t chunks_of(size_t n) {
  return (n + kChunk - 1) / kChunk;
}

// a·b + c, fused where the target has FMA (vectorized either way).
inline double madd(double a, double b, double c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// Runs body(begin, end, slot) for every chunk (in parallel) and combines the K-value slots in
// chunk order: sums, or maxima where bit i of max_mask is set.
template <int K, class Body>
std::array<double, K> chunked_reduce(size_t n, unsigned max_mask, Body body) {
  const size_t chunks = chunks_of(n);
  std::vector<std::array<double, K>> slots(chunks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (size_t c = 0; c < chunks; ++c) {
    std::array<double, K> v{};
    body(c * kChunk, std::min(n, (c + 1) * kChunk), v);
    slots[c] = v;
  }
  std::array<double, K> r{};
  for (const auto& v : slots)
    for (int i = 0; i < K; ++i) r[i] = (max_mask >> i) & 1u ? std::max(r[i], v[i]) : r[i] + v[i];
  return r;
}

}  // namespace

void lbfgs_project_grad(const float* x, const float* g, float lo, float hi, bool bounded, float* pg,
                        size_t n, double* out) {
  const Box b{lo, hi, bounded};
  const auto r = chunked_reduce<3>(n, 4u, [&](size_t i0, size_t i1, std::array<double, 3>& v) {
    double ss = 0, bad = 0, mx = 0;
#pragma omp simd reduction(+ : ss, bad) reduction(max : mx)
    for (size_t i = i0; i < i1; ++i) {
      const float p = b.fixed(x[i], g[i]) ? 0.f : g[i];
      pg[i] = p;
      ss += double(p) * p;
      bad += finite(g[i]) ? 0.0 : 1.0;
      const double a = std::fabs(p);
      mx = a > mx ? a : mx;
    }
    v = {ss, bad, mx};
  });
  out[0] = r[2];
  out[1] = r[0];
  out[2] = r[1];
}

void lbfgs_update(const float* x0, const float* g0, const float* x1, const float* g1, float lo,
                  float hi, bool bounded, float* s, float* y, float* pg, size_t n, double* out) {
  const Box b{lo, hi, bounded};
  const auto r = chunked_reduce<5>(n, 16u, [&](size_t i0, size_t i1, std::array<double, 5>& v) {
    double sy = 0, yy = 0, ss = 0, pp = 0, mx = 0;
#pragma omp simd reduction(+ : sy, yy, ss, pp) reduction(max : mx)
    for (size_t i = i0; i < i1; ++i) {
      const float si = x1[i] - x0[i], yi = g1[i] - g0[i];
      const float p = b.fixed(x1[i], g1[i]) ? 0.f : g1[i];
      s[i] = si;
      y[i] = yi;
      pg[i] = p;
      sy += double(si) * yi;
      yy += double(yi) * yi;
      ss += double(si) * si;
      pp += double(p) * p;
      const double a = std::fabs(p);
      mx = a > mx ? a : mx;
    }
    v = {sy, yy, ss, pp, mx};
  });
  out[0] = r[0];
  out[1] = r[1];
  out[2] = r[2];
  out[3] = r[4];
  out[4] = r[3];
}

void lbfgs_dots(const float* S, const float* Y, size_t ld, int rows, int skip, const float* q0,
                const float* q1, const float* q2, size_t n, double* out) {
  if (rows <= 0) return;
  if (!q0) throw std::invalid_argument("lbfgs_dots: q0 is required");
  if (q2 && !q1) throw std::invalid_argument("lbfgs_dots: q2 without q1");
  const int nq = 1 + (q1 != nullptr) + (q2 != nullptr);
  const size_t rows2 = size_t(2) * rows;
  const size_t chunks = (n + kDotChunk - 1) / kDotChunk;
  // The rows to read (all but `skip`), S rows then Y rows.
  std::vector<size_t> live;
  std::vector<const float*> ptr;
  for (size_t r = 0; r < rows2; ++r) {
    const int phys = int(r < size_t(rows) ? r : r - rows);
    if (phys == skip) continue;
    live.push_back(r);
    ptr.push_back((r < size_t(rows) ? S : Y) + size_t(phys) * ld);
  }
  const size_t nl = live.size();
  // slots[c][r·3 + q]: chunk c of row r against query q.
  std::vector<double> slots(chunks * rows2 * 3, 0.0);
#pragma omp parallel for schedule(static) if (n * rows2 >= kParallelMin)
  for (size_t c = 0; c < chunks; ++c) {
    const size_t i0 = c * kDotChunk, len = std::min(n, i0 + kDotChunk) - i0;
    // The queries of this chunk, converted once (they meet every row); missing ones are 0.
    alignas(64) double qd[3][kDotChunk];
    const float* qs[3] = {q0, q1, q2};
    for (int q = 0; q < 3; ++q) {
      if (q < nq) {
#pragma omp simd
        for (size_t i = 0; i < len; ++i) qd[q][i] = qs[q][i0 + i];
      } else {
        std::fill(qd[q], qd[q] + len, 0.0);
      }
    }
    double* sl = slots.data() + c * rows2 * 3;
    // Explicit vector accumulators (2 × 4 double lanes per query): an omp simd reduction with
    // this many variables is kept in memory by GCC. The lanes are summed in a fixed order.
    const size_t body = len / 8 * 8;
    for (size_t j = 0; j < nl; ++j) {
      const float* u = ptr[j] + i0;
      const float* next = j + 1 < nl ? ptr[j + 1] + i0 : u;
      V4d acc[3][2] = {};
      for (size_t i = 0; i < body; i += 8) {
        // One stream alone is latency-bound: fetch ahead in this row and into the next one.
        __builtin_prefetch(u + i + kPrefetch);
        __builtin_prefetch(next + (i * 2 < len ? i * 2 : len - 1));
        V4f r0, r1;
        std::memcpy(&r0, u + i, sizeof r0);
        std::memcpy(&r1, u + i + 4, sizeof r1);
        const V4d v0 = __builtin_convertvector(r0, V4d), v1 = __builtin_convertvector(r1, V4d);
        for (int q = 0; q < 3; ++q) {
          V4d w0, w1;
          std::memcpy(&w0, &qd[q][i], sizeof w0);
          std::memcpy(&w1, &qd[q][i + 4], sizeof w1);
          acc[q][0] += v0 * w0;
          acc[q][1] += v1 * w1;
        }
      }
      for (int q = 0; q < 3; ++q) {
        double t = 0;
        for (int h = 0; h < 2; ++h)
          for (int l = 0; l < 4; ++l) t += acc[q][h][l];
        for (size_t i = body; i < len; ++i) t += double(u[i]) * qd[q][i];
        sl[live[j] * 3 + q] = t;
      }
    }
  }
  for (int q = 0; q < nq; ++q)
    for (size_t r = 0; r < rows2; ++r) {
      double acc = 0;
      for (size_t c = 0; c < chunks; ++c) acc += slots[(c * rows2 + r) * 3 + q];
      out[q * rows2 + r] = acc;
    }
}

void lbfgs_combine(const float* S, const float* Y, size_t ld, int rows, const double* coef,
                   const float* x, const float* g, float lo, float hi, bool bounded, float* d,
                   size_t n, double* out) {
  const Box b{lo, hi, bounded};
  rows = std::max(rows, 0);
  const double cg = coef[2 * rows];
  // Rows with a non-zero coefficient, in order (S rows, then Y rows).
  std::vector<const float*> used;
  std::vector<double> cs;
  for (int k = 0; k < 2 * rows; ++k)
    if (coef[k] != 0.0) {
      used.push_back(k < rows ? S + size_t(k) * ld : Y + size_t(k - rows) * ld);
      cs.push_back(coef[k]);
    }
  const size_t nu = used.size();
  const auto r = chunked_reduce<3>(n, 0u, [&](size_t i0, size_t i1, std::array<double, 3>& v) {
    double acc[kChunk];
    const size_t len = i1 - i0;
#pragma omp simd
    for (size_t i = 0; i < len; ++i) acc[i] = cg * g[i0 + i];
    // Four rows per sweep of acc (same order of operations as one row at a time).
    size_t k = 0;
    for (; k + 4 <= nu; k += 4) {
      const float *r0 = used[k] + i0, *r1 = used[k + 1] + i0, *r2 = used[k + 2] + i0,
                  *r3 = used[k + 3] + i0;
      const double c0 = cs[k], c1 = cs[k + 1], c2 = cs[k + 2], c3 = cs[k + 3];
#pragma omp simd
      for (size_t i = 0; i < len; ++i)
        acc[i] = madd(c3, r3[i], madd(c2, r2[i], madd(c1, r1[i], madd(c0, r0[i], acc[i]))));
    }
    for (; k < nu; ++k) {
      const float* row = used[k] + i0;
      const double c = cs[k];
#pragma omp simd
      for (size_t i = 0; i < len; ++i) acc[i] = madd(c, row[i], acc[i]);
    }
    double gd = 0, dd = 0, bad = 0;
#pragma omp simd reduction(+ : gd, dd, bad)
    for (size_t i = 0; i < len; ++i) {
      const size_t j = i0 + i;
      float dj = float(-acc[i]);
      if (b.fixed(x[j], g[j]) ||
          (bounded && ((x[j] <= lo && dj < 0.f) || (x[j] >= hi && dj > 0.f))))
        dj = 0.f;
      d[j] = dj;
      gd += double(g[j]) * dj;
      dd += double(dj) * dj;
      bad += finite(dj) ? 0.0 : 1.0;
    }
    v = {gd, dd, bad};
  });
  out[0] = r[0];
  out[1] = r[1];
  out[2] = r[2];
}

void lbfgs_step(const float* x0, const float* d, double t, float lo, float hi, bool bounded,
                float* x1, size_t n) {
  const Box b{lo, hi, bounded};
  const float tf = float(t);
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (size_t i = 0; i < n; ++i) x1[i] = b.project(std::fma(tf, d[i], x0[i]));
}

void lbfgs_dir_deriv(const float* x0, const float* d, const float* g, double t, float lo, float hi,
                     bool bounded, size_t n, double* out) {
  const float tf = float(t);
  const auto r = chunked_reduce<2>(n, 0u, [&](size_t i0, size_t i1, std::array<double, 2>& v) {
    double gd = 0, bad = 0;
#pragma omp simd reduction(+ : gd, bad)
    for (size_t i = i0; i < i1; ++i) {
      const float p = std::fma(tf, d[i], x0[i]);
      gd += !bounded || (p > lo && p < hi) ? double(g[i]) * d[i] : 0.0;
      bad += finite(g[i]) ? 0.0 : 1.0;
    }
    v = {gd, bad};
  });
  out[0] = r[0];
  out[1] = r[1];
}

}  // namespace preimage::cpu
