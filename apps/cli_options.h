// The command line's one flag vocabulary, grammar and typed accessor, shared by every
// subcommand. Parsing validates types and ranges and names the flag at fault; each subcommand
// states which flags it accepts (a FlagSet, which also writes its --help), so a flag that means
// nothing to it is an error rather than silently ignored.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "preimage/recipes.h"

namespace preimage::cli {

using preimage::LayerWeight;

// ---- flags: one vocabulary, one grammar, one typed accessor, one help format ------------------

// A flag as --help shows it. `value` names its argument ("" for a switch, which takes none);
// `def` is the default as shown ("" when there is none).
struct Flag {
  std::string name, value, help, def;
};

// The flags one subcommand accepts: names from the shared vocabulary (the same meaning in every
// command, e.g. --weights), the command's own flags, and per-command defaults. It drives parsing
// (unknown flags are errors, switches take no value), the typed accessors' defaults and --help,
// so what --help says is what the command does.
class FlagSet {
 public:
  FlagSet() = default;
  // Throws std::logic_error for a shared name the vocabulary lacks (a programming error).
  FlagSet(std::initializer_list<const char*> shared, std::vector<Flag> own = {});
  FlagSet& add_shared(std::initializer_list<const char*> names);
  FlagSet& add(Flag own);
  // Sets the default shown and used for `name` (which must be in the set).
  FlagSet& set_default(const std::string& name, std::string def);
  const Flag* find(const std::string& name) const;
  const std::vector<Flag>& flags() const { return flags_; }  // sorted by name
  std::set<std::string> names() const;

 private:
  std::vector<Flag> flags_;
};

// The parsed flags of one command. The typed accessors return the given value or, when the flag
// is absent, the FlagSet's default, and throw preimage::Error naming the flag for a malformed or
// out-of-range value.
struct FlagArgs {
  std::string command;
  std::map<std::string, std::string> flags;  // given flags, without "--"; switches "1" or "0"
  std::vector<std::string> positional;
  const FlagSet* set = nullptr;

  bool given(const std::string& k) const { return flags.count(k) > 0; }
  std::string text(const std::string& k) const;
  bool on(const std::string& k) const;  // a switch
  long integer(const std::string& k, long lo, long hi) const;
  double number(const std::string& k, double lo, double hi) const;  // also "A/B", e.g. 8/255
  // The value of a flag the command cannot run without ("" counts as missing).
  std::string required(const std::string& k) const;
  // Refuses positional arguments beyond `max` (naming the first extra one).
  void no_more_positional(size_t max) const;
};

// The one flag grammar of every subcommand: --key VALUE, --key=VALUE, switches without a value
// (or =1/true/0/false), "-k" for --k; anything else is positional. Throws preimage::Error naming
// `command` and the flag for unknown, repeated or value-less flags. `set` must outlive the result.
FlagArgs parse_flags(const std::string& command, int argc, char** argv, int first,
                     const FlagSet& set);

// The one number grammar: an integer, or a number (also "A/B"), in [lo, hi]; errors name --flag.
long parse_integer(const std::string& value, const std::string& flag, long lo, long hi);
double parse_number(const std::string& value, const std::string& flag, double lo, double hi);

// The options of the recipe commands (texture, invert, style, ...; attributes show|apply).
struct Options {
  std::string command;
  std::vector<std::string> positional;
  FlagArgs args;  // the flags as given (the sidecar's settings) and the typed accessors

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

  bool given(const std::string& flag) const { return args.given(flag); }
  bool accepts(const std::string& flag) const { return args.set && args.set->find(flag); }
};

// --help of a command: "usage: preimage <usage>", the summary, then every flag with its value,
// help text and default.
std::string flags_help(const std::string& usage, const std::string& summary, const FlagSet& set);

// A subcommand's self-description: its usage line (after "preimage "), summary and flags.
struct CommandSpec {
  std::string usage, summary;
  FlagSet flags;
  std::string help() const { return flags_help(usage, summary, flags); }
};

// The recipe commands' Options from argv[first..] and the command's FlagSet. Throws
// preimage::Error naming the flag for unknown flags, missing values, bad numbers and out-of-range
// values.
Options parse_options(const std::string& command, int argc, char** argv, int first,
                      const FlagSet& set);

// "relu1_1:0.5,relu2_1" → [{relu1_1, 0.5}, {relu2_1, 1}]
std::vector<LayerWeight> parse_layers(const std::string& spec, const std::string& flag);

}  // namespace preimage::cli
