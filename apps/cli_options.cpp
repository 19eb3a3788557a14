// Option parsing for the preimage command line (see cli_options.h).
#include "cli_options.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "preimage/error.h"

namespace preimage::cli {
namespace {

// The shared vocabulary: flags that mean the same in every command that takes them. A command
// adds its own flags (or its own text for a shared name) with FlagSet::add.
const std::vector<Flag>& vocabulary() {
  static const std::vector<Flag> v = {
      {"weights", "FILE|random:SEED", "VGG weights (HDF5) or seeded random features", "random:0"},
      {"arch", "vgg16|vgg19", "network architecture", "vgg19"},
      {"device", "auto|cpu|cuda", "where to compute (auto: a GPU when there is one)", "auto"},
      {"input", "IMAGE", "input image", "required"},
      {"size", "N|WxH", "output size: long side N or WxH", "the input's size"},
      {"layers", "L[:W],...", "taps and their weights", ""},
      {"layer", "L", "the layer", "required"},
      {"iters", "N", "iterations per octave", ""},
      {"history", "M", "L-BFGS memory (pairs)", "10"},
      {"seed", "S", "random seed", "0"},
      {"octaves", "K", "coarse-to-fine stages", "1"},
      {"octave-scale", "F", "size ratio between octaves", "2"},
      {"init", "noise|random|input|FILE", "initial image (random is an alias of noise)", "noise"},
      {"tv", "W", "weight of the per-pixel mean of TV^B", "0"},
      {"tv-beta", "B", "TV exponent", "2"},
      {"alpha", "A", "alpha-norm exponent", "6"},
      {"alpha-weight", "W", "weight of the per-pixel mean of |x|^A", "0"},
      {"jitter", "PX", "random shift per ascent step", "0"},
      {"out", "FILE.png", "output image; FILE.png.json is the sidecar", "required"},
      {"save-every", "K", "save the image and a checkpoint every K iterations", "0 (off)"},
      {"resume", "", "continue an interrupted run from its checkpoint", "off"},
      {"quiet", "", "no progress output", "off"},
      {"json", "", "print the result as JSON on stdout", "off"},
      {"batch", "B", "images per forward pass", "8"},
      {"channel", "C", "channel of --layer(s)", "none"},
      {"neuron", "Y,X", "one position of --channel instead of its spatial mean", "none"},
      {"class", "K", "class score (a classifier layer, e.g. fc8)", "none"},
      {"step", "F", "ascent step (/255 per mean |gradient|)", "1.5"},
      {"content-weight", "W", "content loss weight", "1"},
  };
  return v;
}

std::string range_text(double lo, double hi) {
  auto num = [](double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", x);
    return std::string(b);
  };
  return "[" + num(lo) + ", " + num(hi) + "]";
}

}  // namespace

FlagSet::FlagSet(std::initializer_list<const char*> shared, std::vector<Flag> own) {
  add_shared(shared);
  for (auto& f : own) add(std::move(f));
}

FlagSet& FlagSet::add_shared(std::initializer_list<const char*> shared) {
  for (const char* name : shared) {
    const Flag* found = nullptr;
    for (const Flag& f : vocabulary())
      if (f.name == name) found = &f;
    if (!found) throw std::logic_error(std::string("flag --") + name + " is not in the vocabulary");
    add(*found);
  }
  return *this;
}

FlagSet& FlagSet::add(Flag own) {
  auto it = std::lower_bound(flags_.begin(), flags_.end(), own.name,
                             [](const Flag& f, const std::string& n) { return f.name < n; });
  if (it != flags_.end() && it->name == own.name)
    *it = std::move(own);  // the command's own text for a shared name
  else
    flags_.insert(it, std::move(own));
  return *this;
}

FlagSet& FlagSet::set_default(const std::string& name, std::string def) {
  for (Flag& f : flags_)
    if (f.name == name) {
      f.def = std::move(def);
      return *this;
    }
  throw std::logic_error("set_default: flag --" + name + " is not in the set");
}

const Flag* FlagSet::find(const std::string& name) const {
  for (const Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

std::set<std::string> FlagSet::names() const {
  std::set<std::string> out;
  for (const Flag& f : flags_) out.insert(f.name);
  return out;
}

std::string FlagArgs::text(const std::string& k) const {
  auto it = flags.find(k);
  if (it != flags.end()) return it->second;
  const Flag* f = set ? set->find(k) : nullptr;
  if (!f) throw std::logic_error(command + ": flag --" + k + " is not in its FlagSet");
  return f->def == "required" || f->def == "none" ? std::string() : f->def;
}

bool FlagArgs::on(const std::string& k) const {
  auto it = flags.find(k);
  return it != flags.end() && it->second == "1";
}

// The given value, else the default; a default that is not a number (e.g. "the input's size")
// means the caller must handle the absent flag itself.
static std::string numeric_value(const FlagArgs& a, const std::string& k) {
  if (a.given(k)) return a.flags.at(k);
  const std::string d = a.text(k);
  if (d.empty() || !(std::isdigit((unsigned char)d[0]) || d[0] == '-' || d[0] == '.'))
    throw std::logic_error(a.command + ": --" + k + " has no numeric default ('" + d + "')");
  return d.substr(0, d.find(' '));  // "0 (off)" -> "0"
}

long parse_integer(const std::string& v, const std::string& k, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  require(!v.empty() && end && *end == '\0' && errno == 0,
          "--" + k + ": expected an integer, got '" + v + "'");
  require(x >= lo && x <= hi,
          "--" + k + ": expected an integer in " + range_text(lo, hi) + ", got " + v);
  return x;
}

double parse_number(const std::string& v, const std::string& k, double lo, double hi) {
  double x = 0;
  const auto slash = v.find('/');  // "8/255"
  char* end = nullptr;
  errno = 0;
  if (slash != std::string::npos) {
    const std::string num = v.substr(0, slash);  // named: `end` points into it
    const double a = std::strtod(num.c_str(), &end);
    const bool ok_a = end && *end == '\0' && slash > 0;
    const std::string den = v.substr(slash + 1);
    const double b = std::strtod(den.c_str(), &end);
    require(ok_a && !den.empty() && end && *end == '\0' && b != 0,
            "--" + k + ": expected a number or A/B, got '" + v + "'");
    x = a / b;
  } else {
    x = std::strtod(v.c_str(), &end);
    require(!v.empty() && end && *end == '\0' && errno == 0,
            "--" + k + ": expected a number, got '" + v + "'");
  }
  require(std::isfinite(x) && x >= lo && x <= hi,
          "--" + k + ": expected a number in " + range_text(lo, hi) + ", got " + v);
  return x;
}

long FlagArgs::integer(const std::string& k, long lo, long hi) const {
  return parse_integer(numeric_value(*this, k), k, lo, hi);
}

double FlagArgs::number(const std::string& k, double lo, double hi) const {
  return parse_number(numeric_value(*this, k), k, lo, hi);
}

std::string FlagArgs::required(const std::string& k) const {
  const std::string v = given(k) ? flags.at(k) : std::string();
  if (v.empty()) {
    const Flag* f = set ? set->find(k) : nullptr;
    throw Error(command + ": --" + k + (f && !f->value.empty() ? " " + f->value : "") +
                " is required");
  }
  return v;
}

void FlagArgs::no_more_positional(size_t max) const {
  require(positional.size() <= max,
          command + ": unexpected argument '" + (positional.size() > max ? positional[max] : "") +
              "' (options are --flag VALUE; see preimage " + command + " --help)");
}

std::string flags_help(const std::string& usage, const std::string& summary, const FlagSet& set) {
  std::string out = "usage: preimage " + usage + "\n" + summary + "\noptions:\n";
  for (const Flag& f : set.flags()) {
    const std::string lhs = "--" + f.name + (f.value.empty() ? "" : " " + f.value);
    const std::string def =
        f.def == "required" ? f.def : "default: " + (f.def.empty() ? std::string("none") : f.def);
    char pad[64];
    std::snprintf(pad, sizeof pad, "  %-26s ", lhs.c_str());
    out += pad + f.help + " (" + def + ")\n";
  }
  return out;
}

std::vector<LayerWeight> parse_layers(const std::string& spec, const std::string& flag) {
  std::vector<LayerWeight> out;
  size_t p = 0;
  while (p <= spec.size()) {
    size_t q = spec.find(',', p);
    if (q == std::string::npos) q = spec.size();
    std::string item = spec.substr(p, q - p);
    p = q + 1;
    if (item.empty()) continue;
    LayerWeight lw;
    auto colon = item.find(':');
    lw.layer = item.substr(0, colon);
    if (colon != std::string::npos)
      lw.weight = float(parse_number(item.substr(colon + 1), flag, 0, 1e12));
    require(!lw.layer.empty(), "--" + flag + ": empty layer name in '" + spec + "'");
    out.push_back(lw);
  }
  require(!out.empty(), "--" + flag + ": expected name[:weight],… got '" + spec + "'");
  return out;
}

FlagArgs parse_flags(const std::string& command, int argc, char** argv, int first,
                     const FlagSet& set) {
  FlagArgs a;
  a.command = command;
  a.set = &set;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "-k") s = "--k";
    if (s.rfind("--", 0) != 0 || s == "--") {
      a.positional.push_back(s);
      continue;
    }
    std::string key = s.substr(2), value;
    const auto eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    const Flag* f = set.find(key);
    require(f != nullptr,
            command + ": unknown flag --" + key + " (see preimage " + command + " --help)");
    if (f->value.empty()) {  // a switch
      require(!inline_value || value == "1" || value == "true" || value == "0" || value == "false",
              "--" + key + " takes no value");
      value = (!inline_value || value == "1" || value == "true") ? "1" : "0";
    } else if (!inline_value) {
      require(i + 1 < argc, "--" + key + " needs a value");
      value = argv[++i];
    }
    require(!a.flags.count(key), "--" + key + " given twice");
    a.flags[key] = value;
  }
  return a;
}

Options parse_options(const std::string& command, int argc, char** argv, int first,
                      const FlagSet& set) {
  Options o;
  o.command = command;
  o.args = parse_flags(command, argc, argv, first, set);
  const FlagArgs& fa = o.args;
  o.positional = fa.positional;
  auto real = [&](const std::string& k, double lo, double hi) {
    return float(fa.number(k, lo, hi));
  };
  auto whole = [&](const std::string& k, long lo, long hi) { return int(fa.integer(k, lo, hi)); };
  for (const auto& [k, v] : fa.flags) {
    if (k == "weights")
      o.weights = v;
    else if (k == "arch")
      o.arch = v;
    else if (k == "device")
      o.device = v;
    else if (k == "input")
      o.input = v;
    else if (k == "size")
      o.size = v;
    else if (k == "layers" || k == "layer")
      o.layers = parse_layers(v, k);
    else if (k == "iters")
      o.iters = whole(k, 1, 1000000);
    else if (k == "history")
      o.history = whole(k, 1, 1000);
    else if (k == "seed")
      o.seed = uint64_t(whole(k, 0, 2147483647));
    else if (k == "octaves")
      o.octaves = whole(k, 1, 16);
    else if (k == "octave-scale")
      o.octave_scale = real(k, 1.01, 8);
    else if (k == "init")
      o.init = v;
    else if (k == "tv")
      o.tv = real(k, 0, 1e12);
    else if (k == "tv-beta")
      o.tv_beta = real(k, 1, 8);
    else if (k == "alpha")
      o.alpha = real(k, 1, 64);
    else if (k == "alpha-weight")
      o.alpha_weight = real(k, 0, 1e12);
    else if (k == "jitter")
      o.jitter = whole(k, 0, 4096);
    else if (k == "out")
      o.out = v;
    else if (k == "save-every")
      o.save_every = whole(k, 0, 1000000);
    else if (k == "resume")
      o.resume = v == "1";
    else if (k == "quiet")
      o.quiet = v == "1";
    else if (k == "stats")
      o.stats = v;
    else if (k == "style")
      o.style = v;
    else if (k == "content-layers")
      o.content_layers = parse_layers(v, k);
    else if (k == "style-scale")
      o.style_scale = real(k, 1e-3, 64);
    else if (k == "style-blend-weights") {
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        o.style_blend_weights.push_back(float(parse_number(v.substr(p, q - p), k, 0, 1e12)));
        p = q + 1;
      }
    } else if (k == "json")
      o.json = v == "1";
    else if (k == "content-weight")
      o.content_weight = real(k, 0, 1e12);
    else if (k == "style-weight")
      o.style_weight = real(k, 0, 1e12);
    else if (k == "original-colors")
      o.original_colors = v == "1";
    else if (k == "channel")
      o.channel = whole(k, 0, 1 << 20);
    else if (k == "neuron") {
      auto c = v.find(',');
      require(c != std::string::npos, "--neuron: expected Y,X, got '" + v + "'");
      o.neuron_y = int(parse_integer(v.substr(0, c), k, 0, 1 << 20));
      o.neuron_x = int(parse_integer(v.substr(c + 1), k, 0, 1 << 20));
    } else if (k == "class")
      o.class_index = whole(k, 0, 1 << 20);
    else if (k == "l2-decay")
      o.l2_decay = real(k, 0, 1);
    else if (k == "clip-small")
      o.clip_small = real(k, 0, 1);
    else if (k == "blur-every")
      o.blur_every = whole(k, 0, 1000000);
    else if (k == "blur-sigma")
      o.blur_sigma = real(k, 0, 16);
    else if (k == "step")
      o.step = real(k, 1e-6, 1e6);
    else if (k == "strength")
      o.strength = real(k, 0, 1e12);
  }
  require(o.positional.empty(),
          command + ": unexpected argument '" + (o.positional.empty() ? "" : o.positional[0]) +
              "' (options are --flag VALUE; see preimage " + command + " --help)");
  require(o.stats == "gram" || o.stats == "bcnn",
          "--stats: expected gram or bcnn, got '" + o.stats + "'");
  require(o.neuron_y < 0 || o.channel >= 0, "--neuron needs --channel");
  require(!(o.channel >= 0 && o.class_index >= 0), "--channel and --class contradict each other");
  if (!o.out.empty()) {
    const auto dot = o.out.rfind('.');
    require(dot != std::string::npos && o.out.substr(dot) == ".png",
            "--out: expected a .png path, got '" + o.out + "'");
  }
  return o;
}

}  // namespace preimage::cli
