// The weights identity a trained model records of the weights it was trained on (a decoder's
// weights_hash, an attribute classifier's weights_fingerprint): FNV-1a 64 over the preprocessing
// and, in order, each named layer's weight and bias. Two byte layouts are in stored files, so
// both stay readable: Plain (decoders: `prefix` — the arch name — then strings and values as
// bytes) and Tagged (attribute classifiers: strings with their NUL, each tensor's 4 dims before
// its values). Engine-private.
#pragma once
#include <string>
#include <vector>

#include "preimage/weights.h"

namespace preimage {

enum class WeightsHashLayout { Plain, Tagged };

// 16 hex digits. Throws Error("<what>: the weights lack layer 'X'") for a missing layer.
std::string weights_hash(const Weights& w, const std::vector<std::string>& layers,
                         WeightsHashLayout layout, const std::string& prefix,
                         const std::string& what);

}  // namespace preimage
