/*
Texture search distances: exact, batched, as a tiled matrix product. FP32, no cuBLAS.

Layouts (row-major):
  q     (NQ, D)  queries;  e (NE, D)  index entries
  dist  (NQ, NE)
  segments: D is split into S layer segments [off[s], off[s+1]); within a segment each row is a
  unit vector (a Frobenius-normalized Gram matrix stored as an upper triangle with off-diagonal
  entries scaled by √2, so that its inner products equal the full matrices' Frobenius products).

  dist[i, j] = Σ_s sqrt(max(0, 2 − 2·⟨q_i,s , e_j,s⟩))        (‖a − b‖² = 2 − 2⟨a, b⟩ for unit a, b)

Versions (launcher argument `version`, 0 = the launcher's choice = v2):
  v1  plain: one thread per (query, entry) pair, a loop over each segment accumulating in
      double. The reference.
  v2  tiled NT product: a 256-thread block owns 32 queries × 64 entries; per step it stages a
      32×16 slice of Q and a 64×16 slice of E in shared memory (transposed, k-major, so the
      inner loop reads broadcast/consecutive words), each thread accumulates 2 queries × 4
      entries (entries tx, tx+16, tx+32, tx+48: conflict-free reads) in registers. The k loop
      runs segment by segment (a slice that crosses a segment end is zero-padded), and at each
      segment end the per-pair dot products become sqrt(max(0, 2 − 2·dot)) added to the
      distance registers, so the per-layer dot products never leave the chip. The 16-term
      slice sums are added with Kahan compensation (a self-match's 2 − 2·dot is pure rounding,
      and sqrt magnifies it: plain float32 accumulation over 8256 terms left ~5e-3 at distance
      0, compensated ~5e-4). Global loads are
      16 consecutive floats per half-warp (coalesced 64-byte segments). With one query most of
      the tile's query rows are idle; search is bound by reading E once per batch of 32
      queries, which is why the engine searches queries in batches.

Test: ctest -R search   (test/test_kernels_search.cpp: both versions vs preimage::cpu and a
      brute-force full-matrix reference on odd sizes, NaN-prefilled outputs, all three
      simulator thread orders).
Bench: bench_search (build with PREIMAGE_BUILD_BENCH=ON): latency per query at 10k and 100k
      entries, CPU and (where a GPU exists) both kernel versions.
*/
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

constexpr int kMaxSeg = kSearchMaxSegments;

struct Segments {
  int count;
  int off[kMaxSeg + 1];
};

constexpr int kTQ = 32, kTE = 64, kTK = 16, kThreads = 256;

__global__ void search_v1_kernel(const float* __restrict__ q, const float* __restrict__ e,
                                 float* __restrict__ dist, int nq, int ne, int dim, Segments seg) {
  const long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (t >= (long long)nq * ne) return;
  const int i = (int)(t / ne), j = (int)(t % ne);
  const float* a = q + (long long)i * dim;
  const float* b = e + (long long)j * dim;
  float d = 0.f;
  for (int s = 0; s < seg.count; ++s) {
    double acc = 0.0;
    for (int k = seg.off[s]; k < seg.off[s + 1]; ++k) acc += (double)a[k] * (double)b[k];
    d += sqrtf(fmaxf(0.f, (float)(2.0 - 2.0 * acc)));
  }
  dist[t] = d;
}

__global__ void search_v2_kernel(const float* __restrict__ q, const float* __restrict__ e,
                                 float* __restrict__ dist, int nq, int ne, int dim, Segments seg) {
  __shared__ float qs[kTK][kTQ + 1];
  __shared__ float es[kTK][kTE + 1];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int q0 = blockIdx.y * kTQ, e0 = blockIdx.x * kTE;
  // Loader coordinates: row r of the tile, column kk of the k slice.
  const int lk = tid % kTK, lr = tid / kTK;  // lr in [0, 16)
  float acc[2][4], cmp[2][4], d[2][4];
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 4; ++b) d[a][b] = 0.f;
  for (int s = 0; s < seg.count; ++s) {
    const int k_begin = seg.off[s], k_end = seg.off[s + 1];
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 4; ++b) acc[a][b] = cmp[a][b] = 0.f;
    for (int k0 = k_begin; k0 < k_end; k0 += kTK) {
      const int k = k0 + lk;
      const bool kin = k < k_end;
      for (int r = lr; r < kTQ; r += 16) {
        const int row = q0 + r;
        qs[lk][r] = (kin && row < nq) ? q[(long long)row * dim + k] : 0.f;
      }
      for (int r = lr; r < kTE; r += 16) {
        const int row = e0 + r;
        es[lk][r] = (kin && row < ne) ? e[(long long)row * dim + k] : 0.f;
      }
      __syncthreads();
      float part[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
      for (int kk = 0; kk < kTK; ++kk) {
        const float a0 = qs[kk][ty * 2], a1 = qs[kk][ty * 2 + 1];
        for (int b = 0; b < 4; ++b) {
          const float eb = es[kk][tx + 16 * b];
          part[0][b] = fmaf(a0, eb, part[0][b]);
          part[1][b] = fmaf(a1, eb, part[1][b]);
        }
      }
      // Compensated (Kahan) sum of the slices: the dot products are ≈ 1 and 2 − 2·dot cancels,
      // so their rounding decides the accuracy of small distances.
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 4; ++b) {
          const float y = part[a][b] - cmp[a][b];
          const float t = acc[a][b] + y;
          cmp[a][b] = (t - acc[a][b]) - y;
          acc[a][b] = t;
        }
      __syncthreads();
    }
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 4; ++b) d[a][b] += sqrtf(fmaxf(0.f, 2.f - 2.f * acc[a][b]));
  }
  for (int a = 0; a < 2; ++a) {
    const int i = q0 + ty * 2 + a;
    if (i >= nq) continue;
    for (int b = 0; b < 4; ++b) {
      const int j = e0 + tx + 16 * b;
      if (j < ne) dist[(long long)i * ne + j] = d[a][b];
    }
  }
}

Segments make_segments(const int* off, int nseg, int dim) {
  if (nseg < 1 || nseg > kMaxSeg)
    throw std::invalid_argument("search_distances: " + std::to_string(nseg) + " segments (1.." +
                                std::to_string(kMaxSeg) + " supported)");
  Segments s{};
  s.count = nseg;
  for (int i = 0; i <= nseg; ++i) {
    s.off[i] = off[i];
    if ((i > 0 && off[i] < off[i - 1]) || off[i] < 0)
      throw std::invalid_argument("search_distances: segment offsets must increase from 0");
  }
  if (off[0] != 0 || off[nseg] != dim)
    throw std::invalid_argument("search_distances: segments must cover [0, dim)");
  return s;
}

}  // namespace

int search_versions() {
  return 2;
}

void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                      const int* seg_offsets, int nseg, int version) {
  if (nq < 0 || ne < 0 || dim <= 0)
    throw std::invalid_argument("search_distances: invalid sizes (nq=" + std::to_string(nq) +
                                " ne=" + std::to_string(ne) + " dim=" + std::to_string(dim) + ")");
  if (version < 0 || version > search_versions())
    throw std::invalid_argument("search_distances: version " + std::to_string(version) +
                                " does not exist (0.." + std::to_string(search_versions()) + ")");
  const Segments seg = make_segments(seg_offsets, nseg, dim);
  if (nq == 0 || ne == 0) return;
  if (version == 1) {
    const long long total = (long long)nq * ne;
    cuda::launch(search_v1_kernel, dim3(unsigned((total + kThreads - 1) / kThreads)),
                 dim3(kThreads), 0, nullptr, q, e, dist, nq, ne, dim, seg);
    return;
  }
  const dim3 grid(unsigned((ne + kTE - 1) / kTE), unsigned((nq + kTQ - 1) / kTQ));
  cuda::launch(search_v2_kernel, grid, dim3(kThreads), 0, nullptr, q, e, dist, nq, ne, dim, seg);
}

}  // namespace preimage::kernels
