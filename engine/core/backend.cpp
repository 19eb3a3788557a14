// The dispatch point backend(Device) and the device-use hook.
#include "engine/core/backend.h"

#include <atomic>
#include <string>

#include "preimage/error.h"

namespace preimage {

Backend* cpu_backend_instance();  // engine/cpu/backend_cpu.cpp

namespace {
std::atomic<void (*)()> g_device_use_hook{nullptr};
}  // namespace

void set_device_use_hook(void (*hook)()) {
  g_device_use_hook.store(hook);
}

Backend& backend(Device d) {
  if (d == Device::CPU) return *cpu_backend_instance();
  if (void (*hook)() = g_device_use_hook.load()) hook();
  std::string reason;
  Backend* b = cuda_backend(&reason);
  require(b != nullptr, "CUDA backend unavailable: " + reason);
  return *b;
}

}  // namespace preimage
