// Block and grid reductions of doubles, written once for every kernel that reduces to host
// scalars (elementwise.cu, lbfgs.cu, gram.cu, bilinear.cu, priors.cu, texture_tiles.cuh).
// Pass 1: each block reduces its share with block_reduce / block_sum_all and writes K partials;
// pass 2: final_reduce runs one block over the partials, in a fixed order (deterministic), and
// copies the K results to the host. Partials and results live in a caller's Workspace.
#pragma once
#include <cstddef>

#include "kernels/cuda_compat.h"

namespace preimage::kernels {

// Reduces K doubles over the block: slot i takes the max when bit i of MAXMASK is set, else the
// sum. blockDim.x is a multiple of 32 (≤ 1024); the result is valid in thread 0. Once per kernel
// (its shared slots are not re-synchronized for a second call).
template <int K, unsigned MAXMASK = 0u>
__device__ void block_reduce(double (&v)[K]) {
  __shared__ double warp_vals[32][K];
#pragma unroll
  for (int i = 0; i < K; ++i)
#pragma unroll
    for (int off = 16; off > 0; off /= 2) {
      const double o = __shfl_down_sync(0xffffffffu, v[i], off);
      v[i] = (MAXMASK >> i) & 1u ? fmax(v[i], o) : v[i] + o;
    }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0)
#pragma unroll
    for (int i = 0; i < K; ++i) warp_vals[warp][i] = v[i];
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
#pragma unroll
    for (int i = 0; i < K; ++i) {
      v[i] = lane < warps ? warp_vals[lane][i] : 0.0;
#pragma unroll
      for (int off = 16; off > 0; off /= 2) {
        const double o = __shfl_down_sync(0xffffffffu, v[i], off);
        v[i] = (MAXMASK >> i) & 1u ? fmax(v[i], o) : v[i] + o;
      }
    }
  }
}

// Sum of v over the block, valid in thread 0 (block_reduce of one sum).
__device__ __forceinline__ double block_sum(double v) {
  double a[1] = {v};
  block_reduce<1>(a);
  return a[0];
}

// Sum of v over the block, returned to every thread; blockDim.x a multiple of 32 (≤ 1024);
// scratch: __shared__ double[33]. Safe to call repeatedly with the same scratch.
__device__ __forceinline__ double block_sum_all(double v, double* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    double w = lane < warps ? scratch[lane] : 0.0;
#pragma unroll
    for (int off = 16; off > 0; off /= 2) w += __shfl_down_sync(0xffffffffu, w, off);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

// Maximum of v over the block, returned to every thread; scratch: __shared__ float[33].
__device__ __forceinline__ float block_max_all(float v, float* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off /= 2) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    float w = lane < warps ? scratch[lane] : scratch[0];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) w = fmaxf(w, __shfl_down_sync(0xffffffffu, w, off));
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

// Pass 2: partials[b·K + i] of `blocks` pass-1 blocks → out[i] (one block).
template <int K, unsigned MAXMASK = 0u>
__global__ void final_reduce_kernel(const double* partials, int blocks, double* out) {
  double v[K];
#pragma unroll
  for (int i = 0; i < K; ++i) v[i] = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x)
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const double p = partials[(size_t)b * K + i];
      v[i] = (MAXMASK >> i) & 1u ? fmax(v[i], p) : v[i] + p;
    }
  block_reduce<K, MAXMASK>(v);
  if (threadIdx.x == 0)
#pragma unroll
    for (int i = 0; i < K; ++i) out[i] = v[i];
}

inline constexpr int kFinalReduceThreads = 1024;

// The final pass over the blocks·K partials at the front of `partials` (device) and the one
// device→host copy: the K results land at partials[blocks·K …] and in the host array out.
template <int K, unsigned MAXMASK = 0u>
void final_reduce(double* partials, int blocks, double* out) {
  double* result = partials + (size_t)blocks * K;
  cuda::launch(final_reduce_kernel<K, MAXMASK>, dim3(1), dim3(kFinalReduceThreads), 0, nullptr,
               static_cast<const double*>(partials), blocks, result);
  CUDA_CHECK(cudaMemcpy(out, result, K * sizeof(double), cudaMemcpyDeviceToHost));
}

// One sum of `blocks` partials (needs blocks + 1 doubles).
inline double final_sum(double* partials, int blocks) {
  double r = 0.0;
  final_reduce<1>(partials, blocks, &r);
  return r;
}

// A double a kernel left in device memory.
inline double read_double(const double* p) {
  double r = 0.0;
  CUDA_CHECK(cudaMemcpy(&r, p, sizeof(double), cudaMemcpyDeviceToHost));
  return r;
}

}  // namespace preimage::kernels
