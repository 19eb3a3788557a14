// RAII owner of a device float array for the kernel tests, through the public runtime API only
// (kernels::device_alloc / copy_h2d / copy_d2h / device_free), so the same tests build for the
// host simulator and for a real GPU.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <utility>
#include <vector>

#include "kernels/kernels.h"

namespace preimage::test {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) : p_(kernels::device_alloc(count)), n_(count) {}
  explicit DeviceBuffer(const std::vector<float>& host) : DeviceBuffer(host.size()) {
    upload(host);
  }
  ~DeviceBuffer() { kernels::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      kernels::device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }

  float* get() { return p_; }
  const float* get() const { return p_; }
  size_t size() const { return n_; }

  // host → device; host.size() must equal size()
  void upload(const std::vector<float>& host) {
    if (host.size() != n_) throw std::length_error("DeviceBuffer::upload: size mismatch");
    kernels::copy_h2d(p_, host.data(), n_);
  }
  std::vector<float> download() const {
    std::vector<float> host(n_);
    kernels::copy_d2h(host.data(), p_, n_);
    return host;
  }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace preimage::test
