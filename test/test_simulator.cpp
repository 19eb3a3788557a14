// test_simulator.cpp - tests of the host CUDA simulator (kernels/sim/cuda_sim.h) through
// kernels/cuda_compat.h, with ordinary CUDA-style kernels written in this file: shared-memory
// tiling, warp shuffles and votes, atomics across parallel workers, the three fiber schedules
// (a missing __syncthreads must give wrong results in reverse order), strict-mode detection of
// divergent barriers, deadlocks and bad warp masks, launch validation, dynamic shared memory
// poisoning, transfer statistics, 3-D blocks. Built with -DPREIMAGE_CUDA_SIM.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda_compat.h"

namespace {

namespace sim = preimage::sim;
using preimage::cuda::launch;

// Restores the simulator settings a test changes.
struct SimSettingsGuard {
  sim::Schedule schedule = sim::schedule();
  uint64_t seed = sim::schedule_seed();
  bool strict = sim::strict();
  int threads = sim::worker_threads();
  ~SimSettingsGuard() {
    sim::set_schedule(schedule, seed);
    sim::set_strict(strict);
    sim::set_worker_threads(threads);
  }
};

template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(&ptr_, n * sizeof(T))); }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return ptr_; }
  void upload(const std::vector<T>& host) {
    CUDA_CHECK(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    CUDA_CHECK(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------
template <int kTile>
__global__ void sgemm_tiled(const float* __restrict__ a, const float* __restrict__ b,
                            float* __restrict__ c, int m, int n, int k) {
  __shared__ float a_tile[kTile][kTile];
  __shared__ float b_tile[kTile][kTile];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kTile + ty;
  const int col = blockIdx.x * kTile + tx;
  float acc = 0.0f;
  for (int t = 0; t < k; t += kTile) {
    a_tile[ty][tx] = (row < m && t + tx < k) ? a[row * k + t + tx] : 0.0f;
    b_tile[ty][tx] = (t + ty < k && col < n) ? b[(t + ty) * n + col] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kTile; ++i) acc += a_tile[ty][i] * b_tile[i][tx];
    __syncthreads();
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

__device__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Grid-stride loads, warp shuffle reduction, warp partials through shared memory.
__global__ void block_sum(const float* in, float* partial, int n) {
  __shared__ float warp_partials[32];
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    v += in[i];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_partials[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? warp_partials[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) partial[blockIdx.x] = v;
  }
}

// out[0..]: butterfly sum over 32 lanes, over groups of 8, and xor 16 with width 16.
__global__ void xor_kernel(int* full, int* groups8, int* cross16) {
  const int lane = threadIdx.x;
  int v = lane;
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  full[lane] = v;
  int g = lane;
  for (int m = 4; m > 0; m >>= 1) g += __shfl_xor_sync(0xffffffffu, g, m, 8);
  groups8[lane] = g;
  cross16[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 16, 16);
}

// Inclusive warp scans with __shfl_up_sync, width 32 and width 8; plus __shfl_sync broadcasts.
__global__ void scan_kernel(const int* in, int* scan32, int* scan8, int* bcast, int* down8) {
  const int lane = threadIdx.x & 31;
  int v = in[threadIdx.x];
  for (int d = 1; d < 32; d <<= 1) {
    int t = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += t;
  }
  scan32[threadIdx.x] = v;
  int w = in[threadIdx.x];
  for (int d = 1; d < 8; d <<= 1) {
    int t = __shfl_up_sync(0xffffffffu, w, d, 8);
    if ((lane & 7) >= d) w += t;
  }
  scan8[threadIdx.x] = w;
  // srcLane 33 is lane 1 (mod width); with width 8, srcLane 9 is lane 1 of each group.
  bcast[threadIdx.x] =
      __shfl_sync(0xffffffffu, lane, 33) * 100 + __shfl_sync(0xffffffffu, lane, 9, 8);
  down8[threadIdx.x] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
}

__global__ void vote_kernel(unsigned* ballots, int* all_any, unsigned* partial) {
  const int lane = threadIdx.x & 31;
  ballots[threadIdx.x] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  all_any[threadIdx.x] = __all_sync(0xffffffffu, lane < 32) * 10 +
                         __any_sync(0xffffffffu, lane == 31) * 2 +
                         __all_sync(0xffffffffu, lane < 31);
  // Only the lower half-warp takes part, all with the same mask.
  if (lane < 16) partial[threadIdx.x] = __ballot_sync(0x0000ffffu, lane & 1);
}

__global__ void atomics_kernel(int* count, float* fsum, unsigned long long* big, int* imax,
                               float* fmax, unsigned* bits) {
  const int gid = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(count, 1);
  atomicAdd(fsum, 1.0f);
  atomicAdd(big, 3ull);
  atomicMax(imax, gid);
  atomicMax(fmax, static_cast<float>(gid) * 0.5f);
  atomicOr(bits, 1u << (gid % 32));
}

__global__ void cas_kernel(int* lock_word, int* winners) {
  if (atomicCAS(lock_word, 0, static_cast<int>(threadIdx.x) + 1) == 0) atomicAdd(winners, 1);
}

// Thread t reads the element written by thread t-1 without a barrier in between: right only if
// t-1 ran first (forward order).
__global__ void shift_missing_sync(const float* in, float* out) {
  __shared__ float tile[128];
  const int t = threadIdx.x;
  tile[t] = in[blockIdx.x * 128 + t];
  // The __syncthreads() belongs here.
  out[blockIdx.x * 128 + t] = tile[t > 0 ? t - 1 : 0];
}

__global__ void shift_with_sync(const float* in, float* out) {
  __shared__ float tile[128];
  const int t = threadIdx.x;
  tile[t] = in[blockIdx.x * 128 + t];
  __syncthreads();
  out[blockIdx.x * 128 + t] = tile[t > 0 ? t - 1 : 0];
}

__global__ void divergent_barrier(int* out) {
  if (threadIdx.x < 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 0) {
    __syncthreads();
  } else {
    __syncwarp();
  }
  out[threadIdx.x] = 1;
}

__global__ void bad_mask_kernel(int* out) {
  // Lane 20 names only the lower half-warp, which excludes itself.
  if (threadIdx.x == 20) out[0] = __ballot_sync(0x0000ffffu, 1);
}

__global__ void throwing_kernel(int* out) {
  if (threadIdx.x == 5) throw std::runtime_error("boom");
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void barrier_votes(int* out) {
  const int t = threadIdx.x;
  out[0 * 64 + t] = __syncthreads_count(t % 4 == 0);
  out[1 * 64 + t] = __syncthreads_and(t < 64);
  out[2 * 64 + t] = __syncthreads_or(t == 63);
  out[3 * 64 + t] = __syncthreads_and(t < 63);
}

__global__ void noop_kernel() {}

// One output row per block: two blocks writing the same address race (ThreadSanitizer saw it
// between the simulator's worker threads), even with equal values.
__global__ void read_dynamic_shared(float* out_f, int* out_i, int n) {
  PREIMAGE_DYNAMIC_SHARED(float, smem);
  const int t = threadIdx.x;
  if (t < n) {
    out_f[blockIdx.x * n + t] = smem[t];
    out_i[blockIdx.x * n + t] = reinterpret_cast<int*>(smem)[t];
  }
}

__global__ void dynamic_shared_reverse(const int* in, int* out, int n) {
  PREIMAGE_DYNAMIC_SHARED(int, smem);
  const int t = threadIdx.x;
  smem[t] = in[t];
  __syncthreads();
  out[t] = smem[n - 1 - t];
}

// Every thread of an (8,4,2) block: linear id, lane, and the linear id fetched from the next lane.
__global__ void block3d_kernel(int* linear_out, int* lane_out, int* next_out, unsigned* zmask) {
  const int linear = threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y;
  const int lane = linear % 32;
  linear_out[linear] = linear;
  lane_out[linear] = lane;
  next_out[linear] = __shfl_sync(0xffffffffu, linear, (lane + 1) % 32);
  zmask[linear] = __ballot_sync(0xffffffffu, threadIdx.y == 1);
}

struct Params {
  int scale;
  float offset;
};

// Parameters are per-thread copies: changing one in a thread must not leak to other threads.
__global__ void by_value_kernel(Params p, int n, int* out) {
  n += static_cast<int>(threadIdx.x);
  p.scale *= 2;
  out[threadIdx.x] = n * p.scale + static_cast<int>(p.offset);
}

__constant__ float kConstantTable[4];

__global__ void constant_kernel(float* out) {
  out[threadIdx.x] = kConstantTable[threadIdx.x] * 2.0f;
}

std::vector<float> cpu_gemm(const std::vector<float>& a, const std::vector<float>& b, int m, int n,
                            int k) {
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p) acc += static_cast<double>(a[i * k + p]) * b[p * n + j];
      c[i * n + j] = static_cast<float>(acc);
    }
  return c;
}

std::string launch_error(void (*fn)()) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

}  // namespace

TEST_CASE("tiled SGEMM on odd sizes matches a CPU loop in every schedule", "[simulator]") {
  SimSettingsGuard guard;
  const int m = 67, n = 93, k = 45;
  std::vector<float> a(static_cast<size_t>(m) * k), b(static_cast<size_t>(k) * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 37) % 17) * 0.25f - 2.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 11) % 13) * 0.5f - 3.0f;
  const std::vector<float> expected = cpu_gemm(a, b, m, n, k);
  DeviceBuffer<float> da(a), db(b), dc(static_cast<size_t>(m) * n);

  constexpr int kTile = 16;
  const dim3 block(kTile, kTile);
  const dim3 grid((n + kTile - 1) / kTile, (m + kTile - 1) / kTile);
  for (auto schedule : {sim::Schedule::Forward, sim::Schedule::Reverse, sim::Schedule::Random}) {
    for (int threads : {1, 2}) {
      sim::set_schedule(schedule, 1234);
      sim::set_worker_threads(threads);
      CUDA_CHECK(cudaMemset(dc.get(), 0, static_cast<size_t>(m) * n * sizeof(float)));
      launch(sgemm_tiled<kTile>, grid, block, 0, nullptr, da.get(), db.get(), dc.get(), m, n, k);
      const std::vector<float> c = dc.download();
      int wrong = 0;
      for (size_t i = 0; i < c.size(); ++i)
        wrong += std::fabs(c[i] - expected[i]) > 1e-3f * (1.0f + std::fabs(expected[i]));
      INFO("schedule " << static_cast<int>(schedule) << ", workers " << threads);
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("block shuffle reduction over 65537 elements", "[simulator]") {
  const int n = 65537;
  std::vector<float> in(n);
  double expected = 0.0;
  for (int i = 0; i < n; ++i) {
    in[i] = static_cast<float>(i % 7 - 3);
    expected += in[i];
  }
  const int blocks = 64, threads = 256;
  DeviceBuffer<float> din(in), dpartial(blocks);
  launch(block_sum, blocks, threads, 0, nullptr, din.get(), dpartial.get(), n);
  const std::vector<float> partial = dpartial.download();
  const double total = std::accumulate(partial.begin(), partial.end(), 0.0);
  CHECK(total == expected);
}

TEST_CASE("__shfl_xor_sync butterflies follow the width rules", "[simulator]") {
  DeviceBuffer<int> full(32), groups8(32), cross16(32);
  launch(xor_kernel, 1, 32, 0, nullptr, full.get(), groups8.get(), cross16.get());
  const auto f = full.download(), g = groups8.download(), x = cross16.download();
  for (int lane = 0; lane < 32; ++lane) {
    INFO("lane " << lane);
    CHECK(f[lane] == 496);
    const int base = lane / 8 * 8;
    CHECK(g[lane] == 8 * base + 28);
    // Width 16: lanes 0-15 would read a later group and keep their own value; lanes 16-31 may
    // read the earlier group.
    CHECK(x[lane] == (lane < 16 ? lane * 10 : (lane - 16) * 10));
  }
}

TEST_CASE("__shfl_up_sync scans, __shfl_sync and __shfl_down_sync with widths", "[simulator]") {
  const int threads = 64;
  std::vector<int> in(threads);
  for (int i = 0; i < threads; ++i) in[i] = (i * 5) % 9 + 1;
  DeviceBuffer<int> din(in), s32(threads), s8(threads), bcast(threads), down8(threads);
  launch(scan_kernel, 1, threads, 0, nullptr, din.get(), s32.get(), s8.get(), bcast.get(),
         down8.get());
  const auto a = s32.download(), b = s8.download(), c = bcast.download(), d = down8.download();
  for (int i = 0; i < threads; ++i) {
    INFO("thread " << i);
    const int lane = i % 32;
    CHECK(a[i] == std::accumulate(in.begin() + (i - lane), in.begin() + i + 1, 0));
    CHECK(b[i] == std::accumulate(in.begin() + (i - i % 8), in.begin() + i + 1, 0));
    CHECK(c[i] == 1 * 100 + (lane / 8 * 8 + 1));
    CHECK(d[i] == ((lane % 8) + 3 < 8 ? lane + 3 : lane));
  }
}

TEST_CASE("__ballot_sync, __all_sync, __any_sync and a partial mask", "[simulator]") {
  DeviceBuffer<unsigned> ballots(64), partial(64);
  DeviceBuffer<int> all_any(64);
  CUDA_CHECK(cudaMemset(partial.get(), 0, 64 * sizeof(unsigned)));
  launch(vote_kernel, 1, 64, 0, nullptr, ballots.get(), all_any.get(), partial.get());
  unsigned expected = 0;
  for (int lane = 0; lane < 32; lane += 3) expected |= 1u << lane;
  const auto b = ballots.download(), p = partial.download();
  const auto v = all_any.download();
  for (int i = 0; i < 64; ++i) {
    INFO("thread " << i);
    CHECK(b[i] == expected);
    CHECK(v[i] == 12);
    CHECK(p[i] == (i % 32 < 16 ? 0xAAAAu : 0u));
  }
}

TEST_CASE("atomics across many blocks on two worker threads", "[simulator]") {
  SimSettingsGuard guard;
  sim::set_worker_threads(2);
  const int blocks = 120, threads = 128, total = blocks * threads;
  DeviceBuffer<int> count(1), imax(1);
  DeviceBuffer<float> fsum(1), fmax(1);
  DeviceBuffer<unsigned long long> big(1);
  DeviceBuffer<unsigned> bits(1);
  CUDA_CHECK(cudaMemset(count.get(), 0, sizeof(int)));
  CUDA_CHECK(cudaMemset(imax.get(), 0, sizeof(int)));
  CUDA_CHECK(cudaMemset(fsum.get(), 0, sizeof(float)));
  CUDA_CHECK(cudaMemset(fmax.get(), 0, sizeof(float)));
  CUDA_CHECK(cudaMemset(big.get(), 0, sizeof(unsigned long long)));
  CUDA_CHECK(cudaMemset(bits.get(), 0, sizeof(unsigned)));
  for (int rep = 0; rep < 3; ++rep) {
    launch(atomics_kernel, blocks, threads, 0, nullptr, count.get(), fsum.get(), big.get(),
           imax.get(), fmax.get(), bits.get());
  }
  CHECK(count.download()[0] == 3 * total);
  CHECK(fsum.download()[0] == static_cast<float>(3 * total));
  CHECK(big.download()[0] == 9ull * total);
  CHECK(imax.download()[0] == total - 1);
  CHECK(fmax.download()[0] == static_cast<float>(total - 1) * 0.5f);
  CHECK(bits.download()[0] == 0xffffffffu);

  DeviceBuffer<int> lock_word(1), winners(1);
  CUDA_CHECK(cudaMemset(lock_word.get(), 0, sizeof(int)));
  CUDA_CHECK(cudaMemset(winners.get(), 0, sizeof(int)));
  launch(cas_kernel, 50, 64, 0, nullptr, lock_word.get(), winners.get());
  CHECK(winners.download()[0] == 1);
  CHECK(lock_word.download()[0] >= 1);
}

TEST_CASE("schedules matter: a missing __syncthreads is caught in reverse order", "[simulator]") {
  SimSettingsGuard guard;
  sim::set_worker_threads(1);
  const int blocks = 4, threads = 128;
  std::vector<float> in(blocks * threads);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) + 1.0f;
  std::vector<float> expected(in.size());
  for (int blk = 0; blk < blocks; ++blk)
    for (int t = 0; t < threads; ++t)
      expected[blk * threads + t] = in[blk * threads + (t > 0 ? t - 1 : 0)];
  DeviceBuffer<float> din(in), dout(in.size());

  auto wrong_after = [&](void (*kernel)(const float*, float*), sim::Schedule schedule) {
    sim::set_schedule(schedule, 7);
    CUDA_CHECK(cudaMemset(dout.get(), 0, in.size() * sizeof(float)));
    launch(kernel, blocks, threads, 0, nullptr, din.get(), dout.get());
    const auto out = dout.download();
    int wrong = 0;
    for (size_t i = 0; i < out.size(); ++i) wrong += out[i] != expected[i];
    return wrong;
  };
  CHECK(wrong_after(shift_missing_sync, sim::Schedule::Forward) == 0);
  CHECK(wrong_after(shift_missing_sync, sim::Schedule::Reverse) > blocks * threads / 2);
  CHECK(wrong_after(shift_missing_sync, sim::Schedule::Random) > 0);
  for (auto schedule : {sim::Schedule::Forward, sim::Schedule::Reverse, sim::Schedule::Random})
    CHECK(wrong_after(shift_with_sync, schedule) == 0);
}

TEST_CASE("strict mode reports a divergent __syncthreads", "[simulator]") {
  SimSettingsGuard guard;
  DeviceBuffer<int> out(32);
  CUDA_CHECK(cudaMemset(out.get(), 0, 32 * sizeof(int)));
  for (auto schedule : {sim::Schedule::Forward, sim::Schedule::Reverse}) {
    sim::set_schedule(schedule);
    sim::set_strict(true);
    std::string message;
    try {
      launch(divergent_barrier, 1, 32, 0, nullptr, out.get());
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
    INFO(message);
    CHECK(message.find("unspecified launch failure") != std::string::npos);
    CHECK(message.find("divergent __syncthreads") != std::string::npos);
    CHECK(message.find("threadIdx.x 16-31 wait at __syncthreads but threadIdx.x 0-15 have "
                       "exited") != std::string::npos);
    CHECK(message.find("divergent_barrier") != std::string::npos);
    CHECK(message.find("block (0,0,0)") != std::string::npos);
    CHECK(cudaGetLastError() == cudaSuccess);  // launch() consumed it; errors are not sticky
  }
  // Without strict mode the barrier releases once every live thread has arrived.
  sim::set_strict(false);
  launch(divergent_barrier, 1, 32, 0, nullptr, out.get());
  const auto o = out.download();
  for (int t = 0; t < 32; ++t) CHECK(o[t] == (t < 16 ? 0 : 1));
}

TEST_CASE("deadlocks, bad warp masks and kernel exceptions fail the launch", "[simulator]") {
  SimSettingsGuard guard;
  sim::set_strict(true);
  static DeviceBuffer<int>* out = nullptr;
  DeviceBuffer<int> buffer(64);
  out = &buffer;

  std::string deadlock =
      launch_error([] { launch(deadlock_kernel, 1, 32, 0, nullptr, out->get()); });
  INFO(deadlock);
  CHECK(deadlock.find("deadlock") != std::string::npos);
  CHECK(deadlock.find("__syncwarp") != std::string::npos);

  std::string mask = launch_error([] { launch(bad_mask_kernel, 1, 32, 0, nullptr, out->get()); });
  INFO(mask);
  CHECK(mask.find("excludes the calling lane") != std::string::npos);

  std::string thrown = launch_error([] { launch(throwing_kernel, 2, 32, 0, nullptr, out->get()); });
  INFO(thrown);
  CHECK(thrown.find("boom") != std::string::npos);

  // The simulator is usable afterwards.
  launch(noop_kernel, 3, 64, 0, nullptr);
  out = nullptr;
}

TEST_CASE("__syncthreads_count/and/or", "[simulator]") {
  DeviceBuffer<int> out(4 * 64);
  launch(barrier_votes, 1, 64, 0, nullptr, out.get());
  const auto o = out.download();
  for (int t = 0; t < 64; ++t) {
    CHECK(o[0 * 64 + t] == 16);
    CHECK(o[1 * 64 + t] == 1);
    CHECK(o[2 * 64 + t] == 1);
    CHECK(o[3 * 64 + t] == 0);
  }
}

TEST_CASE("invalid launch configurations throw", "[simulator]") {
  auto message_of = [](dim3 grid, dim3 block, size_t smem) {
    try {
      launch(noop_kernel, grid, block, smem, nullptr);
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string too_many = message_of(1, 2048, 0);
  INFO(too_many);
  CHECK(too_many.find("invalid configuration argument") != std::string::npos);
  CHECK(too_many.find("2048") != std::string::npos);
  CHECK(message_of(1, dim3(1, 1, 65), 0).find("invalid configuration") != std::string::npos);
  CHECK(message_of(dim3(1, 65536), 32, 0).find("invalid configuration") != std::string::npos);
  CHECK(message_of(dim3(0), 32, 0).find("invalid configuration") != std::string::npos);
  CHECK(message_of(1, 32, 228 * 1024).find("invalid configuration") != std::string::npos);
  CHECK(message_of(1, dim3(32, 32), 227 * 1024).empty());
}

TEST_CASE("dynamic shared memory is poisoned before each block", "[simulator]") {
  const int n = 96;
  DeviceBuffer<float> out_f(2 * n);
  DeviceBuffer<int> out_i(2 * n);
  launch(read_dynamic_shared, 2, n, n * sizeof(float), nullptr, out_f.get(), out_i.get(), n);
  const auto f = out_f.download();
  const auto i = out_i.download();
  for (int t = 0; t < 2 * n; ++t) {  // both blocks
    CHECK(std::isnan(f[t]));
    CHECK(i[t] == -1);
  }
  // Initialized dynamic shared memory works normally.
  std::vector<int> in(n);
  std::iota(in.begin(), in.end(), 0);
  DeviceBuffer<int> din(in), dout(n);
  launch(dynamic_shared_reverse, 1, n, n * sizeof(int), nullptr, din.get(), dout.get(), n);
  const auto o = dout.download();
  for (int t = 0; t < n; ++t) CHECK(o[t] == n - 1 - t);
}

TEST_CASE("transfer statistics count copies by kind", "[simulator]") {
  std::vector<float> host(1000, 1.0f);
  DeviceBuffer<float> a(1000), b(1000);
  sim::reset_transfer_stats();
  CUDA_CHECK(cudaMemcpy(a.get(), host.data(), 1000 * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpyAsync(b.get(), host.data(), 500 * sizeof(float), cudaMemcpyHostToDevice));
  CUDA_CHECK(cudaMemcpy(host.data(), a.get(), 250 * sizeof(float), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(b.get(), a.get(), 100 * sizeof(float), cudaMemcpyDeviceToDevice));
  CUDA_CHECK(cudaMemcpy(b.get(), a.get(), 10 * sizeof(float), cudaMemcpyDefault));
  launch(noop_kernel, 1, 1, 0, nullptr);
  const sim::TransferStats s = sim::transfer_stats();
  CHECK(s.h2d_calls == 2);
  CHECK(s.h2d_bytes == 1500 * sizeof(float));
  CHECK(s.d2h_calls == 1);
  CHECK(s.d2h_bytes == 250 * sizeof(float));
  CHECK(s.d2d_calls == 2);
  CHECK(s.d2d_bytes == 110 * sizeof(float));
  CHECK(s.launches == 1);
  sim::reset_transfer_stats();
  CHECK(sim::transfer_stats().h2d_calls == 0);

  // Copies into memory that is not a cudaMalloc allocation, or past its end, are rejected.
  std::vector<float> other(10);
  CHECK(cudaMemcpy(other.data(), host.data(), 40, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(host.data(), a.get(), 1001 * sizeof(float), cudaMemcpyDeviceToHost) ==
        cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(sim::transfer_stats().h2d_calls == 0);
}

TEST_CASE("3-D blocks map threads to lanes x-fastest", "[simulator]") {
  const dim3 block(8, 4, 2);
  const int n = 64;
  DeviceBuffer<int> linear(n), lane(n), next(n);
  DeviceBuffer<unsigned> zmask(n);
  launch(block3d_kernel, 1, block, 0, nullptr, linear.get(), lane.get(), next.get(), zmask.get());
  const auto l = linear.download(), ln = lane.download(), nx = next.download();
  const auto zm = zmask.download();
  for (int i = 0; i < n; ++i) {
    INFO("linear " << i);
    CHECK(l[i] == i);
    CHECK(ln[i] == i % 32);
    CHECK(nx[i] == i / 32 * 32 + (i % 32 + 1) % 32);
    CHECK(zm[i] == 0x0000FF00u);  // y == 1 is linear 8..15 and 40..47: lanes 8..15 of each warp
  }
}

TEST_CASE("kernel parameters are per-thread copies; __constant__ via cudaMemcpyToSymbol",
          "[simulator]") {
  DeviceBuffer<int> out(8);
  launch(by_value_kernel, 1, 8, 0, nullptr, Params{3, 1.0f}, 10, out.get());
  const auto o = out.download();
  for (int t = 0; t < 8; ++t) CHECK(o[t] == (10 + t) * 6 + 1);

  const float table[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  CUDA_CHECK(cudaMemcpyToSymbol(kConstantTable, table, sizeof(table)));
  DeviceBuffer<float> fout(4);
  launch(constant_kernel, 1, 4, 0, nullptr, fout.get());
  const auto f = fout.download();
  for (int t = 0; t < 4; ++t) CHECK(f[t] == table[t] * 2.0f);
}

TEST_CASE("runtime API basics and CUDA_CHECK messages", "[simulator]") {
  int count = 0;
  CHECK(cudaGetDeviceCount(&count) == cudaSuccess);
  CHECK(count == 1);
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
  CHECK(prop.warpSize == 32);
  size_t free_bytes = 0, total_bytes = 0;
  CHECK(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  CHECK(free_bytes <= total_bytes);
  CHECK(cudaFuncSetAttribute(read_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             100 * 1024) == cudaSuccess);

  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaEventRecord(start));
  launch(noop_kernel, 4, 32, 0, nullptr);
  CUDA_CHECK(cudaEventRecord(stop));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = -1.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(ms >= 0.0f);
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));

  std::string message;
  int not_device = 0;
  try {
    CUDA_CHECK(cudaFree(&not_device));
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("test_simulator.cpp:") != std::string::npos);
  CHECK(message.find("cudaFree(&not_device): invalid argument") != std::string::npos);
  CHECK(std::string(cudaGetErrorName(cudaErrorLaunchFailure)) == "cudaErrorLaunchFailure");
  cudaGetLastError();
}
