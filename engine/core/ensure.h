// ensure(t, shape, device): the buffers that the network, objectives, descriptors and decoders
// keep between calls are reallocated only when the shape or the device changes (or when t lost
// its storage, e.g. moved from). Engine-private.
#pragma once
#include "preimage/tensor.h"

namespace preimage {

inline void ensure(Tensor& t, const Shape& s, Device d) {
  if (t.shape() != s || t.device() != d || (t.data() == nullptr && s.numel() != 0))
    t = Tensor(s, d);
}

}  // namespace preimage
