/*
Image priors of Mahendran & Vedaldi ("Understanding deep image representations by inverting
them"): total variation TV^β and the bounded α-norm, value and gradient fused in one launch each.
FP32 per pixel, double for the sums.

Layouts: x, dx: `planes` contiguous planes of h×w (the N·C planes of an (N,C,H,W) image).

  tv_loss_grad     V = Σ_planes Σ_{i,j} r_ij^(β/2),  r_ij = a_ij² + b_ij² + ε,
                   a_ij = x[i,j+1] − x[i,j] (0 on the last column), b_ij = x[i+1,j] − x[i,j]
                   (0 on the last row). With w_ij = β·r_ij^(β/2−1):
                   ∂V/∂x[i,j] = −w_ij(a_ij + b_ij) + w_i,j−1·a_i,j−1 + w_i−1,j·b_i−1,j
                   (terms outside the plane absent). One thread per pixel (grid-stride, 256
                   threads, ≤ 1024 blocks) computes its own term and gathers its gradient from
                   its left and upper neighbours' terms (recomputed, no atomics, deterministic);
                   one double partial per block (caller's Workspace), final_reduce sums them.
  alpha_loss_grad  A = Σ_planes Σ_p φ(x_p − μ), μ the plane's mean, φ(d) = |d|^α for α ≥ 2,
                   (d² + ε)^(α/2) for α < 2;  ∂A/∂x_q = φ'(d_q) − (1/P)·Σ_p φ'(d_p).
                   One 512-thread block per plane: block reductions of Σ x, then Σ φ and Σ φ'
                   (double), then the gradient pass; one partial per plane (chunks of 1024
                   planes), summed by a one-block kernel.
Both add grad_scale·gradient into dx (accumulating priors and network gradients).
One version each: these are bandwidth-bound (an image is a few MB) and small next to the
network; expected ≈ 3 passes over the image at HBM bandwidth.

Test: ctest -R objective   (test/test_objective.cpp: vs preimage::cpu, NaN-free accumulation
      checks, all simulator thread orders, and central differences in double).
*/
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"
#include "kernels/reduce.cuh"
#include "kernels/texture_tiles.cuh"

namespace preimage::kernels {
namespace {

constexpr int kMaxPartials = 1024;
constexpr int kTvThreads = 256;
constexpr int kAlphaThreads = 512;

// w·a and w·b of pixel (i, j) of plane xp, w = β·r^(β/2−1); *val = r^(β/2) when val is given.
__device__ __forceinline__ void tv_terms(const float* __restrict__ xp, int i, int j, int h, int w,
                                         float beta, float eps, float* wa, float* wb, float* val) {
  const long long q = (long long)i * w + j;
  const float x0 = xp[q];
  const float a = j + 1 < w ? xp[q + 1] - x0 : 0.f;
  const float b = i + 1 < h ? xp[q + w] - x0 : 0.f;
  const float r = a * a + b * b + eps;
  if (val) *val = powf(r, 0.5f * beta);
  const float k = beta * powf(r, 0.5f * beta - 1.f);
  *wa = k * a;
  *wb = k * b;
}

__global__ void tv_loss_grad_kernel(const float* __restrict__ x, float* __restrict__ dx,
                                    long long total, int h, int w, float beta, float eps,
                                    float grad_scale, double* partials) {
  __shared__ double red[33];
  double acc = 0.0;
  const long long plane = (long long)h * w;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const long long p = e / plane;
    const int q = (int)(e % plane), i = q / w, j = q % w;
    const float* xp = x + p * plane;
    float wa, wb, val;
    tv_terms(xp, i, j, h, w, beta, eps, &wa, &wb, &val);
    acc += (double)val;
    if (grad_scale != 0.f) {
      float g = -(wa + wb);
      float na, nb;
      if (j > 0) {
        tv_terms(xp, i, j - 1, h, w, beta, eps, &na, &nb, nullptr);
        g += na;
      }
      if (i > 0) {
        tv_terms(xp, i - 1, j, h, w, beta, eps, &na, &nb, nullptr);
        g += nb;
      }
      dx[e] += grad_scale * g;
    }
  }
  acc = block_sum_all(acc, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__device__ __forceinline__ float alpha_phi(float d, float alpha, float eps, bool smooth) {
  return smooth ? powf(d * d + eps, 0.5f * alpha) : powf(fabsf(d), alpha);
}
__device__ __forceinline__ float alpha_dphi(float d, float alpha, float eps, bool smooth) {
  if (smooth) return alpha * d * powf(d * d + eps, 0.5f * alpha - 1.f);
  return alpha == 2.f ? 2.f * d : alpha * d * powf(fabsf(d), alpha - 2.f);
}

// One block per plane (blockIdx.x within this chunk of planes).
__global__ void alpha_loss_grad_kernel(const float* __restrict__ x, float* __restrict__ dx,
                                       long long plane, float alpha, float eps, float grad_scale,
                                       double* partials) {
  __shared__ double red[33];
  const float* xp = x + blockIdx.x * plane;
  float* gp = dx + blockIdx.x * plane;
  const bool smooth = alpha < 2.f;
  double s = 0.0;
  for (long long q = threadIdx.x; q < plane; q += blockDim.x) s += xp[q];
  s = block_sum_all(s, red);
  const float mean = (float)(s / (double)plane);
  double val = 0.0, dsum = 0.0;
  for (long long q = threadIdx.x; q < plane; q += blockDim.x) {
    const float d = xp[q] - mean;
    val += (double)alpha_phi(d, alpha, eps, smooth);
    dsum += (double)alpha_dphi(d, alpha, eps, smooth);
  }
  val = block_sum_all(val, red);
  dsum = block_sum_all(dsum, red);
  if (grad_scale != 0.f) {
    const float dmean = (float)(dsum / (double)plane);
    for (long long q = threadIdx.x; q < plane; q += blockDim.x)
      gp[q] += grad_scale * (alpha_dphi(xp[q] - mean, alpha, eps, smooth) - dmean);
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = val;
}

}  // namespace

double tv_loss_grad(Workspace& ws, const float* x, float* dx, int planes, int h, int w, float beta,
                    float eps, float grad_scale) {
  if (planes < 0 || h < 0 || w < 0) throw std::invalid_argument("tv_loss_grad: negative sizes");
  if (!(beta >= 1.f)) throw std::invalid_argument("tv_loss_grad: beta must be >= 1");
  const long long total = (long long)planes * h * w;
  if (total == 0) return 0.0;
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  const int blocks = int(std::min<long long>((total + kTvThreads - 1) / kTvThreads, kMaxPartials));
  cuda::launch(tv_loss_grad_kernel, dim3(blocks), dim3(kTvThreads), 0, nullptr, x, dx, total, h, w,
               beta, eps, grad_scale, partials);
  return final_sum(partials, blocks);
}

double alpha_loss_grad(Workspace& ws, const float* x, float* dx, int planes, size_t plane,
                       float alpha, float eps, float grad_scale) {
  if (planes < 0) throw std::invalid_argument("alpha_loss_grad: negative plane count");
  if (!(alpha >= 1.f)) throw std::invalid_argument("alpha_loss_grad: alpha must be >= 1");
  if (planes == 0 || plane == 0) return 0.0;
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  double total = 0.0;
  for (int p0 = 0; p0 < planes; p0 += kMaxPartials) {
    const int count = std::min(kMaxPartials, planes - p0);
    cuda::launch(alpha_loss_grad_kernel, dim3(count), dim3(kAlphaThreads), 0, nullptr,
                 x + size_t(p0) * plane, dx + size_t(p0) * plane, (long long)plane, alpha, eps,
                 grad_scale, partials);
    total += final_sum(partials, count);
  }
  return total;
}

}  // namespace preimage::kernels
