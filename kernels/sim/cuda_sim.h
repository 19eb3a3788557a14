// cuda_sim.h - host simulator of the CUDA execution model, so that unchanged kernel sources
// (kernels/*.cu, through kernels/cuda_compat.h) compile with g++ and run on the CPU in tests.
//
// Design
// - Every thread of a block is a user-space fiber with its own 256 KiB mmap'ed stack (guard page
//   below it). The fibers of one block run on one OS thread and switch only at barriers
//   (__syncthreads, warp collectives) through a small x86-64 assembly context switch
//   (callee-saved registers, rsp, MXCSR and x87 control word).
// - Blocks are distributed over worker OS threads (the launching thread plus helpers; default
//   min(hardware threads, 2), env PREIMAGE_SIM_THREADS, set_worker_threads()). 1 worker makes
//   a run fully sequential and deterministic. A launch is synchronous.
// - __shared__ is `static thread_local`: each worker OS thread has one copy, shared by the fibers
//   of the block it is running. Dynamic shared memory is a per-worker buffer that is filled with
//   0xFF bytes (NaN as float) before every block, so a missing initialization shows.
// - Schedules (set_schedule(), env PREIMAGE_SIM_SCHEDULE=forward|reverse|random, seed
//   PREIMAGE_SIM_SEED): the order in which released fibers resume after every barrier (and at
//   block start), and the order in which blocks are run, so a missing __syncthreads shows up as
//   wrong results. Random orders are reproducible for a given seed and launch sequence.
// - Warp collectives (__shfl*_sync, __ballot_sync, __all/__any_sync, __syncwarp,
//   __match_*_sync, __reduce_*_sync) are warp barriers: lanes of a warp are consecutive linear
//   thread ids (x fastest, then y, then z); each lane deposits its value, and the last lane of
//   the mask to arrive computes every participant's result. Partial masks work when all
//   participating lanes pass the same mask.
// - Strict mode (default on; set_strict(), env PREIMAGE_SIM_STRICT=0|1): a __syncthreads that
//   some threads of the block never reach because they exited, a warp collective whose mask
//   names an exited lane or excludes the caller, or lanes of one mask calling different
//   collectives, abort the block and make the launch fail with cudaErrorLaunchFailure; the
//   details are in last_error_message(). Non-strict: barriers release when every live thread
//   has arrived. A deadlock (no runnable fiber left) is always reported, never hangs.
//   An exception thrown by kernel code is caught in the fiber and fails the launch the same way.
// - Runtime API: host memory stands in for device memory (256-byte aligned, exactly the
//   requested size so AddressSanitizer sees overruns); copies are synchronous, checked against
//   the cudaMalloc'ed ranges and counted (transfer_stats()). Errors are recorded per host thread
//   as by the real runtime (cudaGetLastError returns and clears) but are never sticky.
// - AddressSanitizer is told about every fiber switch, and dynamic shared memory past the
//   launch's size is poisoned, so ASan builds check kernels' global, shared and local accesses.
//
// Limits (not simulated): cp.async, TMA, wgmma/mma PTX, mbarrier, clusters, cooperative groups,
// __activemask, half/bfloat16 types, clock64/timing/speed, weak memory ordering (blocks on
// different workers see x86 ordering), spin-waits on another thread (fibers are cooperative, so
// a thread spinning on a flag set by a thread of the same block never yields), device-side
// launches, texture/surface objects. Static __shared__ memory is not poisoned between blocks.
// __trap() prints and aborts the process. A barrier reached from a noexcept function cannot be
// cancelled after a failure (std::terminate). ThreadSanitizer does not understand the fibers.
// Only x86-64 hosts are supported.
//
// This header must not include any CUDA toolkit header: the simulated build works without CUDA.
#pragma once

#if defined(__CUDACC__)
#error "kernels/sim/cuda_sim.h is for host compilers; nvcc builds use <cuda_runtime.h>"
#endif

// libstdc++ spells __attribute__((__noinline__)) in <memory>; include it before the macro below.
#include <memory>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

// ---------------------------------------------------------------------------------------------
// Qualifiers
// ---------------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
// The GNU attribute (as nvcc's own host_defines.h uses) is accepted in every position CUDA code
// puts __align__ in, including between `static thread_local` and the type.
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local

// ---------------------------------------------------------------------------------------------
// Vector types (same layout and alignment as CUDA's vector_types.h)
// ---------------------------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct int3 {
  int x, y, z;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct float3 {
  float x, y, z;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
struct alignas(4) uchar4 {
  unsigned char x, y, z, w;
};
struct alignas(4) char4 {
  signed char x, y, z, w;
};
struct alignas(16) longlong2 {
  long long x, y;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline constexpr uint2 make_uint2(unsigned x, unsigned y) {
  return {x, y};
}
inline constexpr uint3 make_uint3(unsigned x, unsigned y, unsigned z) {
  return {x, y, z};
}
inline constexpr uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return {x, y, z, w};
}
inline constexpr int2 make_int2(int x, int y) {
  return {x, y};
}
inline constexpr int3 make_int3(int x, int y, int z) {
  return {x, y, z};
}
inline constexpr int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}
inline constexpr float2 make_float2(float x, float y) {
  return {x, y};
}
inline constexpr float3 make_float3(float x, float y, float z) {
  return {x, y, z};
}
inline constexpr float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}
inline constexpr double2 make_double2(double x, double y) {
  return {x, y};
}
inline constexpr uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z,
                                    unsigned char w) {
  return {x, y, z, w};
}
inline constexpr char4 make_char4(signed char x, signed char y, signed char z, signed char w) {
  return {x, y, z, w};
}
inline constexpr longlong2 make_longlong2(long long x, long long y) {
  return {x, y};
}

// ---------------------------------------------------------------------------------------------
// Runtime types
// ---------------------------------------------------------------------------------------------
enum cudaError : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidSymbol = 13,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
using cudaError_t = cudaError;

enum cudaMemcpyKind : int {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute : int {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr : int {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

inline constexpr unsigned cudaStreamDefault = 0x0;
inline constexpr unsigned cudaStreamNonBlocking = 0x1;
inline constexpr unsigned cudaEventDefault = 0x0;
inline constexpr unsigned cudaEventDisableTiming = 0x2;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int major;
  int minor;
  int l2CacheSize;
};

// ---------------------------------------------------------------------------------------------
// Simulator control (namespace preimage::sim)
// ---------------------------------------------------------------------------------------------
namespace preimage::sim {

enum class Schedule { Forward, Reverse, Random };

// Fiber (and block) resume order. The seed only matters for Random; it restarts the sequence.
void set_schedule(Schedule schedule, uint64_t seed = 0);
Schedule schedule();
uint64_t schedule_seed();

// Strict mode: divergent barriers and inconsistent warp collectives fail the launch.
void set_strict(bool strict);
bool strict();

// Worker OS threads that run blocks in parallel; n <= 0 restores the default
// (env PREIMAGE_SIM_THREADS, else min(hardware threads, 2)).
void set_worker_threads(int n);
int worker_threads();

// Details of the most recent error recorded on this host thread (empty if none yet).
std::string last_error_message();

struct TransferStats {
  uint64_t h2d_calls = 0;
  uint64_t h2d_bytes = 0;
  uint64_t d2h_calls = 0;
  uint64_t d2h_bytes = 0;
  uint64_t d2d_calls = 0;  // cudaMemcpyDeviceToDevice and cudaMemcpyDefault
  uint64_t d2d_bytes = 0;
  uint64_t launches = 0;  // grids that passed validation and ran
};
TransferStats transfer_stats();
void reset_transfer_stats();

// Runs a grid: every simulated thread calls body(ctx). Records and returns the launch error
// (cudaErrorInvalidConfiguration, cudaErrorLaunchFailure, ...); synchronous.
// `kernel` only names the kernel in error messages.
cudaError_t launch_grid(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const void* kernel,
                        void (*body)(void*), void* ctx);

// Limits enforced at launch (those of sm_80..sm_90).
inline constexpr unsigned kMaxThreadsPerBlock = 1024;
inline constexpr unsigned kMaxBlockDimZ = 64;
inline constexpr unsigned kMaxGridDimYZ = 65535;
inline constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;
inline constexpr int kFiberStackBytes = 256 * 1024;

namespace detail {

// Start of the dynamic shared memory of the block running on this OS thread.
inline thread_local unsigned char* tls_dyn_smem = nullptr;

enum class WarpOp : int {
  ShflIdx,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  All,
  Any,
  Sync,
  MatchAny,
  MatchAll,
  ReduceAdd,
  ReduceMinU,
  ReduceMaxU,
  ReduceMinI,
  ReduceMaxI,
  ReduceAnd,
  ReduceOr,
  ReduceXor,
};

void syncthreads();
// op: 0 count, 1 and, 2 or.
int syncthreads_reduce(int predicate, int op);
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
[[noreturn]] void trap();

template <class T>
inline uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp shuffles take 1..8-byte trivially copyable values");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <class T>
inline T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace detail

inline void* dynamic_shared_memory() {
  return detail::tls_dyn_smem;
}

}  // namespace preimage::sim

// ---------------------------------------------------------------------------------------------
// Built-in variables: set by the scheduler before each fiber resumes.
// ---------------------------------------------------------------------------------------------
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
inline constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// Synchronization
// ---------------------------------------------------------------------------------------------
inline void __syncthreads() {
  preimage::sim::detail::syncthreads();
}
inline int __syncthreads_count(int predicate) {
  return preimage::sim::detail::syncthreads_reduce(predicate, 0);
}
inline int __syncthreads_and(int predicate) {
  return preimage::sim::detail::syncthreads_reduce(predicate, 1);
}
inline int __syncthreads_or(int predicate) {
  return preimage::sim::detail::syncthreads_reduce(predicate, 2);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  preimage::sim::detail::warp_collective(preimage::sim::detail::WarpOp::Sync, mask, 0, 0, 32);
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_block() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_system() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// ---------------------------------------------------------------------------------------------
// Warp collectives
// ---------------------------------------------------------------------------------------------
template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize) {
  using namespace preimage::sim::detail;
  return from_bits<T>(warp_collective(WarpOp::ShflIdx, mask, to_bits(var), srcLane, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace preimage::sim::detail;
  return from_bits<T>(
      warp_collective(WarpOp::ShflUp, mask, to_bits(var), static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  using namespace preimage::sim::detail;
  return from_bits<T>(
      warp_collective(WarpOp::ShflDown, mask, to_bits(var), static_cast<int>(delta), width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize) {
  using namespace preimage::sim::detail;
  return from_bits<T>(warp_collective(WarpOp::ShflXor, mask, to_bits(var), laneMask, width));
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::Ballot, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  using namespace preimage::sim::detail;
  return static_cast<int>(warp_collective(WarpOp::All, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  using namespace preimage::sim::detail;
  return static_cast<int>(warp_collective(WarpOp::Any, mask, predicate != 0, 0, 32));
}
template <class T>
inline unsigned __match_any_sync(unsigned mask, T value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::MatchAny, mask, to_bits(value), 0, 32));
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred) {
  using namespace preimage::sim::detail;
  auto r = static_cast<unsigned>(warp_collective(WarpOp::MatchAll, mask, to_bits(value), 0, 32));
  *pred = r != 0;
  return r;
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceAdd, mask, value, 0, 32));
}
inline int __reduce_add_sync(unsigned mask, int value) {
  return static_cast<int>(__reduce_add_sync(mask, static_cast<unsigned>(value)));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceMinU, mask, value, 0, 32));
}
inline int __reduce_min_sync(unsigned mask, int value) {
  using namespace preimage::sim::detail;
  return static_cast<int>(
      warp_collective(WarpOp::ReduceMinI, mask, static_cast<unsigned>(value), 0, 32));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceMaxU, mask, value, 0, 32));
}
inline int __reduce_max_sync(unsigned mask, int value) {
  using namespace preimage::sim::detail;
  return static_cast<int>(
      warp_collective(WarpOp::ReduceMaxI, mask, static_cast<unsigned>(value), 0, 32));
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceAnd, mask, value, 0, 32));
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceOr, mask, value, 0, 32));
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned value) {
  using namespace preimage::sim::detail;
  return static_cast<unsigned>(warp_collective(WarpOp::ReduceXor, mask, value, 0, 32));
}

// ---------------------------------------------------------------------------------------------
// Atomics: really atomic, blocks run on several OS threads. Relaxed like CUDA's; __threadfence
// supplies the ordering.
// ---------------------------------------------------------------------------------------------
namespace preimage::sim::detail {
template <class T>
inline std::atomic_ref<T> atomic_at(T* address) {
  return std::atomic_ref<T>(*address);
}
template <class T, class F>
inline T atomic_update(T* address, F f) {
  auto ref = atomic_at(address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, f(old), std::memory_order_relaxed)) {
  }
  return old;
}
}  // namespace preimage::sim::detail

#define PREIMAGE_SIM_ATOMIC_FETCH(name, type, method)                                        \
  inline type name(type* address, type val) {                                                \
    return preimage::sim::detail::atomic_at(address).method(val, std::memory_order_relaxed); \
  }
PREIMAGE_SIM_ATOMIC_FETCH(atomicAdd, int, fetch_add)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAdd, unsigned, fetch_add)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAdd, unsigned long long, fetch_add)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAdd, float, fetch_add)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAdd, double, fetch_add)
PREIMAGE_SIM_ATOMIC_FETCH(atomicSub, int, fetch_sub)
PREIMAGE_SIM_ATOMIC_FETCH(atomicSub, unsigned, fetch_sub)
PREIMAGE_SIM_ATOMIC_FETCH(atomicExch, int, exchange)
PREIMAGE_SIM_ATOMIC_FETCH(atomicExch, unsigned, exchange)
PREIMAGE_SIM_ATOMIC_FETCH(atomicExch, unsigned long long, exchange)
PREIMAGE_SIM_ATOMIC_FETCH(atomicExch, float, exchange)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAnd, int, fetch_and)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAnd, unsigned, fetch_and)
PREIMAGE_SIM_ATOMIC_FETCH(atomicAnd, unsigned long long, fetch_and)
PREIMAGE_SIM_ATOMIC_FETCH(atomicOr, int, fetch_or)
PREIMAGE_SIM_ATOMIC_FETCH(atomicOr, unsigned, fetch_or)
PREIMAGE_SIM_ATOMIC_FETCH(atomicOr, unsigned long long, fetch_or)
PREIMAGE_SIM_ATOMIC_FETCH(atomicXor, int, fetch_xor)
PREIMAGE_SIM_ATOMIC_FETCH(atomicXor, unsigned, fetch_xor)
PREIMAGE_SIM_ATOMIC_FETCH(atomicXor, unsigned long long, fetch_xor)
#undef PREIMAGE_SIM_ATOMIC_FETCH

// Max/min: CAS loops; the float forms match kernels/cuda_compat.h's nvcc versions (a NaN
// already stored stays).
#define PREIMAGE_SIM_ATOMIC_MINMAX(type)                             \
  inline type atomicMax(type* address, type val) {                   \
    return preimage::sim::detail::atomic_update(                     \
        address, [val](type old) { return old < val ? val : old; }); \
  }                                                                  \
  inline type atomicMin(type* address, type val) {                   \
    return preimage::sim::detail::atomic_update(                     \
        address, [val](type old) { return val < old ? val : old; }); \
  }
PREIMAGE_SIM_ATOMIC_MINMAX(int)
PREIMAGE_SIM_ATOMIC_MINMAX(unsigned)
PREIMAGE_SIM_ATOMIC_MINMAX(long long)
PREIMAGE_SIM_ATOMIC_MINMAX(unsigned long long)
PREIMAGE_SIM_ATOMIC_MINMAX(float)
#undef PREIMAGE_SIM_ATOMIC_MINMAX

#define PREIMAGE_SIM_ATOMIC_CAS(type)                                        \
  inline type atomicCAS(type* address, type compare, type val) {             \
    preimage::sim::detail::atomic_at(address).compare_exchange_strong(       \
        compare, val, std::memory_order_relaxed, std::memory_order_relaxed); \
    return compare;                                                          \
  }
PREIMAGE_SIM_ATOMIC_CAS(int)
PREIMAGE_SIM_ATOMIC_CAS(unsigned)
PREIMAGE_SIM_ATOMIC_CAS(unsigned long long)
PREIMAGE_SIM_ATOMIC_CAS(unsigned short)
#undef PREIMAGE_SIM_ATOMIC_CAS

// ((old >= val) ? 0 : old + 1) and (((old == 0) || (old > val)) ? val : old - 1), as in CUDA.
inline unsigned atomicInc(unsigned* address, unsigned val) {
  return preimage::sim::detail::atomic_update(
      address, [val](unsigned old) { return old >= val ? 0u : old + 1u; });
}
inline unsigned atomicDec(unsigned* address, unsigned val) {
  return preimage::sim::detail::atomic_update(
      address, [val](unsigned old) { return (old == 0u || old > val) ? val : old - 1u; });
}

// ---------------------------------------------------------------------------------------------
// Loads, intrinsics, math
// ---------------------------------------------------------------------------------------------
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

[[noreturn]] inline void __trap() {
  preimage::sim::detail::trap();
}

inline float __expf(float x) {
  return std::exp(x);
}
inline float __exp10f(float x) {
  return std::pow(10.0f, x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __log2f(float x) {
  return std::log2(x);
}
inline float __log10f(float x) {
  return std::log10(x);
}
inline float __powf(float x, float y) {
  return std::pow(x, y);
}
inline float __sinf(float x) {
  return std::sin(x);
}
inline float __cosf(float x) {
  return std::cos(x);
}
inline float __tanf(float x) {
  return std::tan(x);
}
inline void __sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
inline float __fdividef(float x, float y) {
  return x / y;
}
inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline double rsqrt(double x) {
  return 1.0 / std::sqrt(x);
}
inline float __frsqrt_rn(float x) {
  return 1.0f / std::sqrt(x);
}
inline float __fsqrt_rn(float x) {
  return std::sqrt(x);
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fmaf_rn(float x, float y, float z) {
  return std::fma(x, y, z);
}
inline double __fma_rn(double x, double y, double z) {
  return std::fma(x, y, z);
}
inline float __fadd_rn(float x, float y) {
  return x + y;
}
inline float __fsub_rn(float x, float y) {
  return x - y;
}
inline float __fmul_rn(float x, float y) {
  return x * y;
}
inline float __fdiv_rn(float x, float y) {
  return x / y;
}
inline double __dadd_rn(double x, double y) {
  return x + y;
}
inline double __dmul_rn(double x, double y) {
  return x * y;
}
inline float __saturatef(float x) {
  return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f);
}

namespace preimage::sim::detail {
// Float to integer as the hardware does it: saturating, NaN -> 0.
template <class I, class F>
inline I saturating_cast(F rounded) {
  if (std::isnan(rounded)) return 0;
  if (rounded <= static_cast<F>(std::numeric_limits<I>::min()))
    return std::numeric_limits<I>::min();
  if (rounded >= static_cast<F>(std::numeric_limits<I>::max()))
    return std::numeric_limits<I>::max();
  return static_cast<I>(rounded);
}
}  // namespace preimage::sim::detail

inline int __float2int_rn(float x) {
  return preimage::sim::detail::saturating_cast<int>(std::nearbyint(x));
}
inline int __float2int_rz(float x) {
  return preimage::sim::detail::saturating_cast<int>(std::trunc(x));
}
inline int __float2int_rd(float x) {
  return preimage::sim::detail::saturating_cast<int>(std::floor(x));
}
inline int __float2int_ru(float x) {
  return preimage::sim::detail::saturating_cast<int>(std::ceil(x));
}
inline unsigned __float2uint_rn(float x) {
  return preimage::sim::detail::saturating_cast<unsigned>(std::nearbyint(x));
}
inline unsigned __float2uint_rz(float x) {
  return preimage::sim::detail::saturating_cast<unsigned>(std::trunc(x));
}
inline long long __float2ll_rn(float x) {
  return preimage::sim::detail::saturating_cast<long long>(std::nearbyint(x));
}
inline int __double2int_rn(double x) {
  return preimage::sim::detail::saturating_cast<int>(std::nearbyint(x));
}
inline float __int2float_rn(int x) {
  return static_cast<float>(x);
}
inline float __uint2float_rn(unsigned x) {
  return static_cast<float>(x);
}
inline float __ll2float_rn(long long x) {
  return static_cast<float>(x);
}
inline float __double2float_rn(double x) {
  return static_cast<float>(x);
}

inline int __float_as_int(float x) {
  return std::bit_cast<int>(x);
}
inline float __int_as_float(int x) {
  return std::bit_cast<float>(x);
}
inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}
inline long long __double_as_longlong(double x) {
  return std::bit_cast<long long>(x);
}
inline double __longlong_as_double(long long x) {
  return std::bit_cast<double>(x);
}

inline int __popc(unsigned x) {
  return std::popcount(x);
}
inline int __popcll(unsigned long long x) {
  return std::popcount(x);
}
inline int __clz(int x) {
  return std::countl_zero(static_cast<unsigned>(x));
}
inline int __clzll(long long x) {
  return std::countl_zero(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __ffsll(long long x) {
  return __builtin_ffsll(x);
}
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline int __mul24(int x, int y) {
  // Signed 24-bit operands: sign-extend the low 24 bits.
  auto s24 = [](int v) { return static_cast<int>(static_cast<unsigned>(v) << 8) >> 8; };
  return static_cast<int>(static_cast<long long>(s24(x)) * s24(y));
}
inline unsigned __umul24(unsigned x, unsigned y) {
  return (x & 0xFFFFFFu) * (y & 0xFFFFFFu);
}
inline int __mulhi(int x, int y) {
  return static_cast<int>((static_cast<long long>(x) * y) >> 32);
}
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
namespace preimage::sim::detail {
__extension__ using Int128 = __int128;
__extension__ using UInt128 = unsigned __int128;
}  // namespace preimage::sim::detail
inline long long __mul64hi(long long x, long long y) {
  return static_cast<long long>((static_cast<preimage::sim::detail::Int128>(x) * y) >> 64);
}
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
  return static_cast<unsigned long long>((static_cast<preimage::sim::detail::UInt128>(x) * y) >>
                                         64);
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_lc(unsigned lo, unsigned hi, unsigned shift) {
  unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << std::min(shift, 32u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31u));
}
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned shift) {
  unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> std::min(shift, 32u));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    unsigned sel = (s >> (4 * i)) & 7u;
    r |= static_cast<unsigned>((v >> (8 * sel)) & 0xFFu) << (8 * i);
  }
  return r;
}

// min/max in the global namespace with the overload set of CUDA's math_functions.h.
#define PREIMAGE_SIM_MINMAX(A, B, R)                                                      \
  inline R min(A a, B b) {                                                                \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); \
  }                                                                                       \
  inline R max(A a, B b) {                                                                \
    return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(b) : static_cast<R>(a); \
  }
PREIMAGE_SIM_MINMAX(int, int, int)
PREIMAGE_SIM_MINMAX(unsigned, unsigned, unsigned)
PREIMAGE_SIM_MINMAX(int, unsigned, unsigned)
PREIMAGE_SIM_MINMAX(unsigned, int, unsigned)
PREIMAGE_SIM_MINMAX(long, long, long)
PREIMAGE_SIM_MINMAX(unsigned long, unsigned long, unsigned long)
PREIMAGE_SIM_MINMAX(long, unsigned long, unsigned long)
PREIMAGE_SIM_MINMAX(unsigned long, long, unsigned long)
PREIMAGE_SIM_MINMAX(long long, long long, long long)
PREIMAGE_SIM_MINMAX(unsigned long long, unsigned long long, unsigned long long)
PREIMAGE_SIM_MINMAX(long long, unsigned long long, unsigned long long)
PREIMAGE_SIM_MINMAX(unsigned long long, long long, unsigned long long)
#undef PREIMAGE_SIM_MINMAX
// Floating point follows fminf/fmaxf (a NaN operand yields the other one).
inline float min(float a, float b) {
  return std::fmin(a, b);
}
inline float max(float a, float b) {
  return std::fmax(a, b);
}
inline double min(double a, double b) {
  return std::fmin(a, b);
}
inline double max(double a, double b) {
  return std::fmax(a, b);
}
inline double min(float a, double b) {
  return std::fmin(static_cast<double>(a), b);
}
inline double max(float a, double b) {
  return std::fmax(static_cast<double>(a), b);
}
inline double min(double a, float b) {
  return std::fmin(a, static_cast<double>(b));
}
inline double max(double a, float b) {
  return std::fmax(a, static_cast<double>(b));
}

// ---------------------------------------------------------------------------------------------
// Runtime API (kernels/sim/cuda_sim.cpp)
// ---------------------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** dev_ptr, size_t size);
cudaError_t cudaMallocManaged(void** dev_ptr, size_t size, unsigned flags = 1);
cudaError_t cudaFree(void* dev_ptr);
cudaError_t cudaMallocHost(void** ptr, size_t size);
cudaError_t cudaFreeHost(void* ptr);
template <class T>
inline cudaError_t cudaMalloc(T** dev_ptr, size_t size) {
  return cudaMalloc(reinterpret_cast<void**>(dev_ptr), size);
}
template <class T>
inline cudaError_t cudaMallocManaged(T** dev_ptr, size_t size, unsigned flags = 1) {
  return cudaMallocManaged(reinterpret_cast<void**>(dev_ptr), size, flags);
}
template <class T>
inline cudaError_t cudaMallocHost(T** ptr, size_t size) {
  return cudaMallocHost(reinterpret_cast<void**>(ptr), size);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dev_ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void* dev_ptr, int value, size_t count, cudaStream_t stream = nullptr);

namespace preimage::sim::detail {
// Checks offset + count against the symbol's size, copies and counts the transfer.
cudaError_t symbol_copy(void* symbol, size_t symbol_size, size_t offset, void* other, size_t count,
                        cudaMemcpyKind kind, bool to_symbol);
}  // namespace preimage::sim::detail
// __constant__ and __device__ variables are ordinary globals here.
template <class T>
inline cudaError_t cudaMemcpyToSymbol(const T& symbol, const void* src, size_t count,
                                      size_t offset = 0,
                                      cudaMemcpyKind kind = cudaMemcpyHostToDevice) {
  return preimage::sim::detail::symbol_copy(const_cast<T*>(&symbol), sizeof(T), offset,
                                            const_cast<void*>(src), count, kind, true);
}
template <class T>
inline cudaError_t cudaMemcpyFromSymbol(void* dst, const T& symbol, size_t count, size_t offset = 0,
                                        cudaMemcpyKind kind = cudaMemcpyDeviceToHost) {
  return preimage::sim::detail::symbol_copy(const_cast<T*>(&symbol), sizeof(T), offset, dst, count,
                                            kind, false);
}

cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);

cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);
const char* cudaGetErrorName(cudaError_t error);

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <class F>
inline cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
