// cuda_compat.h - the one header every kernels/*.cu includes.
//
// The same .cu source is built twice:
// - by nvcc (__CUDACC__): the real CUDA runtime; launches are kernel<<<grid, block, smem,
// stream>>>;
// - by g++ with -DPREIMAGE_CUDA_SIM (a generated .cpp that #includes the .cu): the host
//   simulator in kernels/sim/cuda_sim.h, which runs every CUDA thread as a fiber on the CPU
//   (design, schedules, strict mode and what it cannot simulate are described there).
//
// Kernels use only what both provide:
// - preimage::cuda::launch(kernel, grid, block, smem, stream, args...) instead of <<<>>>
//   (a function, so template kernels such as k<32, 8> pass without macro comma trouble);
// - PREIMAGE_DYNAMIC_SHARED(type, name) instead of `extern __shared__ type name[]`;
// - CUDA_CHECK(expr) throws std::runtime_error "file:line: expr: error string" (in the
//   simulator followed by the detailed message of the failure, e.g. which threads diverged);
// - PREIMAGE_HOST_DEVICE for functions shared by host and device code;
// - PREIMAGE_SIM is defined (as 1) only in the simulated build, for tests that want to know;
//   preimage::cuda::kSimulated says the same as a constant.
// Code that needs real-hardware features (cp.async, TMA, wgmma, mma PTX) keeps them under
// `#if defined(__CUDA_ARCH__)`, with a simulated fallback under `#elif defined(PREIMAGE_SIM)`.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#elif defined(PREIMAGE_CUDA_SIM)
#include "sim/cuda_sim.h"
#define PREIMAGE_SIM 1
#else
#error "kernels/cuda_compat.h needs nvcc (__CUDACC__) or the simulator (-DPREIMAGE_CUDA_SIM)"
#endif

#define PREIMAGE_HOST_DEVICE __host__ __device__

namespace preimage::cuda {

#if defined(PREIMAGE_SIM)
inline constexpr bool kSimulated = true;
#else
inline constexpr bool kSimulated = false;
#endif

// Throws if err is not cudaSuccess; used through CUDA_CHECK.
inline void check(cudaError_t err, const char* expr, const char* file, int line) {
  if (err == cudaSuccess) return;
  std::string message =
      std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " + cudaGetErrorString(err);
#if defined(PREIMAGE_SIM)
  std::string detail = preimage::sim::last_error_message();
  if (!detail.empty()) message += ": " + detail;
#endif
  throw std::runtime_error(message);
}

}  // namespace preimage::cuda

#define CUDA_CHECK(expr) ::preimage::cuda::check((expr), #expr, __FILE__, __LINE__)

#if defined(__CUDACC__)

// One extern array name for every kernel of a translation unit (redeclaring it is allowed).
#define PREIMAGE_DYNAMIC_SHARED(type, name)                           \
  extern __shared__ __align__(16) unsigned char preimage_dyn_smem_[]; \
  type* name = reinterpret_cast<type*>(preimage_dyn_smem_)

namespace preimage::cuda {

template <class... KArgs, class... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args),
                "preimage::cuda::launch: argument count differs from the kernel's parameters");
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  CUDA_CHECK(cudaGetLastError());
}

// atomicMax/atomicMin on float, which CUDA lacks, with the simulator's semantics.
__device__ inline float atomicMax(float* address, float val) {
  int* bits = reinterpret_cast<int*>(address);
  int old = *bits;
  while (__int_as_float(old) < val) {
    int assumed = old;
    old = atomicCAS(bits, assumed, __float_as_int(val));
    if (old == assumed) break;
  }
  return __int_as_float(old);
}
__device__ inline float atomicMin(float* address, float val) {
  int* bits = reinterpret_cast<int*>(address);
  int old = *bits;
  while (val < __int_as_float(old)) {
    int assumed = old;
    old = atomicCAS(bits, assumed, __float_as_int(val));
    if (old == assumed) break;
  }
  return __int_as_float(old);
}

}  // namespace preimage::cuda

using preimage::cuda::atomicMax;
using preimage::cuda::atomicMin;

#else  // simulator

#define PREIMAGE_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::preimage::sim::dynamic_shared_memory())

namespace preimage::cuda {

namespace detail {
// The kernel and a by-value copy of its arguments, converted to the parameter types at the
// launch like CUDA does; each simulated thread calls the kernel with copies of them.
template <class... KArgs>
struct KernelCall {
  void (*kernel)(KArgs...);
  std::tuple<std::decay_t<KArgs>...> args;

  static void run(void* self) {
    auto* call = static_cast<KernelCall*>(self);
    std::apply(call->kernel, call->args);
  }
};
}  // namespace detail

template <class... KArgs, class... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args),
                "preimage::cuda::launch: argument count differs from the kernel's parameters");
  (void)stream;  // launches are synchronous
  detail::KernelCall<KArgs...> call{
      kernel, std::tuple<std::decay_t<KArgs>...>(std::forward<Args>(args)...)};
  preimage::sim::launch_grid(grid, block, smem, reinterpret_cast<const void*>(kernel),
                             &detail::KernelCall<KArgs...>::run, &call);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace preimage::cuda

#endif
