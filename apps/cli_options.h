// The command line's one option vocabulary, shared by every subcommand. Parsing validates types
// and ranges and names the flag at fault; each subcommand states which flags it accepts, so a
// flag that means nothing to it is an error rather than silently ignored.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "preimage/recipes.h"

namespace preimage::cli {

using preimage::LayerWeight;

struct Options {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> raw;  // every flag given, for the sidecar
  std::set<std::string> flags;             // the flags this subcommand accepts

  std::string weights = "random:0";
  std::string arch = "vgg19";
  std::string device = "auto";
  std::string input;
  std::string size;  // "512" (long side) or "WxH"
  std::vector<LayerWeight> layers;
  int iters = 0;  // 0: the subcommand's default
  int history = 10;
  uint64_t seed = 0;
  int octaves = 1;
  float octave_scale = 2.f;
  std::string init = "noise";  // noise | input | FILE
  float tv = -1.f;             // weight; < 0: the subcommand's default
  float tv_beta = 2.f;
  float alpha = 6.f;  // α-norm exponent
  float alpha_weight = 0.f;
  int jitter = 0;
  std::string out;
  int save_every = 0;
  bool resume = false;
  bool quiet = false;

  // subcommand-specific
  std::string stats = "gram";               // texture: gram | bcnn
  std::string style;                        // style: style image(s), comma-separated
  std::vector<LayerWeight> content_layers;  // style: default relu4_2
  float style_scale = 1.f;                  // style: style long side / output long side
  std::vector<float> style_blend_weights;   // style: one per --style image
  bool json = false;                        // print the result JSON on stdout
  float content_weight = 1.f, style_weight = 1.f;
  bool original_colors = false;
  int channel = -1, neuron_y = -1, neuron_x = -1, class_index = -1;
  float l2_decay = 0.f, clip_small = 0.f;
  int blur_every = 0;
  float blur_sigma = 0.5f;
  float step = 1.5f;
  float strength = 1.f;

  bool given(const std::string& flag) const { return raw.count(flag) > 0; }
};

// The one flag grammar of every subcommand: --key VALUE, --key=VALUE, boolean flags without a
// value (or =1/true/0/false), "-k" for --k; anything else is positional. Throws preimage::Error
// naming `command` and the flag for unknown, repeated or value-less flags.
struct FlagArgs {
  std::map<std::string, std::string> flags;  // without "--"; booleans "1" or "0"
  std::vector<std::string> positional;
};
FlagArgs parse_flags(const std::string& command, int argc, char** argv, int first,
                     const std::set<std::string>& allowed, const std::set<std::string>& boolean);

// Parses argv[first..]; `allowed` lists the flags (without "--") the subcommand accepts.
// Throws preimage::Error naming the flag for unknown flags, missing values, bad numbers and
// out-of-range values.
Options parse_options(const std::string& command, int argc, char** argv, int first,
                      const std::set<std::string>& allowed);

// "relu1_1:0.5,relu2_1" → [{relu1_1, 0.5}, {relu2_1, 1}]
std::vector<LayerWeight> parse_layers(const std::string& spec, const std::string& flag);

}  // namespace preimage::cli
