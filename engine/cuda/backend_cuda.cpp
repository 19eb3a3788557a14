// The CUDA backend: device memory and ops through the launchers of kernels/kernels.h. Linked
// against nvcc-built kernels in libpreimage, or against the same kernel sources running on the
// host simulator in the tests.
#include <string>

#include "engine/core/backend.h"
#include "kernels/kernels.h"

namespace preimage {
namespace {

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }
  float* alloc(size_t count) override { return kernels::device_alloc(count ? count : 1); }
  void free(float* p) noexcept override { kernels::device_free(p); }
  void copy_from_host(float* d, const float* s, size_t n) override { kernels::copy_h2d(d, s, n); }
  void copy_to_host(float* d, const float* s, size_t n) override { kernels::copy_d2h(d, s, n); }
  void copy(float* d, const float* s, size_t n) override {
    if (d != s) kernels::copy_d2d(d, s, n);
  }
  void synchronize() override { kernels::synchronize(); }

#define PREIMAGE_OP(ret, name, params, args, tag, test)     \
  ret name params override {                                \
    return kernels::name PREIMAGE_OP_KARGS(tag, ws_, args); \
  }
#include "kernels/ops.def"
#undef PREIMAGE_OP

 private:
  kernels::Workspace ws_;  // the reductions' device scratch, shared by every op of this backend
};

}  // namespace

Backend* cuda_backend(std::string* reason) {
  // Asked once: the answer does not change while the process runs.
  static std::string why;
  static const int count = kernels::device_count(&why);
  if (count > 0) {
    static CudaBackend instance;
    return &instance;
  }
  if (reason) *reason = why;
  return nullptr;
}

}  // namespace preimage
