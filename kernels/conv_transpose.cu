/*
Transposed 2-D convolution (PyTorch ConvTranspose2d, groups = dilation = 1) forward, backward-data
and backward-filter (+ bias gradient), and leaky ReLU: the ops of the up-convolutional decoders
(engine/features/decoder/decoder.cpp, Dosovitskiy & Brox).

Layouts: x, dx: (N,C,H,W)   w, dw: (C,O,K,K)   b, db: (O)   y, dy: (N,O,HO,WO)
         HO = (H−1)·stride − 2·pad + K + out_pad, same for WO; 0 ≤ out_pad < stride.
Index map: input (ih, iw) through tap (kh, kw) lands on output (ih·stride − pad + kh, …).

  forward     y[n,o,oh,ow] = b[o] + Σ_{c,kh,kw} x[n,c,ih,iw]·w[c,o,kh,kw] over the taps with
              ih = (oh + pad − kh)/stride integral and inside [0,H) (same for iw): a gather, so
              each output is written once (no atomics, deterministic).
  bwd_data    dx[n,c,ih,iw] = Σ_{o,kh,kw} dy[n,o,ih·s−p+kh, iw·s−p+kw]·w[c,o,kh,kw]: an ordinary
              strided convolution of dy, one thread per input element.
  bwd_filter  dw[c,o,kh,kw] (+)= Σ_{n,ih,iw} x[n,c,ih,iw]·dy[n,o,ih·s−p+kh, iw·s−p+kw];
              db[o] (+)= Σ dy[n,o,:,:].
  leaky_relu  y = x > 0 ? x : slope·x;  dx = y > 0 ? dy : slope·dy   (grid-stride loops)

Versions: forward and bwd_data have one (v1, one thread per output element, reading x/dy and w
through the read-only path). bwd_filter (conv_transpose_versions() == 2; 0 = launcher's choice):
  v1  one thread per weight element loops over N·H·W serially (and one thread per o for db):
      the plain reference; little parallelism when C·O·K² is small.
  v2  one 128-thread block per weight element (and per o for db); each thread sums a strided
      slice of N·H·W in float, then a shared-memory tree reduction (one __syncthreads per level).
      Version 0 → v2.

Test: ctest -R conv_transpose   (test/test_kernels_conv_transpose.cpp: CPU vs a double reference and
      central differences; every kernel version vs the CPU on odd shapes, strides 1–3, padding
      and output padding, NaN-prefilled outputs, all three simulator thread orders; PyTorch
      ConvTranspose2d cross-check in test/conv_transpose_torch.py).
Bench: the decoder training loop (`preimage decoder train --device cuda`) prints images/s; these
       are direct kernels, expected well below cuDNN's implicit GEMM (docs/decoders.md).
*/
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kReduceThreads = 128;  // v2 block size (power of two)
constexpr unsigned kMaxBlocks = 4096;

struct TGeom {
  int n, c, h, w, o, k, stride, pad, ho, wo;
};

TGeom make_geom(const ConvTransposeShape& s) {
  if (s.n < 0 || s.c <= 0 || s.h <= 0 || s.w <= 0 || s.o <= 0 || s.k <= 0 || s.stride <= 0 ||
      s.pad < 0 || s.out_pad < 0 || s.out_pad >= s.stride || s.ho() <= 0 || s.wo() <= 0)
    throw std::invalid_argument(
        "conv_transpose: invalid shape (n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) +
        " h=" + std::to_string(s.h) + " w=" + std::to_string(s.w) + " o=" + std::to_string(s.o) +
        " k=" + std::to_string(s.k) + " stride=" + std::to_string(s.stride) +
        " pad=" + std::to_string(s.pad) + " out_pad=" + std::to_string(s.out_pad) +
        "; out_pad must be below stride and the output non-empty)");
  return {s.n, s.c, s.h, s.w, s.o, s.k, s.stride, s.pad, s.ho(), s.wo()};
}

unsigned blocks_for(long long total) {
  return static_cast<unsigned>((total + kThreads - 1) / kThreads);
}

unsigned grid_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(b, kMaxBlocks)));
}

// ------------------------------- forward (v1) -------------------------------------------

__global__ void conv_transpose_fwd_v1_kernel(const float* __restrict__ x,
                                             const float* __restrict__ w,
                                             const float* __restrict__ b, float* __restrict__ y,
                                             TGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.o * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo), oh = (int)((i / g.wo) % g.ho);
  const int o = (int)((i / ((long long)g.wo * g.ho)) % g.o);
  const int n = (int)(i / ((long long)g.wo * g.ho * g.o));
  float acc = b ? b[o] : 0.f;
  for (int kh = 0; kh < g.k; ++kh) {
    const int th = oh + g.pad - kh;
    if (th < 0 || th % g.stride) continue;
    const int ih = th / g.stride;
    if (ih >= g.h) continue;
    for (int kw = 0; kw < g.k; ++kw) {
      const int tw = ow + g.pad - kw;
      if (tw < 0 || tw % g.stride) continue;
      const int iw = tw / g.stride;
      if (iw >= g.w) continue;
      const float* xp = x + ((long long)n * g.c * g.h + ih) * g.w + iw;
      const float* wp = w + ((long long)o * g.k + kh) * g.k + kw;
      for (int c = 0; c < g.c; ++c)
        acc = fmaf(xp[(long long)c * g.h * g.w], wp[(long long)c * g.o * g.k * g.k], acc);
    }
  }
  y[i] = acc;
}

// ------------------------------- backward data (v1) -------------------------------------

__global__ void conv_transpose_bwd_data_v1_kernel(const float* __restrict__ dy,
                                                  const float* __restrict__ w,
                                                  float* __restrict__ dx, TGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (i >= total) return;
  const int iw = (int)(i % g.w), ih = (int)((i / g.w) % g.h);
  const int c = (int)((i / ((long long)g.w * g.h)) % g.c);
  const int n = (int)(i / ((long long)g.w * g.h * g.c));
  float acc = 0.f;
  for (int kh = 0; kh < g.k; ++kh) {
    const int oh = ih * g.stride - g.pad + kh;
    if (oh < 0 || oh >= g.ho) continue;
    for (int kw = 0; kw < g.k; ++kw) {
      const int ow = iw * g.stride - g.pad + kw;
      if (ow < 0 || ow >= g.wo) continue;
      const float* dp = dy + ((long long)n * g.o * g.ho + oh) * g.wo + ow;
      const float* wp = w + (((long long)c * g.o) * g.k + kh) * g.k + kw;
      for (int o = 0; o < g.o; ++o)
        acc = fmaf(dp[(long long)o * g.ho * g.wo], wp[(long long)o * g.k * g.k], acc);
    }
  }
  dx[i] = acc;
}

// ------------------------------- backward filter ----------------------------------------

// Σ over the v-th (n, ih, iw) of the weight element's product x·dy (0 when the tap falls
// outside the output).
__device__ __forceinline__ float filter_term(const float* __restrict__ x,
                                             const float* __restrict__ dy, const TGeom& g, int c,
                                             int o, int kh, int kw, long long v) {
  const int iw = (int)(v % g.w), ih = (int)((v / g.w) % g.h), n = (int)(v / ((long long)g.w * g.h));
  const int oh = ih * g.stride - g.pad + kh, ow = iw * g.stride - g.pad + kw;
  if (oh < 0 || oh >= g.ho || ow < 0 || ow >= g.wo) return 0.f;
  return x[(((long long)n * g.c + c) * g.h + ih) * g.w + iw] *
         dy[(((long long)n * g.o + o) * g.ho + oh) * g.wo + ow];
}

__global__ void conv_transpose_bwd_filter_v1_kernel(const float* __restrict__ x,
                                                    const float* __restrict__ dy,
                                                    float* __restrict__ dw, TGeom g,
                                                    bool accumulate) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.c * g.o * g.k * g.k;
  if (i >= total) return;
  const int kw = (int)(i % g.k), kh = (int)((i / g.k) % g.k);
  const int o = (int)((i / ((long long)g.k * g.k)) % g.o);
  const int c = (int)(i / ((long long)g.k * g.k * g.o));
  const long long m = (long long)g.n * g.h * g.w;
  float acc = 0.f;
  for (long long v = 0; v < m; ++v) acc += filter_term(x, dy, g, c, o, kh, kw, v);
  dw[i] = accumulate ? dw[i] + acc : acc;
}

__global__ void conv_transpose_bias_v1_kernel(const float* __restrict__ dy, float* __restrict__ db,
                                              TGeom g, bool accumulate) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= g.o) return;
  const long long plane = (long long)g.ho * g.wo;
  float acc = 0.f;
  for (int n = 0; n < g.n; ++n) {
    const float* p = dy + ((long long)n * g.o + o) * plane;
    for (long long j = 0; j < plane; ++j) acc += p[j];
  }
  db[o] = accumulate ? db[o] + acc : acc;
}

// Tree reduction of one value per thread of a kReduceThreads block; thread 0 gets the sum.
__device__ __forceinline__ float block_sum(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int half = kReduceThreads / 2; half > 0; half /= 2) {
    if ((int)threadIdx.x < half) red[threadIdx.x] += red[threadIdx.x + half];
    __syncthreads();
  }
  return red[0];
}

__global__ void conv_transpose_bwd_filter_v2_kernel(const float* __restrict__ x,
                                                    const float* __restrict__ dy,
                                                    float* __restrict__ dw, TGeom g,
                                                    bool accumulate) {
  __shared__ float red[kReduceThreads];
  const long long i = blockIdx.x;
  const int kw = (int)(i % g.k), kh = (int)((i / g.k) % g.k);
  const int o = (int)((i / ((long long)g.k * g.k)) % g.o);
  const int c = (int)(i / ((long long)g.k * g.k * g.o));
  const long long m = (long long)g.n * g.h * g.w;
  float acc = 0.f;
  for (long long v = threadIdx.x; v < m; v += kReduceThreads)
    acc += filter_term(x, dy, g, c, o, kh, kw, v);
  const float total = block_sum(acc, red);
  if (threadIdx.x == 0) dw[i] = accumulate ? dw[i] + total : total;
}

__global__ void conv_transpose_bias_v2_kernel(const float* __restrict__ dy, float* __restrict__ db,
                                              TGeom g, bool accumulate) {
  __shared__ float red[kReduceThreads];
  const int o = blockIdx.x;
  const long long plane = (long long)g.ho * g.wo;
  float acc = 0.f;
  for (long long v = threadIdx.x; v < (long long)g.n * plane; v += kReduceThreads) {
    const long long n = v / plane, j = v % plane;
    acc += dy[(n * g.o + o) * plane + j];
  }
  const float total = block_sum(acc, red);
  if (threadIdx.x == 0) db[o] = accumulate ? db[o] + total : total;
}

// ------------------------------- leaky ReLU ---------------------------------------------

__global__ void leaky_relu_fwd_kernel(const float* x, float* y, size_t n, float slope) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float v = x[i];
    y[i] = v > 0.f ? v : slope * v;
  }
}

__global__ void leaky_relu_bwd_kernel(const float* __restrict__ y, const float* __restrict__ dy,
                                      float* __restrict__ dx, size_t n, float slope) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x)
    dx[i] = y[i] > 0.f ? dy[i] : slope * dy[i];
}

}  // namespace

int conv_transpose_versions() {
  return 2;
}

void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                        const ConvTransposeShape& s, int version) {
  if (version < 0 || version > 1)
    throw std::invalid_argument("conv_transpose_fwd: version " + std::to_string(version) +
                                " does not exist (0..1)");
  const TGeom g = make_geom(s);
  const long long total = (long long)g.n * g.o * g.ho * g.wo;
  if (total == 0) return;
  cuda::launch(conv_transpose_fwd_v1_kernel, dim3(blocks_for(total)), dim3(kThreads), 0, nullptr, x,
               w, b, y, g);
}

void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                             const ConvTransposeShape& s, int version) {
  if (version < 0 || version > 1)
    throw std::invalid_argument("conv_transpose_bwd_data: version " + std::to_string(version) +
                                " does not exist (0..1)");
  const TGeom g = make_geom(s);
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (total == 0) return;
  cuda::launch(conv_transpose_bwd_data_v1_kernel, dim3(blocks_for(total)), dim3(kThreads), 0,
               nullptr, dy, w, dx, g);
}

void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                               const ConvTransposeShape& s, bool accumulate, int version) {
  if (version < 0 || version > conv_transpose_versions())
    throw std::invalid_argument("conv_transpose_bwd_filter: version " + std::to_string(version) +
                                " does not exist (0.." + std::to_string(conv_transpose_versions()) +
                                ")");
  const TGeom g = make_geom(s);
  const long long weights = (long long)g.c * g.o * g.k * g.k;
  if (version == 1) {
    cuda::launch(conv_transpose_bwd_filter_v1_kernel, dim3(blocks_for(weights)), dim3(kThreads), 0,
                 nullptr, x, dy, dw, g, accumulate);
    if (db)
      cuda::launch(conv_transpose_bias_v1_kernel, dim3(blocks_for(g.o)), dim3(kThreads), 0, nullptr,
                   dy, db, g, accumulate);
    return;
  }
  cuda::launch(conv_transpose_bwd_filter_v2_kernel, dim3(unsigned(weights)), dim3(kReduceThreads),
               0, nullptr, x, dy, dw, g, accumulate);
  if (db)
    cuda::launch(conv_transpose_bias_v2_kernel, dim3(unsigned(g.o)), dim3(kReduceThreads), 0,
                 nullptr, dy, db, g, accumulate);
}

void leaky_relu_fwd(const float* x, float* y, size_t count, float slope) {
  if (count == 0) return;
  cuda::launch(leaky_relu_fwd_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, x, y,
               count, slope);
}

void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t count, float slope) {
  if (count == 0) return;
  cuda::launch(leaky_relu_bwd_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, y, dy, dx,
               count, slope);
}

}  // namespace preimage::kernels
