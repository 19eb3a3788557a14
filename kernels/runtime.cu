/*
Device runtime wrappers: the project's only cudaMalloc / cudaFree, host↔device copies, device
discovery and synchronization. No kernels here.

  device_alloc(count)      cudaMalloc of count floats; throws std::runtime_error naming the byte
                           count asked for and the CUDA error string (count 0 → nullptr).
  device_free(p)           cudaFree, never throws (safe in destructors).
  copy_h2d / d2h / d2d     synchronous cudaMemcpy of count floats; errors throw (CUDA_CHECK).
  device_count(reason)     cudaGetDeviceCount's RETURN CODE decides: with no driver it returns
                           cudaErrorInsufficientDriver (35) and leaves the count untouched, so the
                           count alone means nothing. 0 devices → *reason says why.
  synchronize()            cudaDeviceSynchronize, errors of earlier asynchronous work throw here.
  device_free_memory()     cudaMemGetInfo's free bytes.

Test: ctest -R kernels (test/test_kernels_elementwise.cpp covers alloc/copy round trips and the
error path of a huge allocation); on the simulator "device" memory is host memory.
*/
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {

float* device_alloc(size_t count) {
  if (count == 0) return nullptr;
  if (count > std::numeric_limits<size_t>::max() / sizeof(float))
    throw std::runtime_error("device_alloc: " + std::to_string(count) +
                             " floats overflow the byte count");
  const size_t bytes = count * sizeof(float);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so that later checks do not see it
    throw std::runtime_error("device_alloc: cudaMalloc of " + std::to_string(bytes) + " bytes (" +
                             std::to_string(count) + " floats) failed: " + cudaGetErrorString(err));
  }
  return static_cast<float*>(p);
}

void device_free(float* p) noexcept {
  if (!p) return;
  if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

void copy_h2d(float* dst, const float* src, size_t count) {
  if (count == 0) return;
  CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice));
}

void copy_d2h(float* dst, const float* src, size_t count) {
  if (count == 0) return;
  CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost));
}

void copy_d2d(float* dst, const float* src, size_t count) {
  if (count == 0 || dst == src) return;
  CUDA_CHECK(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice));
}

int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    if (reason) *reason = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return 0;
  }
  if (count <= 0) {
    if (reason) *reason = "cudaGetDeviceCount: no CUDA device";
    return 0;
  }
  if (reason) reason->clear();
  return count;
}

void synchronize() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

size_t device_free_memory() {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

}  // namespace preimage::kernels
