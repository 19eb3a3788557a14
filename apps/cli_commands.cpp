// The preimage subcommands: each builds its objective from the shared options and runs the
// shared driver (cli_run.h).
#include "cli_commands.h"

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

// The descriptor of --representation hog|dsift and its flags; false for vgg (the default), where
// the descriptor flags are refused.
bool descriptor_options(const Options& o, DescriptorOptions* out) {
  const std::string rep = o.args.text("representation");
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
  const std::string variant = o.args.text("hog-variant");
  require(variant == "dalal" || variant == "uoctti",
          "--hog-variant: expected dalal or uoctti, got '" + variant + "'");
  require(rep == "hog" || !o.given("hog-variant"), "--hog-variant applies to --representation hog");
  const DescriptorKind kind = rep == "dsift"        ? DescriptorKind::Dsift
                              : variant == "uoctti" ? DescriptorKind::HogUoctti
                                                    : DescriptorKind::Hog;
  DescriptorOptions d = DescriptorOptions::defaults(kind);
  if (o.given("cell")) d.cell = int(o.args.integer("cell", 1, 256));
  if (o.given("bins")) d.bins = int(o.args.integer("bins", 2, 64));
  require(kind == DescriptorKind::Hog || !o.given("block"),
          "--block applies to --representation hog --hog-variant dalal (dense SIFT has 4x4 "
          "spatial bins; UoCTTI has no blocks)");
  require(kind != DescriptorKind::HogUoctti || !o.given("step"),
          "--step applies to Dalal-Triggs HOG and dense SIFT (UoCTTI describes every cell)");
  if (o.given("block")) d.block = int(o.args.integer("block", 1, 16));
  if (o.given("step")) d.step = int(o.args.integer("step", 1, 64));
  const std::string binning = o.args.text("binning");
  require(binning == "soft" || binning == "hard",
          "--binning: expected soft or hard, got '" + binning + "'");
  const std::string pooling = o.args.text("pooling");
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
  const std::string dump = o.args.required("dump");
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

// "relu1_1,relu2_1:0.5": a layer list as --layers takes it.
std::string layers_text(const std::vector<LayerWeight>& layers) {
  std::string out;
  for (const auto& l : layers) {
    out += (out.empty() ? "" : ",") + l.layer;
    if (l.weight != 1.f) out += ":" + number_text(l.weight);
  }
  return out;
}

// The flags every recipe command takes, with that recipe's library defaults (preimage/recipes.h),
// so that --help shows what the command does when a flag is not given.
FlagSet recipe_flags(const RecipeOptions& r, std::vector<Flag> own) {
  FlagSet f(
      {"weights", "arch",    "device",       "input",  "size",  "layers",  "iters", "history",
       "seed",    "octaves", "octave-scale", "init",   "tv",    "tv-beta", "alpha", "alpha-weight",
       "jitter",  "out",     "save-every",   "resume", "quiet", "json"},
      std::move(own));
  if (!r.layers.empty()) f.set_default("layers", layers_text(r.layers));
  if (!r.size.empty()) f.set_default("size", r.size);
  f.set_default("iters", std::to_string(r.iterations));
  f.set_default("history", std::to_string(r.history));
  f.set_default("seed", std::to_string(r.seed));
  f.set_default("octaves", std::to_string(r.octaves));
  f.set_default("octave-scale", number_text(r.octave_scale));
  f.set_default("init", r.init);
  f.set_default("tv", number_text(r.tv));
  f.set_default("tv-beta", number_text(r.tv_beta));
  f.set_default("alpha", number_text(r.alpha));
  f.set_default("alpha-weight", number_text(r.alpha_weight));
  f.set_default("jitter", std::to_string(r.jitter));
  f.add({"json", "", "print the result (the sidecar) as JSON on stdout", "off"});
  return f;
}

// --representation hog|dsift and its parameters (invert, descriptor).
std::vector<Flag> descriptor_flags(const std::string& representation_default) {
  return {
      {"representation", "vgg|hog|dsift", "what to invert or describe (hog/dsift: no network)",
       representation_default},
      {"hog-variant", "dalal|uoctti", "HOG variant (Dalal-Triggs or UoCTTI)", "dalal"},
      {"cell", "PX", "HOG/DSIFT cell size in pixels", "8 (dsift: 4)"},
      {"bins", "B", "orientation bins", "9 (uoctti: 18, dsift: 8)"},
      {"block", "CELLS", "HOG block side in cells (Dalal-Triggs)", "2"},
      {"step", "CELLS", "descriptor stride in cells", "1"},
      {"binning", "soft|hard", "orientation votes", "soft"},
      {"pooling", "bilinear|box", "spatial votes", "bilinear"},
  };
}

}  // namespace

std::string number_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

std::string command_help(const Command& c) {
  return flags_help(c.name + " [options]", c.summary, c.flags);
}

const std::vector<Command>& commands() {
  static const std::vector<Command> list = [] {
    std::vector<Command> l;
    l.push_back(
        {"texture", "synthesize a texture from --input (Gatys: --stats gram; Lin & Maji: bcnn)",
         recipe_flags(TextureOptions{}, {{"input", "IMAGE", "the source texture", "required"},
                                         {"stats", "gram|bcnn", "texture statistics", "gram"}}),
         run_texture});
    std::vector<Flag> inv = descriptor_flags("vgg");
    inv.push_back({"input", "IMAGE", "the image to reconstruct", "required"});
    l.push_back({"invert",
                 "reconstruct --input from its representation at --layers (Mahendran & Vedaldi), "
                 "or from its HOG / dense-SIFT descriptor (docs/descriptors.md)",
                 recipe_flags(InvertOptions{}, inv), run_invert});
    std::vector<Flag> desc = descriptor_flags("hog");
    desc.push_back({"representation", "hog|dsift", "which descriptor", "hog"});
    desc.push_back({"input", "IMAGE", "the image to describe", "required"});
    desc.push_back(
        {"dump", "FILE", "text output: a line \"N C H W\", then one value a line", "required"});
    desc.push_back({"size", "N|WxH", "resize --input first", "its size"});
    desc.push_back({"json", "", "print a JSON summary on stdout", "off"});
    l.push_back({"descriptor", "write the HOG / dense-SIFT descriptor of --input as text",
                 FlagSet({"device", "quiet"}, desc), run_descriptor});
    StyleOptions so;
    l.push_back(
        {"style",
         "content --input + style --style A[,B...] (Gatys; neural-style's flags), "
         "--original-colors",
         recipe_flags(
             so, {{"input", "IMAGE", "the content image", "required"},
                  {"style", "IMAGE[,IMAGE...]", "style image(s)", "required"},
                  {"style-blend-weights", "W,...", "one weight per --style image (normalized)",
                   "equal"},
                  {"style-scale", "F", "style images' long side = F x the output's long side",
                   number_text(so.style_scale)},
                  {"content-layers", "L[:W],...", "content taps", layers_text(so.content_layers)},
                  {"content-weight", "W", "content loss weight", number_text(so.content_weight)},
                  {"style-weight", "W", "style loss weight", number_text(so.style_weight)},
                  {"original-colors", "", "keep the content's colours (luminance transfer)", "off"},
                  {"save-every", "K",
                   "save the image, a numbered FILE_<iteration>.png and a checkpoint every K "
                   "iterations",
                   "0 (off)"}}),
         run_style});
    VisualizeOptions vo;
    l.push_back(
        {"visualize", "activation maximization of --channel/--neuron/--class at --layers",
         recipe_flags(
             vo, {{"layers", "L", "the one layer to visualize", "fc8 with --class, else required"},
                  {"input", "IMAGE", "the initial image with --init input", "none"},
                  {"channel", "C", "channel of --layers to maximize (spatial mean)", "none"},
                  {"neuron", "Y,X", "one position of --channel instead of its mean", "none"},
                  {"class", "K", "class score to maximize (--layers fc8)", "none"},
                  {"l2-decay", "F", "decay towards mid-grey per step", number_text(vo.l2_decay)},
                  {"blur-every", "N", "Gaussian blur every N steps (0: never)",
                   std::to_string(vo.blur_every)},
                  {"blur-sigma", "S", "blur sigma in pixels", number_text(vo.blur_sigma)},
                  {"clip-small", "F", "zero pixels under F x the largest norm",
                   number_text(vo.clip_small)},
                  {"step", "F", "ascent step /255 per mean |gradient|", number_text(vo.step)}}),
         run_visualize});
    DreamOptions dro;
    l.push_back({"dream", "DeepDream on --input with octaves and jitter",
                 recipe_flags(dro, {{"input", "IMAGE", "the image to dream on", "required"},
                                    {"step", "F", "ascent step /255 per mean |gradient|",
                                     number_text(dro.step)}}),
                 run_dream});
    l.push_back({"caricature", "exaggerate what --layers sees in --input (Mahendran & Vedaldi)",
                 recipe_flags(CaricatureOptions{},
                              {{"input", "IMAGE", "the image to caricature", "required"}}),
                 run_caricature});
    return l;
  }();
  return list;
}

}  // namespace preimage::cli
