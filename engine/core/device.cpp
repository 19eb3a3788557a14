// Device selection: names, availability, --device parsing (the dispatch is
// engine/core/backend.cpp).
#include "preimage/device.h"

#include <string>

#include "engine/core/backend.h"
#include "preimage/error.h"

namespace preimage {

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

}  // namespace preimage
