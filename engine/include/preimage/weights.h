// VGG weights: from the project's canonical HDF5 layout, from Keras' VGG16/VGG19 .h5 files, or
// seeded random features ("random:SEED"). Preprocessing travels with the weights, so callers always
// hand the network RGB images in [0, 1] and never need to know where the weights came from.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "preimage/tensor.h"

namespace preimage {

enum class Arch { VGG16, VGG19 };
const char* arch_name(Arch a);             // "vgg16" | "vgg19"
Arch parse_arch(const std::string& name);  // throws Error listing the valid names

// What the network expects at its input, in the file's own terms:
// x_net[c] = (x_rgb01[src(c)] * value_range - mean[c]) / std[c], where src() maps the file's
// colour order onto RGB.
struct Preprocess {
  std::string color_order = "RGB";  // "RGB" or "BGR"
  float value_range = 1.f;          // 1 (images in [0,1]) or 255
  float mean[3] = {0, 0, 0};        // in the file's channel order and value range
  float std[3] = {1, 1, 1};
};

struct LayerWeights {
  Tensor weight;  // conv: (O,C,KH,KW); linear: (OUT,IN,1,1) with IN in (C,H,W) order
  Tensor bias;    // (O,1,1,1)
};

struct Weights {
  Arch arch = Arch::VGG19;
  std::string identity;  // "random:SEED" or "FILE (sha256 HEX)"; printed and stored in outputs
  bool random = false;   // seeded random features (or a file whose random_init attribute is set)
  std::string format;    // "random", "canonical", "keras"
  Preprocess preprocess;
  std::map<std::string, LayerWeights> layers;  // conv1_1 … conv5_4, optionally fc6 fc7 fc8
};

// spec: "random:SEED" (arch used for random weights) or a path to an .h5 file in the canonical
// or Keras layout (detected; the file's own architecture wins). Every failure throws Error naming
// the file, dataset or layer and what was expected.
Weights load_weights(const std::string& spec, Arch arch_for_random = Arch::VGG19);

// He-initialized VGG convolutions (std = sqrt(2 / fan_in), bias 0.01 × N(0,1)), no fc layers,
// preprocessing = ImageNet mean/std on RGB [0,1]. Deterministic for a given seed.
Weights random_weights(Arch arch, uint64_t seed);

// Writes the canonical layout (documented in weights/README.md) atomically (temp + rename).
void save_weights(const Weights& w, const std::string& path);

// SHA-256 of a file as lowercase hex (identity of weight files in sidecars and indexes).
std::string sha256_file(const std::string& path);

}  // namespace preimage
