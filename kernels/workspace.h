// Device scratch for the launchers that reduce to host scalars (per-block partials, the final
// values): owned by the caller — the CUDA backend holds one, a kernel test its own — and passed
// to every launcher tagged WS in kernels/ops.def. Memory comes from device_alloc/device_free
// (kernels/runtime.cu, the only cudaMalloc/cudaFree), grows on demand and is never shrunk;
// move-only. A launcher holds lock() for as long as it uses the memory, so one workspace may
// serve several host threads.
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>

namespace preimage::kernels {

float* device_alloc(size_t count);  // kernels/runtime.cu
void device_free(float* p) noexcept;

class Workspace {
 public:
  Workspace() = default;
  ~Workspace() { device_free(p_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)),
        floats_(std::exchange(o.floats_, 0)),
        mutex_(std::move(o.mutex_)) {}
  Workspace& operator=(Workspace&& o) noexcept {
    if (this != &o) {
      device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      floats_ = std::exchange(o.floats_, 0);
      mutex_ = std::move(o.mutex_);
    }
    return *this;
  }

  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(*mutex_); }

  // At least count elements of T in device memory (contents unspecified), valid until the next
  // get(); T is a trivially copyable type of at most 16 bytes (device_alloc aligns to 256).
  template <class T>
  T* get(size_t count) {
    static_assert(sizeof(T) <= 16 && alignof(T) <= 16);
    const size_t floats = (count * sizeof(T) + sizeof(float) - 1) / sizeof(float);
    if (floats > floats_) {
      const size_t want = floats > 2 * floats_ ? floats : 2 * floats_;
      float* p = device_alloc(want);
      device_free(p_);
      p_ = p;
      floats_ = want;
    }
    return reinterpret_cast<T*>(p_);
  }

 private:
  float* p_ = nullptr;
  size_t floats_ = 0;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
};

}  // namespace preimage::kernels
