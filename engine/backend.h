// The one dispatch point: engine code asks backend(device) and calls the op; the CPU backend
// forwards to engine/cpu/, the CUDA backend to the launchers in kernels/kernels.h (nvcc-built, or
// the same sources on the host simulator in tests). Signatures mirror engine/cpu/cpu_ops.h.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/hog_shape.h"
#include "kernels/op_shapes.h"
#include "preimage/device.h"

namespace preimage {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;

  virtual float* alloc(size_t count) = 0;
  virtual void free(float* p) noexcept = 0;
  virtual void copy_from_host(float* dst, const float* src, size_t count) = 0;
  virtual void copy_to_host(float* dst, const float* src, size_t count) = 0;
  virtual void copy(float* dst, const float* src, size_t count) = 0;  // within the device
  virtual void synchronize() = 0;

  virtual void conv2d_fwd(const float* x, const float* w, const float* b, float* y,
                          const ConvShape& s, bool relu) = 0;
  virtual void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                               const ConvShape& s) = 0;
  virtual void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                                 const ConvShape& s, bool accumulate) = 0;
  virtual void maxpool_fwd(const float* x, float* y, const PoolShape& s) = 0;
  virtual void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s) = 0;
  virtual void avgpool_fwd(const float* x, float* y, const PoolShape& s) = 0;
  virtual void avgpool_bwd(const float* dy, float* dx, const PoolShape& s) = 0;
  virtual void relu_fwd(const float* x, float* y, size_t count) = 0;
  virtual void relu_bwd(const float* y, const float* dy, float* dx, size_t count) = 0;
  virtual void fill(float* x, float value, size_t count) = 0;
  virtual void axpby(float a, const float* x, float b, float* y, size_t count) = 0;
  virtual void mul(const float* a, const float* b, float* y, size_t count) = 0;
  virtual void channel_affine(const float* x, float* y, int n, size_t plane,
                              const ChannelAffine& a) = 0;
  virtual double dot(const float* a, const float* b, size_t count) = 0;
  virtual double sum(const float* x, size_t count) = 0;
  virtual double sum_squares(const float* x, size_t count) = 0;
  virtual void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in,
                          int out) = 0;
  virtual void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in,
                               int out) = 0;
  virtual void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n,
                                  int in, int out, bool accumulate) = 0;

  // ---- L-BFGS vector ops (kernels/lbfgs.cu; contracts in engine/cpu/cpu_ops.h) -------------
  virtual void lbfgs_project_grad(const float* x, const float* g, float lo, float hi, bool bounded,
                                  float* pg, size_t n, double* out) = 0;
  virtual void lbfgs_update(const float* x0, const float* g0, const float* x1, const float* g1,
                            float lo, float hi, bool bounded, float* s, float* y, float* pg,
                            size_t n, double* out) = 0;
  virtual void lbfgs_dots(const float* S, const float* Y, size_t ld, int rows, int skip,
                          const float* q0, const float* q1, const float* q2, size_t n,
                          double* out) = 0;
  virtual void lbfgs_combine(const float* S, const float* Y, size_t ld, int rows,
                             const double* coef, const float* x, const float* g, float lo, float hi,
                             bool bounded, float* d, size_t n, double* out) = 0;
  virtual void lbfgs_step(const float* x0, const float* d, double t, float lo, float hi,
                          bool bounded, float* x1, size_t n) = 0;
  virtual void lbfgs_dir_deriv(const float* x0, const float* d, const float* g, double t, float lo,
                               float hi, bool bounded, size_t n, double* out) = 0;

  // ---- texture statistics and priors (kernels/gram.cu, kernels/bilinear.cu,
  //      kernels/priors.cu; contracts in engine/cpu/cpu_ops.h) ------------------------------
  virtual void gram_fwd(const float* f, float* g, int c, int m) = 0;
  virtual double gram_loss_grad(const float* f, const float* g, const float* g_target, float* df,
                                int c, int m, float grad_scale) = 0;
  virtual void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb,
                                 int m) = 0;
  virtual void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa,
                                 float* dfb, int ca, int cb, int m) = 0;
  virtual double bilinear_ssqrt_fwd(const float* b, float* y, size_t count, float eps) = 0;
  virtual double bilinear_ssqrt_bwd(const float* y, const float* z_target, const float* dz,
                                    float* db, size_t count, double norm, double z_dot_g,
                                    float scale) = 0;
  virtual double softmax_xent_loss_grad(const float* s, float* ds, int k, int target,
                                        float scale) = 0;
  virtual double tv_loss_grad(const float* x, float* dx, int planes, int h, int w, float beta,
                              float eps, float grad_scale) = 0;
  virtual double alpha_loss_grad(const float* x, float* dx, int planes, size_t plane, float alpha,
                                 float eps, float grad_scale) = 0;

  // ---- texture search (kernels/search.cu, engine/cpu/search.cpp; contract in cpu_ops.h):
  //      dist (nq, ne) = Σ_s sqrt(max(0, 2 − 2⟨q_s, e_s⟩)), seg_offsets a host array ---------
  virtual void search_distances(const float* q, const float* e, float* dist, int nq, int ne,
                                int dim, const int* seg_offsets, int nseg) = 0;

  // ---- up-convolutional decoders (kernels/conv_transpose.cu, kernels/adam.cu; contracts in
  //      engine/cpu/cpu_ops.h) ----------------------------------------------------------------
  virtual void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                                  const ConvTransposeShape& s) = 0;
  virtual void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                                       const ConvTransposeShape& s) = 0;
  virtual void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                                         const ConvTransposeShape& s, bool accumulate) = 0;
  virtual void leaky_relu_fwd(const float* x, float* y, size_t count, float slope) = 0;
  virtual void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t count,
                              float slope) = 0;
  virtual void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr,
                           float beta1, float beta2, float eps, long step, float grad_scale) = 0;
  // ---- HOG / dense SIFT (kernels/hog.cu, engine/cpu/hog.cpp; contracts in
  //      kernels/hog_shape.h): cell histograms, L2-Hys blocks, UoCTTI; outputs overwritten ----
  virtual void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s) = 0;
  virtual void hog_cells_bwd(const float* x, const float* dhist, float* dx,
                             const HogCellShape& s) = 0;
  virtual void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s) = 0;
  virtual void hog_block_bwd(const float* hist, const float* dy, float* dhist,
                             const HogBlockShape& s) = 0;
  virtual void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s) = 0;
  virtual void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist,
                              const HogUocttiShape& s) = 0;
};

// Throws Error when the device is unavailable (with the reason).
Backend& backend(Device d);

// Defined in engine/cuda/backend_cuda.cpp (CUDA or simulator builds) or backend_none.cpp:
// the CUDA backend, or nullptr with *reason saying why there is none.
Backend* cuda_backend(std::string* reason);

}  // namespace preimage
