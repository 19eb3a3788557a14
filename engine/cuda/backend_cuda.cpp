// The CUDA backend: device memory and ops through the launchers of kernels/kernels.h. Linked
// against nvcc-built kernels in libpreimage, or against the same kernel sources running on the
// host simulator in the tests.
#include <string>

#include "engine/backend.h"
#include "engine/backend_forward.h"
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
  PREIMAGE_BACKEND_FORWARD_OPS(kernels)
  void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                        const int* seg_offsets, int nseg) override {
    kernels::search_distances(q, e, dist, nq, ne, dim, seg_offsets, nseg);
  }
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
