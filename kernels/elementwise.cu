/*
Element-wise kernels and reductions over flat float arrays.

Layouts: flat arrays of `count` floats; channel_affine sees x, y as (N, C, plane) with C ≤ 8.
  relu_fwd        y = max(x, 0)   (NaN propagates, as std::max(x, 0.f) on the CPU; in place ok)
  relu_bwd        dx = y > 0 ? dy : 0
  fill            x = value
  axpby           y = a·x + b·y   (b == 0: y = a·x, y is not read, so a NaN there cannot leak)
  mul             y = a ⊙ b
  channel_affine  y[n,c,:] = scale[c]·x[n,perm[c],:] + shift[c]   (y may alias x only when perm
                  is the identity)
  dot / sum / sum_squares → one double on the host.

Versions: one per op (these are bandwidth-bound and simple):
  maps        grid-stride loops, 256 threads, at most 4096 blocks; float4 loads/stores when every
              pointer is 16-byte aligned (always true for device_alloc'ed buffers) and a scalar
              tail; channel_affine one grid row per (n, c) plane.
  reductions  two passes, deterministic (no atomics): pass 1 — up to 1024 blocks, each thread
              accumulates its grid-stride slice in double (float4 loads when aligned), warp
              shuffle (__shfl_down_sync) + shared memory reduce to one double per block; pass 2 —
              final_reduce (kernels/reduce.cuh) reduces them in one block. Partials live in the
              caller's Workspace (held under its lock); the result comes back by one cudaMemcpy
              (8 bytes).

Test: ctest -R kernels   (test/test_kernels_elementwise.cpp: vs preimage::cpu, NaN-prefilled
      outputs, all three simulator thread orders).
Bench: build/bench/bench_vgg --device cuda --sizes 512; bandwidth-bound, expected ≈ bytes / 3.35
TB/s on an H100 (docs/kernels.md).
*/
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"
#include "kernels/reduce.cuh"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 4096;
constexpr int kReduceBlocks = 1024;  // partials of pass 1, at most

unsigned grid_for(size_t n) {
  const size_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(b, kMaxBlocks)));
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

__device__ __forceinline__ size_t global_thread() {
  return blockIdx.x * (size_t)blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_threads() {
  return (size_t)gridDim.x * blockDim.x;
}

__device__ __forceinline__ float relu1(float v) {
  return v < 0.f ? 0.f : v;
}

// ------------------------------- maps ---------------------------------------------------
// Each map kernel: float4 main loop over count/4 vectors when `vec`, then the scalar tail
// [count/4·4, count) (all of it when !vec).

__global__ void relu_fwd_kernel(const float* x, float* y, size_t n, bool vec) {
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 v = x4[i];
      y4[i] = make_float4(relu1(v.x), relu1(v.y), relu1(v.z), relu1(v.w));
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) y[i] = relu1(x[i]);
}

__global__ void relu_bwd_kernel(const float* __restrict__ y, const float* __restrict__ dy,
                                float* __restrict__ dx, size_t n, bool vec) {
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* y4 = reinterpret_cast<const float4*>(y);
    const float4* d4 = reinterpret_cast<const float4*>(dy);
    float4* o4 = reinterpret_cast<float4*>(dx);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 a = y4[i], d = d4[i];
      o4[i] = make_float4(a.x > 0.f ? d.x : 0.f, a.y > 0.f ? d.y : 0.f, a.z > 0.f ? d.z : 0.f,
                          a.w > 0.f ? d.w : 0.f);
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads())
    dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

__global__ void fill_kernel(float* x, float value, size_t n, bool vec) {
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    float4* x4 = reinterpret_cast<float4*>(x);
    for (size_t i = global_thread(); i < n4; i += grid_threads())
      x4[i] = make_float4(value, value, value, value);
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) x[i] = value;
}

// y = a·x + b·y; with b == 0 y is only written.
__global__ void axpby_kernel(float a, const float* x, float b, float* y, size_t n, bool vec) {
  const bool read_y = b != 0.f;
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 u = x4[i];
      float4 v = make_float4(a * u.x, a * u.y, a * u.z, a * u.w);
      if (read_y) {
        const float4 t = y4[i];
        v.x = b * t.x + v.x;
        v.y = b * t.y + v.y;
        v.z = b * t.z + v.z;
        v.w = b * t.w + v.w;
      }
      y4[i] = v;
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads())
    y[i] = read_y ? b * y[i] + a * x[i] : a * x[i];
}

__global__ void mul_kernel(const float* a, const float* b, float* y, size_t n, bool vec) {
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 u = a4[i], v = b4[i];
      y4[i] = make_float4(u.x * v.x, u.y * v.y, u.z * v.z, u.w * v.w);
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads()) y[i] = a[i] * b[i];
}

// blockIdx.y = n·C + c: one output plane per grid row, grid-stride along the plane.
__global__ void channel_affine_kernel(const float* x, float* y, size_t plane, ChannelAffine a,
                                      bool vec) {
  const int row = blockIdx.y;
  const int c = row % a.c, img = row / a.c;
  const float* src = x + ((size_t)img * a.c + a.perm[c]) * plane;
  float* dst = y + (size_t)row * plane;
  const float s = a.scale[c], t = a.shift[c];
  size_t start = 0;
  if (vec) {
    const size_t n4 = plane / 4;
    const float4* s4 = reinterpret_cast<const float4*>(src);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 v = s4[i];
      d4[i] = make_float4(s * v.x + t, s * v.y + t, s * v.z + t, s * v.w + t);
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < plane; i += grid_threads()) dst[i] = s * src[i] + t;
}

// ------------------------------- reductions ---------------------------------------------

enum class Red : int { Sum, SumSquares, Dot };

template <Red OP>
__device__ __forceinline__ double term(float a, float b) {
  if constexpr (OP == Red::Sum)
    return (double)a;
  else if constexpr (OP == Red::SumSquares)
    return (double)a * (double)a;
  else
    return (double)a * (double)b;
}

template <Red OP>
__global__ void reduce_partial_kernel(const float* a, const float* b, size_t n, bool vec,
                                      double* partials) {
  double acc = 0.0;
  size_t start = 0;
  if (vec) {
    const size_t n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(OP == Red::Dot ? b : a);
    for (size_t i = global_thread(); i < n4; i += grid_threads()) {
      const float4 u = a4[i];
      const float4 v = OP == Red::Dot ? b4[i] : u;
      acc += term<OP>(u.x, v.x) + term<OP>(u.y, v.y) + term<OP>(u.z, v.z) + term<OP>(u.w, v.w);
    }
    start = n4 * 4;
  }
  for (size_t i = start + global_thread(); i < n; i += grid_threads())
    acc += term<OP>(a[i], OP == Red::Dot ? b[i] : 0.f);
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

template <Red OP>
double reduce(Workspace& ws, const float* a, const float* b, size_t n) {
  if (n == 0) return 0.0;
  const size_t want = (n + size_t(kThreads) * 4 - 1) / (size_t(kThreads) * 4);
  const int blocks = static_cast<int>(std::min<size_t>(want, kReduceBlocks));
  const bool vec = aligned16(a) && (OP != Red::Dot || aligned16(b));
  const auto lock = ws.lock();
  double* partials = ws.get<double>(size_t(blocks) + 1);
  cuda::launch(reduce_partial_kernel<OP>, dim3(blocks), dim3(kThreads), 0, nullptr, a, b, n, vec,
               partials);
  return final_sum(partials, blocks);
}

}  // namespace

void relu_fwd(const float* x, float* y, size_t count) {
  if (count == 0) return;
  cuda::launch(relu_fwd_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, x, y, count,
               aligned16(x) && aligned16(y));
}

void relu_bwd(const float* y, const float* dy, float* dx, size_t count) {
  if (count == 0) return;
  cuda::launch(relu_bwd_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, y, dy, dx, count,
               aligned16(y) && aligned16(dy) && aligned16(dx));
}

void fill(float* x, float value, size_t count) {
  if (count == 0) return;
  cuda::launch(fill_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, x, value, count,
               aligned16(x));
}

void axpby(float a, const float* x, float b, float* y, size_t count) {
  if (count == 0) return;
  cuda::launch(axpby_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, a, x, b, y, count,
               aligned16(x) && aligned16(y));
}

void mul(const float* a, const float* b, float* y, size_t count) {
  if (count == 0) return;
  cuda::launch(mul_kernel, dim3(grid_for(count)), dim3(kThreads), 0, nullptr, a, b, y, count,
               aligned16(a) && aligned16(b) && aligned16(y));
}

void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a) {
  if (a.c < 1 || a.c > 8) throw std::invalid_argument("channel_affine: c must be in 1..8");
  for (int c = 0; c < a.c; ++c)
    if (a.perm[c] < 0 || a.perm[c] >= a.c)
      throw std::invalid_argument("channel_affine: perm[c] out of range");
  if (n <= 0 || plane == 0) return;
  const long long rows = (long long)n * a.c;
  if (rows > 65535) {  // grid.y limit: split the batch
    const int per = 65535 / a.c;
    for (int i = 0; i < n; i += per)
      channel_affine(x + size_t(i) * a.c * plane, y + size_t(i) * a.c * plane, std::min(per, n - i),
                     plane, a);
    return;
  }
  const bool vec = plane % 4 == 0 && aligned16(x) && aligned16(y);
  const size_t work = vec ? plane / 4 : plane;
  const unsigned bx = static_cast<unsigned>(
      std::max<size_t>(1, std::min<size_t>((work + kThreads - 1) / kThreads, 64)));
  cuda::launch(channel_affine_kernel, dim3(bx, static_cast<unsigned>(rows)), dim3(kThreads), 0,
               nullptr, x, y, plane, a, vec);
}

double dot(Workspace& ws, const float* a, const float* b, size_t count) {
  return reduce<Red::Dot>(ws, a, b, count);
}
double sum(Workspace& ws, const float* x, size_t count) {
  return reduce<Red::Sum>(ws, x, nullptr, count);
}
double sum_squares(Workspace& ws, const float* x, size_t count) {
  return reduce<Red::SumSquares>(ws, x, nullptr, count);
}

}  // namespace preimage::kernels
