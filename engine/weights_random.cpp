// Seeded random-feature VGG: the embedded default ("random:SEED"). He-initialized convolutions
// keep activations at a stable scale through all 16 layers, so every tap carries signal.
#include <cmath>
#include <random>

#include "preimage/network.h"
#include "preimage/weights.h"

namespace preimage {

Weights random_weights(Arch arch, uint64_t seed) {
  Weights w;
  w.arch = arch;
  w.identity = "random:" + std::to_string(seed);
  w.random = true;
  w.format = "random";
  w.preprocess.color_order = "RGB";
  w.preprocess.value_range = 1.f;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  for (int c = 0; c < 3; ++c) {
    w.preprocess.mean[c] = mean[c];
    w.preprocess.std[c] = stdv[c];
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  int in_c = 3;
  for (const Layer& l : vgg_layers(arch)) {
    if (l.kind != LayerKind::Conv) continue;
    const int fan_in = in_c * l.k * l.k;
    const float scale = std::sqrt(2.f / float(fan_in));
    std::vector<float> wv(size_t(l.out_channels) * fan_in), bv(l.out_channels);
    for (auto& v : wv) v = scale * normal(rng);
    for (auto& v : bv) v = 0.01f * normal(rng);
    w.layers[l.name] = LayerWeights{Tensor::from_vector({l.out_channels, in_c, l.k, l.k}, wv),
                                    Tensor::from_vector({l.out_channels, 1, 1, 1}, bv)};
    in_c = l.out_channels;
  }
  return w;
}

}  // namespace preimage
