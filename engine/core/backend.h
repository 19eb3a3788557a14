// The one dispatch point: engine code asks backend(device) and calls the op; the CPU backend
// forwards to engine/cpu/, the CUDA backend to the launchers in kernels/kernels.h (nvcc-built, or
// the same sources on the host simulator in tests). The ops are those of kernels/ops.def.
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

  // The compute ops: kernels/ops.def (signatures and contracts), forwarded by both backends.
#define PREIMAGE_OP(ret, name, params, args, tag, test) virtual ret name params = 0;
#include "kernels/ops.def"
#undef PREIMAGE_OP
};

// Throws Error when the device is unavailable (with the reason). Before handing out the CUDA
// backend it calls the device-use hook, when one is set (engine/core/backend.cpp).
Backend& backend(Device d);

// Called by backend(Device::CUDA) before any device work; nullptr for none. A forked HDF5 probe
// child sets it to end its rehearsal there (engine/io/h5_util.cpp).
void set_device_use_hook(void (*hook)());

// Defined in engine/cuda/backend_cuda.cpp (CUDA or simulator builds) or backend_none.cpp:
// the CUDA backend, or nullptr with *reason saying why there is none.
Backend* cuda_backend(std::string* reason);

}  // namespace preimage
