// cuda_sim.cpp - the CUDA execution-model simulator behind kernels/sim/cuda_sim.h.
//
// Pieces, in file order:
// - settings (schedule, strict mode, worker threads; env PREIMAGE_SIM_*), per-host-thread last
//   error, transfer statistics, the registry of simulated device allocations;
// - the runtime API (memory, copies, streams, events, device queries);
// - fibers: an x86-64 assembly context switch (callee-saved registers + rsp + MXCSR + x87
//   control word, no signal-mask syscall as in swapcontext), 256 KiB mmap'ed stacks with a guard
//   page, pooled per worker OS thread and reused across blocks and launches; AddressSanitizer
//   is told about every switch;
// - the block scheduler: a ready queue of fibers; __syncthreads and warp collectives are
//   barriers whose last arriving thread releases the waiters in schedule order (forward, reverse
//   or seeded random); strict-mode checks, deadlock detection, and cancellation of a failed
//   block (each suspended fiber is resumed with a cancel flag and unwinds its stack by an
//   internal exception caught in the fiber entry, so no exception ever crosses a fiber stack);
// - the launch engine: validation as in CUDA, a persistent pool of helper threads that together
//   with the launching thread pull blocks off a shared counter (block order follows the
//   schedule too), synchronous completion, kernel names from the ELF symbol table for messages.
#include "cuda_sim.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA simulator's context switch is written for x86-64"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PREIMAGE_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PREIMAGE_SIM_ASAN 1
#endif
#endif
#if defined(PREIMAGE_SIM_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace preimage::sim {
namespace {

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------
int default_worker_threads() {
  if (const char* env = std::getenv("PREIMAGE_SIM_THREADS"); env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end && *end == '\0' && n >= 1 && n <= 256) return static_cast<int>(n);
    std::fprintf(stderr, "cuda_sim: ignoring PREIMAGE_SIM_THREADS=%s (want 1..256)\n", env);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::clamp(hw, 1u, 2u));
}

Schedule env_schedule() {
  const char* env = std::getenv("PREIMAGE_SIM_SCHEDULE");
  if (!env || !*env) return Schedule::Forward;
  std::string v(env);
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (v == "forward") return Schedule::Forward;
  if (v == "reverse") return Schedule::Reverse;
  if (v == "random") return Schedule::Random;
  std::fprintf(stderr, "cuda_sim: ignoring PREIMAGE_SIM_SCHEDULE=%s (forward|reverse|random)\n",
               env);
  return Schedule::Forward;
}

bool env_strict() {
  const char* env = std::getenv("PREIMAGE_SIM_STRICT");
  if (!env || !*env) return true;
  return !(std::strcmp(env, "0") == 0 || std::strcmp(env, "false") == 0 ||
           std::strcmp(env, "off") == 0);
}

uint64_t env_seed() {
  const char* env = std::getenv("PREIMAGE_SIM_SEED");
  return env && *env ? std::strtoull(env, nullptr, 0) : 0;
}

struct Settings {
  std::atomic<int> schedule{static_cast<int>(env_schedule())};
  std::atomic<uint64_t> seed{env_seed()};
  std::atomic<bool> strict{env_strict()};
  std::atomic<int> threads{default_worker_threads()};
  // Launches since the last set_schedule(): part of each block's random seed, so repeated
  // launches see different orders yet a rerun of the program sees the same ones.
  std::atomic<uint64_t> launch_seq{0};
};

Settings& settings() {
  static Settings s;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Errors (per host thread, like the runtime's last error) and statistics
// ---------------------------------------------------------------------------------------------
thread_local cudaError_t tls_last_error = cudaSuccess;
thread_local std::string tls_last_message;

cudaError_t record_error(cudaError_t err, std::string message) {
  tls_last_error = err;
  tls_last_message = std::move(message);
  return err;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out(static_cast<size_t>(n > 0 ? n : 0), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

struct AtomicStats {
  std::atomic<uint64_t> h2d_calls{0}, h2d_bytes{0}, d2h_calls{0}, d2h_bytes{0}, d2d_calls{0},
      d2d_bytes{0}, launches{0};
};
AtomicStats g_stats;

void count_copy(cudaMemcpyKind kind, size_t bytes) {
  switch (kind) {
    case cudaMemcpyHostToDevice:
      g_stats.h2d_calls.fetch_add(1, std::memory_order_relaxed);
      g_stats.h2d_bytes.fetch_add(bytes, std::memory_order_relaxed);
      break;
    case cudaMemcpyDeviceToHost:
      g_stats.d2h_calls.fetch_add(1, std::memory_order_relaxed);
      g_stats.d2h_bytes.fetch_add(bytes, std::memory_order_relaxed);
      break;
    case cudaMemcpyDeviceToDevice:
    case cudaMemcpyDefault:
      g_stats.d2d_calls.fetch_add(1, std::memory_order_relaxed);
      g_stats.d2d_bytes.fetch_add(bytes, std::memory_order_relaxed);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Simulated allocations: lets copies check that "device" pointers really are device memory.
// ---------------------------------------------------------------------------------------------
struct Registry {
  std::mutex mu;
  std::map<uintptr_t, size_t> device;  // cudaMalloc / cudaMallocManaged
  std::map<uintptr_t, size_t> host;    // cudaMallocHost
  size_t device_bytes = 0;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: frees may run during static teardown
  return *r;
}

// True if [p, p + n) lies inside one device allocation.
bool is_device_range(const void* p, size_t n) {
  auto addr = reinterpret_cast<uintptr_t>(p);
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto it = r.device.upper_bound(addr);
  if (it == r.device.begin()) return false;
  --it;
  return addr >= it->first && addr - it->first + n <= std::max<size_t>(it->second, 1);
}

size_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page)
                               : size_t{16} << 30;
}

const char* kind_name(cudaMemcpyKind kind) {
  switch (kind) {
    case cudaMemcpyHostToHost:
      return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice:
      return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost:
      return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault:
      return "cudaMemcpyDefault";
  }
  return "invalid cudaMemcpyKind";
}

cudaError_t allocate(void** ptr, size_t size, bool device, const char* api) {
  if (!ptr) return record_error(cudaErrorInvalidValue, format("%s: null output pointer", api));
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  // 256-byte aligned like cudaMalloc, but exactly `size` bytes long so AddressSanitizer
  // reports accesses past the end.
  void* p = nullptr;
  if (posix_memalign(&p, 256, size) != 0) {
    return record_error(cudaErrorMemoryAllocation,
                        format("%s(%zu bytes): out of host memory", api, size));
  }
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  (device ? r.device : r.host)[reinterpret_cast<uintptr_t>(p)] = size;
  if (device) r.device_bytes += size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t release(void* p, bool device, const char* api) {
  if (!p) return cudaSuccess;
  Registry& r = registry();
  {
    std::lock_guard lk(r.mu);
    auto& map = device ? r.device : r.host;
    auto it = map.find(reinterpret_cast<uintptr_t>(p));
    if (it == map.end()) {
      return record_error(cudaErrorInvalidValue,
                          format("%s(%p): not a pointer returned by %s", api, p,
                                 device ? "cudaMalloc" : "cudaMallocHost"));
    }
    if (device) r.device_bytes -= it->second;
    map.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}

cudaError_t check_copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                       const char* api) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    return record_error(cudaErrorInvalidMemcpyDirection,
                        format("%s: invalid cudaMemcpyKind %d", api, static_cast<int>(kind)));
  }
  if (count == 0) return cudaSuccess;
  if (!dst || !src) {
    return record_error(cudaErrorInvalidValue, format("%s(%p, %p, %zu, %s): null pointer", api, dst,
                                                      src, count, kind_name(kind)));
  }
  bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_device && !is_device_range(dst, count)) {
    return record_error(cudaErrorInvalidValue,
                        format("%s(%s): destination [%p, +%zu) is not inside one cudaMalloc "
                               "allocation",
                               api, kind_name(kind), dst, count));
  }
  if (src_device && !is_device_range(src, count)) {
    return record_error(cudaErrorInvalidValue,
                        format("%s(%s): source [%p, +%zu) is not inside one cudaMalloc "
                               "allocation",
                               api, kind_name(kind), src, count));
  }
  return cudaSuccess;
}

cudaError_t do_copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                    const char* api) {
  if (cudaError_t err = check_copy(dst, src, count, kind, api); err != cudaSuccess) return err;
  if (count == 0) return cudaSuccess;
  std::memmove(dst, src, count);
  count_copy(kind, count);
  return cudaSuccess;
}

cudaError_t do_memset(void* p, int value, size_t count, const char* api) {
  if (count == 0) return cudaSuccess;
  if (!p || !is_device_range(p, count)) {
    return record_error(
        cudaErrorInvalidValue,
        format("%s: [%p, +%zu) is not inside one cudaMalloc allocation", api, p, count));
  }
  std::memset(p, value, count);
  return cudaSuccess;
}

}  // namespace
}  // namespace preimage::sim

// ---------------------------------------------------------------------------------------------
// Streams and events: work is synchronous, so a stream is only a handle and an event a time.
// ---------------------------------------------------------------------------------------------
struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  std::chrono::steady_clock::time_point time{};
  bool recorded = false;
  unsigned flags = 0;
};

// ---------------------------------------------------------------------------------------------
// Context switch
// ---------------------------------------------------------------------------------------------
extern "C" {
// Saves callee-saved registers, MXCSR and the x87 control word on the current stack, stores
// rsp in *save_sp, loads new_sp and restores the same from there. The FP control registers are
// only reloaded when they differ (ldmxcsr/fldcw cost more than the rest of the switch).
void preimage_sim_switch(void** save_sp, void* new_sp) __attribute__((visibility("hidden")));
// First code a fiber runs: calls r13(r12) and never returns (the outermost frame for unwinders).
void preimage_sim_fiber_trampoline() __attribute__((visibility("hidden")));
}

asm(R"(
  .pushsection .text
  .globl preimage_sim_switch
  .hidden preimage_sim_switch
  .type preimage_sim_switch, @function
  .p2align 4
preimage_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movl (%rsp), %eax
  movzwl 4(%rsp), %ecx
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  cmpl (%rsp), %eax
  jne 1f
  cmpw 4(%rsp), %cx
  je 2f
1:
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
2:
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size preimage_sim_switch, .-preimage_sim_switch

  .globl preimage_sim_fiber_trampoline
  .hidden preimage_sim_fiber_trampoline
  .type preimage_sim_fiber_trampoline, @function
  .p2align 4
preimage_sim_fiber_trampoline:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size preimage_sim_fiber_trampoline, .-preimage_sim_fiber_trampoline
  .popsection
)");

namespace preimage::sim {
namespace {

// ---------------------------------------------------------------------------------------------
// FP control state for new fibers
// ---------------------------------------------------------------------------------------------
uint64_t current_fp_control() {
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  return mxcsr | (static_cast<uint64_t>(fpucw) << 32);
}

// ---------------------------------------------------------------------------------------------
// Fibers, blocks, workers
// ---------------------------------------------------------------------------------------------
using detail::WarpOp;

// Thrown at a wait point of a cancelled fiber; caught only by the fiber entry.
struct FiberCancel {};

enum class FiberState : uint8_t { Ready, Running, AtBarrier, AtWarp, Done };

struct Fiber {
  void* sp = nullptr;
  unsigned char* stack_lo = nullptr;
  uint3 tid{0, 0, 0};
  unsigned linear = 0;
  FiberState state = FiberState::Ready;
  bool started = false;
  bool cancel = false;
  // Current warp collective: this lane's contribution and, after release, its result.
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  int src = -1;  // source lane of a shuffle, -1: keep own value
  uint64_t value = 0;
  uint64_t result = 0;
  void* asan_fake_stack = nullptr;
};

struct WarpGroup {
  unsigned mask;     // as passed by the lanes
  unsigned arrived;  // lanes waiting in it
};

struct WarpState {
  unsigned existing = 0;  // lanes that exist (the last warp of a block may be partial)
  unsigned exited = 0;
  std::vector<WarpGroup> groups;  // pending collectives, one per distinct mask
};

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

struct LaunchJob {
  dim3 grid, block;
  size_t smem = 0;
  const void* kernel = nullptr;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  uint64_t total_blocks = 0;
  unsigned nthreads = 0;
  Schedule schedule = Schedule::Forward;
  bool strict = true;
  uint64_t seed = 0;
  uint64_t perm_a = 1, perm_c = 0;  // Random block order: i -> (a*i + c) mod total
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string message;

  uint64_t block_at(uint64_t i) const {
    switch (schedule) {
      case Schedule::Forward:
        return i;
      case Schedule::Reverse:
        return total_blocks - 1 - i;
      case Schedule::Random:
        return static_cast<uint64_t>((static_cast<detail::UInt128>(perm_a) * i + perm_c) %
                                     total_blocks);
    }
    return i;
  }
};

std::string kernel_name(const void* kernel);

struct Ring {
  std::vector<unsigned> buf;
  size_t head = 0, count = 0;
  void reset(size_t capacity) {
    if (buf.size() < capacity) buf.resize(capacity);
    head = count = 0;
  }
  bool empty() const { return count == 0; }
  void push(unsigned v) { buf[(head + count++) % buf.size()] = v; }
  unsigned pop() {
    unsigned v = buf[head];
    head = (head + 1) % buf.size();
    --count;
    return v;
  }
};

struct BlockRun {
  LaunchJob* job = nullptr;
  uint3 idx{0, 0, 0};
  unsigned nthreads = 0;
  unsigned live = 0;
  unsigned exited = 0;
  unsigned barrier_waiting = 0;
  unsigned barrier_true = 0;
  bool aborted = false;
  bool strict = true;
  Schedule schedule = Schedule::Forward;
  Rng rng{0};
  std::vector<WarpState> warps;
  Ring ready;
  std::vector<unsigned> scratch;
};

struct Worker {
  std::vector<unsigned char*> stacks;  // mapping bases (guard page first)
  std::vector<Fiber> fibers;
  unsigned char* dyn_smem = nullptr;
  BlockRun block;
  void* sched_sp = nullptr;
  uint64_t fp_control = 0;
  void* sched_fake_stack = nullptr;
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;

  ~Worker() {
    for (unsigned char* base : stacks) munmap(base, mapping_bytes());
    if (dyn_smem) {
#if defined(PREIMAGE_SIM_ASAN)
      ASAN_UNPOISON_MEMORY_REGION(dyn_smem, kMaxDynamicSharedBytes);
#endif
      std::free(dyn_smem);
    }
  }
  static size_t guard_bytes() {
    return static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
  }
  static size_t mapping_bytes() {
    return guard_bytes() + kFiberStackBytes;
  }
};

thread_local Worker* tls_worker = nullptr;
thread_local Fiber* tls_fiber = nullptr;

Worker& this_worker() {
  static thread_local Worker worker;
  return worker;
}

void ensure_capacity(Worker& w, unsigned nthreads) {
  if (!w.dyn_smem) {
    w.dyn_smem = static_cast<unsigned char*>(std::aligned_alloc(256, kMaxDynamicSharedBytes));
    if (!w.dyn_smem) throw std::runtime_error("cannot allocate dynamic shared memory");
  }
  while (w.stacks.size() < nthreads) {
    void* p = mmap(nullptr, Worker::mapping_bytes(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cannot map a fiber stack");
    if (mprotect(p, Worker::guard_bytes(), PROT_NONE) != 0) {
      munmap(p, Worker::mapping_bytes());
      throw std::runtime_error("cannot protect a fiber stack guard page");
    }
    w.stacks.push_back(static_cast<unsigned char*>(p));
  }
  if (w.fibers.size() < nthreads) w.fibers.resize(nthreads);
  for (unsigned i = 0; i < nthreads; ++i)
    w.fibers[i].stack_lo = w.stacks[i] + Worker::guard_bytes();
}

// --- switching, with AddressSanitizer told which stack is current ---------------------------
inline void asan_start(void** fake_stack_save, const void* bottom, size_t size) {
#if defined(PREIMAGE_SIM_ASAN)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
inline void asan_finish(void* fake_stack, const void** bottom_old, size_t* size_old) {
#if defined(PREIMAGE_SIM_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack, bottom_old, size_old);
#else
  (void)fake_stack, (void)bottom_old, (void)size_old;
#endif
}

// Scheduler -> fiber; returns when the fiber waits or finishes.
void resume(Worker& w, Fiber& f) {
  tls_fiber = &f;
  ::threadIdx = f.tid;
  f.state = FiberState::Running;
  asan_start(&w.sched_fake_stack, f.stack_lo, kFiberStackBytes);
  preimage_sim_switch(&w.sched_sp, f.sp);
  asan_finish(w.sched_fake_stack, nullptr, nullptr);
  tls_fiber = nullptr;
}

// Fiber -> scheduler; returns when the scheduler resumes this fiber.
void suspend(Worker& w, Fiber& f) {
  asan_start(&f.asan_fake_stack, w.sched_stack_bottom, w.sched_stack_size);
  preimage_sim_switch(&f.sp, w.sched_sp);
  asan_finish(f.asan_fake_stack, &w.sched_stack_bottom, &w.sched_stack_size);
}

// --- messages --------------------------------------------------------------------------------
std::string describe_threads(const BlockRun& b, const std::vector<unsigned>& ids) {
  const dim3& bd = b.job->block;
  bool flat = bd.y == 1 && bd.z == 1;
  auto one = [&](unsigned i) {
    if (flat) return std::to_string(i);
    return format("%u(%u,%u,%u)", i, i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y));
  };
  std::string out = flat ? "threadIdx.x " : "linear thread ids (x,y,z) ";
  size_t ranges = 0;
  for (size_t k = 0; k < ids.size();) {
    size_t e = k;
    while (e + 1 < ids.size() && ids[e + 1] == ids[e] + 1) ++e;
    if (ranges++) out += ", ";
    if (ranges > 12) {
      out += "...";
      break;
    }
    out += one(ids[k]);
    if (e > k) out += "-" + one(ids[e]);
    k = e + 1;
  }
  return out;
}

std::string lanes_text(unsigned bits) {
  std::string out;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(bits >> l & 1u)) continue;
    unsigned e = l;
    while (e + 1 < 32 && (bits >> (e + 1) & 1u)) ++e;
    if (!out.empty()) out += ",";
    out += e > l ? format("%u-%u", l, e) : std::to_string(l);
    l = e;
  }
  return out.empty() ? "none" : out;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx:
      return "__shfl_sync";
    case WarpOp::ShflUp:
      return "__shfl_up_sync";
    case WarpOp::ShflDown:
      return "__shfl_down_sync";
    case WarpOp::ShflXor:
      return "__shfl_xor_sync";
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::Any:
      return "__any_sync";
    case WarpOp::Sync:
      return "__syncwarp";
    case WarpOp::MatchAny:
      return "__match_any_sync";
    case WarpOp::MatchAll:
      return "__match_all_sync";
    case WarpOp::ReduceAdd:
      return "__reduce_add_sync";
    case WarpOp::ReduceMinU:
    case WarpOp::ReduceMinI:
      return "__reduce_min_sync";
    case WarpOp::ReduceMaxU:
    case WarpOp::ReduceMaxI:
      return "__reduce_max_sync";
    case WarpOp::ReduceAnd:
      return "__reduce_and_sync";
    case WarpOp::ReduceOr:
      return "__reduce_or_sync";
    case WarpOp::ReduceXor:
      return "__reduce_xor_sync";
  }
  return "warp collective";
}

// Records the first error of the launch and aborts the block.
void fail(BlockRun& b, const std::string& what) {
  if (b.aborted) return;
  b.aborted = true;
  LaunchJob& job = *b.job;
  std::lock_guard lk(job.mu);
  if (job.failed.load()) return;
  job.message = format("kernel %s, block (%u,%u,%u) of grid (%u,%u,%u), block (%u,%u,%u): %s",
                       kernel_name(job.kernel).c_str(), b.idx.x, b.idx.y, b.idx.z, job.grid.x,
                       job.grid.y, job.grid.z, job.block.x, job.block.y, job.block.z, what.c_str());
  job.failed.store(true);
}

void fail_divergent_barrier(Worker& w) {
  BlockRun& b = w.block;
  std::vector<unsigned> waiting, gone;
  for (unsigned i = 0; i < b.nthreads; ++i) {
    if (w.fibers[i].state == FiberState::AtBarrier) waiting.push_back(i);
    if (w.fibers[i].state == FiberState::Done) gone.push_back(i);
  }
  fail(b, "divergent __syncthreads (strict mode): " + describe_threads(b, waiting) +
              " wait at __syncthreads but " + describe_threads(b, gone) +
              " have exited; a barrier must be reached by every thread of the block");
}

// --- release ---------------------------------------------------------------------------------
void push_released(BlockRun& b, std::vector<unsigned>& ids) {
  switch (b.schedule) {
    case Schedule::Forward:
      break;
    case Schedule::Reverse:
      std::reverse(ids.begin(), ids.end());
      break;
    case Schedule::Random:
      for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[b.rng.next() % i]);
      break;
  }
  for (unsigned id : ids) b.ready.push(id);
}

void release_barrier(Worker& w) {
  BlockRun& b = w.block;
  uint64_t result = (static_cast<uint64_t>(b.barrier_waiting) << 32) | b.barrier_true;
  b.scratch.clear();
  for (unsigned i = 0; i < b.nthreads; ++i) {
    Fiber& f = w.fibers[i];
    if (f.state != FiberState::AtBarrier) continue;
    f.result = result;
    f.state = FiberState::Ready;
    b.scratch.push_back(i);
  }
  b.barrier_waiting = 0;
  b.barrier_true = 0;
  push_released(b, b.scratch);
}

// Once every live thread waits at the barrier: release it, or in strict mode fail if some
// threads exited instead of arriving.
void check_barrier(Worker& w) {
  BlockRun& b = w.block;
  if (b.barrier_waiting == 0 || b.barrier_waiting != b.live) return;
  if (b.strict && b.exited > 0) {
    fail_divergent_barrier(w);
  } else {
    release_barrier(w);
  }
}

uint64_t collective_result(const Fiber& self, const Fiber* lanes, unsigned arrived) {
  auto each = [&](auto fn) {
    for (unsigned l = 0; l < 32; ++l)
      if (arrived >> l & 1u) fn(l, lanes[l]);
  };
  switch (self.op) {
    case WarpOp::ShflIdx:
    case WarpOp::ShflUp:
    case WarpOp::ShflDown:
    case WarpOp::ShflXor:
      // A source lane outside the segment or not taking part: CUDA returns the caller's value
      // (or an undefined one), the simulator the caller's.
      if (self.src >= 0 && (arrived >> self.src & 1u)) return lanes[self.src].value;
      return self.value;
    case WarpOp::Ballot:
    case WarpOp::All:
    case WarpOp::Any: {
      unsigned ballot = 0;
      each([&](unsigned l, const Fiber& f) { ballot |= (f.value != 0) << l; });
      if (self.op == WarpOp::Ballot) return ballot;
      if (self.op == WarpOp::All) return ballot == arrived;
      return ballot != 0;
    }
    case WarpOp::Sync:
      return 0;
    case WarpOp::MatchAny:
    case WarpOp::MatchAll: {
      unsigned same = 0;
      each([&](unsigned l, const Fiber& f) { same |= (f.value == self.value) << l; });
      if (self.op == WarpOp::MatchAny) return same;
      return same == arrived ? arrived : 0;
    }
    case WarpOp::ReduceAdd:
    case WarpOp::ReduceAnd:
    case WarpOp::ReduceOr:
    case WarpOp::ReduceXor:
    case WarpOp::ReduceMinU:
    case WarpOp::ReduceMaxU: {
      uint32_t acc = self.op == WarpOp::ReduceAnd    ? 0xffffffffu
                     : self.op == WarpOp::ReduceMinU ? 0xffffffffu
                                                     : 0u;
      each([&](unsigned, const Fiber& f) {
        auto v = static_cast<uint32_t>(f.value);
        switch (self.op) {
          case WarpOp::ReduceAdd:
            acc += v;
            break;
          case WarpOp::ReduceAnd:
            acc &= v;
            break;
          case WarpOp::ReduceOr:
            acc |= v;
            break;
          case WarpOp::ReduceXor:
            acc ^= v;
            break;
          case WarpOp::ReduceMinU:
            acc = std::min(acc, v);
            break;
          default:
            acc = std::max(acc, v);
            break;
        }
      });
      return acc;
    }
    case WarpOp::ReduceMinI:
    case WarpOp::ReduceMaxI: {
      int32_t acc = self.op == WarpOp::ReduceMinI ? std::numeric_limits<int32_t>::max()
                                                  : std::numeric_limits<int32_t>::min();
      each([&](unsigned, const Fiber& f) {
        auto v = static_cast<int32_t>(static_cast<uint32_t>(f.value));
        acc = self.op == WarpOp::ReduceMinI ? std::min(acc, v) : std::max(acc, v);
      });
      return static_cast<uint32_t>(acc);
    }
  }
  return 0;
}

// Completes the group if every lane it still needs has arrived.
void try_release_group(Worker& w, unsigned warp, size_t gi) {
  BlockRun& b = w.block;
  WarpState& ws = b.warps[warp];
  WarpGroup g = ws.groups[gi];
  unsigned needed = g.mask & ws.existing & ~ws.exited;
  if (g.arrived != needed || b.aborted) return;
  Fiber* lanes = &w.fibers[warp * 32];
  if (b.strict) {
    WarpOp op0 = WarpOp::Sync;
    bool first = true;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(g.arrived >> l & 1u)) continue;
      if (first) {
        op0 = lanes[l].op;
        first = false;
      } else if (lanes[l].op != op0) {
        fail(b, format("inconsistent warp collectives (strict mode): warp %u lanes %s share mask "
                       "0x%08x but lane %u calls %s while lane %u calls %s",
                       warp, lanes_text(g.arrived).c_str(), g.mask, __builtin_ctz(g.arrived),
                       op_name(op0), l, op_name(lanes[l].op)));
        return;
      }
    }
  }
  ws.groups[gi] = ws.groups.back();
  ws.groups.pop_back();
  for (unsigned l = 0; l < 32; ++l)
    if (g.arrived >> l & 1u) lanes[l].result = collective_result(lanes[l], lanes, g.arrived);
  b.scratch.clear();
  for (unsigned l = 0; l < 32; ++l) {
    if (!(g.arrived >> l & 1u)) continue;
    lanes[l].state = FiberState::Ready;
    b.scratch.push_back(warp * 32 + l);
  }
  push_released(b, b.scratch);
}

int shuffle_source(WarpOp op, unsigned lane, int arg, int width) {
  auto w = static_cast<unsigned>(width);
  unsigned base = lane & ~(w - 1);
  switch (op) {
    case WarpOp::ShflIdx:
      return static_cast<int>(base | (static_cast<unsigned>(arg) & (w - 1)));
    case WarpOp::ShflUp: {
      auto delta = static_cast<unsigned>(arg);
      return (lane - base) >= delta ? static_cast<int>(lane - delta) : -1;
    }
    case WarpOp::ShflDown: {
      uint64_t j = static_cast<uint64_t>(lane) + static_cast<unsigned>(arg);
      return j <= base + w - 1 ? static_cast<int>(j) : -1;
    }
    case WarpOp::ShflXor: {
      unsigned j = lane ^ static_cast<unsigned>(arg);
      return j <= base + w - 1 ? static_cast<int>(j) : -1;
    }
    default:
      return -1;
  }
}

// Wait-point prologue/epilogue for cancellation. During unwinding (a destructor that
// synchronizes) a wait returns at once instead of throwing a second exception.
bool cancelled_now(const Fiber& f) {
  if (!f.cancel) return false;
  if (std::uncaught_exceptions() > 0) return true;
  throw FiberCancel{};
}

Fiber& require_fiber(const char* what) {
  if (!tls_fiber) {
    std::fprintf(stderr, "cuda_sim: %s called outside a simulated kernel\n", what);
    std::abort();
  }
  return *tls_fiber;
}

// Bookkeeping when a fiber's kernel body returned (or was cancelled).
void on_fiber_exit(Worker& w, Fiber& f) {
  BlockRun& b = w.block;
  f.state = FiberState::Done;
  if (b.aborted) return;
  --b.live;
  ++b.exited;
  unsigned warp = f.linear / 32, lane = f.linear % 32;
  WarpState& ws = b.warps[warp];
  ws.exited |= 1u << lane;
  check_barrier(w);
  if (b.aborted) return;
  for (size_t gi = ws.groups.size(); gi-- > 0;) {
    if (!(ws.groups[gi].mask >> lane & 1u)) continue;
    if (b.strict) {
      return fail(
          b,
          format(
              "warp collective with an exited lane (strict mode): warp %u lane %u "
              "exited while lanes %s wait in %s with mask 0x%08x",
              warp, lane, lanes_text(ws.groups[gi].arrived).c_str(),
              op_name(
                  w.fibers[warp * 32 + static_cast<unsigned>(__builtin_ctz(ws.groups[gi].arrived))]
                      .op),
              ws.groups[gi].mask));
    }
    try_release_group(w, warp, gi);
  }
}

[[noreturn]] void fiber_entry(Fiber* f) {
  Worker& w = *tls_worker;
  asan_finish(nullptr, &w.sched_stack_bottom, &w.sched_stack_size);
  BlockRun& b = w.block;
  if (!f->cancel) {
    try {
      b.job->body(b.job->ctx);
    } catch (const FiberCancel&) {
    } catch (const std::exception& e) {
      fail(b, format("thread (%u,%u,%u) threw an exception: %s", f->tid.x, f->tid.y, f->tid.z,
                     e.what()));
    } catch (...) {
      fail(b, format("thread (%u,%u,%u) threw a non-standard exception", f->tid.x, f->tid.y,
                     f->tid.z));
    }
  }
  on_fiber_exit(w, *f);
  asan_start(nullptr, w.sched_stack_bottom, w.sched_stack_size);  // this stack is finished
  preimage_sim_switch(&f->sp, w.sched_sp);
  __builtin_unreachable();
}

// Initial frame, popped by preimage_sim_switch: fp control, r15, r14, r13 = entry,
// r12 = fiber, rbx, rbp = 0 (ends frame-pointer chains), return address = trampoline; after
// the ret, rsp is 16-byte aligned for the trampoline's call. The top is shifted by a
// per-fiber multiple of 64 bytes so that the hot frames of different fibers do not all map
// to the same cache sets (the stacks are page-aligned).
void prepare_stack(Worker& w, Fiber& f) {
  unsigned char* top = f.stack_lo + kFiberStackBytes - 64 * (f.linear % 64);
  auto** sp = reinterpret_cast<void**>(top - 16 - 8 * sizeof(void*));
  sp[0] = reinterpret_cast<void*>(w.fp_control);
  sp[1] = nullptr;
  sp[2] = nullptr;
  sp[3] = reinterpret_cast<void*>(&fiber_entry);
  sp[4] = &f;
  sp[5] = nullptr;
  sp[6] = nullptr;
  sp[7] = reinterpret_cast<void*>(&preimage_sim_fiber_trampoline);
  f.sp = sp;
  f.asan_fake_stack = nullptr;
}

void report_deadlock(Worker& w) {
  BlockRun& b = w.block;
  std::vector<unsigned> at_barrier;
  std::string warps;
  for (unsigned i = 0; i < b.nthreads; ++i)
    if (w.fibers[i].state == FiberState::AtBarrier) at_barrier.push_back(i);
  for (unsigned wi = 0; wi < b.warps.size(); ++wi) {
    for (const WarpGroup& g : b.warps[wi].groups) {
      unsigned missing = g.mask & b.warps[wi].existing & ~g.arrived;
      const Fiber& any = w.fibers[wi * 32 + static_cast<unsigned>(__builtin_ctz(g.arrived))];
      warps += format("; warp %u lanes %s wait in %s(mask 0x%08x) for lanes %s", wi,
                      lanes_text(g.arrived).c_str(), op_name(any.op), g.mask,
                      lanes_text(missing).c_str());
    }
  }
  std::string text = "deadlock: no thread can make progress";
  if (!at_barrier.empty())
    text += "; " + describe_threads(b, at_barrier) + " wait at __syncthreads";
  fail(b, text + warps);
}

void cancel_all(Worker& w) {
  BlockRun& b = w.block;
  for (unsigned i = 0; i < b.nthreads; ++i) {
    Fiber& f = w.fibers[i];
    if (f.state == FiberState::Done) continue;
    if (!f.started) {
      f.state = FiberState::Done;
      continue;
    }
    f.cancel = true;
    resume(w, f);
  }
}

void order_ids(BlockRun& b, std::vector<unsigned>& ids, unsigned n) {
  ids.resize(n);
  std::iota(ids.begin(), ids.end(), 0u);
  push_released(b, ids);
}

void run_block(Worker& w, LaunchJob& job, uint64_t linear_block) {
  BlockRun& b = w.block;
  const unsigned n = job.nthreads;
  b.job = &job;
  b.idx = uint3{static_cast<unsigned>(linear_block % job.grid.x),
                static_cast<unsigned>(linear_block / job.grid.x % job.grid.y),
                static_cast<unsigned>(linear_block / job.grid.x / job.grid.y)};
  b.nthreads = n;
  b.live = n;
  b.exited = 0;
  b.barrier_waiting = 0;
  b.barrier_true = 0;
  b.aborted = false;
  b.strict = job.strict;
  b.schedule = job.schedule;
  b.rng = Rng{job.seed ^ (linear_block * 0xd1b54a32d192ed03ull)};
  b.rng.next();
  unsigned nwarps = (n + 31) / 32;
  b.warps.resize(nwarps);
  for (unsigned wi = 0; wi < nwarps; ++wi) {
    unsigned lanes = std::min(32u, n - wi * 32);
    b.warps[wi].existing = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    b.warps[wi].exited = 0;
    b.warps[wi].groups.clear();
  }
  b.ready.reset(n);

  ::blockIdx = b.idx;
  ::blockDim = job.block;
  ::gridDim = job.grid;
  // Poison dynamic shared memory so reads before writes show (0xFF bytes: NaN floats, -1 ints).
#if defined(PREIMAGE_SIM_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(w.dyn_smem, kMaxDynamicSharedBytes);
#endif
  std::memset(w.dyn_smem, 0xFF, job.smem);
#if defined(PREIMAGE_SIM_ASAN)
  size_t used = (job.smem + 7) / 8 * 8;
  ASAN_POISON_MEMORY_REGION(w.dyn_smem + used, kMaxDynamicSharedBytes - used);
#endif
  detail::tls_dyn_smem = w.dyn_smem;

  const dim3 bd = job.block;
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = w.fibers[i];
    f.tid = uint3{i % bd.x, i / bd.x % bd.y, i / (bd.x * bd.y)};
    f.linear = i;
    f.state = FiberState::Ready;
    f.started = false;
    f.cancel = false;
  }
  order_ids(b, b.scratch, n);

  while (!b.aborted) {
    if (b.ready.empty()) {
      if (b.live == 0) break;
      report_deadlock(w);
      break;
    }
    Fiber& f = w.fibers[b.ready.pop()];
    if (!f.started) {
      prepare_stack(w, f);
      f.started = true;
    }
    resume(w, f);
  }
  if (b.aborted) cancel_all(w);
}

void work(LaunchJob& job) {
  Worker& w = this_worker();
  tls_worker = &w;
  try {
    ensure_capacity(w, job.nthreads);
    w.fp_control = current_fp_control();
    while (!job.failed.load(std::memory_order_relaxed)) {
      uint64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= job.total_blocks) break;
      run_block(w, job, job.block_at(i));
    }
  } catch (const std::exception& e) {
    std::lock_guard lk(job.mu);
    if (!job.failed.load()) {
      job.message = std::string("simulator resources: ") + e.what();
      job.failed.store(true);
    }
  }
  detail::tls_dyn_smem = nullptr;
  tls_worker = nullptr;
}

// Helper threads persist across launches (their fiber stacks with them). Never destroyed: a
// launch may come from a static destructor, and idle helpers end with the process.
class Pool {
 public:
  void run(LaunchJob& job, int workers) {
    uint64_t helpers64 =
        std::min<uint64_t>(static_cast<uint64_t>(workers - 1), job.total_blocks - 1);
    int helpers = static_cast<int>(helpers64);
    if (helpers > 0) {
      std::unique_lock lk(mu_);
      while (static_cast<int>(threads_.size()) < helpers) {
        int index = static_cast<int>(threads_.size());
        threads_.emplace_back([this, index] { helper_loop(index); });
        threads_.back().detach();
      }
      job_ = &job;
      wanted_ = helpers;
      running_ = helpers;
      ++generation_;
      lk.unlock();
      work_cv_.notify_all();
    }
    work(job);
    if (helpers > 0) {
      std::unique_lock lk(mu_);
      done_cv_.wait(lk, [this] { return running_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  void helper_loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock lk(mu_);
      work_cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= wanted_) continue;
      LaunchJob* job = job_;
      lk.unlock();
      work(*job);
      lk.lock();
      if (--running_ == 0) done_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<std::thread> threads_;
  LaunchJob* job_ = nullptr;
  uint64_t generation_ = 0;
  int wanted_ = 0;
  int running_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// --- kernel names from the ELF symbol table (works without -rdynamic) ----------------------
std::string symbol_from_elf(const char* path, uintptr_t offset, uintptr_t absolute) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  struct stat st {};
  std::string found;
  if (fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= sizeof(Elf64_Ehdr)) {
    auto size = static_cast<size_t>(st.st_size);
    void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map != MAP_FAILED) {
      const auto* base = static_cast<const unsigned char*>(map);
      const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
      uintptr_t want = eh->e_type == ET_DYN ? offset : absolute;
      bool ok = std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
                eh->e_ident[EI_CLASS] == ELFCLASS64 &&
                eh->e_shoff + uint64_t{eh->e_shnum} * sizeof(Elf64_Shdr) <= size;
      for (unsigned s = 0; ok && s < eh->e_shnum && found.empty(); ++s) {
        const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff) + s;
        if (sh->sh_type != SHT_SYMTAB || sh->sh_link >= eh->e_shnum) continue;
        const auto* strh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff) + sh->sh_link;
        if (sh->sh_offset + sh->sh_size > size || strh->sh_offset + strh->sh_size > size) continue;
        const auto* syms = reinterpret_cast<const Elf64_Sym*>(base + sh->sh_offset);
        size_t count = sh->sh_size / sizeof(Elf64_Sym);
        for (size_t k = 0; k < count; ++k) {
          const Elf64_Sym& sym = syms[k];
          if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_name >= strh->sh_size) continue;
          if (want >= sym.st_value && want < sym.st_value + std::max<uint64_t>(sym.st_size, 1)) {
            found = reinterpret_cast<const char*>(base + strh->sh_offset + sym.st_name);
            break;
          }
        }
      }
      munmap(map, size);
    }
  }
  close(fd);
  return found;
}

std::string kernel_name(const void* kernel) {
  std::string mangled;
  Dl_info info{};
  if (kernel && dladdr(kernel, &info) != 0) {
    if (info.dli_sname) {
      mangled = info.dli_sname;
    } else if (info.dli_fname) {
      auto addr = reinterpret_cast<uintptr_t>(kernel);
      const char* path = info.dli_fname[0] ? info.dli_fname : "/proc/self/exe";
      mangled = symbol_from_elf(path, addr - reinterpret_cast<uintptr_t>(info.dli_fbase), addr);
      if (mangled.empty() && info.dli_fname[0]) {
        mangled = symbol_from_elf("/proc/self/exe",
                                  addr - reinterpret_cast<uintptr_t>(info.dli_fbase), addr);
      }
    }
  }
  std::string name;
  if (!mangled.empty()) {
    int status = 0;
    char* demangled = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
    name = status == 0 && demangled ? demangled : mangled;
    std::free(demangled);
  }
  return name.empty() ? format("at %p", kernel) : format("%s [%p]", name.c_str(), kernel);
}

std::mutex& launch_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public control API
// ---------------------------------------------------------------------------------------------
void set_schedule(Schedule schedule, uint64_t seed) {
  settings().schedule.store(static_cast<int>(schedule));
  settings().seed.store(seed);
  settings().launch_seq.store(0);
}
Schedule schedule() {
  return static_cast<Schedule>(settings().schedule.load());
}
uint64_t schedule_seed() {
  return settings().seed.load();
}
void set_strict(bool on) {
  settings().strict.store(on);
}
bool strict() {
  return settings().strict.load();
}
void set_worker_threads(int n) {
  settings().threads.store(n <= 0 ? default_worker_threads() : std::min(n, 256));
}
int worker_threads() {
  return settings().threads.load();
}
std::string last_error_message() {
  return tls_last_message;
}

TransferStats transfer_stats() {
  TransferStats s;
  s.h2d_calls = g_stats.h2d_calls.load();
  s.h2d_bytes = g_stats.h2d_bytes.load();
  s.d2h_calls = g_stats.d2h_calls.load();
  s.d2h_bytes = g_stats.d2h_bytes.load();
  s.d2d_calls = g_stats.d2d_calls.load();
  s.d2d_bytes = g_stats.d2d_bytes.load();
  s.launches = g_stats.launches.load();
  return s;
}

void reset_transfer_stats() {
  for (auto* c : {&g_stats.h2d_calls, &g_stats.h2d_bytes, &g_stats.d2h_calls, &g_stats.d2h_bytes,
                  &g_stats.d2d_calls, &g_stats.d2d_bytes, &g_stats.launches})
    c->store(0);
}

cudaError_t launch_grid(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const void* kernel,
                        void (*body)(void*), void* ctx) {
  if (tls_fiber) {
    return record_error(cudaErrorNotSupported,
                        "kernel launch from device code is not supported by the simulator");
  }
  if (!body) return record_error(cudaErrorInvalidDeviceFunction, "launch of a null kernel");
  uint64_t threads = uint64_t{block.x} * block.y * block.z;
  std::string bad;
  if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    bad = "grid and block dimensions must be at least 1";
  else if (threads > kMaxThreadsPerBlock || block.x > kMaxThreadsPerBlock ||
           block.y > kMaxThreadsPerBlock || block.z > kMaxBlockDimZ)
    bad = format("block (%u,%u,%u) = %llu threads exceeds the limits (<= 1024 threads, z <= 64)",
                 block.x, block.y, block.z, static_cast<unsigned long long>(threads));
  else if (grid.x > 0x7fffffffu || grid.y > kMaxGridDimYZ || grid.z > kMaxGridDimYZ)
    bad = format("grid (%u,%u,%u) exceeds the limits (x < 2^31, y and z <= 65535)", grid.x, grid.y,
                 grid.z);
  else if (dynamic_smem_bytes > kMaxDynamicSharedBytes)
    bad = format("%zu bytes of dynamic shared memory exceed the limit of %zu", dynamic_smem_bytes,
                 kMaxDynamicSharedBytes);
  if (!bad.empty()) {
    return record_error(
        cudaErrorInvalidConfiguration,
        format("launch of kernel %s: %s", kernel_name(kernel).c_str(), bad.c_str()));
  }

  std::lock_guard serial(launch_mutex());
  LaunchJob job;
  job.grid = grid;
  job.block = block;
  job.smem = dynamic_smem_bytes;
  job.kernel = kernel;
  job.body = body;
  job.ctx = ctx;
  job.total_blocks = uint64_t{grid.x} * grid.y * grid.z;
  job.nthreads = static_cast<unsigned>(threads);
  job.schedule = schedule();
  job.strict = strict();
  uint64_t seq = settings().launch_seq.fetch_add(1);
  job.seed = Rng{schedule_seed() ^ (seq * 0x9e3779b97f4a7c15ull)}.next();
  if (job.schedule == Schedule::Random && job.total_blocks > 1) {
    Rng rng{job.seed};
    job.perm_c = rng.next() % job.total_blocks;
    job.perm_a = rng.next() % job.total_blocks | 1;
    while (std::gcd(job.perm_a, job.total_blocks) != 1) ++job.perm_a;
  }
  g_stats.launches.fetch_add(1, std::memory_order_relaxed);
  pool().run(job, worker_threads());
  if (job.failed.load()) return record_error(cudaErrorLaunchFailure, job.message);
  return cudaSuccess;
}

namespace detail {

void syncthreads() {
  syncthreads_reduce(1, 0);
}

int syncthreads_reduce(int predicate, int op) {
  Fiber& f = require_fiber("__syncthreads");
  if (cancelled_now(f)) return 0;
  Worker& w = *tls_worker;
  BlockRun& b = w.block;
  f.state = FiberState::AtBarrier;
  ++b.barrier_waiting;
  if (predicate) ++b.barrier_true;
  check_barrier(w);
  suspend(w, f);
  if (cancelled_now(f)) return 0;
  auto arrived = static_cast<unsigned>(f.result >> 32);
  auto count = static_cast<unsigned>(f.result);
  if (op == 0) return static_cast<int>(count);
  if (op == 1) return count == arrived;
  return count > 0;
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  Fiber& f = require_fiber(op_name(op));
  if (cancelled_now(f)) return value;
  Worker& w = *tls_worker;
  BlockRun& b = w.block;
  unsigned warp = f.linear / 32, lane = f.linear % 32;
  WarpState& ws = b.warps[warp];
  unsigned bit = 1u << lane;
  if (!(mask & bit)) {
    if (b.strict) {
      fail(b, format("%s (strict mode): warp %u lane %u calls with mask 0x%08x, which excludes "
                     "the calling lane",
                     op_name(op), warp, lane, mask));
    }
    mask |= bit;
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    if (b.strict) {
      fail(b, format("%s: warp %u lane %u passes width %d (must be a power of 2 in 1..32)",
                     op_name(op), warp, lane, width));
    }
    width = 32;
  }
  if (b.strict && (mask & ws.existing & ws.exited)) {
    fail(b,
         format("%s (strict mode): warp %u lane %u passes mask 0x%08x naming exited lanes %s",
                op_name(op), warp, lane, mask, lanes_text(mask & ws.existing & ws.exited).c_str()));
  }
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.src = shuffle_source(op, lane, arg, width);
  f.state = FiberState::AtWarp;
  size_t gi = 0;
  while (gi < ws.groups.size() && ws.groups[gi].mask != mask) ++gi;
  if (gi == ws.groups.size()) ws.groups.push_back(WarpGroup{mask, 0});
  ws.groups[gi].arrived |= bit;
  try_release_group(w, warp, gi);
  suspend(w, f);
  if (cancelled_now(f)) return value;
  return f.result;
}

void trap() {
  std::fprintf(stderr, "cuda_sim: __trap() in block (%u,%u,%u) thread (%u,%u,%u)\n", blockIdx.x,
               blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
  std::fflush(stderr);
  std::abort();
}

cudaError_t symbol_copy(void* symbol, size_t symbol_size, size_t offset, void* other, size_t count,
                        cudaMemcpyKind kind, bool to_symbol) {
  const char* api = to_symbol ? "cudaMemcpyToSymbol" : "cudaMemcpyFromSymbol";
  if (offset > symbol_size || count > symbol_size - offset) {
    return record_error(cudaErrorInvalidValue,
                        format("%s: offset %zu + count %zu exceed the symbol's %zu bytes", api,
                               offset, count, symbol_size));
  }
  bool ok_kind = to_symbol ? (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice ||
                              kind == cudaMemcpyDefault)
                           : (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice ||
                              kind == cudaMemcpyDefault);
  if (!ok_kind) {
    return record_error(cudaErrorInvalidMemcpyDirection,
                        format("%s: invalid kind %s", api, kind_name(kind)));
  }
  if (count == 0) return cudaSuccess;
  if (!other) return record_error(cudaErrorInvalidValue, format("%s: null pointer", api));
  auto* sym = static_cast<unsigned char*>(symbol) + offset;
  if (to_symbol)
    std::memmove(sym, other, count);
  else
    std::memmove(other, sym, count);
  count_copy(kind, count);
  return cudaSuccess;
}

}  // namespace detail
}  // namespace preimage::sim

// ---------------------------------------------------------------------------------------------
// Runtime API
// ---------------------------------------------------------------------------------------------
using preimage::sim::format;
using preimage::sim::record_error;

cudaError_t cudaMalloc(void** dev_ptr, size_t size) {
  return preimage::sim::allocate(dev_ptr, size, true, "cudaMalloc");
}
cudaError_t cudaMallocManaged(void** dev_ptr, size_t size, unsigned) {
  return preimage::sim::allocate(dev_ptr, size, true, "cudaMallocManaged");
}
cudaError_t cudaFree(void* dev_ptr) {
  return preimage::sim::release(dev_ptr, true, "cudaFree");
}
cudaError_t cudaMallocHost(void** ptr, size_t size) {
  return preimage::sim::allocate(ptr, size, false, "cudaMallocHost");
}
cudaError_t cudaFreeHost(void* ptr) {
  return preimage::sim::release(ptr, false, "cudaFreeHost");
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return preimage::sim::do_copy(dst, src, count, kind, "cudaMemcpy");
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t) {
  return preimage::sim::do_copy(dst, src, count, kind, "cudaMemcpyAsync");
}
cudaError_t cudaMemset(void* dev_ptr, int value, size_t count) {
  return preimage::sim::do_memset(dev_ptr, value, count, "cudaMemset");
}
cudaError_t cudaMemsetAsync(void* dev_ptr, int value, size_t count, cudaStream_t) {
  return preimage::sim::do_memset(dev_ptr, value, count, "cudaMemsetAsync");
}

cudaError_t cudaDeviceSynchronize() {
  return cudaSuccess;
}
cudaError_t cudaDeviceReset() {
  preimage::sim::tls_last_error = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (!stream) return record_error(cudaErrorInvalidValue, "cudaStreamCreate: null output pointer");
  *stream = new CUstream_st{flags};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return record_error(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(null)");
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t) {
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned) {
  if (!event)
    return record_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent(null event)");
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  cudaError_t err = preimage::sim::tls_last_error;
  preimage::sim::tls_last_error = cudaSuccess;
  return err;
}
cudaError_t cudaPeekAtLastError() {
  return preimage::sim::tls_last_error;
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
#define PREIMAGE_SIM_NAME(e) \
  case e:                    \
    return #e;
    PREIMAGE_SIM_NAME(cudaSuccess)
    PREIMAGE_SIM_NAME(cudaErrorInvalidValue)
    PREIMAGE_SIM_NAME(cudaErrorMemoryAllocation)
    PREIMAGE_SIM_NAME(cudaErrorInitializationError)
    PREIMAGE_SIM_NAME(cudaErrorInvalidConfiguration)
    PREIMAGE_SIM_NAME(cudaErrorInvalidSymbol)
    PREIMAGE_SIM_NAME(cudaErrorInvalidDevicePointer)
    PREIMAGE_SIM_NAME(cudaErrorInvalidMemcpyDirection)
    PREIMAGE_SIM_NAME(cudaErrorInsufficientDriver)
    PREIMAGE_SIM_NAME(cudaErrorInvalidDeviceFunction)
    PREIMAGE_SIM_NAME(cudaErrorNoDevice)
    PREIMAGE_SIM_NAME(cudaErrorInvalidDevice)
    PREIMAGE_SIM_NAME(cudaErrorInvalidResourceHandle)
    PREIMAGE_SIM_NAME(cudaErrorNotReady)
    PREIMAGE_SIM_NAME(cudaErrorIllegalAddress)
    PREIMAGE_SIM_NAME(cudaErrorLaunchOutOfResources)
    PREIMAGE_SIM_NAME(cudaErrorLaunchFailure)
    PREIMAGE_SIM_NAME(cudaErrorNotSupported)
    PREIMAGE_SIM_NAME(cudaErrorUnknown)
#undef PREIMAGE_SIM_NAME
  }
  return "cudaErrorUnrecognized";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidSymbol:
      return "invalid device symbol";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver:
      return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDeviceFunction:
      return "invalid device function";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return "unrecognized error code";
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record_error(cudaErrorInvalidValue, "cudaGetDeviceCount: null pointer");
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) {
    return record_error(cudaErrorInvalidDevice,
                        format("cudaSetDevice(%d): the simulator has one device, 0", device));
  }
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return record_error(cudaErrorInvalidValue, "cudaGetDevice: null pointer");
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return record_error(cudaErrorInvalidValue, "cudaGetDeviceProperties: null pointer");
  if (device != 0) {
    return record_error(
        cudaErrorInvalidDevice,
        format("cudaGetDeviceProperties(%d): the simulator has one device, 0", device));
  }
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "preimage CUDA simulator (host CPU)");
  prop->totalGlobalMem = preimage::sim::physical_memory();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = preimage::sim::kMaxDynamicSharedBytes;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = static_cast<int>(preimage::sim::kMaxThreadsPerBlock);
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = preimage::sim::worker_threads();
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->major = 8;
  prop->minor = 0;
  prop->l2CacheSize = 40 * 1024 * 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return record_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute: null pointer");
  cudaDeviceProp prop;
  if (cudaError_t err = cudaGetDeviceProperties(&prop, device); err != cudaSuccess) return err;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = prop.maxThreadsPerBlock;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(prop.sharedMemPerBlock);
      return cudaSuccess;
    case cudaDevAttrWarpSize:
      *value = prop.warpSize;
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = prop.multiProcessorCount;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor:
      *value = prop.major;
      return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor:
      *value = prop.minor;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(prop.sharedMemPerBlockOptin);
      return cudaSuccess;
  }
  return record_error(
      cudaErrorInvalidValue,
      format("cudaDeviceGetAttribute: attribute %d is not simulated", static_cast<int>(attr)));
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes)
    return record_error(cudaErrorInvalidValue, "cudaMemGetInfo: null pointer");
  size_t total = preimage::sim::physical_memory();
  size_t used;
  {
    auto& r = preimage::sim::registry();
    std::lock_guard lk(r.mu);
    used = r.device_bytes;
  }
  *total_bytes = total;
  *free_bytes = used < total ? total - used : 0;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return record_error(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute(null)");
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize &&
      (value < 0 || static_cast<size_t>(value) > preimage::sim::kMaxDynamicSharedBytes)) {
    return record_error(cudaErrorInvalidValue,
                        format("cudaFuncSetAttribute: %d bytes of dynamic shared memory exceed "
                               "the limit of %zu",
                               value, preimage::sim::kMaxDynamicSharedBytes));
  }
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (!event) return record_error(cudaErrorInvalidValue, "cudaEventCreate: null output pointer");
  *event = new CUevent_st{};
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (!event) return record_error(cudaErrorInvalidResourceHandle, "cudaEventRecord(null)");
  event->time = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return record_error(cudaErrorInvalidResourceHandle, "cudaEventSynchronize(null)");
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event) return record_error(cudaErrorInvalidResourceHandle, "cudaEventQuery(null)");
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return record_error(cudaErrorInvalidValue, "cudaEventElapsedTime: null pointer");
  if (!start || !end || !start->recorded || !end->recorded ||
      (start->flags & cudaEventDisableTiming) || (end->flags & cudaEventDisableTiming)) {
    return record_error(cudaErrorInvalidResourceHandle,
                        "cudaEventElapsedTime: both events must be recorded timing events");
  }
  *ms = std::chrono::duration<float, std::milli>(end->time - start->time).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return record_error(cudaErrorInvalidResourceHandle, "cudaEventDestroy(null)");
  delete event;
  return cudaSuccess;
}
