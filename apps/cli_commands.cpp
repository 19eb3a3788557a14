// The preimage subcommands: each builds its objective from the shared options and runs the
// shared driver (cli_run.h).
#include "cli_commands.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <tuple>

#include "cli_run.h"
#include "preimage/atomic_file.h"
#include "preimage/descriptors.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/recipes.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

const std::set<std::string> kCommon = {
    "weights", "arch",    "device",       "input",  "size",  "layers",  "iters", "history",
    "seed",    "octaves", "octave-scale", "init",   "tv",    "tv-beta", "alpha", "alpha-weight",
    "jitter",  "out",     "save-every",   "resume", "quiet", "json"};

std::set<std::string> with(std::initializer_list<const char*> extra) {
  std::set<std::string> s = kCommon;
  for (const char* e : extra) s.insert(e);
  return s;
}

// --out is required, and its directory must exist (found now rather than after the run).
void require_out(const Options& o) {
  require(!o.out.empty(), o.command + ": --out FILE.png is required");
  const auto dir = std::filesystem::path(o.out).parent_path();
  require(dir.empty() || std::filesystem::is_directory(dir),
          "--out: directory '" + dir.string() + "' does not exist");
  require(!std::filesystem::is_directory(o.out), "--out: '" + o.out + "' is a directory");
}

// ---- L-BFGS commands: each a thin layer over its library recipe (preimage/recipes.h) --------

int run_texture(Options o) {
  require(!o.input.empty(), "texture: --input SOURCE is required");
  require_out(o);
  // Average pooling, as Gatys et al. synthesize: cleaner gradients than max pooling.
  Session s = open_session(o, true);
  s.print_terms = true;
  TextureOptions r;
  r.stats = o.stats;
  apply_common(s, r);
  const Tensor src = load_rgb(s, o.input, "--input");
  return finish(s, synthesize_texture(*s.net, src, r));
}

// ---- HOG / dense-SIFT representations (docs/descriptors.md) --------------------------------

const char* const kDescriptorFlags[] = {"hog-variant", "cell",    "bins",   "block",
                                        "step",        "binning", "pooling"};

std::string flag_text(const Options& o, const std::string& k, const std::string& def) {
  auto it = o.raw.find(k);
  return it == o.raw.end() ? def : it->second;
}

int flag_int(const Options& o, const std::string& k, int def, int lo, int hi) {
  auto it = o.raw.find(k);
  if (it == o.raw.end()) return def;
  const std::string& v = it->second;
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  require(!v.empty() && end && *end == '\0' && errno == 0,
          "--" + k + ": expected an integer, got '" + v + "'");
  require(x >= lo && x <= hi, "--" + k + ": expected an integer in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "], got " + v);
  return int(x);
}

// The descriptor of --representation hog|dsift and its flags; false for vgg (the default), where
// the descriptor flags are refused.
bool descriptor_options(const Options& o, DescriptorOptions* out) {
  const std::string rep = flag_text(o, "representation", "vgg");
  require(rep == "vgg" || rep == "hog" || rep == "dsift",
          "--representation: expected vgg, hog or dsift, got '" + rep + "'");
  if (rep == "vgg") {
    for (const char* f : kDescriptorFlags)
      require(!o.given(f), std::string("--") + f + " applies to --representation hog|dsift only");
    return false;
  }
  for (const char* f : {"layers", "weights", "arch"})
    require(!o.given(f), std::string("--") + f + " applies to --representation vgg only (" + rep +
                             " uses no network)");
  const std::string variant = flag_text(o, "hog-variant", "dalal");
  require(variant == "dalal" || variant == "uoctti",
          "--hog-variant: expected dalal or uoctti, got '" + variant + "'");
  require(rep == "hog" || !o.given("hog-variant"), "--hog-variant applies to --representation hog");
  const DescriptorKind kind = rep == "dsift"        ? DescriptorKind::Dsift
                              : variant == "uoctti" ? DescriptorKind::HogUoctti
                                                    : DescriptorKind::Hog;
  DescriptorOptions d = DescriptorOptions::defaults(kind);
  d.cell = flag_int(o, "cell", d.cell, 1, 256);
  d.bins = flag_int(o, "bins", d.bins, 2, 64);
  require(kind == DescriptorKind::Hog || !o.given("block"),
          "--block applies to --representation hog --hog-variant dalal (dense SIFT has 4x4 "
          "spatial bins; UoCTTI has no blocks)");
  require(kind != DescriptorKind::HogUoctti || !o.given("step"),
          "--step applies to Dalal-Triggs HOG and dense SIFT (UoCTTI describes every cell)");
  d.block = flag_int(o, "block", d.block, 1, 16);
  d.step = flag_int(o, "step", d.step, 1, 64);
  const std::string binning = flag_text(o, "binning", "soft");
  require(binning == "soft" || binning == "hard",
          "--binning: expected soft or hard, got '" + binning + "'");
  const std::string pooling = flag_text(o, "pooling", "bilinear");
  require(pooling == "bilinear" || pooling == "box",
          "--pooling: expected bilinear or box, got '" + pooling + "'");
  d.soft_bins = binning == "soft";
  d.bilinear_cells = pooling == "bilinear";
  Descriptor check(d);  // validates the combination (e.g. UoCTTI's 18 bins)
  *out = d;
  return true;
}

// invert --representation hog|dsift: the library's descriptor inversion (no network).
int run_invert_descriptor(Options o, const DescriptorOptions& d) {
  Session s = open_session(o, false, false);
  const Descriptor probe(d);
  s.banner = "preimage invert: representation " + probe.describe() + " (no network), device " +
             device_name(s.device);
  s.print_terms = true;
  InvertOptions r;
  r.descriptor = d;
  apply_common(s, r);
  const Tensor img = load_rgb(s, o.input, "--input");
  RecipeResult res = invert(nullptr, img, r);
  for (const auto& [k, v] : res.metrics)
    if (!o.quiet && k.rfind("normalized_reconstruction_error:", 0) == 0)
      std::fprintf(stderr, "normalized %s reconstruction error: %.4f (initial image: %.4f)\n",
                   descriptor_name(d.kind), v, res.metrics.front().second);
  return finish(s, res);
}

// descriptor: computes the descriptor of --input and writes it as text (--dump FILE: a line
// "N C H W", then the values in (N,C,H,W) order, one per line), atomically.
int run_descriptor(Options o) {
  require(!o.input.empty(), "descriptor: --input IMAGE is required");
  const std::string dump = flag_text(o, "dump", "");
  require(!dump.empty(), "descriptor: --dump FILE is required");
  if (!o.given("representation")) o.raw["representation"] = "hog";
  DescriptorOptions d;
  require(descriptor_options(o, &d), "descriptor: --representation must be hog or dsift");
  Session s = open_session(o, false, false);
  Tensor img = load_rgb(s, o.input, "--input");
  int H = img.shape().h, W = img.shape().w;
  if (!o.size.empty()) parse_size(o.size, img.shape().h, img.shape().w, &H, &W);
  if (H != img.shape().h || W != img.shape().w) img = resize(img.view(), H, W);
  Descriptor desc(d);
  try {
    desc.output_shape(img.shape());
  } catch (const Error& e) {
    throw Error(std::string("--input: ") + e.what());
  }
  const Device dev = resolve_device(o.device);
  Tensor imd = img.to(dev);
  const Tensor& f = desc.forward(imd.view());
  const Shape sh = f.shape();
  std::string text = std::to_string(sh.n) + " " + std::to_string(sh.c) + " " +
                     std::to_string(sh.h) + " " + std::to_string(sh.w) + "\n";
  char buf[32];
  for (float v : f.to_vector()) {
    std::snprintf(buf, sizeof buf, "%.9g\n", double(v));
    text += buf;
  }
  write_file_atomically(dump, text.data(), text.size());
  if (!o.quiet)
    std::fprintf(stderr, "%s: %s → %s\n", desc.describe().c_str(), sh.str().c_str(), dump.c_str());
  if (o.json) {
    Json j;
    j.begin_object();
    j.value("command", "descriptor");
    j.value("version", version_string());
    j.value("commit", git_commit());
    j.value("descriptor", desc.describe());
    j.value("shape", sh.str());
    j.value("dump", dump);
    j.value("input_sha256", sha256_file(o.input));
    j.end_object();
    std::printf("%s\n", j.str().c_str());
  }
  return 0;
}

int run_invert(Options o) {
  require(!o.input.empty(), "invert: --input IMAGE is required");
  require_out(o);
  DescriptorOptions dopt;
  if (descriptor_options(o, &dopt)) return run_invert_descriptor(std::move(o), dopt);
  Session s = open_session(o, false);
  InvertOptions r;
  apply_common(s, r);
  const Tensor img = load_rgb(s, o.input, "--input");
  RecipeResult res = invert(s.net.get(), img, r);
  for (const auto& [k, v] : res.metrics)
    if (!o.quiet)
      std::fprintf(stderr, "normalized reconstruction error at %s: %.4f\n",
                   k.substr(k.find(':') + 1).c_str(), v);
  return finish(s, res);
}

// --style a.jpg,b.jpg: several style images (neural-style's comma-separated -style_image).
std::vector<std::string> split_commas(const std::string& v) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= v.size()) {
    size_t q = v.find(',', p);
    if (q == std::string::npos) q = v.size();
    if (q > p) out.push_back(v.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

int run_style(Options o) {
  require(!o.input.empty(), "style: --input CONTENT is required");
  require(!o.style.empty(), "style: --style STYLE_IMAGE is required");
  require_out(o);
  const auto style_files = split_commas(o.style);
  require(o.style_blend_weights.empty() || o.style_blend_weights.size() == style_files.size(),
          "--style-blend-weights: " + std::to_string(o.style_blend_weights.size()) +
              " weights for " + std::to_string(style_files.size()) + " --style images");
  Session s = open_session(o, true);
  s.print_terms = true;
  StyleOptions r;
  if (!o.content_layers.empty()) r.content_layers = o.content_layers;
  r.content_weight = o.content_weight;
  r.style_weight = o.style_weight;
  r.style_scale = o.style_scale;
  r.style_blend_weights = o.style_blend_weights;
  r.original_colors = o.original_colors;
  apply_common(s, r);
  std::vector<Tensor> styles;
  for (const auto& f : style_files) styles.push_back(load_rgb(s, f, "--style"));
  const Tensor content = load_rgb(s, o.input, "--input");
  return finish(s, style_transfer(*s.net, content, styles, r));
}

int run_caricature(Options o) {
  require(!o.input.empty(), "caricature: --input IMAGE is required");
  require_out(o);
  Session s = open_session(o, false);
  s.print_terms = true;
  CaricatureOptions r;
  apply_common(s, r);
  const Tensor img = load_rgb(s, o.input, "--input");
  return finish(s, caricature(*s.net, img, r));
}

// ---- gradient-ascent commands --------------------------------------------------------------

int run_visualize(Options o) {
  require_out(o);
  Session s = open_session(o, false);
  VisualizeOptions r;
  r.channel = o.channel;
  r.neuron_y = o.neuron_y;
  r.neuron_x = o.neuron_x;
  r.class_index = o.class_index;
  r.l2_decay = o.l2_decay;
  r.blur_every = o.blur_every;
  r.blur_sigma = o.blur_sigma;
  r.clip_small = o.clip_small;
  r.step = o.step;
  apply_common(s, r);
  Tensor input;
  if (r.init == "input") input = load_rgb(s, o.input, "--input");
  return finish(s, visualize(*s.net, input, r));
}

int run_dream(Options o) {
  require(!o.input.empty(), "dream: --input IMAGE is required");
  require_out(o);
  Session s = open_session(o, false);
  DreamOptions r;
  r.step = o.step;
  apply_common(s, r);
  const Tensor img = load_rgb(s, o.input, "--input");
  return finish(s, dream(*s.net, img, r));
}

struct FlagHelp {
  const char *name, *value, *help, *def;
};

// Every flag of the recipe commands: value, help and default ("" when none / per command).
const FlagHelp kFlagHelp[] = {
    {"weights", "FILE|random:SEED", "VGG weights (HDF5) or seeded random features", "random:0"},
    {"arch", "vgg16|vgg19", "network architecture", "vgg19"},
    {"device", "auto|cpu|cuda", "where to compute", "auto"},
    {"input", "IMAGE", "input image (texture: the source; style: the content)", ""},
    {"size", "N|WxH", "output size: long side N or WxH", "the input's size"},
    {"layers", "L[:W],...", "taps and their weights", "per command"},
    {"iters", "N", "iterations per octave", "per command"},
    {"history", "M", "L-BFGS memory", "10"},
    {"seed", "S", "seed of the noise init and of the jitter", "0"},
    {"octaves", "K", "coarse-to-fine stages", "1 (dream: 3)"},
    {"octave-scale", "F", "size ratio between octaves", "2 (dream: 1.4)"},
    {"init", "noise|random|input|FILE", "initial image (random is noise)", "per command"},
    {"tv", "W", "weight of the per-pixel mean of TV^B", "per command"},
    {"tv-beta", "B", "TV exponent", "2"},
    {"alpha", "A", "alpha-norm exponent", "6"},
    {"alpha-weight", "W", "weight of the per-pixel mean of |x|^A", "0"},
    {"jitter", "PX", "random shift per ascent step", "0 (dream: 8)"},
    {"out", "FILE.png", "output image; FILE.png.json is the sidecar", "required"},
    {"save-every", "K",
     "save the image and a checkpoint every K iterations (style: also "
     "numbered FILE_<iteration>.png)",
     "0 (off)"},
    {"resume", "", "continue an interrupted run from its checkpoint", "off"},
    {"quiet", "", "no progress output", "off"},
    {"json", "", "print the result (the sidecar) as JSON on stdout", "off"},
    {"stats", "gram|bcnn", "texture statistics", "gram"},
    {"style", "IMAGE[,IMAGE...]", "style image(s)", "required"},
    {"style-blend-weights", "W,...", "one weight per --style image (normalized)", "equal"},
    {"style-scale", "F", "style images' long side = F x the output's long side", "1"},
    {"content-layers", "L[:W],...", "content taps", "relu4_2"},
    {"content-weight", "W", "content loss weight", "1"},
    {"style-weight", "W", "style loss weight", "1"},
    {"original-colors", "", "keep the content's colours", "off"},
    {"channel", "C", "channel to maximize", ""},
    {"neuron", "Y,X", "one position of --channel instead of its mean", ""},
    {"class", "K", "class score to maximize (--layers fc8)", ""},
    {"l2-decay", "F", "decay towards mid-grey per step", "0"},
    {"blur-every", "N", "Gaussian blur every N steps", "0"},
    {"blur-sigma", "S", "blur sigma in pixels", "0.5"},
    {"clip-small", "F", "zero pixels under F x the largest norm", "0"},
    {"step", "F",
     "ascent step /255 per mean |gradient| (invert/descriptor: descriptor stride in cells)",
     "1.5 (stride: 1)"},
    {"representation", "vgg|hog|dsift", "what to invert", "vgg"},
    {"hog-variant", "dalal|uoctti", "HOG variant", "dalal"},
    {"cell", "PX", "HOG/DSIFT cell size", "8 (dsift: 4)"},
    {"bins", "B", "orientation bins", "9 (uoctti: 18, dsift: 8)"},
    {"block", "CELLS", "HOG block side", "2"},
    {"binning", "soft|hard", "orientation votes", "soft"},
    {"pooling", "bilinear|box", "spatial votes", "bilinear"},
    {"dump", "FILE", "descriptor text output", "required"},
};

}  // namespace

std::string command_help(const Command& c) {
  std::string out = "usage: preimage " + c.name + " [options]\n" + c.summary + "\noptions:\n";
  for (const auto& f : c.flags) {
    const FlagHelp* h = nullptr;
    for (const auto& e : kFlagHelp)
      if (f == e.name) h = &e;
    char line[512];
    if (h)
      std::snprintf(line, sizeof line, "  --%-22s %s%s%s%s\n",
                    (f + (*h->value ? std::string(" ") + h->value : "")).c_str(), h->help,
                    *h->def ? " (default: " : "", h->def, *h->def ? ")" : "");
    else
      std::snprintf(line, sizeof line, "  --%s\n", f.c_str());
    out += line;
  }
  return out;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"texture", "synthesize a texture from --input (--stats gram|bcnn)", with({"stats"}),
       run_texture},
      {"invert",
       "reconstruct --input from its representation at --layers (Mahendran & Vedaldi); "
       "--representation vgg|hog|dsift, HOG/DSIFT: --hog-variant dalal|uoctti --cell PX --bins B "
       "--block CELLS --step CELLS --binning soft|hard --pooling bilinear|box "
       "(docs/descriptors.md)",
       with({"representation", "hog-variant", "cell", "bins", "block", "step", "binning",
             "pooling"}),
       run_invert},
      {"descriptor",
       "write the HOG / dense-SIFT descriptor of --input as text (--dump FILE); flags as invert's",
       {"input", "size", "device", "representation", "hog-variant", "cell", "bins", "block", "step",
        "binning", "pooling", "dump", "quiet", "json"},
       run_descriptor},
      {"style",
       "content --input + style --style A[,B...] (Gatys; neural-style's flags), "
       "--original-colors",
       with({"style", "content-weight", "style-weight", "original-colors", "content-layers",
             "style-scale", "style-blend-weights"}),
       run_style},
      {"visualize", "activation maximization of --channel/--neuron/--class at --layers",
       with({"channel", "neuron", "class", "l2-decay", "blur-every", "blur-sigma", "clip-small",
             "step"}),
       run_visualize},
      {"dream", "DeepDream on --input with octaves and jitter", with({"step"}), run_dream},
      {"caricature", "exaggerate what --layers sees in --input (Mahendran & Vedaldi)", kCommon,
       run_caricature},
  };
  return list;
}

}  // namespace preimage::cli
