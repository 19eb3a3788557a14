// The CPU backend: host memory (64-byte aligned) and the ops of engine/cpu/.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "engine/core/backend.h"
#include "engine/cpu/cpu_ops.h"
#include "preimage/error.h"

namespace preimage {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend() { cpu::init_threads(); }
  Device device() const override { return Device::CPU; }
  float* alloc(size_t count) override {
    size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!p)
      throw Error("out of host memory allocating " + std::to_string(count * sizeof(float)) +
                  " bytes");
    return static_cast<float*>(p);
  }
  void free(float* p) noexcept override { std::free(p); }
  // Host and device are the same memory: every copy is a memmove.
  void copy_from_host(float* d, const float* s, size_t n) override { copy(d, s, n); }
  void copy_to_host(float* d, const float* s, size_t n) override { copy(d, s, n); }
  void copy(float* d, const float* s, size_t n) override {
    if (n && d != s) std::memmove(d, s, n * sizeof(float));
  }
  void synchronize() override {}

#define PREIMAGE_OP(ret, name, params, args, tag, test) \
  ret name params override {                            \
    return cpu::name args;                              \
  }
#include "kernels/ops.def"
#undef PREIMAGE_OP
};

}  // namespace

Backend* cpu_backend_instance() {
  static CpuBackend instance;
  return &instance;
}

}  // namespace preimage
