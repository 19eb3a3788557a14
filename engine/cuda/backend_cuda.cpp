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
  void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s) override {
    kernels::hog_cells_fwd(x, hist, s);
  }
  void hog_cells_bwd(const float* x, const float* dhist, float* dx,
                     const HogCellShape& s) override {
    kernels::hog_cells_bwd(x, dhist, dx, s);
  }
  void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s) override {
    kernels::hog_block_fwd(hist, y, s);
  }
  void hog_block_bwd(const float* hist, const float* dy, float* dhist,
                     const HogBlockShape& s) override {
    kernels::hog_block_bwd(hist, dy, dhist, s);
  }
  void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s) override {
    kernels::hog_uoctti_fwd(hist, y, s);
  }
  void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist,
                      const HogUocttiShape& s) override {
    kernels::hog_uoctti_bwd(hist, dy, dhist, s);
  }
  void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                        const int* seg_offsets, int nseg) override {
    kernels::search_distances(q, e, dist, nq, ne, dim, seg_offsets, nseg);
  }
  void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                          const ConvTransposeShape& s) override {
    kernels::conv_transpose_fwd(x, w, b, y, s);
  }
  void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                               const ConvTransposeShape& s) override {
    kernels::conv_transpose_bwd_data(dy, w, dx, s);
  }
  void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                                 const ConvTransposeShape& s, bool accumulate) override {
    kernels::conv_transpose_bwd_filter(x, dy, dw, db, s, accumulate);
  }
  void leaky_relu_fwd(const float* x, float* y, size_t n, float slope) override {
    kernels::leaky_relu_fwd(x, y, n, slope);
  }
  void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t n, float slope) override {
    kernels::leaky_relu_bwd(y, dy, dx, n, slope);
  }
  void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                   float beta2, float eps, long step, float grad_scale) override {
    kernels::adam_update(p, g, m, v, n, lr, beta1, beta2, eps, step, grad_scale);
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
