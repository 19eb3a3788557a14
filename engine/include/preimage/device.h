// Devices: where a tensor's storage lives and which backend runs an op on it.
#pragma once
#include <string>
#include <string_view>

namespace preimage {

enum class Device { CPU, CUDA };

const char* device_name(Device d);

// True when this build has a CUDA backend (nvcc build, or the host simulator in tests) and the
// runtime reports at least one device. Checks cudaGetDeviceCount's return code, not only the count.
bool cuda_available();

// Why CUDA is unavailable ("built without CUDA", "cudaGetDeviceCount: insufficient driver", ...);
// empty when it is available.
std::string cuda_unavailable_reason();

// "auto" → CUDA when available else CPU; "cpu"; "cuda" (throws Error naming --device when
// unavailable). Anything else throws Error listing the valid values.
Device resolve_device(std::string_view spec);

}  // namespace preimage
