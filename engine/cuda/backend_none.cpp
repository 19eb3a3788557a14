// CUDA backend of a build without nvcc: there is none, and device selection says why.
#include <string>

#include "engine/core/backend.h"

namespace preimage {

Backend* cuda_backend(std::string* reason) {
  if (reason)
    *reason =
        "this build has no CUDA backend (configured with PREIMAGE_CUDA=OFF, or no nvcc was found)";
  return nullptr;
}

}  // namespace preimage
