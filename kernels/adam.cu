/*
Fused Adam step on the device (torch.optim.Adam semantics, weight_decay = 0), used to train the
up-convolutional decoders (engine/features/decoder/decoder.cpp).

Layouts: p, g, m, v: flat arrays of n floats (all parameters of a layer, or of a whole model).
  g' = grad_scale·g
  m  = β1·m + (1−β1)·g'           v = β2·v + (1−β2)·g'²
  p -= step_size · m / (sqrt(v)·inv_sqrt_bc2 + eps)
with step_size = lr / (1 − β1^t) and inv_sqrt_bc2 = 1 / sqrt(1 − β2^t) computed on the host in
double: only these scalars cross, the state (m, v) never leaves the device.

Versions: one (bandwidth-bound: 4 reads + 3 writes per parameter): a grid-stride loop, 256 threads,
at most 4096 blocks, one thread per element.

Test: ctest -R adam   (test/test_kernels_adam.cpp: CPU vs a double reference of PyTorch's
      formula over several steps; the kernel vs the CPU on odd sizes, all three simulator thread
      orders; torch.optim.Adam itself in ctest conv_transpose_vs_torch).
Bench: part of the decoder training step (`preimage decoder train --device cuda`).
*/
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;

__global__ void adam_update_kernel(float* __restrict__ p, const float* __restrict__ g,
                                   float* __restrict__ m, float* __restrict__ v, size_t n,
                                   float step_size, float inv_sqrt_bc2, float beta1, float beta2,
                                   float eps, float grad_scale) {
  const float a1 = 1.f - beta1, a2 = 1.f - beta2;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float gi = grad_scale * g[i];
    const float mi = beta1 * m[i] + a1 * gi;
    const float vi = beta2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                 float beta2, float eps, long step, float grad_scale) {
  if (step < 1)
    throw std::invalid_argument("adam_update: step must be at least 1, got " +
                                std::to_string(step));
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(double(beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(beta2), double(step));
  const float step_size = float(lr / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const size_t blocks = std::min<size_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  cuda::launch(adam_update_kernel, dim3(unsigned(blocks)), dim3(kThreads), 0, nullptr, p, g, m, v,
               n, step_size, inv_sqrt_bc2, beta1, beta2, eps, grad_scale);
}

}  // namespace preimage::kernels
