// CPU bilinear pooling (B-CNN, Lin & Maji) forward/backward, the signed square root with its
// L2 normalization, and the softmax cross-entropy of the attribute classifier. fa: (Ca, M),
// fb: (Cb, M) row-major; b, db: (Ca, Cb). Paired with kernels/bilinear.cu; formulas in
// docs/objectives.md.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb, int m) {
  if (ca <= 0 || cb <= 0) return;
  const float s = m > 0 ? 1.f / float(m) : 0.f;
  std::memset(b, 0, sizeof(float) * size_t(ca) * cb);
  if (m <= 0) return;
  if (fa == fb) {
    if (ca != cb) throw std::invalid_argument("bilinear_pool_fwd: fa == fb needs ca == cb");
    // syrk only where OpenBLAS' syrk beats its sgemm (see engine/cpu/gram.cpp); mirrored.
    if (ca >= 256)
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, ca, m, s, fa, m, 0.f, b, ca);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ca, ca, m, s, fa, m, fa, m, 0.f, b, ca);
#pragma omp parallel for schedule(static)
    for (int i = 1; i < ca; ++i)
      for (int j = 0; j < i; ++j) b[size_t(i) * ca + j] = b[size_t(j) * ca + i];
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ca, cb, m, s, fa, m, fb, m, 0.f, b, cb);
  }
}

void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa, float* dfb,
                       int ca, int cb, int m) {
  if (ca <= 0 || cb <= 0 || m <= 0) return;
  const float s = 1.f / float(m);
  if (fa == fb) {
    if (ca != cb || dfa != dfb)
      throw std::invalid_argument("bilinear_pool_bwd: fa == fb needs ca == cb and dfa == dfb");
    thread_local std::vector<float> sym;
    sym.resize(size_t(ca) * ca);
    float* sp = sym.data();
#pragma omp parallel for schedule(static)
    for (int i = 0; i < ca; ++i)
      for (int j = 0; j < ca; ++j)
        sp[size_t(i) * ca + j] = db[size_t(i) * ca + j] + db[size_t(j) * ca + i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ca, m, ca, s, sp, ca, fa, m, 1.f, dfa,
                m);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ca, m, cb, s, db, cb, fb, m, 1.f, dfa, m);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cb, m, ca, s, db, cb, fa, m, 1.f, dfb, m);
}

double bilinear_ssqrt_fwd(const float* b, float* y, size_t count, float eps) {
  double acc = 0.0;
#pragma omp parallel for simd reduction(+ : acc) schedule(static)
  for (size_t i = 0; i < count; ++i) {
    const float r = std::sqrt(std::fabs(b[i]) + eps);
    const float v = b[i] < 0.f ? -r : r;
    y[i] = v;
    acc += double(v) * v;
  }
  return acc;
}

double bilinear_ssqrt_bwd(const float* y, const float* z_target, const float* dz, float* db,
                          size_t count, double norm, double z_dot_g, float scale) {
  const float inv_n = float(1.0 / norm), zg = float(z_dot_g);
  double loss = 0.0;
  if (z_target) {
#pragma omp parallel for simd reduction(+ : loss) schedule(static)
    for (size_t i = 0; i < count; ++i) {
      const float z = y[i] * inv_n, d = z - z_target[i];
      loss += double(d) * d;
      db[i] = scale * (2.f * d - z * zg) * inv_n / (2.f * std::fabs(y[i]));
    }
  } else {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < count; ++i) {
      const float z = y[i] * inv_n;
      db[i] = scale * (dz[i] - z * zg) * inv_n / (2.f * std::fabs(y[i]));
    }
  }
  return loss;
}

double softmax_xent_loss_grad(const float* s, float* ds, int k, int target, float scale) {
  if (k <= 0 || target < 0 || target >= k)
    throw std::invalid_argument("softmax_xent_loss_grad: target class out of range");
  double mx = s[0];
  for (int i = 1; i < k; ++i) mx = std::max(mx, double(s[i]));
  double z = 0.0;
  for (int i = 0; i < k; ++i) z += std::exp(double(s[i]) - mx);
  const double lse = mx + std::log(z);
  for (int i = 0; i < k; ++i) {
    const double p = std::exp(double(s[i]) - lse);
    ds[i] = float(scale * (p - (i == target ? 1.0 : 0.0)));
  }
  return lse - s[target];
}

}  // namespace preimage::cpu
