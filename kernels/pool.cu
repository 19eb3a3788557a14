/*
Max and average 2-D pooling, forward and backward.

Layouts: x, dx: (N,C,H,W)   y, dy: (N,C,HO,WO)   HO = (H + 2·pad - k)/stride + 1, same for WO.
Square window k, one stride and pad for both axes. Max pooling treats padding as -inf (a window
entirely in padding gives -inf and no gradient); average pooling counts padding as zeros and
always divides by k² (PyTorch's count_include_pad=True).
Max-pool ties: the gradient goes to the FIRST maximum of the window in row-major order; a NaN in
a window is the maximum (the first NaN wins), exactly as preimage::cpu.

Versions (pool_versions() == 2; `version` 0 = launcher's choice):
  forward   v1  one thread per output element, loops over the window. Forward is one coalesced
                read pass, so version 2 runs the same kernel (no second forward kernel).
  backward  v1  scatter: dx is zeroed, one thread per OUTPUT adds its gradient into the input
                element(s) with atomicAdd (max: the window's argmax; avg: dy/k² to every cell
                of the window). Order of the additions is not deterministic.
            v2  gather: one thread per INPUT element visits the outputs whose windows contain it
                (oh in [ceil((ih+pad-k+1)/s), floor((ih+pad)/s)], same for ow), recomputes the
                argmax (max) or adds dy/k² (avg), and writes dx once: no atomics, no memset,
                deterministic and in the CPU's summation order. Version 0 → v2.

Test: ctest -R kernels   (test/test_kernels_pool.cpp: all versions vs preimage::cpu, k=2 s=2 and
      k=3 s=2 p=1 on odd shapes, NaN-prefilled outputs, all three simulator thread orders).
Bench: build/bench/bench_vgg --device cuda --sizes 512 (pools inside the VGG pass); bandwidth-bound,
       ≈ (|x| + |y|)·4 B / 3.35 TB/s on an H100 (docs/kernels.md).
*/
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;

struct PoolGeom {
  int n, c, h, w, k, stride, pad, ho, wo;
};

PoolGeom make_geom(const PoolShape& s) {
  if (s.n < 0 || s.c <= 0 || s.h <= 0 || s.w <= 0 || s.k <= 0 || s.stride <= 0 || s.pad < 0 ||
      2 * s.pad > s.k || s.ho() <= 0 || s.wo() <= 0)
    throw std::invalid_argument("pool: invalid shape (n=" + std::to_string(s.n) +
                                " c=" + std::to_string(s.c) + " h=" + std::to_string(s.h) +
                                " w=" + std::to_string(s.w) + " k=" + std::to_string(s.k) +
                                " stride=" + std::to_string(s.stride) +
                                " pad=" + std::to_string(s.pad) + "; pad must be at most k/2)");
  return {s.n, s.c, s.h, s.w, s.k, s.stride, s.pad, s.ho(), s.wo()};
}

void check_version(const char* op, int version) {
  if (version < 0 || version > pool_versions())
    throw std::invalid_argument(std::string(op) + ": version " + std::to_string(version) +
                                " does not exist (0.." + std::to_string(pool_versions()) + ")");
}

unsigned blocks_for(long long total) {
  return static_cast<unsigned>((total + kThreads - 1) / kThreads);
}

// Index in the plane of the first maximum of window (oh, ow); -1 when the window is all padding.
__device__ __forceinline__ int argmax_window(const float* __restrict__ xp, const PoolGeom& g,
                                             int oh, int ow) {
  int best = -1;
  float m = 0.f;
  for (int kh = 0; kh < g.k; ++kh) {
    const int ih = oh * g.stride - g.pad + kh;
    if (ih < 0 || ih >= g.h) continue;
    for (int kw = 0; kw < g.k; ++kw) {
      const int iw = ow * g.stride - g.pad + kw;
      if (iw < 0 || iw >= g.w) continue;
      const float v = xp[ih * g.w + iw];
      const bool nan = v != v;
      if (best < 0 || v > m || nan) {
        m = v;
        best = ih * g.w + iw;
        if (nan) return best;
      }
    }
  }
  return best;
}

// Outputs whose window covers input coordinate i: [lo, hi] (empty when lo > hi).
__device__ __forceinline__ void covering(int i, int k, int s, int pad, int out, int& lo, int& hi) {
  const int a = i + pad - k + 1;  // oh·s ≥ a
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = min((i + pad) / s, out - 1);
}

// ------------------------------- forward (v1) -------------------------------------------

__global__ void maxpool_fwd_v1_kernel(const float* __restrict__ x, float* __restrict__ y,
                                      PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo), oh = (int)((i / g.wo) % g.ho);
  const long long plane = i / ((long long)g.wo * g.ho);
  const float* xp = x + plane * g.h * g.w;
  const int a = argmax_window(xp, g, oh, ow);
  y[i] = a < 0 ? -INFINITY : xp[a];
}

__global__ void avgpool_fwd_v1_kernel(const float* __restrict__ x, float* __restrict__ y,
                                      PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo), oh = (int)((i / g.wo) % g.ho);
  const float* xp = x + (i / ((long long)g.wo * g.ho)) * g.h * g.w;
  float acc = 0.f;
  for (int kh = 0; kh < g.k; ++kh) {
    const int ih = oh * g.stride - g.pad + kh;
    if (ih < 0 || ih >= g.h) continue;
    for (int kw = 0; kw < g.k; ++kw) {
      const int iw = ow * g.stride - g.pad + kw;
      if (iw >= 0 && iw < g.w) acc += xp[ih * g.w + iw];
    }
  }
  y[i] = acc * (1.f / (float)(g.k * g.k));
}

// ------------------------------- backward v1: scatter with atomics ----------------------

__global__ void pool_zero_v1_kernel(float* __restrict__ dx, long long count) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < count) dx[i] = 0.f;
}

__global__ void maxpool_bwd_v1_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                      float* __restrict__ dx, PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo), oh = (int)((i / g.wo) % g.ho);
  const long long off = (i / ((long long)g.wo * g.ho)) * g.h * g.w;
  const int a = argmax_window(x + off, g, oh, ow);
  if (a >= 0) atomicAdd(dx + off + a, dy[i]);
}

__global__ void avgpool_bwd_v1_kernel(const float* __restrict__ dy, float* __restrict__ dx,
                                      PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo), oh = (int)((i / g.wo) % g.ho);
  float* dxp = dx + (i / ((long long)g.wo * g.ho)) * g.h * g.w;
  const float v = dy[i] * (1.f / (float)(g.k * g.k));
  for (int kh = 0; kh < g.k; ++kh) {
    const int ih = oh * g.stride - g.pad + kh;
    if (ih < 0 || ih >= g.h) continue;
    for (int kw = 0; kw < g.k; ++kw) {
      const int iw = ow * g.stride - g.pad + kw;
      if (iw >= 0 && iw < g.w) atomicAdd(dxp + ih * g.w + iw, v);
    }
  }
}

// ------------------------------- backward v2: gather, no atomics ------------------------

__global__ void maxpool_bwd_v2_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                      float* __restrict__ dx, PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (i >= total) return;
  const int iw = (int)(i % g.w), ih = (int)((i / g.w) % g.h);
  const long long plane = i / ((long long)g.w * g.h);
  const float* xp = x + plane * g.h * g.w;
  const float* dyp = dy + plane * g.ho * g.wo;
  int oh0, oh1, ow0, ow1;
  covering(ih, g.k, g.stride, g.pad, g.ho, oh0, oh1);
  covering(iw, g.k, g.stride, g.pad, g.wo, ow0, ow1);
  const int me = ih * g.w + iw;
  float acc = 0.f;
  for (int oh = oh0; oh <= oh1; ++oh)
    for (int ow = ow0; ow <= ow1; ++ow)
      if (argmax_window(xp, g, oh, ow) == me) acc += dyp[oh * g.wo + ow];
  dx[i] = acc;
}

__global__ void avgpool_bwd_v2_kernel(const float* __restrict__ dy, float* __restrict__ dx,
                                      PoolGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (i >= total) return;
  const int iw = (int)(i % g.w), ih = (int)((i / g.w) % g.h);
  const float* dyp = dy + (i / ((long long)g.w * g.h)) * g.ho * g.wo;
  int oh0, oh1, ow0, ow1;
  covering(ih, g.k, g.stride, g.pad, g.ho, oh0, oh1);
  covering(iw, g.k, g.stride, g.pad, g.wo, ow0, ow1);
  const float inv = 1.f / (float)(g.k * g.k);
  float acc = 0.f;
  for (int oh = oh0; oh <= oh1; ++oh)
    for (int ow = ow0; ow <= ow1; ++ow) acc += dyp[oh * g.wo + ow] * inv;
  dx[i] = acc;
}

}  // namespace

int pool_versions() {
  return 2;
}

void maxpool_fwd(const float* x, float* y, const PoolShape& s, int version) {
  const PoolGeom g = make_geom(s);
  check_version("maxpool_fwd", version);
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (total == 0) return;
  cuda::launch(maxpool_fwd_v1_kernel, dim3(blocks_for(total)), dim3(kThreads), 0, nullptr, x, y, g);
}

void avgpool_fwd(const float* x, float* y, const PoolShape& s, int version) {
  const PoolGeom g = make_geom(s);
  check_version("avgpool_fwd", version);
  const long long total = (long long)g.n * g.c * g.ho * g.wo;
  if (total == 0) return;
  cuda::launch(avgpool_fwd_v1_kernel, dim3(blocks_for(total)), dim3(kThreads), 0, nullptr, x, y, g);
}

void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s, int version) {
  const PoolGeom g = make_geom(s);
  check_version("maxpool_bwd", version);
  const long long in_total = (long long)g.n * g.c * g.h * g.w;
  const long long out_total = (long long)g.n * g.c * g.ho * g.wo;
  if (in_total == 0) return;
  if (version == 1) {
    cuda::launch(pool_zero_v1_kernel, dim3(blocks_for(in_total)), dim3(kThreads), 0, nullptr, dx,
                 in_total);
    cuda::launch(maxpool_bwd_v1_kernel, dim3(blocks_for(out_total)), dim3(kThreads), 0, nullptr, x,
                 dy, dx, g);
  } else {
    cuda::launch(maxpool_bwd_v2_kernel, dim3(blocks_for(in_total)), dim3(kThreads), 0, nullptr, x,
                 dy, dx, g);
  }
}

void avgpool_bwd(const float* dy, float* dx, const PoolShape& s, int version) {
  const PoolGeom g = make_geom(s);
  check_version("avgpool_bwd", version);
  const long long in_total = (long long)g.n * g.c * g.h * g.w;
  const long long out_total = (long long)g.n * g.c * g.ho * g.wo;
  if (in_total == 0) return;
  if (version == 1) {
    cuda::launch(pool_zero_v1_kernel, dim3(blocks_for(in_total)), dim3(kThreads), 0, nullptr, dx,
                 in_total);
    cuda::launch(avgpool_bwd_v1_kernel, dim3(blocks_for(out_total)), dim3(kThreads), 0, nullptr, dy,
                 dx, g);
  } else {
    cuda::launch(avgpool_bwd_v2_kernel, dim3(blocks_for(in_total)), dim3(kThreads), 0, nullptr, dy,
                 dx, g);
  }
}

}  // namespace preimage::kernels
