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
#include "image_ops.h"
#include "preimage/atomic_file.h"
#include "preimage/descriptors.h"
#include "preimage/error.h"
#include "preimage/image.h"

namespace preimage::cli {
namespace {

const std::set<std::string> kCommon = {
    "weights", "arch",         "device",  "input",        "size",       "layers", "iters",
    "history", "seed",         "octaves", "octave-scale", "init",       "tv",     "tv-beta",
    "alpha",   "alpha-weight", "jitter",  "out",          "save-every", "resume", "quiet"};

std::set<std::string> with(std::initializer_list<const char*> extra) {
  std::set<std::string> s = kCommon;
  for (const char* e : extra) s.insert(e);
  return s;
}

std::vector<std::string> tap_list(const std::vector<LayerWeight>& lw) {
  std::vector<std::string> t;
  for (const auto& l : lw) t.push_back(l.layer);
  return t;
}

void default_layers(Options& o, const std::string& spec) {
  if (o.layers.empty()) o.layers = parse_layers(spec, "layers");
}

// --out is required, and its directory must exist (found now rather than after the run).
void require_out(const Options& o) {
  require(!o.out.empty(), o.command + ": --out FILE.png is required");
  const auto dir = std::filesystem::path(o.out).parent_path();
  require(dir.empty() || std::filesystem::is_directory(dir),
          "--out: directory '" + dir.string() + "' does not exist");
  require(!std::filesystem::is_directory(o.out), "--out: '" + o.out + "' is a directory");
}

// Resolves the subcommand's default --tv weight (so that the sidecar records what was used).
void default_tv(Options& o, float tv) {
  if (o.tv < 0) o.tv = tv;
}

// Forward of an RGB host image to the taps; activations stay in the network.
void forward_host(Session& s, const Tensor& img, const std::vector<std::string>& taps) {
  Tensor d = img.to(s.device);
  s.net->forward(d.view(), taps);
}

// Loads an image and brings it to --size, checking the memory estimate at that size before the
// resized image is allocated.
Tensor load_sized(Session& s, const std::string& path, const std::string& flag,
                  const std::vector<std::string>& taps) {
  Tensor img = load_rgb(path, flag);
  const auto [h, w] = target_size(img.shape().h, img.shape().w, s.opt);
  check_memory(s, h, w, taps);
  if (h == img.shape().h && w == img.shape().w) return img;
  return resize(img.view(), h, w);
}

void print_terms(const Session& s) {
  if (s.opt.quiet || s.term_history.empty()) return;
  const auto& last = s.term_history.back();
  for (size_t i = 0; i < last.size() && i < s.term_labels.size(); ++i)
    std::fprintf(stderr, "  %-20s %.6e\n", s.term_labels[i].c_str(), last[i]);
}

// ---- L-BFGS commands -----------------------------------------------------------------------

int run_texture(Options o) {
  require(!o.input.empty(), "texture: --input SOURCE is required");
  require_out(o);
  default_layers(o, "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1");
  if (!o.iters) o.iters = 100;
  default_tv(o, 0.f);
  // Average pooling, as Gatys et al. synthesize: cleaner gradients than max pooling.
  Session s = open_session(o, true);
  s.net->check_taps(tap_list(o.layers));
  Tensor src = load_rgb(o.input, "--input");
  const auto [H, W] = target_size(src.shape().h, src.shape().w, o);
  check_memory(s, H, W, tap_list(o.layers));
  const auto sizes = octave_sizes(H, W, o);
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    check_memory(s, h, w, tap_list(o.layers));
    // The source is scaled like the output relative to its full size.
    const double f = double(h) / H;
    Tensor srck = resize(src.view(), std::max(8, int(std::lround(src.shape().h * f))),
                         std::max(8, int(std::lround(src.shape().w * f))));
    forward_host(s, srck, tap_list(o.layers));
    Objective obj;
    for (const auto& l : o.layers) {
      std::unique_ptr<Term> t = o.stats == "gram"
                                    ? make_gram_term(l.layer, s.net->tap(l.layer).view(), l.weight)
                                    : make_bcnn_term(l.layer, l.layer, s.net->tap(l.layer).view(),
                                                     s.net->tap(l.layer).view(), l.weight);
      t->label = o.stats + ":" + l.layer;
      obj.add(std::move(t));
    }
    add_priors(obj, o, h, w);
    // The first stage starts from --init (a resumed stage then loads its checkpoint over it);
    // later stages from the previous stage's result, upsampled.
    x = k == first ? initial_image(o, h, w, &src) : resize(x.view(), h, w);
    run_lbfgs(s, obj, x, k, int(sizes.size()), o.iters);
    if (s.interrupted) break;
  }
  print_terms(s);
  s.results.value("stats", o.stats);
  if (!s.loss_history.empty()) s.results.value("final_loss", s.loss_history.back());
  return finish(s, x);
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

// invert --representation hog|dsift: the same L-BFGS, octaves and priors as VGG inversion, with
// the descriptor's normalized reconstruction loss ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² in place of the taps'.
int run_invert_descriptor(Options o, const DescriptorOptions& d) {
  if (!o.iters) o.iters = 200;
  default_tv(o, 5.f);
  Session s = open_session(o, false);
  const Descriptor probe(d);
  s.banner = "preimage invert: representation " + probe.describe() + " (no network), device " +
             device_name(s.device);
  Tensor img = load_rgb(o.input, "--input");
  const auto [H, W] = target_size(img.shape().h, img.shape().w, o);
  if (H != img.shape().h || W != img.shape().w) img = resize(img.view(), H, W);
  const auto sizes = octave_sizes(H, W, o);
  try {
    probe.output_shape({1, 3, H, W});
    for (const auto& [h, w] : sizes) probe.output_shape({1, 3, h, w});
  } catch (const Error& e) {
    throw Error(std::string("--input: ") + e.what() +
                (o.octaves > 1 ? " (at the first octave: try fewer --octaves)" : ""));
  }
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    Tensor imk = resize(img.view(), h, w).to(s.device);
    Objective obj;
    auto t = make_descriptor_term(d, imk.view(), 1.f);
    t->label = descriptor_name(d.kind);
    obj.add(std::move(t));
    add_priors(obj, o, h, w);
    Tensor imh = imk.to(Device::CPU);
    x = k == first ? initial_image(o, h, w, &imh) : resize(x.view(), h, w);
    run_lbfgs(s, obj, x, k, int(sizes.size()), o.iters);
    if (s.interrupted) break;
  }
  print_terms(s);
  s.results.value("representation", std::string(descriptor_name(d.kind)));
  s.results.value("descriptor", probe.describe());
  s.results.value("descriptor_shape", probe.output_shape(x.shape()).str());
  if (!s.interrupted) {
    // At the result's size (octave sizes are at least 16 px, so it may differ from --size).
    Tensor ref = resize(img.view(), x.shape().h, x.shape().w).to(s.device);
    const Tensor x0 = initial_image(o, x.shape().h, x.shape().w, &img);
    const double e0 = descriptor_error(d, x0.to(s.device).view(), ref.view());
    const double e1 = descriptor_error(d, x.to(s.device).view(), ref.view());
    s.results.value("initial_descriptor_error", e0);
    s.results.begin_object("normalized_reconstruction_error");
    s.results.value(descriptor_name(d.kind), e1);
    s.results.end_object();
    if (!o.quiet)
      std::fprintf(stderr, "normalized %s reconstruction error: %.4f (initial image: %.4f)\n",
                   descriptor_name(d.kind), e1, e0);
  }
  return finish(s, x);
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
  Tensor img = load_rgb(o.input, "--input");
  const auto [H, W] = target_size(img.shape().h, img.shape().w, o);
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
  return 0;
}

int run_invert(Options o) {
  require(!o.input.empty(), "invert: --input IMAGE is required");
  require_out(o);
  DescriptorOptions dopt;
  if (descriptor_options(o, &dopt)) return run_invert_descriptor(std::move(o), dopt);
  default_layers(o, "relu4_1");
  if (!o.iters) o.iters = 200;
  default_tv(o, 5.f);
  Session s = open_session(o, false);
  const auto taps = tap_list(o.layers);
  s.net->check_taps(taps);
  Tensor img = load_sized(s, o.input, "--input", taps);
  const auto sizes = octave_sizes(img.shape().h, img.shape().w, o);
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    check_memory(s, h, w, taps);
    Tensor imk = resize(img.view(), h, w);
    forward_host(s, imk, taps);
    Objective obj;
    for (const auto& l : o.layers) {
      auto t = make_feature_term(l.layer, s.net->tap(l.layer).view(), nullptr, l.weight);
      t->label = "feature:" + l.layer;
      obj.add(std::move(t));
    }
    add_priors(obj, o, h, w);
    x = k == first ? initial_image(o, h, w, &imk) : resize(x.view(), h, w);
    run_lbfgs(s, obj, x, k, int(sizes.size()), o.iters);
    if (s.interrupted) break;
  }
  // Normalized reconstruction error ‖Φ(x) − Φ₀‖ / ‖Φ₀‖ per layer, at full size.
  if (!s.interrupted) {
    forward_host(s, resize(img.view(), x.shape().h, x.shape().w), taps);
    std::vector<Tensor> ref;
    for (const auto& t : taps) ref.push_back(s.net->tap(t).clone());
    forward_host(s, x, taps);
    s.results.begin_object("normalized_reconstruction_error");
    for (size_t i = 0; i < taps.size(); ++i) {
      const double e = relative_error(s.net->tap(taps[i]).view(), ref[i].view());
      s.results.value(taps[i], e);
      if (!o.quiet)
        std::fprintf(stderr, "normalized reconstruction error at %s: %.4f\n", taps[i].c_str(), e);
    }
    s.results.end_object();
  }
  return finish(s, x);
}

int run_style(Options o) {
  require(!o.input.empty(), "style: --input CONTENT is required");
  require(!o.style.empty(), "style: --style STYLE_IMAGE is required");
  require_out(o);
  default_layers(o, "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1");
  if (!o.iters) o.iters = 150;
  if (!o.given("init")) o.init = "input";
  default_tv(o, 0.f);
  Session s = open_session(o, true);
  const std::string content_tap = "relu4_2";
  auto taps = tap_list(o.layers);
  s.net->check_taps(taps);
  auto all_taps = taps;
  all_taps.push_back(content_tap);
  Tensor style = load_rgb(o.style, "--style");
  Tensor content = load_sized(s, o.input, "--input", all_taps);
  const auto sizes = octave_sizes(content.shape().h, content.shape().w, o);
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    check_memory(s, h, w, all_taps);
    Tensor ck = resize(content.view(), h, w);
    const double f = double(std::max(h, w)) / std::max(style.shape().h, style.shape().w);
    Tensor sk = resize(style.view(), std::max(8, int(std::lround(style.shape().h * f))),
                       std::max(8, int(std::lround(style.shape().w * f))));
    Objective obj;
    forward_host(s, ck, {content_tap});
    auto ct =
        make_feature_term(content_tap, s.net->tap(content_tap).view(), nullptr, o.content_weight);
    ct->label = "content:" + content_tap;
    obj.add(std::move(ct));
    forward_host(s, sk, taps);
    for (const auto& l : o.layers) {
      auto t = make_gram_term(l.layer, s.net->tap(l.layer).view(), l.weight * o.style_weight);
      t->label = "style:" + l.layer;
      obj.add(std::move(t));
    }
    add_priors(obj, o, h, w);
    x = k == first ? initial_image(o, h, w, &ck) : resize(x.view(), h, w);
    run_lbfgs(s, obj, x, k, int(sizes.size()), o.iters);
    if (s.interrupted) break;
  }
  if (o.original_colors && !s.interrupted)
    x = transfer_luminance(x, resize(content.view(), x.shape().h, x.shape().w));
  print_terms(s);
  return finish(s, x);
}

int run_caricature(Options o) {
  require(!o.input.empty(), "caricature: --input IMAGE is required");
  require_out(o);
  default_layers(o, "relu4_1");
  if (!o.iters) o.iters = 100;
  if (!o.given("init")) o.init = "input";
  default_tv(o, 5.f);
  Session s = open_session(o, false);
  const auto taps = tap_list(o.layers);
  s.net->check_taps(taps);
  Tensor img = load_sized(s, o.input, "--input", taps);
  const auto sizes = octave_sizes(img.shape().h, img.shape().w, o);
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    check_memory(s, h, w, taps);
    Tensor imk = resize(img.view(), h, w);
    forward_host(s, imk, taps);
    Objective obj;
    for (const auto& l : o.layers) {
      auto t = make_caricature_term(l.layer, s.net->tap(l.layer).view(), l.weight);
      t->label = "caricature:" + l.layer;
      obj.add(std::move(t));
    }
    add_priors(obj, o, h, w);
    x = k == first ? initial_image(o, h, w, &imk) : resize(x.view(), h, w);
    run_lbfgs(s, obj, x, k, int(sizes.size()), o.iters);
    if (s.interrupted) break;
  }
  print_terms(s);
  return finish(s, x);
}

// ---- gradient-ascent commands --------------------------------------------------------------

// One normalized ascent step on the objective (which is minimized, so we step against its
// gradient), with jitter: x ← x − step/255 · g / mean|g|. Returns the objective value at x
// (before the step) and its per-term values.
double ascent_step(Session& s, Objective& obj, Tensor& x, std::mt19937_64& rng,
                   std::vector<double>& terms) {
  const int J = s.opt.jitter;
  int dy = 0, dx = 0;
  if (J > 0) {
    std::uniform_int_distribution<int> d(-J, J);
    dy = d(rng);
    dx = d(rng);
  }
  Tensor xj = J > 0 ? roll(x, dy, dx) : x.clone();
  Tensor xd = xj.to(s.device), g;
  const double val = obj.evaluate(*s.net, xd.view(), g, &terms);
  Tensor gh = g.to(Device::CPU);
  if (J > 0) gh = roll(gh, -dy, -dx);
  std::vector<float> gv = gh.to_vector(), xv = x.to_vector();
  double mean_abs = 0;
  for (float v : gv) mean_abs += std::fabs(v);
  mean_abs = std::max(mean_abs / double(gv.size()), 1e-30);
  const float a = float(s.opt.step / 255.0 / mean_abs);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::clamp(xv[i] - a * gv[i], 0.f, 1.f);
  x = Tensor::from_vector(x.shape(), xv);
  return val;
}

bool is_linear_tap(const Session& s, const std::string& tap) {
  for (const auto& l : s.net->layers())
    if (l.name == tap) return l.kind == LayerKind::Linear;
  return false;
}

int run_visualize(Options o) {
  require_out(o);
  if (o.class_index >= 0 && o.layers.empty()) o.layers = parse_layers("fc8", "layers");
  require(o.layers.size() == 1,
          "visualize: --layers takes exactly one layer, e.g. --layers relu4_1 --channel 7");
  require(o.channel >= 0 || o.class_index >= 0, "visualize: give --channel C or --class K");
  if (!o.iters) o.iters = 200;
  if (!o.given("size")) o.size = "128";
  default_tv(o, 0.f);
  Session s = open_session(o, false);
  const std::string tap = o.layers[0].layer;
  s.net->check_taps({tap});
  require(o.class_index < 0 || is_linear_tap(s, tap),
          "--class needs a classifier layer (--layers fc8), not '" + tap + "'; use --channel");
  Tensor input;
  if (o.init == "input") input = load_rgb(o.input, "--input");
  int h = 0, w = 0;
  if (o.init == "input")
    std::tie(h, w) = target_size(input.shape().h, input.shape().w, o);
  else
    parse_size(o.size, 128, 128, &h, &w);
  const Shape ts = s.net->tap_shape(tap, {1, 3, h, w});
  const int ch = o.class_index >= 0 ? o.class_index : o.channel;
  require(ch < ts.c, std::string(o.class_index >= 0 ? "--class " : "--channel ") +
                         std::to_string(ch) + " out of range: layer " + tap + " has " +
                         std::to_string(ts.c) + (o.class_index >= 0 ? " classes" : " channels"));
  require(o.neuron_y < ts.h && o.neuron_x < ts.w,
          "--neuron " + std::to_string(o.neuron_y) + "," + std::to_string(o.neuron_x) +
              " outside layer " + tap + " (" + std::to_string(ts.h) + "x" + std::to_string(ts.w) +
              ")");
  check_memory(s, h, w, {tap});
  resume_stage(s, 1);  // with --resume: there must be a checkpoint
  Objective obj;
  auto t = make_activation_term(tap, ch, o.neuron_y, o.neuron_x, 1.f);
  t->label = "activation:" + tap + ":" + std::to_string(ch);
  obj.add(std::move(t));
  add_priors(obj, o, h, w);
  // Noise: mid-grey with a little seeded noise (Yosinski et al.); otherwise --init.
  Tensor x = o.init == "noise" ? [&] {
    std::mt19937_64 r(o.seed);
    std::normal_distribution<float> d(0.5f, 0.02f);
    std::vector<float> v(size_t(3) * h * w);
    for (auto& e : v) e = std::clamp(d(r), 0.f, 1.f);
    return Tensor::from_vector({1, 3, h, w}, v);
  }()
                               : initial_image(o, h, w, input.empty() ? nullptr : &input);
  std::mt19937_64 rng(o.seed + 1);
  run_ascent(s, obj, x, 0, 1, o.iters, rng, [&](Tensor& xx, int it, std::vector<double>& terms) {
    const double v = ascent_step(s, obj, xx, rng, terms);
    if (o.l2_decay > 0) {  // decay towards mid-grey
      std::vector<float> xv = xx.to_vector();
      for (auto& e : xv) e = 0.5f + (1.f - o.l2_decay) * (e - 0.5f);
      xx = Tensor::from_vector(xx.shape(), xv);
    }
    if (o.blur_every > 0 && (it + 1) % o.blur_every == 0) gaussian_blur(xx, o.blur_sigma);
    clip_small(xx, o.clip_small);
    return v;
  });
  // The activation term is the first; it holds −activation.
  if (!s.term_history.empty() && !s.term_history.back().empty())
    s.results.value("final_activation", -s.term_history.back()[0]);
  return finish(s, x);
}

int run_dream(Options o) {
  require(!o.input.empty(), "dream: --input IMAGE is required");
  require_out(o);
  default_layers(o, "relu4_1");
  if (!o.iters) o.iters = 10;
  if (!o.given("octaves")) o.octaves = 3;
  if (!o.given("jitter")) o.jitter = 8;
  if (!o.given("octave-scale")) o.octave_scale = 1.4f;
  default_tv(o, 0.f);
  Session s = open_session(o, false);
  const auto taps = tap_list(o.layers);
  s.net->check_taps(taps);
  Tensor img = load_sized(s, o.input, "--input", taps);
  const auto sizes = octave_sizes(img.shape().h, img.shape().w, o);
  std::mt19937_64 rng(o.seed);
  const int first = resume_stage(s, int(sizes.size()));
  Tensor x, base_prev;
  for (int k = 0; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    Tensor base = resize(img.view(), h, w);
    if (k < first) {  // replay the octave bases only; the checkpoint holds the image
      base_prev = std::move(base);
      continue;
    }
    check_memory(s, h, w, taps);
    if (k == first) {  // the input (a resumed stage then loads its checkpoint over it)
      x = base.clone();
    } else {  // carry the dreamt detail up: x = base + upsample(x_prev − base_prev)
      std::vector<float> d = x.to_vector(), bp = base_prev.to_vector();
      for (size_t i = 0; i < d.size(); ++i) d[i] -= bp[i];
      Tensor detail = resize(Tensor::from_vector(x.shape(), d).view(), h, w);
      std::vector<float> xv = base.to_vector(), dv = detail.to_vector();
      for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::clamp(xv[i] + dv[i], 0.f, 1.f);
      x = Tensor::from_vector(base.shape(), xv);
    }
    Objective obj;
    for (const auto& l : o.layers) {
      auto t = make_dream_term(l.layer, l.weight);
      t->label = "dream:" + l.layer;
      obj.add(std::move(t));
    }
    add_priors(obj, o, h, w);
    run_ascent(s, obj, x, k, int(sizes.size()), o.iters, rng,
               [&](Tensor& xx, int, std::vector<double>& terms) {
                 return ascent_step(s, obj, xx, rng, terms);
               });
    base_prev = std::move(base);
    if (s.interrupted) break;
  }
  return finish(s, x);
}

}  // namespace

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
        "binning", "pooling", "dump", "quiet"},
       run_descriptor},
      {"style", "content --input + style --style (Gatys), --original-colors",
       with({"style", "content-weight", "style-weight", "original-colors"}), run_style},
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
