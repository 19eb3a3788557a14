// Option parsing for the preimage command line (see cli_options.h).
#include "cli_options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "preimage/error.h"

namespace preimage::cli {
namespace {

const std::set<std::string> kBooleanFlags = {"resume", "quiet",        "original-colors", "json",
                                             "half",   "keep-content", "from-noise"};

int to_int(const std::string& v, const std::string& flag, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v.c_str(), &end, 10);
  require(!v.empty() && end && *end == '\0' && errno == 0,
          "--" + flag + ": expected an integer, got '" + v + "'");
  require(x >= lo && x <= hi, "--" + flag + ": expected an integer in [" + std::to_string(lo) +
                                  ", " + std::to_string(hi) + "], got " + v);
  return int(x);
}

float to_float(const std::string& v, const std::string& flag, float lo, float hi) {
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  require(!v.empty() && end && *end == '\0' && errno == 0 && std::isfinite(x),
          "--" + flag + ": expected a number, got '" + v + "'");
  require(x >= lo && x <= hi, "--" + flag + ": expected a number in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "], got " + v);
  return float(x);
}

}  // namespace

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
    if (colon != std::string::npos) lw.weight = to_float(item.substr(colon + 1), flag, 0.f, 1e12f);
    require(!lw.layer.empty(), "--" + flag + ": empty layer name in '" + spec + "'");
    out.push_back(lw);
  }
  require(!out.empty(), "--" + flag + ": expected name[:weight],… got '" + spec + "'");
  return out;
}

FlagArgs parse_flags(const std::string& command, int argc, char** argv, int first,
                     const std::set<std::string>& allowed, const std::set<std::string>& boolean) {
  FlagArgs a;
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
    require(allowed.count(key) > 0,
            command + ": unknown flag --" + key + " (see preimage " + command + " --help)");
    if (boolean.count(key)) {
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
                      const std::set<std::string>& allowed) {
  Options o;
  o.command = command;
  o.flags = allowed;
  FlagArgs fa = parse_flags(command, argc, argv, first, allowed, kBooleanFlags);
  o.raw = std::move(fa.flags);
  o.positional = std::move(fa.positional);
  for (const auto& [k, v] : o.raw) {
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
      o.iters = to_int(v, k, 1, 1000000);
    else if (k == "history")
      o.history = to_int(v, k, 1, 1000);
    else if (k == "seed")
      o.seed = uint64_t(to_int(v, k, 0, 2147483647));
    else if (k == "octaves")
      o.octaves = to_int(v, k, 1, 16);
    else if (k == "octave-scale")
      o.octave_scale = to_float(v, k, 1.01f, 8.f);
    else if (k == "init")
      o.init = v;
    else if (k == "tv")
      o.tv = to_float(v, k, 0.f, 1e12f);
    else if (k == "tv-beta")
      o.tv_beta = to_float(v, k, 1.f, 8.f);
    else if (k == "alpha")
      o.alpha = to_float(v, k, 1.f, 64.f);
    else if (k == "alpha-weight")
      o.alpha_weight = to_float(v, k, 0.f, 1e12f);
    else if (k == "jitter")
      o.jitter = to_int(v, k, 0, 4096);
    else if (k == "out")
      o.out = v;
    else if (k == "save-every")
      o.save_every = to_int(v, k, 0, 1000000);
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
      o.style_scale = to_float(v, k, 1e-3f, 64.f);
    else if (k == "style-blend-weights") {
      size_t p = 0;
      while (p <= v.size()) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        o.style_blend_weights.push_back(to_float(v.substr(p, q - p), k, 0.f, 1e12f));
        p = q + 1;
      }
    } else if (k == "json")
      o.json = v == "1";
    else if (k == "content-weight")
      o.content_weight = to_float(v, k, 0.f, 1e12f);
    else if (k == "style-weight")
      o.style_weight = to_float(v, k, 0.f, 1e12f);
    else if (k == "original-colors")
      o.original_colors = v == "1";
    else if (k == "channel")
      o.channel = to_int(v, k, 0, 1 << 20);
    else if (k == "neuron") {
      auto c = v.find(',');
      require(c != std::string::npos, "--neuron: expected Y,X, got '" + v + "'");
      o.neuron_y = to_int(v.substr(0, c), k, 0, 1 << 20);
      o.neuron_x = to_int(v.substr(c + 1), k, 0, 1 << 20);
    } else if (k == "class")
      o.class_index = to_int(v, k, 0, 1 << 20);
    else if (k == "l2-decay")
      o.l2_decay = to_float(v, k, 0.f, 1.f);
    else if (k == "clip-small")
      o.clip_small = to_float(v, k, 0.f, 1.f);
    else if (k == "blur-every")
      o.blur_every = to_int(v, k, 0, 1000000);
    else if (k == "blur-sigma")
      o.blur_sigma = to_float(v, k, 0.f, 16.f);
    else if (k == "step")
      o.step = to_float(v, k, 1e-6f, 1e6f);
    else if (k == "strength")
      o.strength = to_float(v, k, 0.f, 1e12f);
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
