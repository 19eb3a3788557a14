// Seeded random-feature VGG: the embedded default ("random:SEED"). He-initialized convolutions
// keep activations at a stable scale through all 16 layers, so every tap carries signal.
#include <cmath>

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
  // splitmix64 + Box–Muller: ~20M draws in a fraction of a second (std::normal_distribution
  // took ~1.5 s), and the same numbers on every standard library.
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  auto next_u64 = [&state] {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  bool have_spare = false;
  float spare = 0.f;
  auto normal = [&]() -> float {
    if (have_spare) {
      have_spare = false;
      return spare;
    }
    const double u1 = (double(next_u64() >> 11) + 0.5) * 0x1.0p-53;
    const double u2 = double(next_u64() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
    spare = float(r * std::sin(a));
    have_spare = true;
    return float(r * std::cos(a));
  };
  int in_c = 3;
  for (const Layer& l : vgg_layers(arch)) {
    if (l.kind != LayerKind::Conv) continue;
    const int fan_in = in_c * l.k * l.k;
    const float scale = std::sqrt(2.f / float(fan_in));
    std::vector<float> wv(size_t(l.out_channels) * fan_in), bv(l.out_channels);
    for (auto& v : wv) v = scale * normal();
    for (auto& v : bv) v = 0.01f * normal();
    w.layers[l.name] = LayerWeights{Tensor::from_vector({l.out_channels, in_c, l.k, l.k}, wv),
                                    Tensor::from_vector({l.out_channels, 1, 1, 1}, bv)};
    in_c = l.out_channels;
  }
  return w;
}

}  // namespace preimage
