/*
Bilinear pooling (B-CNN, Lin & Maji) with the signed square root and L2 normalization, forward
and backward, and the softmax cross-entropy of a linear classifier on B-CNN descriptors
(attribute pre-images). FP32 storage, double for every reduction. No cuBLAS.

Layouts (row-major, one image):
  fa, dfa: (Ca, M)   fb, dfb: (Cb, M)   M = H·W, both taps at the same resolution
  b, y, db, z_target, dz: (Ca, Cb)       s, ds: (K) logits of one image

  bilinear_pool_fwd   B = (1/M)·Fa·Fbᵀ                       (2·Ca·Cb·M FLOPs as a GEMM)
  bilinear_ssqrt_fwd  y = sign(B)·√(|B| + ε) (sign(0) = +1), returns Σ y²  (→ ‖y‖ on the host)
  z = y/‖y‖ is never stored by the texture loss: its backward needs only y, ‖y‖ and y·ẑ.
  bilinear_ssqrt_bwd  fused backward of the loss, the normalization and the signed sqrt:
                        z = y/n, g = 2(z − ẑ) (texture loss, Σ (z − ẑ)² returned) or g = dz,
                        dB = s·(g − z·(z·g)) / n · 1/(2|y|)      [d√(|B|+ε)·sign(B)/dB = 1/(2|y|)]
  bilinear_pool_bwd   dFa += (1/M)·dB·Fb,  dFb += (1/M)·dBᵀ·Fa;  same layer (fb == fa):
                        dF += (1/M)·(dB + dBᵀ)·F, the symmetrization fused into the tile load.
  softmax_xent_loss_grad  one block: max, Σ exp (double), ds = s·(softmax − onehot), returns
                        −log softmax[target].

Versions (pool fwd/bwd; 0 = the launcher's choice = v2):
    v1  plain: one thread per output element, a loop over M (fwd) or over the channels (bwd).
    v2  the tiled kernels of kernels/texture_tiles.cuh: forward texture_syrk_kernel — upper-
        triangle tiles mirrored when fb == fa, every tile otherwise; split-K with atomicAdd —
        and backward texture_product_kernel (SYM / PLAIN / TRANSPOSED operand modes), 64×64
        tiles, float4 loads and read-modify-write when M % 4 == 0.
  The element-wise steps (ssqrt fwd/bwd) are grid-stride loops, 256 threads, ≤ 1024 blocks,
  each block leaving one double partial in the caller's Workspace; final_reduce (reduce.cuh)
  sums them.

Test: ctest -R bilinear   (test/test_bilinear.cpp: versions vs preimage::cpu on odd shapes,
      same-layer and two-layer, NaN-prefilled outputs, all simulator thread orders; central
      differences in double; PyTorch float64 autograd cross-check).
Bench: bench_texture: bilinear rows (forward + loss + backward), kernels vs cuBLAS on a GPU.
*/
#include <algorithm>
#include <cmath>
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
constexpr int kEwThreads = 256;

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

void check_sizes(const char* op, int ca, int cb, int m) {
  if (ca <= 0 || cb <= 0 || m < 0)
    throw std::invalid_argument(std::string(op) + ": invalid sizes (ca=" + std::to_string(ca) +
                                " cb=" + std::to_string(cb) + " m=" + std::to_string(m) + ")");
}

void check_version(const char* op, int version) {
  if (version < 0 || version > bilinear_versions())
    throw std::invalid_argument(std::string(op) + ": version " + std::to_string(version) +
                                " does not exist (0.." + std::to_string(bilinear_versions()) + ")");
}

int ew_blocks(size_t n) {
  return int(
      std::max<size_t>(1, std::min<size_t>((n + kEwThreads - 1) / kEwThreads, kMaxPartials)));
}

// ============================== v1: plain ===============================================

__global__ void bilinear_pool_fwd_v1_kernel(const float* __restrict__ fa,
                                            const float* __restrict__ fb, float* __restrict__ b,
                                            int ca, int cb, int m) {
  const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)ca * cb) return;
  const int i = (int)(e / cb), j = (int)(e % cb);
  const float* x = fa + (long long)i * m;
  const float* y = fb + (long long)j * m;
  float acc = 0.f;
  for (int p = 0; p < m; ++p) acc = fmaf(x[p], y[p], acc);
  b[e] = acc / (float)m;
}

// out (rows, m) += (1/m)·op(db)·f, op by mode as in texture_product_kernel (db is (ca, cb)).
__global__ void bilinear_pool_bwd_v1_kernel(const float* __restrict__ db,
                                            const float* __restrict__ f, float* __restrict__ out,
                                            int rows, int k, int m, int mode) {
  const long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (e >= (long long)rows * m) return;
  const int i = (int)(e / m), p = (int)(e % m);
  float acc = 0.f;
  for (int j = 0; j < k; ++j) {
    float a;
    if (mode == (int)AMode::Plain)
      a = db[(long long)i * k + j];
    else if (mode == (int)AMode::Transposed)
      a = db[(long long)j * rows + i];
    else
      a = db[(long long)i * k + j] + db[(long long)j * k + i];
    acc = fmaf(a, f[(long long)j * m + p], acc);
  }
  out[e] = fmaf(1.f / (float)m, acc, out[e]);
}

// ============================== element-wise, fused with reductions =====================

__global__ void bilinear_ssqrt_fwd_kernel(const float* __restrict__ b, float* __restrict__ y,
                                          size_t n, float eps, double* partials) {
  __shared__ double red[33];
  double acc = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float r = sqrtf(fabsf(b[i]) + eps);
    const float v = b[i] < 0.f ? -r : r;
    y[i] = v;
    acc += (double)v * v;
  }
  acc = block_sum_all(acc, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void bilinear_ssqrt_bwd_kernel(const float* __restrict__ y, const float* __restrict__ zt,
                                          const float* __restrict__ dz, float* __restrict__ db,
                                          size_t n, float inv_n, float zg, float scale,
                                          double* partials) {
  __shared__ double red[33];
  double loss = 0.0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float yi = y[i], z = yi * inv_n;
    float g;
    if (zt) {
      const float d = z - zt[i];
      loss += (double)d * d;
      g = 2.f * d;
    } else {
      g = dz[i];
    }
    db[i] = scale * (g - z * zg) * inv_n / (2.f * fabsf(yi));
  }
  loss = block_sum_all(loss, red);
  if (threadIdx.x == 0) partials[blockIdx.x] = loss;
}

__global__ void softmax_xent_kernel(const float* __restrict__ s, float* __restrict__ ds, int k,
                                    int target, float scale, double* partials) {
  __shared__ float redf[33];
  __shared__ double red[33];
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < k; i += blockDim.x) mx = fmaxf(mx, s[i]);
  mx = block_max_all(mx, redf);
  double z = 0.0;
  for (int i = threadIdx.x; i < k; i += blockDim.x) z += exp((double)s[i] - (double)mx);
  z = block_sum_all(z, red);
  const double lse = (double)mx + log(z);
  for (int i = threadIdx.x; i < k; i += blockDim.x)
    ds[i] = (float)(scale * (exp((double)s[i] - lse) - (i == target ? 1.0 : 0.0)));
  if (threadIdx.x == 0) partials[0] = lse - (double)s[target];
}

// ============================== v2 launch helpers ======================================

void pool_fwd_v2(const float* fa, const float* fb, float* b, int ca, int cb, int m) {
  const bool sym = fa == fb;
  const int ta = (ca + kTile - 1) / kTile, tb = (cb + kTile - 1) / kTile;
  const int tiles = sym ? ta * (ta + 1) / 2 : ta * tb;
  int kt_per = 1;
  const int splits = texture::split_count(tiles, m, &kt_per);
  const bool atomic = splits > 1;
  if (atomic) fill(b, 0.f, size_t(ca) * cb);
  const bool vec = m % 4 == 0 && aligned16(fa) && aligned16(fb);
  const dim3 grid(tiles, splits), block(kThreads);
  const float scale = 1.f / (float)m;
  if (sym && vec)
    cuda::launch(texture::texture_syrk_kernel<true, true>, grid, block, 0, nullptr, fa, fb, b, ca,
                 cb, m, kt_per, scale, atomic);
  else if (sym)
    cuda::launch(texture::texture_syrk_kernel<true, false>, grid, block, 0, nullptr, fa, fb, b, ca,
                 cb, m, kt_per, scale, atomic);
  else if (vec)
    cuda::launch(texture::texture_syrk_kernel<false, true>, grid, block, 0, nullptr, fa, fb, b, ca,
                 cb, m, kt_per, scale, atomic);
  else
    cuda::launch(texture::texture_syrk_kernel<false, false>, grid, block, 0, nullptr, fa, fb, b, ca,
                 cb, m, kt_per, scale, atomic);
}

template <AMode MODE>
void product_v2(const float* db, const float* f, float* out, int rows, int k, int m) {
  const dim3 grid((m + kTile - 1) / kTile, (rows + kTile - 1) / kTile), block(kThreads);
  const float scale = 1.f / (float)m;
  if (m % 4 == 0 && aligned16(f) && aligned16(out))
    cuda::launch(texture::texture_product_kernel<MODE, true>, grid, block, 0, nullptr, db,
                 static_cast<const float*>(nullptr), f, out, rows, k, m, scale,
                 static_cast<double*>(nullptr));
  else
    cuda::launch(texture::texture_product_kernel<MODE, false>, grid, block, 0, nullptr, db,
                 static_cast<const float*>(nullptr), f, out, rows, k, m, scale,
                 static_cast<double*>(nullptr));
}

void product_v1(const float* db, const float* f, float* out, int rows, int k, int m, AMode mode) {
  const long long n = (long long)rows * m;
  cuda::launch(bilinear_pool_bwd_v1_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, nullptr,
               db, f, out, rows, k, m, (int)mode);
}

}  // namespace

int bilinear_versions() {
  return 2;
}

void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb, int m,
                       int version) {
  check_sizes("bilinear_pool_fwd", ca, cb, m);
  check_version("bilinear_pool_fwd", version);
  if (fa == fb && ca != cb) throw std::invalid_argument("bilinear_pool_fwd: fa == fb, ca != cb");
  if (m == 0) {
    fill(b, 0.f, size_t(ca) * cb);
    return;
  }
  if (version == 1) {
    const long long n = (long long)ca * cb;
    cuda::launch(bilinear_pool_fwd_v1_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0,
                 nullptr, fa, fb, b, ca, cb, m);
  } else {
    pool_fwd_v2(fa, fb, b, ca, cb, m);
  }
  CUDA_CHECK(cudaGetLastError());
}

void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa, float* dfb,
                       int ca, int cb, int m, int version) {
  check_sizes("bilinear_pool_bwd", ca, cb, m);
  check_version("bilinear_pool_bwd", version);
  if (m == 0) return;
  if (fa == fb) {
    if (ca != cb || dfa != dfb)
      throw std::invalid_argument("bilinear_pool_bwd: fa == fb needs ca == cb and dfa == dfb");
    if (version == 1)
      product_v1(db, fa, dfa, ca, ca, m, AMode::Sym);
    else
      product_v2<AMode::Sym>(db, fa, dfa, ca, ca, m);
  } else if (version == 1) {
    product_v1(db, fb, dfa, ca, cb, m, AMode::Plain);
    product_v1(db, fa, dfb, cb, ca, m, AMode::Transposed);
  } else {
    product_v2<AMode::Plain>(db, fb, dfa, ca, cb, m);
    product_v2<AMode::Transposed>(db, fa, dfb, cb, ca, m);
  }
  CUDA_CHECK(cudaGetLastError());
}

double bilinear_ssqrt_fwd(Workspace& ws, const float* b, float* y, size_t count, float eps) {
  if (count == 0) return 0.0;
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  const int blocks = ew_blocks(count);
  cuda::launch(bilinear_ssqrt_fwd_kernel, dim3(blocks), dim3(kEwThreads), 0, nullptr, b, y, count,
               eps, partials);
  return final_sum(partials, blocks);
}

double bilinear_ssqrt_bwd(Workspace& ws, const float* y, const float* z_target, const float* dz,
                          float* db, size_t count, double norm, double z_dot_g, float scale) {
  if (count == 0) return 0.0;
  if (!(norm > 0.0)) throw std::invalid_argument("bilinear_ssqrt_bwd: norm must be positive");
  if (!z_target && !dz) throw std::invalid_argument("bilinear_ssqrt_bwd: z_target or dz needed");
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  const int blocks = ew_blocks(count);
  cuda::launch(bilinear_ssqrt_bwd_kernel, dim3(blocks), dim3(kEwThreads), 0, nullptr, y, z_target,
               dz, db, count, (float)(1.0 / norm), (float)z_dot_g, scale, partials);
  return final_sum(partials, blocks);
}

double softmax_xent_loss_grad(Workspace& ws, const float* s, float* ds, int k, int target,
                              float scale) {
  if (k <= 0 || target < 0 || target >= k)
    throw std::invalid_argument("softmax_xent_loss_grad: target class " + std::to_string(target) +
                                " outside 0.." + std::to_string(k - 1));
  const auto lock = ws.lock();
  double* partials = ws.get<double>(kMaxPartials + 1);
  cuda::launch(softmax_xent_kernel, dim3(1), dim3(256), 0, nullptr, s, ds, k, target, scale,
               partials);
  return read_double(partials);
}

}  // namespace preimage::kernels
