// Texture search distances on the CPU. Up to 8 queries: one pass over the entries (OpenMP over
// entries, 4 queries per pass, SIMD dot products in 512-column chunks summed in double). More
// queries: per layer segment s, the dot products Q_s · E_sᵀ by sgemm over blocks of entries (the
// block of products stays in cache) and chunks of 512 columns summed in double. Then dist +=
// sqrt(max(0, 2 − 2·dot)). Paired with kernels/search.cu.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "preimage/error.h"

namespace preimage::cpu {

namespace {
constexpr int kDirectQueries = 8;
}  // namespace

void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                      const int* seg_offsets, int nseg) {
  require(nq >= 0 && ne >= 0 && dim > 0 && nseg >= 1,
          "search_distances: invalid sizes (nq=" + std::to_string(nq) +
              " ne=" + std::to_string(ne) + " dim=" + std::to_string(dim) + ")");
  require(seg_offsets[0] == 0 && seg_offsets[nseg] == dim,
          "search_distances: segments must cover [0, dim)");
  for (int s = 0; s < nseg; ++s)
    require(seg_offsets[s + 1] >= seg_offsets[s],
            "search_distances: segment offsets must increase");
  if (nq == 0 || ne == 0) return;
  constexpr int kChunk = 512;
  if (nq <= kDirectQueries) {
    // Few queries: a GEMM would be a GEMV; read each entry row once for all queries instead.
#pragma omp parallel for schedule(static)
    for (long j = 0; j < long(ne); ++j) {
      const float* ej = e + size_t(j) * dim;
      // Queries in groups of up to 4: each entry value loaded once per group.
      for (int i0 = 0; i0 < nq; i0 += 4) {
        const int g = std::min(4, nq - i0);
        const float* q0 = q + size_t(i0) * dim;
        const float* q1 = q + size_t(i0 + std::min(1, g - 1)) * dim;
        const float* q2 = q + size_t(i0 + std::min(2, g - 1)) * dim;
        const float* q3 = q + size_t(i0 + std::min(3, g - 1)) * dim;
        float d[4] = {0.f, 0.f, 0.f, 0.f};
        for (int s = 0; s < nseg; ++s) {
          double dot[4] = {0, 0, 0, 0};
          for (int c0 = seg_offsets[s]; c0 < seg_offsets[s + 1]; c0 += kChunk) {
            const int c1 = std::min(c0 + kChunk, seg_offsets[s + 1]);
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
            if (g == 1) {
#pragma omp simd reduction(+ : p0)
              for (int k = c0; k < c1; ++k) p0 += q0[k] * ej[k];
              dot[0] += p0;
              continue;
            }
#pragma omp simd reduction(+ : p0, p1, p2, p3)
            for (int k = c0; k < c1; ++k) {
              const float x = ej[k];
              p0 += q0[k] * x;
              p1 += q1[k] * x;
              p2 += q2[k] * x;
              p3 += q3[k] * x;
            }
            dot[0] += p0;
            dot[1] += p1;
            dot[2] += p2;
            dot[3] += p3;
          }
          for (int t = 0; t < g; ++t) d[t] += float(std::sqrt(std::max(0.0, 2.0 - 2.0 * dot[t])));
        }
        for (int t = 0; t < g; ++t) dist[size_t(i0 + t) * ne + j] = d[t];
      }
    }
    return;
  }
  // Entry blocks sized so that one block's products (nq × block) stay within ~1 MiB.
  const int block = std::max(64, std::min(ne, int((1 << 18) / std::max(nq, 1))));
  std::vector<float> prod(size_t(nq) * block);
  std::vector<double> acc(size_t(nq) * block);
  for (int j0 = 0; j0 < ne; j0 += block) {
    const int nb = std::min(block, ne - j0);
    for (int i = 0; i < nq; ++i) std::fill_n(dist + size_t(i) * ne + j0, nb, 0.f);
    for (int s = 0; s < nseg; ++s) {
      const int k0 = seg_offsets[s], len = seg_offsets[s + 1] - k0;
      if (len == 0) {
        for (int i = 0; i < nq; ++i)
          for (int j = 0; j < nb; ++j) dist[size_t(i) * ne + j0 + j] += std::sqrt(2.f);
        continue;
      }
      // sgemm over column chunks, summed in double: the dot products are ≈ 1 and 2 − 2·dot
      // cancels, so their rounding decides the accuracy of small distances.
      std::fill(acc.begin(), acc.begin() + size_t(nq) * nb, 0.0);
      for (int c0 = 0; c0 < len; c0 += kChunk) {
        const int cl = std::min(kChunk, len - c0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nb, cl, 1.f, q + k0 + c0, dim,
                    e + size_t(j0) * dim + k0 + c0, dim, 0.f, prod.data(), nb);
        for (size_t t = 0; t < size_t(nq) * nb; ++t) acc[t] += prod[t];
      }
      for (int i = 0; i < nq; ++i) {
        float* d = dist + size_t(i) * ne + j0;
        const double* p = acc.data() + size_t(i) * nb;
        for (int j = 0; j < nb; ++j) d[j] += float(std::sqrt(std::max(0.0, 2.0 - 2.0 * p[j])));
      }
    }
  }
}

}  // namespace preimage::cpu
