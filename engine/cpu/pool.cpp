// CPU max/avg pooling forward and backward, parallel over (n, c) planes. Paired with
// kernels/pool.cu. Max-pool ties go to the first maximum in row-major window order (PyTorch's
// rule); padding is -inf for max and counted as zeros for avg (count_include_pad=True).
#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {
namespace {

// Index (into the input plane) of the first maximum of output (oy, ox)'s window; -1 if the
// window lies entirely in the padding.
inline int argmax_window(const float* xp, const PoolShape& s, int oy, int ox) {
  int best = -1;
  float m = -std::numeric_limits<float>::infinity();
  for (int ky = 0; ky < s.k; ++ky) {
    const int iy = oy * s.stride - s.pad + ky;
    if (iy < 0 || iy >= s.h) continue;
    for (int kx = 0; kx < s.k; ++kx) {
      const int ix = ox * s.stride - s.pad + kx;
      if (ix < 0 || ix >= s.w) continue;
      const float v = xp[iy * s.w + ix];
      if (best < 0 || v > m || std::isnan(v)) {
        m = v;
        best = iy * s.w + ix;
        if (std::isnan(v)) return best;
      }
    }
  }
  return best;
}

}  // namespace

void maxpool_fwd(const float* x, float* y, const PoolShape& s) {
  const int ho = s.ho(), wo = s.wo();
  const long planes = long(s.n) * s.c;
  if (s.k == 2 && s.stride == 2 && s.pad == 0) {  // VGG's pools: the hot case
#pragma omp parallel for schedule(static)
    for (long p = 0; p < planes; ++p) {
      const float* xp = x + p * s.h * s.w;
      float* yp = y + p * ho * wo;
      for (int oy = 0; oy < ho; ++oy) {
        const float* r0 = xp + 2 * oy * s.w;
        const float* r1 = r0 + s.w;
        for (int ox = 0; ox < wo; ++ox)
          yp[oy * wo + ox] =
              std::max(std::max(r0[2 * ox], r0[2 * ox + 1]), std::max(r1[2 * ox], r1[2 * ox + 1]));
      }
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    float* yp = y + p * ho * wo;
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        const int i = argmax_window(xp, s, oy, ox);
        yp[oy * wo + ox] = i < 0 ? -std::numeric_limits<float>::infinity() : xp[i];
      }
  }
}

void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s) {
  const int ho = s.ho(), wo = s.wo();
  const long planes = long(s.n) * s.c;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    const float* dyp = dy + p * ho * wo;
    float* dxp = dx + p * s.h * s.w;
    std::fill(dxp, dxp + s.h * s.w, 0.f);
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        const int i = argmax_window(xp, s, oy, ox);
        if (i >= 0) dxp[i] += dyp[oy * wo + ox];
      }
  }
}

void avgpool_fwd(const float* x, float* y, const PoolShape& s) {
  const int ho = s.ho(), wo = s.wo();
  const long planes = long(s.n) * s.c;
  const float inv = 1.f / float(s.k * s.k);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * s.h * s.w;
    float* yp = y + p * ho * wo;
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        float acc = 0;
        for (int ky = 0; ky < s.k; ++ky) {
          const int iy = oy * s.stride - s.pad + ky;
          if (iy < 0 || iy >= s.h) continue;
          for (int kx = 0; kx < s.k; ++kx) {
            const int ix = ox * s.stride - s.pad + kx;
            if (ix >= 0 && ix < s.w) acc += xp[iy * s.w + ix];
          }
        }
        yp[oy * wo + ox] = acc * inv;
      }
  }
}

void avgpool_bwd(const float* dy, float* dx, const PoolShape& s) {
  const int ho = s.ho(), wo = s.wo();
  const long planes = long(s.n) * s.c;
  const float inv = 1.f / float(s.k * s.k);
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* dyp = dy + p * ho * wo;
    float* dxp = dx + p * s.h * s.w;
    std::fill(dxp, dxp + s.h * s.w, 0.f);
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        const float g = dyp[oy * wo + ox] * inv;
        for (int ky = 0; ky < s.k; ++ky) {
          const int iy = oy * s.stride - s.pad + ky;
          if (iy < 0 || iy >= s.h) continue;
          for (int kx = 0; kx < s.k; ++kx) {
            const int ix = ox * s.stride - s.pad + kx;
            if (ix >= 0 && ix < s.w) dxp[iy * s.w + ix] += g;
          }
        }
      }
  }
}

}  // namespace preimage::cpu
