// CPU image priors of Mahendran & Vedaldi: TV^β and the bounded α-norm, value and gradient in
// one call. x, dx: `planes` contiguous planes (N·C of an (N,C,H,W) image). Paired with
// kernels/priors.cu; formulas in docs/objectives.md.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

double tv_loss_grad(const float* x, float* dx, int planes, int h, int w, float beta, float eps,
                    float grad_scale) {
  if (!(beta >= 1.f)) throw std::invalid_argument("tv_loss_grad: beta must be >= 1");
  if (planes <= 0 || h <= 0 || w <= 0) return 0.0;
  const size_t plane = size_t(h) * w;
  const float half = 0.5f * beta, expo = 0.5f * beta - 1.f;
  // wa = β·r^(β/2−1)·a and wb = β·r^(β/2−1)·b per pixel (a, b its forward differences); the
  // gradient is then the gather −(wa + wb)[i,j] + wa[i,j−1] + wb[i−1,j].
  thread_local std::vector<float> wab;
  wab.resize(2 * plane);
  float* wa = wab.data();
  float* wb = wa + plane;
  double total = 0.0;
  for (int p = 0; p < planes; ++p) {
    const float* xp = x + size_t(p) * plane;
    float* gp = dx + size_t(p) * plane;
    double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) schedule(static)
    for (int i = 0; i < h; ++i) {
      for (int j = 0; j < w; ++j) {
        const size_t q = size_t(i) * w + j;
        const float a = j + 1 < w ? xp[q + 1] - xp[q] : 0.f;
        const float b = i + 1 < h ? xp[q + w] - xp[q] : 0.f;
        const float r = a * a + b * b + eps;
        acc += double(std::pow(r, half));
        const float k = beta * std::pow(r, expo);
        wa[q] = k * a;
        wb[q] = k * b;
      }
    }
    total += acc;
    if (grad_scale == 0.f) continue;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < h; ++i) {
      for (int j = 0; j < w; ++j) {
        const size_t q = size_t(i) * w + j;
        float g = -(wa[q] + wb[q]);
        if (j > 0) g += wa[q - 1];
        if (i > 0) g += wb[q - w];
        gp[q] += grad_scale * g;
      }
    }
  }
  return total;
}

double alpha_loss_grad(const float* x, float* dx, int planes, size_t plane, float alpha, float eps,
                       float grad_scale) {
  if (!(alpha >= 1.f)) throw std::invalid_argument("alpha_loss_grad: alpha must be >= 1");
  if (planes <= 0 || plane == 0) return 0.0;
  const bool smooth = alpha < 2.f;
  const float half = 0.5f * alpha, expo_s = 0.5f * alpha - 1.f, expo = alpha - 2.f;
  // φ(d) and φ'(d) (see docs/objectives.md)
  auto phi = [&](float d) {
    return smooth ? std::pow(d * d + eps, half) : std::pow(std::fabs(d), alpha);
  };
  auto dphi = [&](float d) {
    if (smooth) return alpha * d * std::pow(d * d + eps, expo_s);
    return alpha == 2.f ? 2.f * d : alpha * d * std::pow(std::fabs(d), expo);
  };
  double total = 0.0;
  for (int p = 0; p < planes; ++p) {
    const float* xp = x + size_t(p) * plane;
    float* gp = dx + size_t(p) * plane;
    double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) schedule(static)
    for (size_t q = 0; q < plane; ++q) s += xp[q];
    const float mean = float(s / double(plane));
    double val = 0.0, dsum = 0.0;
#pragma omp parallel for reduction(+ : val, dsum) schedule(static)
    for (size_t q = 0; q < plane; ++q) {
      const float d = xp[q] - mean;
      val += double(phi(d));
      dsum += double(dphi(d));
    }
    total += val;
    if (grad_scale == 0.f) continue;
    // ∂/∂x_q Σ_p φ(x_p − mean) = φ'(d_q) − (1/P)·Σ_p φ'(d_p)
    const float dmean = float(dsum / double(plane));
#pragma omp parallel for schedule(static)
    for (size_t q = 0; q < plane; ++q) gp[q] += grad_scale * (dphi(xp[q] - mean) - dmean);
  }
  return total;
}

}  // namespace preimage::cpu
