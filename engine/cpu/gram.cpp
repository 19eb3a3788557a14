// CPU Gram matrix (Gatys) and its fused loss + gradient. f: (C, M) row-major (one image of a
// tap), g, g_target: (C, C). Paired with kernels/gram.cu; formulas in docs/objectives.md.
//   gram_fwd        G = F Fᵀ: cblas_ssyrk (upper triangle, half the FLOPs of a GEMM) for
//                   C ≥ kSyrkMinChannels, where OpenBLAS' syrk beats its sgemm (measured with
//                   bench_texture: 13–22 % faster at C = 256, 512; 5–20 % slower at C ≤ 128),
//                   cblas_sgemm below; the upper triangle is then mirrored into the lower
//                   one, so G is exactly symmetric either way.
//   gram_loss_grad  D = G − Ĝ and Σ D² in one pass (double accumulation), then
//                   dF += s·D·F through one cblas_sgemm (beta = 1: accumulates).
#include <cblas.h>

#include <cstring>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

namespace {

constexpr int kSyrkMinChannels = 256;

// Copies the upper triangle of the (c, c) row-major matrix into the lower one.
void mirror_upper(float* g, int c) {
#pragma omp parallel for schedule(static)
  for (int i = 1; i < c; ++i)
    for (int j = 0; j < i; ++j) g[size_t(i) * c + j] = g[size_t(j) * c + i];
}

}  // namespace

void gram_fwd(const float* f, float* g, int c, int m) {
  if (c <= 0) return;
  // beta = 0 must not read g (it may hold NaN): clear it anyway, it costs c² stores.
  std::memset(g, 0, sizeof(float) * size_t(c) * c);
  if (m > 0 && c >= kSyrkMinChannels)
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, c, m, 1.f, f, m, 0.f, g, c);
  else if (m > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, c, m, 1.f, f, m, f, m, 0.f, g, c);
  mirror_upper(g, c);
}

double gram_loss_grad(const float* f, const float* g, const float* g_target, float* df, int c,
                      int m, float grad_scale) {
  if (c <= 0) return 0.0;
  const size_t cc = size_t(c) * c;
  thread_local std::vector<float> d;
  d.resize(cc);
  float* dp = d.data();
  double loss = 0.0;
#pragma omp parallel for simd reduction(+ : loss) schedule(static)
  for (size_t i = 0; i < cc; ++i) {
    const float v = g[i] - g_target[i];
    dp[i] = v;
    loss += double(v) * v;
  }
  if (m > 0 && grad_scale != 0.f)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, m, c, grad_scale, dp, c, f, m, 1.f,
                df, m);
  return loss;
}

}  // namespace preimage::cpu
