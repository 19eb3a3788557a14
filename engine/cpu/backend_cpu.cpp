// The CPU backend: host memory (64-byte aligned) and the ops of engine/cpu/.
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "engine/backend.h"
#include "engine/backend_forward.h"
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
  void copy_from_host(float* d, const float* s, size_t n) override { copy(d, s, n); }
  void copy_to_host(float* d, const float* s, size_t n) override { copy(d, s, n); }
  void copy(float* d, const float* s, size_t n) override {
    if (n && d != s) std::memmove(d, s, n * sizeof(float));
  }
  void synchronize() override {}
  PREIMAGE_BACKEND_FORWARD_OPS(cpu)
  void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s) override {
    cpu::hog_cells_fwd(x, hist, s);
  }
  void hog_cells_bwd(const float* x, const float* dhist, float* dx,
                     const HogCellShape& s) override {
    cpu::hog_cells_bwd(x, dhist, dx, s);
  }
  void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s) override {
    cpu::hog_block_fwd(hist, y, s);
  }
  void hog_block_bwd(const float* hist, const float* dy, float* dhist,
                     const HogBlockShape& s) override {
    cpu::hog_block_bwd(hist, dy, dhist, s);
  }
  void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s) override {
    cpu::hog_uoctti_fwd(hist, y, s);
  }
  void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist,
                      const HogUocttiShape& s) override {
    cpu::hog_uoctti_bwd(hist, dy, dhist, s);
  }
  void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                        const int* seg_offsets, int nseg) override {
    cpu::search_distances(q, e, dist, nq, ne, dim, seg_offsets, nseg);
  }
  void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                          const ConvTransposeShape& s) override {
    cpu::conv_transpose_fwd(x, w, b, y, s);
  }
  void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                               const ConvTransposeShape& s) override {
    cpu::conv_transpose_bwd_data(dy, w, dx, s);
  }
  void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                                 const ConvTransposeShape& s, bool accumulate) override {
    cpu::conv_transpose_bwd_filter(x, dy, dw, db, s, accumulate);
  }
  void leaky_relu_fwd(const float* x, float* y, size_t n, float slope) override {
    cpu::leaky_relu_fwd(x, y, n, slope);
  }
  void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t n, float slope) override {
    cpu::leaky_relu_bwd(y, dy, dx, n, slope);
  }
  void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                   float beta2, float eps, long step, float grad_scale) override {
    cpu::adam_update(p, g, m, v, n, lr, beta1, beta2, eps, step, grad_scale);
  }
};

}  // namespace

Backend* cpu_backend_instance() {
  static CpuBackend instance;
  return &instance;
}

}  // namespace preimage
