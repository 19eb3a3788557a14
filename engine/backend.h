// The one dispatch point: engine code asks backend(device) and calls the op; the CPU backend
// forwards to engine/cpu/, the CUDA backend to the launchers in kernels/kernels.h (nvcc-built, or
// the same sources on the host simulator in tests). Signatures mirror engine/cpu/cpu_ops.h.
#pragma once
#include <cstddef>
#include <string>

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
};

// Throws Error when the device is unavailable (with the reason).
Backend& backend(Device d);

// Defined in engine/cuda/backend_cuda.cpp (CUDA or simulator builds) or backend_none.cpp:
// the CUDA backend, or nullptr with *reason saying why there is none.
Backend* cuda_backend(std::string* reason);

}  // namespace preimage
