// CPU element-wise ops, reductions (accumulated in double) and thread setup. Paired with
// kernels/elementwise.cu.
#include <omp.h>
#include <xmmintrin.h>

#include <algorithm>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

void init_threads() {
  // FTZ (bit 15) | DAZ (bit 6): denormal gradients otherwise cost ~5x per evaluation.
  _mm_setcsr(_mm_getcsr() | 0x8040);
#pragma omp parallel
  { _mm_setcsr(_mm_getcsr() | 0x8040); }
}

void relu_fwd(const float* x, float* y, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.f);
}

void relu_bwd(const float* y, const float* dy, float* dx, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

void fill(float* x, float v, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) x[i] = v;
}

void axpby(float a, const float* x, float b, float* y, size_t n) {
  if (b == 0.f) {  // y may hold NaN: 0·NaN must not leak through
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) y[i] = a * x[i];
  } else {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) y[i] = a * x[i] + b * y[i];
  }
}

void mul(const float* a, const float* b, float* y, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a) {
  // y may alias x when perm is the identity; otherwise callers pass distinct buffers.
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < a.c; ++c) {
      const float* src = x + (size_t(i) * a.c + a.perm[c]) * plane;
      float* dst = y + (size_t(i) * a.c + c) * plane;
      const float s = a.scale[c], t = a.shift[c];
#pragma omp simd
      for (size_t p = 0; p < plane; ++p) dst[p] = s * src[p] + t;
    }
}

double dot(const float* a, const float* b, size_t n) {
  double acc = 0;
#pragma omp parallel for simd reduction(+ : acc) schedule(static)
  for (size_t i = 0; i < n; ++i) acc += double(a[i]) * b[i];
  return acc;
}

double sum(const float* x, size_t n) {
  double acc = 0;
#pragma omp parallel for simd reduction(+ : acc) schedule(static)
  for (size_t i = 0; i < n; ++i) acc += x[i];
  return acc;
}

double sum_squares(const float* x, size_t n) {
  double acc = 0;
#pragma omp parallel for simd reduction(+ : acc) schedule(static)
  for (size_t i = 0; i < n; ++i) acc += double(x[i]) * x[i];
  return acc;
}

}  // namespace preimage::cpu
