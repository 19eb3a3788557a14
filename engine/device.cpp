// Device selection and the dispatch point backend(Device).
#include "preimage/device.h"

#include <string>

#include "engine/backend.h"
#include "engine/h5_util.h"
#include "preimage/error.h"

namespace preimage {

Backend* cpu_backend_instance();  // engine/cpu/backend_cpu.cpp

const char* device_name(Device d) {
  return d == Device::CPU ? "cpu" : "cuda";
}

std::string cuda_unavailable_reason() {
  std::string reason;
  return cuda_backend(&reason) ? std::string() : reason;
}

bool cuda_available() {
  return cuda_unavailable_reason().empty();
}

Device resolve_device(std::string_view spec) {
  if (spec == "cpu") return Device::CPU;
  if (spec == "auto") return cuda_available() ? Device::CUDA : Device::CPU;
  if (spec == "cuda") {
    std::string reason = cuda_unavailable_reason();
    require(reason.empty(), "--device cuda: no usable CUDA device (" + reason + ")");
    return Device::CUDA;
  }
  throw Error("--device: expected auto, cpu or cuda, got '" + std::string(spec) + "'");
}

Backend& backend(Device d) {
  if (d == Device::CPU) return *cpu_backend_instance();
  if (h5::rehearsing()) h5::end_rehearsal();  // no device work in a forked probe child
  std::string reason;
  Backend* b = cuda_backend(&reason);
  require(b != nullptr, "CUDA backend unavailable: " + reason);
  return *b;
}

}  // namespace preimage
