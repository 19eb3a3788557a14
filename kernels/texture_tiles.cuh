/*
texture_tiles.cuh - the tiled FP32 products shared by kernels/gram.cu and kernels/bilinear.cu.
Device code only (templates, inlined into each including .cu); no launches here.

Two kernels, one tile geometry: 64×64 output tile per block, 256 threads as 16×16, each thread
a 4×4 register block, BK = 32, double-buffered shared tiles with a register prefetch of the next
K step (one __syncthreads per step), FP32 FMA accumulation (the syrk kernel two-level: each K
step's 32 products summed apart, then added to the running total — its K runs to 10⁴–10⁵).

  texture_syrk_kernel<SYM, VEC>      C (ra, rb) = scale · A (ra, K) · B (rb, K)ᵀ
      A, B row-major with K contiguous: both operands are feature maps F (C, M), K = M.
      SYM (A == B, ra == rb): the grid enumerates only the upper-triangle tiles (bi ≤ bj), a
      diagonal tile loads one operand and reads it twice, an off-diagonal tile is also written
      transposed into (bj, bi) through a shared-memory staging tile (coalesced). Split-K over
      gridDim.y: each slice covers `kt_per_split` K tiles; one slice stores, several slices
      atomicAdd into C (zeroed by the launcher).
      Shared tiles are k-major [BK][64] with a 4-float-group XOR swizzle
      (group' = group ^ ((k >> 2) & 7)): the VEC path (K % 4 == 0, 16-byte aligned rows) loads
      float4 along K with lanes spread over 4 rows × 8 k-quads, and its transposing stores into
      shared memory are then bank-conflict free; the float4 fragment reads stay conflict free.
  texture_product_kernel<AMODE, VEC> OUT (R, M) += scale · op(P) (R, K) · F (K, M)
      op(P) = P − Q (DIFF: the Gram difference D = G − Ĝ; its Σ D² is reduced by the blocks of
      grid column 0, which load every D element exactly once, into partials[blockIdx.y]),
      P (PLAIN), Pᵀ with P (K, R) (TRANSPOSED), P + Pᵀ (SYM). F row-major, M contiguous: float4
      loads and float4 read-modify-write of OUT on the VEC path (M % 4 == 0, aligned).
      Every OUT element belongs to one thread: no atomics, deterministic.

Both need blockDim = (256, 1, 1). Callers own the partial-sum storage (a device buffer of
doubles, one slot per grid row) and the final reduction.
*/
#pragma once

#include "kernels/cuda_compat.h"
#include "kernels/reduce.cuh"

namespace preimage::kernels::texture {

inline constexpr int kTile = 64;  // BM = BN
inline constexpr int kBK = 32;
inline constexpr int kThreads = 256;
inline constexpr int kTileFloats = kBK * kTile;  // one shared operand buffer

// Swizzled position of element (k, r) in a [BK][64] shared tile.
__device__ __forceinline__ int swz(int k, int r) {
  return k * kTile + ((((r >> 2) ^ ((k >> 2) & 7)) << 2) | (r & 3));
}
// Start of the 4-float group g of row k.
__device__ __forceinline__ int swz4(int k, int g) {
  return k * kTile + ((g ^ ((k >> 2) & 7)) << 2);
}

// Tile (bi, bj) of the grid index: the upper triangle in row-major order when SYM.
__device__ __forceinline__ void tile_coords(int t, int tiles_b, bool sym, int* bi, int* bj) {
  if (!sym) {
    *bi = t / tiles_b;
    *bj = t % tiles_b;
    return;
  }
  int i = 0, row = tiles_b;  // row i holds tiles (i, i..tiles_b-1)
  while (t >= row) {
    t -= row;
    ++i;
    --row;
  }
  *bi = i;
  *bj = i + t;
}

// ---- C = scale · A Bᵀ, K contiguous ------------------------------------------------------
// Loads this thread's share of a 64-row × BK tile of a K-contiguous operand into registers.
template <bool VEC>
__device__ __forceinline__ void load_rows(const float* __restrict__ a, int rows, int row0,
                                          long long ld, int k0, int kend, float (&reg)[8]) {
  const int tid = threadIdx.x;
  if constexpr (VEC) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int e = tid + i * kThreads, r = e / 8, k = k0 + (e % 8) * 4;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (row0 + r < rows && k < kend)
        v = *reinterpret_cast<const float4*>(a + (long long)(row0 + r) * ld + k);
      reg[4 * i] = v.x;
      reg[4 * i + 1] = v.y;
      reg[4 * i + 2] = v.z;
      reg[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = tid + i * kThreads, r = e / kBK, k = k0 + e % kBK;
      reg[i] = (row0 + r < rows && k < kend) ? a[(long long)(row0 + r) * ld + k] : 0.f;
    }
  }
}

template <bool VEC>
__device__ __forceinline__ void store_rows(float* s, const float (&reg)[8]) {
  const int tid = threadIdx.x;
  if constexpr (VEC) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int e = tid + i * kThreads, r = e / 8, k = (e % 8) * 4;
#pragma unroll
      for (int q = 0; q < 4; ++q) s[swz(k + q, r)] = reg[4 * i + q];
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = tid + i * kThreads;
      s[swz(e % kBK, e / kBK)] = reg[i];
    }
  }
}

template <bool SYM, bool VEC>
__global__ void __launch_bounds__(kThreads)
    texture_syrk_kernel(const float* __restrict__ a, const float* __restrict__ b,
                        float* __restrict__ c, int ra, int rb, int k_total, int kt_per_split,
                        float scale, bool atomic) {
  __shared__ __align__(16) float smem[4 * kTileFloats];  // As[2], Bs[2]; epilogue staging
  int bi, bj;
  tile_coords(blockIdx.x, (rb + kTile - 1) / kTile, SYM, &bi, &bj);
  const bool diag = SYM && bi == bj;  // one operand serves both sides
  const int m0 = bi * kTile, n0 = bj * kTile;
  const int kt0 = blockIdx.y * kt_per_split;
  const int kt_end = min(kt0 + kt_per_split, (k_total + kBK - 1) / kBK);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  float ra_reg[8], rb_reg[8];
  if (kt0 < kt_end) {
    load_rows<VEC>(a, ra, m0, k_total, kt0 * kBK, k_total, ra_reg);
    if (!diag) load_rows<VEC>(b, rb, n0, k_total, kt0 * kBK, k_total, rb_reg);
    store_rows<VEC>(smem, ra_reg);
    if (!diag) store_rows<VEC>(smem + 2 * kTileFloats, rb_reg);
  }
  __syncthreads();
  int cur = 0;
  for (int kt = kt0; kt < kt_end; ++kt) {
    const bool next = kt + 1 < kt_end;
    if (next) {
      load_rows<VEC>(a, ra, m0, k_total, (kt + 1) * kBK, k_total, ra_reg);
      if (!diag) load_rows<VEC>(b, rb, n0, k_total, (kt + 1) * kBK, k_total, rb_reg);
    }
    const float* as = smem + cur * kTileFloats;
    const float* bs = diag ? as : smem + (2 + cur) * kTileFloats;
    // Two-level accumulation: the 32 products of this K step in `part`, then one add into acc.
    // A slice sums thousands of products; summing them in one register loses ≈ √n ulps, which
    // the Gatys difference G − Ĝ then amplifies (docs/objectives.md, numerics).
    float part[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) part[i][j] = 0.f;
#pragma unroll 8
    for (int k = 0; k < kBK; ++k) {
      const float4 av = *reinterpret_cast<const float4*>(as + swz4(k, ty));
      const float4 bv = *reinterpret_cast<const float4*>(bs + swz4(k, tx));
      const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) part[i][j] = fmaf(ar[i], br[j], part[i][j]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] += part[i][j];
    if (next) {
      store_rows<VEC>(smem + (cur ^ 1) * kTileFloats, ra_reg);
      if (!diag) store_rows<VEC>(smem + (2 + (cur ^ 1)) * kTileFloats, rb_reg);
    }
    __syncthreads();
    cur ^= 1;
  }

  // Epilogue: the tile itself, then (off-diagonal symmetric tiles) its transpose.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= ra) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx * 4 + j;
      if (n >= rb) continue;
      float* dst = c + (long long)m * rb + n;
      if (atomic)
        atomicAdd(dst, scale * acc[i][j]);
      else
        *dst = scale * acc[i][j];
    }
  }
  if (!SYM || diag) return;
  constexpr int kLd = kTile + 1;  // staging tile [64][65]: conflict-free column reads
  float* stage = smem;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) stage[(ty * 4 + i) * kLd + tx * 4 + j] = scale * acc[i][j];
  __syncthreads();
  for (int e = tid; e < kTile * kTile; e += kThreads) {
    const int col = e / kTile, row = e % kTile;  // writes c[n0 + col][m0 + row], row fastest
    const int m = m0 + row, n = n0 + col;
    if (m >= ra || n >= rb) continue;
    float* dst = c + (long long)n * rb + m;
    const float v = stage[row * kLd + col];
    if (atomic)
      atomicAdd(dst, v);
    else
      *dst = v;
  }
}

// ---- OUT += scale · op(P) · F --------------------------------------------------------------
enum class AMode : int { Diff, Plain, Transposed, Sym };

// VEC instances fit 2 blocks per SM (≤ 128 registers) without spilling; the scalar-load
// instances (M % 4 != 0) need more registers for their per-row addresses and run 1 block per SM.
template <AMode MODE, bool VEC>
__global__ void __launch_bounds__(kThreads, VEC ? 2 : 1)
    texture_product_kernel(const float* __restrict__ p, const float* __restrict__ q,
                           const float* __restrict__ f, float* __restrict__ out, int rows,
                           int k_total, int m_total, float scale, double* __restrict__ partials) {
  __shared__ __align__(16) float as_buf[2][kTileFloats];
  __shared__ __align__(16) float bs_buf[2][kTileFloats];
  __shared__ double red[33];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int m0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  const bool count_loss = MODE == AMode::Diff && blockIdx.x == 0;
  double loss = 0.0;

  // A tile (64 rows × BK) of op(P): 8 elements per thread.
  auto load_a = [&](int k0, float(&reg)[8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = tid + i * kThreads;
      // TRANSPOSED reads P (K, R) with the row index fastest (coalesced); the others K fastest.
      const int r = MODE == AMode::Transposed ? e % kTile : e / kBK;
      const int kk = MODE == AMode::Transposed ? e / kTile : e % kBK;
      const int m = m0 + r, k = k0 + kk;
      float v = 0.f;
      if (m < rows && k < k_total) {
        if constexpr (MODE == AMode::Diff) {
          v = p[(long long)m * k_total + k] - q[(long long)m * k_total + k];
          if (count_loss) loss += (double)v * v;
        } else if constexpr (MODE == AMode::Plain) {
          v = p[(long long)m * k_total + k];
        } else if constexpr (MODE == AMode::Transposed) {
          v = p[(long long)k * rows + m];
        } else {
          v = p[(long long)m * k_total + k] + p[(long long)k * k_total + m];
        }
      }
      reg[i] = v;
    }
  };
  auto store_a = [&](float* s, const float(&reg)[8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = tid + i * kThreads;
      const int r = MODE == AMode::Transposed ? e % kTile : e / kBK;
      const int kk = MODE == AMode::Transposed ? e / kTile : e % kBK;
      s[swz(kk, r)] = reg[i];
    }
  };
  // F tile (BK × 64), M fastest: 2 float4 or 8 floats per thread, stored unswizzled [k][n].
  auto load_f = [&](int k0, float(&reg)[8]) {
    if constexpr (VEC) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int e = tid + i * kThreads, kk = e / 16, n = n0 + (e % 16) * 4, k = k0 + kk;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (k < k_total && n < m_total)
          v = *reinterpret_cast<const float4*>(f + (long long)k * m_total + n);
        reg[4 * i] = v.x;
        reg[4 * i + 1] = v.y;
        reg[4 * i + 2] = v.z;
        reg[4 * i + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = tid + i * kThreads, kk = e / kTile, n = n0 + e % kTile, k = k0 + kk;
        reg[i] = (k < k_total && n < m_total) ? f[(long long)k * m_total + n] : 0.f;
      }
    }
  };
  auto store_f = [&](float* s, const float(&reg)[8]) {
    if constexpr (VEC) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int e = tid + i * kThreads;
        *reinterpret_cast<float4*>(s + (e / 16) * kTile + (e % 16) * 4) =
            make_float4(reg[4 * i], reg[4 * i + 1], reg[4 * i + 2], reg[4 * i + 3]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = tid + i * kThreads;
        s[(e / kTile) * kTile + e % kTile] = reg[i];
      }
    }
  };

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  const int kt_count = (k_total + kBK - 1) / kBK;
  float a_reg[8], f_reg[8];
  load_a(0, a_reg);
  load_f(0, f_reg);
  store_a(as_buf[0], a_reg);
  store_f(bs_buf[0], f_reg);
  __syncthreads();
  int cur = 0;
  for (int kt = 0; kt < kt_count; ++kt) {
    const bool next = kt + 1 < kt_count;
    if (next) {
      load_a((kt + 1) * kBK, a_reg);
      load_f((kt + 1) * kBK, f_reg);
    }
    const float* as = as_buf[cur];
    const float* bs = bs_buf[cur];
#pragma unroll 8
    for (int k = 0; k < kBK; ++k) {
      const float4 av = *reinterpret_cast<const float4*>(as + swz4(k, ty));
      const float4 bv = *reinterpret_cast<const float4*>(bs + k * kTile + tx * 4);
      const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
    }
    if (next) {
      store_a(as_buf[cur ^ 1], a_reg);
      store_f(bs_buf[cur ^ 1], f_reg);
    }
    __syncthreads();
    cur ^= 1;
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= rows) continue;
    const int n = n0 + tx * 4;
    float* dst = out + (long long)m * m_total + n;
    if (VEC && n + 3 < m_total) {
      float4 o = *reinterpret_cast<float4*>(dst);
      o.x = fmaf(scale, acc[i][0], o.x);
      o.y = fmaf(scale, acc[i][1], o.y);
      o.z = fmaf(scale, acc[i][2], o.z);
      o.w = fmaf(scale, acc[i][3], o.w);
      *reinterpret_cast<float4*>(dst) = o;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (n + j < m_total) dst[j] = fmaf(scale, acc[i][j], dst[j]);
    }
  }

  if constexpr (MODE == AMode::Diff) {
    if (blockIdx.x == 0) {  // uniform per block: the barriers inside are not divergent
      const double total = block_sum_all(loss, red);
      if (tid == 0) partials[blockIdx.y] = total;
    }
  }
}

// ---- host-side helpers ------------------------------------------------------------------
// Streaming multiprocessors of the current device (asked once; 132 if the query fails).
inline int sm_count() {
  static const int count = [] {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      v = 132;
    }
    return v;
  }();
  return count;
}

// Split-K slices for `tiles` output tiles over k_total: about two blocks per SM, every slice at
// least 8 K steps (256 columns), no empty slice. *kt_per_split receives the K steps per slice.
inline int split_count(int tiles, int k_total, int* kt_per_split) {
  const int kt = (k_total + kBK - 1) / kBK;
  const int want = (2 * sm_count() + tiles - 1) / tiles;
  const int splits = want < kt / 8 ? want : kt / 8;
  if (splits <= 1 || kt <= 1) {
    *kt_per_split = kt > 1 ? kt : 1;
    return 1;
  }
  *kt_per_split = (kt + splits - 1) / splits;
  return (kt + *kt_per_split - 1) / *kt_per_split;
}

}  // namespace preimage::kernels::texture
