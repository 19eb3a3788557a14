// CPU Adam step (torch.optim.Adam semantics, no weight decay), paired with kernels/adam.cu.
// Bias corrections are computed once in double; the update itself runs in float like PyTorch's.
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                 float beta2, float eps, long step, float grad_scale) {
  if (step < 1)
    throw std::invalid_argument("adam_update: step must be at least 1, got " +
                                std::to_string(step));
  const double bc1 = 1.0 - std::pow(double(beta1), double(step));
  const double bc2 = 1.0 - std::pow(double(beta2), double(step));
  const float step_size = float(lr / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float a1 = 1.f - beta1, a2 = 1.f - beta2;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) {
    const float gi = grad_scale * g[i];
    const float mi = beta1 * m[i] + a1 * gi;
    const float vi = beta2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace preimage::cpu
