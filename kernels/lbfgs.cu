/*
L-BFGS vector ops: everything the native solver (engine/core/lbfgs.cpp) does to n-vectors, so that
x, g, the direction and the m history pairs stay on the device and only scalars reach the host.

The solver is "vector-free" (Chen et al., NIPS 2014): the two-loop recursion runs on the host in
the coefficient space of the basis {pg, s_1..s_k, y_1..y_k} from their inner products, and the
device only computes batched dots and one fused linear combination per iteration.

Box: when `bounded`, variable j is fixed if it sits at a bound with the gradient pushing outward
(x ≤ lo and g > 0, or x ≥ hi and g < 0); pg = g with fixed variables zeroed.

  lbfgs_project_grad  pg = projected g;                out = {max|pg|, Σ pg², #non-finite g}
  lbfgs_update        s = x1 − x0, y = g1 − g0, pg = projected g1;
                                                       out = {sᵀy, yᵀy, sᵀs, max|pg|, Σ pg²}
  lbfgs_dots          out[q·2R + r] = q_qᵀ S_r, out[q·2R + R + r] = q_qᵀ Y_r for the queries
                      q0, q1, q2 (null = absent) and rows r < R = rows (row `skip` → 0, unread)
  lbfgs_combine       d = −(c_g·g + Σ c_r S_r + Σ c'_r Y_r) (zero-coefficient rows unread), then
                      d_j = 0 where j is fixed or sits at a bound with d pointing out;
                                                       out = {gᵀd, dᵀd, #non-finite d}
  lbfgs_step          x1 = P(fmaf(t, d, x0))
  lbfgs_dir_deriv     out = {Σ g_j d_j over j not clamped at step t, #non-finite g}

Layouts: flat float arrays of n; history rows at S + r·ld (ld a multiple of 4 keeps float4 loads).

Kernels (one version each; all bandwidth-bound):
  maps and single-vector reductions: grid-stride, 256 threads, ≤ 1024 blocks, float4 when every
    pointer is 16-byte aligned; reductions are deterministic (no atomics): block partials
    (warp shuffles + shared memory) to workspace partials, then one 1024-thread block reduces
    them in a fixed order, and ONE cudaMemcpy brings the K result doubles to the host.
  dots: grid (2R rows, C chunks), row index fastest so the blocks running together share one
    chunk of the queries in L2; each block reduces its ≤ 3 dots over its chunk; a second kernel
    (one block per output) sums the C chunk partials in order; one cudaMemcpy of nq·2R doubles.
  combine: grid-stride over float4 groups; each thread accumulates its 4 elements in double over
    the rows (coefficients uploaded once per call: one cudaMemcpy of 2R + 1 doubles).
Partials and results live in the caller's Workspace, held under its lock; the block and final
reductions are kernels/reduce.cuh's.

Test: ctest -R lbfgs   (test/test_lbfgs.cpp: every op vs preimage::cpu on odd sizes with
      NaN-prefilled outputs under all three simulator orders; solver runs on the simulator).
Bench: bench_lbfgs --device cuda (solver overhead per iteration, docs/benchmarks.md).
*/
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"
#include "kernels/reduce.cuh"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 1024;    // pass-1 blocks of the single-vector reductions
constexpr size_t kDotChunk = 4096;  // elements per dots block (a multiple of 4·kThreads)
constexpr int kMaxDotChunks = 256;
constexpr float kFloatMax = 3.402823466e38f;

struct Box {
  float lo, hi;
  int bounded;
};

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

int blocks_for(size_t n) {
  const size_t b = (n + size_t(kThreads) * 4 - 1) / (size_t(kThreads) * 4);
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(b, kMaxBlocks)));
}

__device__ __forceinline__ size_t global_thread() {
  return blockIdx.x * (size_t)blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_threads() {
  return (size_t)gridDim.x * blockDim.x;
}

__device__ __forceinline__ bool finite(float v) {
  return fabsf(v) <= kFloatMax;
}

__device__ __forceinline__ bool fixed_var(float x, float g, const Box& b) {
  return b.bounded && ((x <= b.lo && g > 0.f) || (x >= b.hi && g < 0.f));
}

__device__ __forceinline__ float project(float v, const Box& b) {
  return b.bounded ? fminf(fmaxf(v, b.lo), b.hi) : v;
}

template <int K, unsigned MAXMASK>
__device__ __forceinline__ void write_partials(double (&v)[K], double* partials) {
  block_reduce<K, MAXMASK>(v);
  if (threadIdx.x == 0)
#pragma unroll
    for (int i = 0; i < K; ++i) partials[(size_t)blockIdx.x * K + i] = v[i];
}

// ------------------------------- single-vector ops --------------------------------------

// v = {Σ pg², #non-finite g, max|pg|}
__device__ __forceinline__ void project_one(float x, float g, const Box& b, float& pg,
                                            double (&v)[3]) {
  pg = fixed_var(x, g, b) ? 0.f : g;
  v[0] += (double)pg * pg;
  v[1] += finite(g) ? 0.0 : 1.0;
  v[2] = fmax(v[2], (double)fabsf(pg));
}

__global__ void project_grad_kernel(const float* x, const float* g, Box b, float* pg, size_t n,
                                    bool vec, double* partials) {
  double v[3] = {0.0, 0.0, 0.0};
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* g4 = reinterpret_cast<const float4*>(g);
    float4* p4 = reinterpret_cast<float4*>(pg);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 a = x4[i], d = g4[i];
      float4 o;
      project_one(a.x, d.x, b, o.x, v);
      project_one(a.y, d.y, b, o.y, v);
      project_one(a.z, d.z, b, o.z, v);
      project_one(a.w, d.w, b, o.w, v);
      p4[i] = o;
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) {
    float o;
    project_one(x[i], g[i], b, o, v);
    pg[i] = o;
  }
  write_partials<3, 4u>(v, partials);
}

// v = {sᵀy, yᵀy, sᵀs, Σ pg², max|pg|}
__device__ __forceinline__ void update_one(float x0, float g0, float x1, float g1, const Box& b,
                                           float& s, float& y, float& pg, double (&v)[5]) {
  s = x1 - x0;
  y = g1 - g0;
  pg = fixed_var(x1, g1, b) ? 0.f : g1;
  v[0] += (double)s * y;
  v[1] += (double)y * y;
  v[2] += (double)s * s;
  v[3] += (double)pg * pg;
  v[4] = fmax(v[4], (double)fabsf(pg));
}

__global__ void update_kernel(const float* x0, const float* g0, const float* x1, const float* g1,
                              Box b, float* s, float* y, float* pg, size_t n, bool vec,
                              double* partials) {
  double v[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 a0 = reinterpret_cast<const float4*>(x0)[i];
      const float4 b0 = reinterpret_cast<const float4*>(g0)[i];
      const float4 a1 = reinterpret_cast<const float4*>(x1)[i];
      const float4 b1 = reinterpret_cast<const float4*>(g1)[i];
      float4 so, yo, po;
      update_one(a0.x, b0.x, a1.x, b1.x, b, so.x, yo.x, po.x, v);
      update_one(a0.y, b0.y, a1.y, b1.y, b, so.y, yo.y, po.y, v);
      update_one(a0.z, b0.z, a1.z, b1.z, b, so.z, yo.z, po.z, v);
      update_one(a0.w, b0.w, a1.w, b1.w, b, so.w, yo.w, po.w, v);
      reinterpret_cast<float4*>(s)[i] = so;
      reinterpret_cast<float4*>(y)[i] = yo;
      reinterpret_cast<float4*>(pg)[i] = po;
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) {
    float so, yo, po;
    update_one(x0[i], g0[i], x1[i], g1[i], b, so, yo, po, v);
    s[i] = so;
    y[i] = yo;
    pg[i] = po;
  }
  write_partials<5, 16u>(v, partials);
}

__global__ void step_kernel(const float* x0, const float* d, float t, Box b, float* x1, size_t n,
                            bool vec) {
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(x0);
    const float4* d4 = reinterpret_cast<const float4*>(d);
    float4* o4 = reinterpret_cast<float4*>(x1);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 a = a4[i], e = d4[i];
      o4[i] = make_float4(project(fmaf(t, e.x, a.x), b), project(fmaf(t, e.y, a.y), b),
                          project(fmaf(t, e.z, a.z), b), project(fmaf(t, e.w, a.w), b));
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads())
    x1[i] = project(fmaf(t, d[i], x0[i]), b);
}

// v = {Σ g·d over variables inside the box at step t, #non-finite g}
__device__ __forceinline__ void deriv_one(float x0, float d, float g, float t, const Box& b,
                                          double (&v)[2]) {
  const float p = fmaf(t, d, x0);
  const bool moving = !b.bounded || (p > b.lo && p < b.hi);
  if (moving) v[0] += (double)g * d;
  v[1] += finite(g) ? 0.0 : 1.0;
}

__global__ void dir_deriv_kernel(const float* x0, const float* d, const float* g, float t, Box b,
                                 size_t n, bool vec, double* partials) {
  double v[2] = {0.0, 0.0};
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 a = reinterpret_cast<const float4*>(x0)[i];
      const float4 e = reinterpret_cast<const float4*>(d)[i];
      const float4 h = reinterpret_cast<const float4*>(g)[i];
      deriv_one(a.x, e.x, h.x, t, b, v);
      deriv_one(a.y, e.y, h.y, t, b, v);
      deriv_one(a.z, e.z, h.z, t, b, v);
      deriv_one(a.w, e.w, h.w, t, b, v);
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads())
    deriv_one(x0[i], d[i], g[i], t, b, v);
  write_partials<2, 0u>(v, partials);
}

// ------------------------------- history ops --------------------------------------------

// Block (r, c): row r of [S; Y] (r < rows → S_r, else Y_{r−rows}) against the ≤ 3 queries over
// chunk c; partials[(r·3 + q)·chunks + c].
__global__ void dots_partial_kernel(const float* S, const float* Y, size_t ld, int rows, int skip,
                                    const float* q0, const float* q1, const float* q2, size_t n,
                                    size_t chunk, bool vec, double* partials) {
  const int r = blockIdx.x;
  const int c = blockIdx.y, chunks = gridDim.y;
  const int phys = r < rows ? r : r - rows;
  double v[3] = {0.0, 0.0, 0.0};
  if (phys != skip) {
    const float* row = (r < rows ? S : Y) + (size_t)phys * ld;
    const size_t begin = (size_t)c * chunk, end = begin + chunk < n ? begin + chunk : n;
    size_t start = begin;
    if (vec) {
      const size_t e4 = begin + (end - begin) / 4 * 4;
      for (size_t i = begin + 4 * threadIdx.x; i < e4; i += 4 * blockDim.x) {
        const float4 a = *reinterpret_cast<const float4*>(row + i);
        const float4 u = *reinterpret_cast<const float4*>(q0 + i);
        v[0] += (double)a.x * u.x + (double)a.y * u.y + (double)a.z * u.z + (double)a.w * u.w;
        if (q1) {
          const float4 w = *reinterpret_cast<const float4*>(q1 + i);
          v[1] += (double)a.x * w.x + (double)a.y * w.y + (double)a.z * w.z + (double)a.w * w.w;
        }
        if (q2) {
          const float4 w = *reinterpret_cast<const float4*>(q2 + i);
          v[2] += (double)a.x * w.x + (double)a.y * w.y + (double)a.z * w.z + (double)a.w * w.w;
        }
      }
      start = e4;
    }
    for (size_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      const double a = row[i];
      v[0] += a * q0[i];
      if (q1) v[1] += a * q1[i];
      if (q2) v[2] += a * q2[i];
    }
  }
  block_reduce<3, 0u>(v);
  if (threadIdx.x == 0)
#pragma unroll
    for (int q = 0; q < 3; ++q) partials[((size_t)r * 3 + q) * chunks + c] = v[q];
}

// Block o = q·rows2 + r sums the chunk partials of (r, q) in order → out[o].
__global__ void dots_final_kernel(const double* partials, int chunks, int rows2, double* out) {
  const int o = blockIdx.x;
  const int q = o / rows2, r = o % rows2;
  const double* p = partials + ((size_t)r * 3 + q) * chunks;
  double v[1] = {0.0};
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) v[0] += p[c];
  block_reduce<1, 0u>(v);
  if (threadIdx.x == 0) out[o] = v[0];
}

// d = −(coef[2R]·g + Σ coef[r]·S_r + Σ coef[R + r]·Y_r), masked; v = {gᵀd, dᵀd, #non-finite d}
__device__ __forceinline__ float finish_dir(double acc, float x, float g, const Box& b,
                                            double (&v)[3]) {
  float d = (float)(-acc);
  if (fixed_var(x, g, b) || (b.bounded && ((x <= b.lo && d < 0.f) || (x >= b.hi && d > 0.f))))
    d = 0.f;
  v[0] += (double)g * d;
  v[1] += (double)d * d;
  v[2] += finite(d) ? 0.0 : 1.0;
  return d;
}

__global__ void combine_kernel(const float* S, const float* Y, size_t ld, int rows,
                               const double* coef, const float* x, const float* g, Box b, float* d,
                               size_t n, bool vec, double* partials) {
  double v[3] = {0.0, 0.0, 0.0};
  const double cg = coef[2 * rows];
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      double a0 = cg * gv.x, a1 = cg * gv.y, a2 = cg * gv.z, a3 = cg * gv.w;
      for (int r = 0; r < 2 * rows; ++r) {
        const double c = coef[r];
        if (c == 0.0) continue;
        const float* row = (r < rows ? S + (size_t)r * ld : Y + (size_t)(r - rows) * ld);
        const float4 e = reinterpret_cast<const float4*>(row)[i];
        a0 += c * e.x;
        a1 += c * e.y;
        a2 += c * e.z;
        a3 += c * e.w;
      }
      const float4 xv = reinterpret_cast<const float4*>(x)[i];
      float4 o;
      o.x = finish_dir(a0, xv.x, gv.x, b, v);
      o.y = finish_dir(a1, xv.y, gv.y, b, v);
      o.z = finish_dir(a2, xv.z, gv.z, b, v);
      o.w = finish_dir(a3, xv.w, gv.w, b, v);
      reinterpret_cast<float4*>(d)[i] = o;
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) {
    double a = cg * g[i];
    for (int r = 0; r < 2 * rows; ++r) {
      const double c = coef[r];
      if (c == 0.0) continue;
      a += c * (r < rows ? S[(size_t)r * ld + i] : Y[(size_t)(r - rows) * ld + i]);
    }
    d[i] = finish_dir(a, x[i], g[i], b, v);
  }
  write_partials<3, 0u>(v, partials);
}

// ------------------------------- host side ----------------------------------------------

}  // namespace

void lbfgs_project_grad(Workspace& ws, const float* x, const float* g, float lo, float hi,
                        bool bounded, float* pg, size_t n, double* out) {
  if (n == 0) {
    out[0] = out[1] = out[2] = 0.0;
    return;
  }
  const auto lock = ws.lock();
  const int blocks = blocks_for(n);
  double* part = ws.get<double>(size_t(blocks + 1) * 3);
  cuda::launch(project_grad_kernel, dim3(blocks), dim3(kThreads), 0, nullptr, x, g,
               Box{lo, hi, bounded}, pg, n, aligned16(x) && aligned16(g) && aligned16(pg), part);
  double r[3];
  final_reduce<3, 4u>(part, blocks, r);
  out[0] = r[2];
  out[1] = r[0];
  out[2] = r[1];
}

void lbfgs_update(Workspace& ws, const float* x0, const float* g0, const float* x1, const float* g1,
                  float lo, float hi, bool bounded, float* s, float* y, float* pg, size_t n,
                  double* out) {
  if (n == 0) {
    std::fill(out, out + 5, 0.0);
    return;
  }
  const auto lock = ws.lock();
  const int blocks = blocks_for(n);
  double* part = ws.get<double>(size_t(blocks + 1) * 5);
  const bool vec = aligned16(x0) && aligned16(g0) && aligned16(x1) && aligned16(g1) &&
                   aligned16(s) && aligned16(y) && aligned16(pg);
  cuda::launch(update_kernel, dim3(blocks), dim3(kThreads), 0, nullptr, x0, g0, x1, g1,
               Box{lo, hi, bounded}, s, y, pg, n, vec, part);
  double r[5];
  final_reduce<5, 16u>(part, blocks, r);
  out[0] = r[0];
  out[1] = r[1];
  out[2] = r[2];
  out[3] = r[4];
  out[4] = r[3];
}

void lbfgs_dots(Workspace& ws, const float* S, const float* Y, size_t ld, int rows, int skip,
                const float* q0, const float* q1, const float* q2, size_t n, double* out) {
  if (rows <= 0) return;
  if (!q0) throw std::invalid_argument("lbfgs_dots: q0 is required");
  const int nq = 1 + (q1 != nullptr) + (q2 != nullptr);
  if (q2 && !q1) throw std::invalid_argument("lbfgs_dots: q2 without q1");
  const int rows2 = 2 * rows;
  if (n == 0) {
    std::fill(out, out + size_t(nq) * rows2, 0.0);
    return;
  }
  if (rows2 > 65535) throw std::invalid_argument("lbfgs_dots: too many history rows");
  const auto lock = ws.lock();
  int chunks = static_cast<int>(std::min<size_t>((n + kDotChunk - 1) / kDotChunk, kMaxDotChunks));
  size_t chunk = (n + chunks - 1) / chunks;
  chunk = (chunk + 4 * kThreads - 1) / (4 * kThreads) * (4 * kThreads);
  chunks = static_cast<int>((n + chunk - 1) / chunk);
  const size_t partial_count = size_t(rows2) * 3 * chunks;
  double* part = ws.get<double>(partial_count + size_t(nq) * rows2);
  double* result = part + partial_count;
  const bool vec = ld % 4 == 0 && aligned16(S) && aligned16(Y) && aligned16(q0) &&
                   (!q1 || aligned16(q1)) && (!q2 || aligned16(q2));
  cuda::launch(dots_partial_kernel, dim3(rows2, chunks), dim3(kThreads), 0, nullptr, S, Y, ld, rows,
               skip, q0, q1, q2, n, chunk, vec, part);
  cuda::launch(dots_final_kernel, dim3(nq * rows2), dim3(kThreads), 0, nullptr,
               static_cast<const double*>(part), chunks, rows2, result);
  CUDA_CHECK(cudaMemcpy(out, result, size_t(nq) * rows2 * sizeof(double), cudaMemcpyDeviceToHost));
}

void lbfgs_combine(Workspace& ws, const float* S, const float* Y, size_t ld, int rows,
                   const double* coef, const float* x, const float* g, float lo, float hi,
                   bool bounded, float* d, size_t n, double* out) {
  if (n == 0) {
    out[0] = out[1] = out[2] = 0.0;
    return;
  }
  rows = std::max(rows, 0);
  const auto lock = ws.lock();
  const int blocks = blocks_for(n);
  const size_t ncoef = size_t(2 * rows + 1);
  double* part = ws.get<double>(size_t(blocks + 1) * 3 + ncoef);
  double* dcoef = part + size_t(blocks + 1) * 3;
  CUDA_CHECK(cudaMemcpy(dcoef, coef, ncoef * sizeof(double), cudaMemcpyHostToDevice));
  const bool vec =
      ld % 4 == 0 && aligned16(S) && aligned16(Y) && aligned16(x) && aligned16(g) && aligned16(d);
  cuda::launch(combine_kernel, dim3(blocks), dim3(kThreads), 0, nullptr, S, Y, ld, rows,
               static_cast<const double*>(dcoef), x, g, Box{lo, hi, bounded}, d, n, vec, part);
  final_reduce<3, 0u>(part, blocks, out);
}

void lbfgs_step(const float* x0, const float* d, double t, float lo, float hi, bool bounded,
                float* x1, size_t n) {
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>(
      std::max<size_t>(1, std::min<size_t>((n + kThreads * 4 - 1) / (kThreads * 4), 4096)));
  cuda::launch(step_kernel, dim3(blocks), dim3(kThreads), 0, nullptr, x0, d, (float)t,
               Box{lo, hi, bounded}, x1, n, aligned16(x0) && aligned16(d) && aligned16(x1));
}

void lbfgs_dir_deriv(Workspace& ws, const float* x0, const float* d, const float* g, double t,
                     float lo, float hi, bool bounded, size_t n, double* out) {
  if (n == 0) {
    out[0] = out[1] = 0.0;
    return;
  }
  const auto lock = ws.lock();
  const int blocks = blocks_for(n);
  double* part = ws.get<double>(size_t(blocks + 1) * 2);
  cuda::launch(dir_deriv_kernel, dim3(blocks), dim3(kThreads), 0, nullptr, x0, d, g, (float)t,
               Box{lo, hi, bounded}, n, aligned16(x0) && aligned16(d) && aligned16(g), part);
  final_reduce<2, 0u>(part, blocks, out);
}

}  // namespace preimage::kernels
