/*
Gram matrices (Gatys et al.) and the fused Gatys loss + gradient. FP32, no cuBLAS.

Layouts (row-major, one image of a tap):
  f, df:        (C, M)   C channels, M = H·W positions (M contiguous)
  g, g_target:  (C, C)   symmetric

  gram_fwd        G = F Fᵀ                                   (2·C²·M FLOPs as a GEMM)
  gram_loss_grad  D = G − Ĝ;  returns Σ D²;  dF += s·D·F     (2·C²·M FLOPs)
The Gatys term E = Σ D² / (4 C² M²) calls gram_loss_grad with s = 1/(C² M²) = dE/dF's factor
(D is symmetric: dE/dF = 4·D·F / (4 C² M²)); the engine's term applies the weights.

Versions (launcher argument `version`, 0 = the launcher's choice = v2):
  gram_fwd
    v1  plain: one thread per element of G (all C² of them), a loop over M. The reference.
    v2  texture_syrk_kernel<SYM> (kernels/texture_tiles.cuh): only the T(T+1)/2 upper-triangle
        64×64 tiles of G (T = ⌈C/64⌉) are computed, each off-diagonal tile is also stored
        transposed through shared memory (the lower triangle), a diagonal tile loads its
        operand once; split-K over M into about 2 blocks per SM, slices reduced by atomicAdd
        into G (zeroed first; one slice → plain stores); float4 loads when M % 4 == 0.
  gram_loss_grad
    v1  unfused: one thread per element of dF summing over C, then a separate two-pass
        reduction of Σ (G − Ĝ)².
    v2  one fused kernel, texture_product_kernel<DIFF>: the D tile is formed on the fly from G
        and Ĝ while it is loaded (D never exists in memory), dF (C, M) += s·D·F in 64×64 output
        tiles (deterministic, no atomics, float4 read-modify-write), and the blocks of the
        first column of the grid — which load every element of D exactly once — also reduce
        Σ D² (double) into one partial per block row; final_reduce (reduce.cuh) sums them.

Reductions come back as one double (cudaMemcpy of 8 bytes); the partials live in the caller's
Workspace (held under its lock), the final pass is kernels/reduce.cuh's.

Test: ctest -R gram   (test/test_gram.cpp: every version vs preimage::cpu on odd shapes,
      C ∈ {1, 33, 65, 70, 130}, M ∈ {7×13, 37×41, 67×93, 8×12, 36×40}, NaN-prefilled outputs,
      all three simulator thread orders; central differences and PyTorch cross-checks of the
      whole term).
Bench: bench_texture (build with PREIMAGE_BUILD_BENCH=ON): gram rows, kernels vs cuBLAS on a GPU.
*/
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"
#include "kernels/texture_tiles.cuh"

namespace preimage::kernels {
namespace {

using texture::AMode;
using texture::kThreads;
using texture::kTile;

constexpr int kMaxPartials = 1024;

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

void check_sizes(const char* op, int c, int m) {
  if (c <= 0 || m < 0)
    throw std::invalid_argument(std::string(op) + ": invalid sizes (c=" + std::to_string(c) +
                                " m=" + std::to_string(m) + ")");
}

void bad_version(const char* op, int version) {
  throw std::invalid_argument(std::string(op) + ": version " + std::to_string(version) +
                              " does not exist (0.." + std::to_string(gram_versions()) + ")");
}

// ============================== v1: plain ===============================================

__global__ void gram_fwd_v1_kernel(const float* __restrict__ f, float* __restrict__ g, int c,
                                   int m) {
  const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)c * c) return;
  const int i = (int)(e / c), j = (int)(e % c);
  const float* a = f + (long long)i * m;
  const float* b = f + (long long)j * m;
  float acc = 0.f;
  for (int p = 0; p < m; ++p) acc = fmaf(a[p], b[p], acc);
  g[e] = acc;
}

__global__ void gram_grad_v1_kernel(const float* __restrict__ f, const float* __restrict__ g,
                                    const float* __restrict__ gt, float* __restrict__ df, int c,
                                    int m, float scale) {
  const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)c * m) return;
  const int i = (int)(e / m), p = (int)(e % m);
  float acc = 0.f;
  for (int k = 0; k < c; ++k)
    acc = fmaf(g[(long long)i * c + k] - gt[(long long)i * c + k], f[(long long)k * m + p], acc);
  df[e] = fmaf(scale, acc, df[e]);
}

__global__ void gram_sq_diff_partial_kernel(const float* __restrict__ g,
                                            const float* __restrict__ gt, long long n,
                                            double* partials) {
  __shared__ double red[33];
  double acc = 0.0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const float d = g[i] - gt[i];
    acc += (double)d * d;
  }
  acc = block_sum_all(acc, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// ============================== v2 launch helpers ======================================

void gram_fwd_v2(const float* f, float* g, int c, int m) {
  const int tiles = (c + kTile - 1) / kTile, upper = tiles * (tiles + 1) / 2;
  int kt_per = 1;
  const int splits = texture::split_count(upper, m, &kt_per);
  const bool atomic = splits > 1;
  if (atomic) fill(g, 0.f, size_t(c) * c);
  const bool vec = m % 4 == 0 && aligned16(f);
  const dim3 grid(upper, splits);
  if (vec)
    cuda::launch(texture::texture_syrk_kernel<true, true>, grid, dim3(kThreads), 0, nullptr, f, f,
                 g, c, c, m, kt_per, 1.f, atomic);
  else
    cuda::launch(texture::texture_syrk_kernel<true, false>, grid, dim3(kThreads), 0, nullptr, f, f,
                 g, c, c, m, kt_per, 1.f, atomic);
}

}  // namespace

int gram_versions() {
  return 2;
}

void gram_fwd(const float* f, float* g, int c, int m, int version) {
  check_sizes("gram_fwd", c, m);
  if (version < 0 || version > gram_versions()) bad_version("gram_fwd", version);
  if (m == 0) {
    fill(g, 0.f, size_t(c) * c);
    return;
  }
  if (version == 1) {
    const long long n = (long long)c * c;
    cuda::launch(gram_fwd_v1_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, nullptr, f, g,
                 c, m);
  } else {
    gram_fwd_v2(f, g, c, m);
  }
  CUDA_CHECK(cudaGetLastError());
}

double gram_loss_grad(Workspace& ws, const float* f, const float* g, const float* g_target,
                      float* df, int c, int m, float grad_scale, int version) {
  check_sizes("gram_loss_grad", c, m);
  if (version < 0 || version > gram_versions()) bad_version("gram_loss_grad", version);
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  if (version == 1) {
    if (m > 0) {
      const long long n = (long long)c * m;
      cuda::launch(gram_grad_v1_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, nullptr, f,
                   g, g_target, df, c, m, grad_scale);
    }
    const long long n = (long long)c * c;
    const int blocks = int(std::min<long long>((n + 1023) / 1024, kMaxPartials));
    cuda::launch(gram_sq_diff_partial_kernel, dim3(blocks), dim3(256), 0, nullptr, g, g_target, n,
                 partials);
    return final_sum(partials, blocks);
  }
  const int rows = (c + kTile - 1) / kTile;
  if (rows > kMaxPartials) throw std::invalid_argument("gram_loss_grad: c too large");
  const dim3 grid(unsigned(m > 0 ? (m + kTile - 1) / kTile : 1), unsigned(rows));
  const bool vec = m % 4 == 0 && aligned16(f) && aligned16(df);
  if (vec)
    cuda::launch(texture::texture_product_kernel<AMode::Diff, true>, grid, dim3(kThreads), 0,
                 nullptr, g, g_target, f, df, c, c, m, grad_scale, partials);
  else
    cuda::launch(texture::texture_product_kernel<AMode::Diff, false>, grid, dim3(kThreads), 0,
                 nullptr, g, g_target, f, df, c, c, m, grad_scale, partials);
  return final_sum(partials, rows);
}

}  // namespace preimage::kernels
