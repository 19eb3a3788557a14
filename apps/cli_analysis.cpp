// The analysis subcommands (see cli_analysis.h). Each one validates every input and output path
// before computing, writes its outputs atomically, and removes the outputs it already wrote when
// a later one fails, so a failed run leaves nothing partial behind.
#include "cli_analysis.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "cli_options.h"
#include "cli_progress.h"
#include "json.h"
#include "preimage/analysis.h"
#include "preimage/atomic_file.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

// ---- arguments ------------------------------------------------------------------------------

struct Spec {
  std::string name, summary, positional;  // positional: "" (none) or its name, e.g. "DIR"
  FlagSet flags;
};

// The score flags of saliency and adversarial.
const std::vector<Flag> kTarget = {
    {"layer", "L", "the layer of --channel", "fc8 with --class (--head: the head's layer)"},
    {"channel", "C", "channel of --layer to score (its spatial mean)", "none"},
    {"class", "K", "class to score (fc8, or --head's classes)", "none"},
    {"head", "FILE.h5", "a linear head from `preimage head`, scored with --class", "none"},
};

FlagSet with_target(std::vector<Flag> own) {
  FlagSet f({"weights", "arch", "device", "quiet", "neuron"}, kTarget);
  for (auto& x : own) f.add(std::move(x));
  return f;
}

const std::vector<Spec>& specs() {
  static const std::vector<Spec> list = {
      {"saliency",
       "heat map + overlay of --input for --layer L --channel C | --class K "
       "(--method gradient|guided|occlusion)",
       "",
       with_target({{"input", "IMAGE", "the image to explain", "required"},
                    {"size", "N|WxH", "resize --input first", "its size"},
                    {"method", "gradient|guided|occlusion",
                     "gradient magnitude, guided backpropagation, or occlusion", "gradient"},
                    {"patch", "PX", "occlusion patch side", "1/8 of the shorter side"},
                    {"stride", "PX", "occlusion stride", "half the patch"},
                    {"batch", "B", "occluded images per forward pass", "16"},
                    {"out", "FILE.png", "heat map; FILE_overlay.png is the overlay", "required"}})},
      {"adversarial",
       "FGSM / iterative targeted attack within --epsilon (or --from-noise fooling image)", "",
       with_target({{"input", "IMAGE", "the image to perturb (or --from-noise)", "none"},
                    {"from-noise", "",
                     "start from seeded noise instead of --input (a fooling image)", "off"},
                    {"size", "N|WxH", "resize --input first (--from-noise: the noise image's size)",
                     "its size (--from-noise: 128)"},
                    {"method", "fgsm|iterative", "one signed-gradient step, or projected steps",
                     "iterative"},
                    {"epsilon", "E", "L-inf budget in [0,1] (A/B allowed, e.g. 8/255)",
                     "8/255 (--from-noise: 1)"},
                    {"steps", "N", "iterative steps", "20"},
                    {"step-size", "S", "iterative step (0: 2.5 epsilon / steps)", "0"},
                    {"target-prob", "P", "stop when the target's probability reaches P", "1"},
                    {"seed", "S", "noise seed (--from-noise)", "0"},
                    {"out", "FILE.png",
                     "the image; FILE_diff.png (10x difference) and FILE.png.json", "required"}})},
      {"features", "features DIR --layer L --out feats.h5: mean-pooled features of each image",
       "DIR",
       FlagSet({"weights", "arch", "device", "quiet", "batch"},
               {{"layer", "L", "the layer whose channel means are the features", "required"},
                {"size", "N", "every image is resized to N x N", "128"},
                {"out", "FILE.h5", "the feature file", "required"}})},
      {"neighbors", "neighbors feats.h5 --query IMG -k K: nearest images as a contact sheet",
       "FEATS",
       FlagSet(
           {"weights", "arch", "device", "quiet"},
           {{"query", "IMAGE", "the query image", "required"},
            {"k", "K", "neighbours shown", "8"},
            {"metric", "cosine|l2", "feature distance", "cosine"},
            {"layer", "L", "must match the feature file's layer", "the file's"},
            {"thumb", "PX", "thumbnail side in the sheet", "96"},
            {"weights", "FILE|random:SEED", "must match the feature file's weights", "the file's"},
            {"out", "FILE.png", "the contact sheet", "required"}})},
      {"embed", "embed feats.h5 --method pca|tsne: image map PNG + CSV of 2-D coordinates", "FEATS",
       FlagSet({"quiet"}, {{"method", "pca|tsne", "2-D embedding", "pca"},
                           {"perplexity", "P", "t-SNE perplexity", "30"},
                           {"iters", "N", "t-SNE iterations", "1000"},
                           {"seed", "S", "t-SNE seed", "0"},
                           {"canvas", "PX", "image map side", "1024"},
                           {"thumb", "PX", "thumbnail side on the map", "48"},
                           {"csv", "FILE.csv", "the coordinates", "FILE.csv beside --out"},
                           {"out", "FILE.png", "the image map", "required"},
                           // Refused with a message (the feature file holds the features).
                           {"weights", "FILE|random:SEED", "not used (refused)", "none"},
                           {"arch", "vgg16|vgg19", "not used (refused)", "none"},
                           {"device", "auto|cpu|cuda", "not used (refused)", "none"}})},
      {"patches", "patches DIR --layer L --channel C -k K: top receptive-field patches grid", "DIR",
       FlagSet({"weights", "arch", "device", "quiet"},
               {{"layer", "L", "the layer of --channel", "required"},
                {"channel", "C", "the channel whose top activations are shown", "required"},
                {"k", "K", "patches shown", "16"},
                {"size", "N", "every image is resized to N x N", "128"},
                {"tile", "PX", "patch side in the grid", "64"},
                {"out", "FILE.png", "the grid", "required"}})},
      {"filters", "first-layer (conv1_1) filter grid", "",
       FlagSet({"weights", "arch", "device", "quiet"},
               {{"layer", "L", "only conv1_1 (colour filters)", "conv1_1"},
                {"tile", "PX", "filter side in the grid", "24"},
                {"out", "FILE.png", "the grid", "required"}})},
      {"head",
       "head DIR --layer L --out head.h5: linear classifier on pooled features, one "
       "subdirectory of DIR per class (for --head)",
       "DIR",
       FlagSet({"weights", "arch", "device", "quiet", "batch"},
               {{"layer", "L", "the layer whose channel means are the features", "required"},
                {"size", "N", "every image is resized to N x N", "128"},
                {"l2", "L", "L2 regularization", "0.001"},
                {"iters", "N", "training iterations (L-BFGS)", "200"},
                {"out", "FILE.h5", "the head", "required"}})},
  };
  return list;
}

const Spec* find_spec(const std::string& name) {
  for (const Spec& s : specs())
    if (s.name == name) return &s;
  return nullptr;
}

using Args = FlagArgs;

Args parse_args(const Spec& spec, int argc, char** argv) {
  Args a = parse_flags(spec.name, argc, argv, 2, spec.flags);
  if (spec.positional.empty()) {
    a.no_more_positional(0);
  } else {
    require(!a.positional.empty(),
            spec.name + ": expected " + spec.positional + " (usage: " + spec.summary + ")");
    if (a.positional.size() > 1)
      throw Error(spec.name + ": expected one " + spec.positional + ", got also '" +
                  a.positional[1] + "'");
  }
  return a;
}

// ---- outputs --------------------------------------------------------------------------------

std::string ext_of(const std::string& path) {
  const auto name = std::filesystem::path(path).filename().string();
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(dot);
}

// Checks that an output path has the extension and that its directory exists.
void check_output(const std::string& path, const std::string& flag, const std::string& ext) {
  require(!path.empty(), flag + " FILE" + ext + " is required");
  require(ext_of(path) == ext, flag + ": expected a " + ext + " path, got '" + path + "'");
  const auto dir = std::filesystem::path(path).parent_path();
  require(dir.empty() || std::filesystem::is_directory(dir),
          flag + ": directory '" + dir.string() + "' does not exist");
  require(!std::filesystem::is_directory(path), flag + ": '" + path + "' is a directory");
}

// "out.png" + "_overlay" → "out_overlay.png"
std::string sibling(const std::string& path, const std::string& suffix, const std::string& ext) {
  const std::string e = ext_of(path);
  return path.substr(0, path.size() - e.size()) + suffix + ext;
}

// Writes every output in order; when one fails, removes the ones already written.
void write_all(
    const std::vector<std::pair<std::string, std::function<void(const std::string&)>>>& outputs) {
  std::vector<std::string> done;
  try {
    for (const auto& [path, write] : outputs) {
      write(path);
      done.push_back(path);
    }
  } catch (...) {
    for (const auto& p : done) std::filesystem::remove(p);
    throw;
  }
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomically(path, text.data(), text.size());
}

// ---- session --------------------------------------------------------------------------------

struct Session {
  Device device = Device::CPU;
  std::unique_ptr<Network> net;
  bool quiet = false;
  std::string banner;  // printed by announce() once every input has been validated

  void announce() {
    if (!quiet && !banner.empty()) std::fprintf(stderr, "%s", banner.c_str());
    banner.clear();
  }
};

Session open(const Args& a, const std::string& default_weights = "random:0") {
  Session s;
  s.quiet = a.on("quiet");
  s.device = resolve_device(a.text("device"));
  Weights w = load_weights(a.given("weights") ? a.text("weights") : default_weights,
                           parse_arch(a.text("arch")));
  s.banner =
      "weights: " + w.identity +
      (w.random ? "  (RANDOM features: seeded He-initialized VGG, not a trained network)" : "") +
      "\ndevice: " + device_name(s.device) + "\n";
  s.net = std::make_unique<Network>(std::move(w), s.device);
  return s;
}

// Loads --input (or another image flag) and brings it to --size.
Tensor load_input(const Args& a, const std::string& flag) {
  const std::string path = a.text(flag);
  require(!path.empty(), a.command + ": --" + flag + " IMAGE is required");
  Tensor img;
  try {
    img = load_image(path);
  } catch (const Error& e) {
    throw Error("--" + flag + ": " + e.what());
  }
  if (a.given("size")) {
    int h = 0, w = 0;
    parse_size(a.text("size"), img.shape().h, img.shape().w, &h, &w);
    if (h != img.shape().h || w != img.shape().w) img = resize(img.view(), h, w);
  }
  return img;
}

// A square --size for directory commands ("128"; "WxH" must be square).
int square_size(const Args& a, int def) {
  if (!a.given("size")) return def;
  int h = 0, w = 0;
  parse_size(a.text("size"), 1, 1, &h, &w);
  require(h == w, "--size: " + a.command + " resizes every image to a square N×N, got '" +
                      a.text("size") + "'");
  require(h >= 8 && h <= 4096, "--size: expected a side in [8, 4096], got " + a.text("size"));
  return h;
}

// The score: --layer L --channel C [--neuron Y,X] | --class K [--head FILE.h5].
struct TargetArgs {
  Target target;
  LinearHead head;
};

void parse_target(const Args& a, const Network& net, TargetArgs& t) {
  require(!(a.given("channel") && a.given("class")), "--channel and --class contradict each other");
  require(a.given("channel") || a.given("class"), a.command + ": give --channel C or --class K");
  require(!a.given("head") || a.given("class"), "--head needs --class K");
  require(!a.given("neuron") || a.given("channel"), "--neuron needs --channel");
  Target& tg = t.target;
  if (a.given("head")) {
    t.head = load_head(a.text("head"));
    tg.head = &t.head;
  }
  tg.tap = a.given("layer")   ? a.text("layer")
           : tg.head          ? t.head.tap
           : a.given("class") ? "fc8"
                              : "";
  require(!tg.tap.empty(), a.command + ": --layer L is required with --channel");
  net.check_taps({tg.tap});
  tg.channel = a.given("channel") ? int(a.integer("channel", 0, 1 << 20)) : -1;
  tg.class_index = a.given("class") ? int(a.integer("class", 0, 1 << 20)) : -1;
  if (a.given("neuron")) {
    const std::string v = a.text("neuron");
    const auto c = v.find(',');
    require(c != std::string::npos, "--neuron: expected Y,X, got '" + v + "'");
    tg.y = int(parse_integer(v.substr(0, c), "neuron", 0, 1 << 20));
    tg.x = int(parse_integer(v.substr(c + 1), "neuron", 0, 1 << 20));
  }
}

void report_skipped(const Session& s, const std::vector<std::string>& skipped) {
  if (s.quiet || skipped.empty()) return;
  std::fprintf(stderr, "skipped %zu unreadable file(s):\n", skipped.size());
  for (const auto& m : skipped) std::fprintf(stderr, "  %s\n", m.c_str());
}

// ---- subcommands ----------------------------------------------------------------------------

int run_saliency(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  const std::string method = a.text("method");
  require(method == "gradient" || method == "guided" || method == "occlusion",
          "--method: expected gradient, guided or occlusion, got '" + method + "'");
  require(method == "occlusion" || (!a.given("patch") && !a.given("stride") && !a.given("batch")),
          "--patch/--stride/--batch apply to --method occlusion only");
  Session s = open(a);
  TargetArgs t;
  parse_target(a, *s.net, t);
  Tensor img = load_input(a, "input");
  check_target(*s.net, t.target, img.shape());
  const int side = std::min(img.shape().h, img.shape().w);
  const int patch = a.given("patch") ? int(a.integer("patch", 1, side)) : std::max(1, side / 8);
  const int stride = a.given("stride") ? int(a.integer("stride", 1, side)) : std::max(1, patch / 2);
  const int batch = a.integer("batch", 1, 4096);
  s.announce();
  Tensor dev = img.to(s.device);
  const double score = evaluate_target(*s.net, dev.view(), t.target).score[0];
  Tensor map = method == "occlusion"
                   ? saliency_occlusion(*s.net, dev.view(), t.target, patch, stride, batch)
                   : saliency_gradient(*s.net, dev.view(), t.target, method == "guided");
  const auto v = map.to_vector();
  const size_t at = size_t(std::max_element(v.begin(), v.end()) - v.begin());
  const std::string over = sibling(out, "_overlay", ".png");
  write_all({{out, [&](const std::string& p) { save_png(colorize(map).view(), p); }},
             {over, [&](const std::string& p) { save_png(overlay(img, map).view(), p); }}});
  if (!s.quiet)
    std::fprintf(stderr, "%s saliency of %s (score %.6g): peak %.4g at y=%zu x=%zu\n",
                 method.c_str(), t.target.describe().c_str(), score, v[at],
                 at / size_t(img.shape().w), at % size_t(img.shape().w));
  std::printf("%s\n%s\n", out.c_str(), over.c_str());
  return 0;
}

int run_adversarial(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  const bool from_noise = a.on("from-noise");
  require(from_noise != a.given("input"), "adversarial: give --input IMAGE or --from-noise");
  const std::string method = a.text("method");
  require(method == "fgsm" || method == "iterative",
          "--method: expected fgsm or iterative, got '" + method + "'");
  AttackOptions o;
  o.iterative = method == "iterative";
  o.epsilon = float(a.given("epsilon") ? a.number("epsilon", 1e-6, 1.0)
                    : from_noise       ? 1.0
                                       : 8.0 / 255.0);
  o.steps = a.integer("steps", 1, 100000);
  o.step_size = float(a.number("step-size", 0.0, 1.0));
  require(o.iterative || (!a.given("steps") && !a.given("step-size")),
          "--steps/--step-size apply to --method iterative only");
  const double stop = a.number("target-prob", 0.0, 1.0);
  Session s = open(a);
  TargetArgs t;
  parse_target(a, *s.net, t);
  Tensor start;
  if (from_noise) {
    int h = 0, w = 0;
    parse_size(a.given("size") ? a.text("size") : "128", 128, 128, &h, &w);
    std::mt19937_64 rng(uint64_t(a.integer("seed", 0, 2147483647)));
    std::uniform_real_distribution<float> d(0.4f, 0.6f);
    std::vector<float> v(size_t(3) * h * w);
    for (auto& e : v) e = d(rng);
    start = Tensor::from_vector({1, 3, h, w}, v);
  } else {
    require(!a.given("seed"), "--seed applies to --from-noise only");
    start = load_input(a, "input");
  }
  check_target(*s.net, t.target, start.shape());
  s.announce();
  Tensor dev = start.to(s.device);
  const AttackResult r = attack(*s.net, dev.view(), t.target, o, stop);
  // The 10× amplified difference around mid-grey.
  const auto x0 = start.to_vector(), x1 = r.image.to_vector();
  std::vector<float> diff(x0.size());
  for (size_t i = 0; i < diff.size(); ++i) diff[i] = 0.5f + 10.f * (x1[i] - x0[i]);
  const Tensor dt = Tensor::from_vector(start.shape(), diff);
  Json j;
  j.begin_object();
  j.value("command", "adversarial");
  j.value("weights", s.net->weights().identity);
  j.value("target", t.target.describe());
  j.value("method", method);
  j.value("from_noise", from_noise);
  j.value("epsilon", double(o.epsilon));
  j.value("steps", r.steps);
  j.value("score_before", r.score_before);
  j.value("score_after", r.score_after);
  if (r.prob_before >= 0) {
    j.value("probability_before", r.prob_before);
    j.value("probability_after", r.prob_after);
  }
  j.value("linf", r.linf);
  j.value("l2", r.l2);
  j.end_object();
  const std::string diff_path = sibling(out, "_diff", ".png"), json = out + ".json";
  write_all({{out, [&](const std::string& p) { save_png(r.image.view(), p); }},
             {diff_path, [&](const std::string& p) { save_png(dt.view(), p); }},
             {json, [&](const std::string& p) { write_text(p, j.str() + "\n"); }}});
  if (!s.quiet) {
    std::fprintf(stderr, "%s attack on %s, epsilon %.5g, %d step(s)\n", method.c_str(),
                 t.target.describe().c_str(), o.epsilon, r.steps);
    std::fprintf(stderr, "score %.6g -> %.6g", r.score_before, r.score_after);
    if (r.prob_before >= 0)
      std::fprintf(stderr, ", probability %.6f -> %.6f", r.prob_before, r.prob_after);
    std::fprintf(stderr, "\nperturbation: Linf %.6g, L2 %.6g\n", r.linf, r.l2);
  }
  std::printf("%s\n%s\n%s\n", out.c_str(), diff_path.c_str(), json.c_str());
  return 0;
}

int run_features(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".h5");
  require(a.given("layer"), "features: --layer L is required");
  const std::string tap = a.text("layer");
  const int size = square_size(a, 128);
  const int batch = a.integer("batch", 1, 4096);
  const auto files = list_images(a.positional[0]);
  Session s = open(a);
  s.net->check_taps({tap});
  s.net->tap_shape(tap, {1, 3, size, size});
  ProgressPrinter progress(s.quiet, "features", "", "img");
  // The banner waits for the first readable batch: a directory of unreadable files fails on
  // one line.
  const FeatureSet f = extract_features(*s.net, files, tap, size, batch, [&](int done, int total) {
    s.announce();
    progress.update(done, total);
  });
  save_features(f, out);
  report_skipped(s, f.skipped);
  if (!s.quiet)
    std::fprintf(stderr, "%zu image(s) x %d features at %s (%zu skipped)\n", f.count(), f.dim,
                 tap.c_str(), f.skipped.size());
  std::printf("%s\n", out.c_str());
  return 0;
}

// The sha256 in an identity "FILE (sha256 HEX)", or the identity itself ("random:SEED").
std::string identity_key(const std::string& id) {
  const auto p = id.find("(sha256 ");
  return p == std::string::npos ? id : id.substr(p);
}

// A session for a feature file: its weights (random:SEED by default; a file must be given with
// --weights and match), arch and layer.
Session open_for(const Args& a, const FeatureSet& f) {
  const bool random = f.weights.rfind("random:", 0) == 0;
  require(random || a.given("weights"),
          "--weights: the feature file was computed with " + f.weights + "; pass that file");
  require(!a.given("arch") || a.text("arch") == f.arch,
          "--arch " + a.text("arch") + ": the feature file was computed with " + f.arch);
  Args b = a;
  b.flags["arch"] = f.arch;
  Session s = open(b, f.weights);
  require(identity_key(s.net->weights().identity) == identity_key(f.weights),
          "mismatched feature file '" + a.positional[0] + "': computed with weights " + f.weights +
              ", not " + s.net->weights().identity);
  require(!a.given("layer") || a.text("layer") == f.tap,
          "--layer " + a.text("layer") + ": the feature file holds layer " + f.tap);
  s.net->check_taps({f.tap});
  require(s.net->tap_shape(f.tap, {1, 3, f.size, f.size}).c == f.dim,
          "mismatched feature file '" + a.positional[0] + "': " + std::to_string(f.dim) +
              " features per image, layer " + f.tap + " has " +
              std::to_string(s.net->tap_shape(f.tap, {1, 3, f.size, f.size}).c) + " channels");
  return s;
}

// A thumbnail of an image file; grey (with a warning) when it cannot be read.
Tensor thumbnail(const std::string& path, int side, bool quiet) {
  try {
    return resize(load_image(path).view(), side, side);
  } catch (const Error& e) {
    if (!quiet) std::fprintf(stderr, "warning: %s (drawn grey)\n", e.what());
    return Tensor::full({1, 3, side, side}, 0.5f);
  }
}

int run_neighbors(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  const std::string metric = a.text("metric");
  require(metric == "cosine" || metric == "l2",
          "--metric: expected cosine or l2, got '" + metric + "'");
  const int k = a.integer("k", 1, 10000);
  const int thumb = a.integer("thumb", 8, 1024);
  require(a.given("query"), "neighbors: --query IMAGE is required");
  const FeatureSet f = load_features(a.positional[0]);
  Session s = open_for(a, f);
  const Tensor query = load_input(a, "query");
  const auto q = image_features(*s.net, query, f.tap, f.size);
  const auto nn = nearest_neighbors(f, q, k, metric == "cosine");
  s.announce();
  std::vector<Tensor> tiles;
  tiles.push_back(resize(query.view(), thumb, thumb));
  for (const auto& n : nn) tiles.push_back(thumbnail(f.paths[n.index], thumb, s.quiet));
  const Tensor sheet = tile_grid(tiles, std::min(int(tiles.size()), 8), thumb);
  save_png(sheet.view(), out);
  std::printf("rank %s path\n", metric == "cosine" ? "1-cosine" : "L2");
  for (size_t i = 0; i < nn.size(); ++i)
    std::printf("%zu %.6g %s\n", i + 1, nn[i].distance, f.paths[nn[i].index].c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char c : v) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

int run_embed(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  const std::string csv = a.given("csv") ? a.text("csv") : sibling(out, "", ".csv");
  check_output(csv, "--csv", ".csv");
  const std::string method = a.text("method");
  require(method == "pca" || method == "tsne",
          "--method: expected pca or tsne, got '" + method + "'");
  require(method == "tsne" || (!a.given("perplexity") && !a.given("iters") && !a.given("seed")),
          "--perplexity/--iters/--seed apply to --method tsne only");
  const int canvas = a.integer("canvas", 64, 16384);
  const int thumb = a.integer("thumb", 4, 1024);
  require(thumb < canvas, "--thumb must be smaller than --canvas");
  TsneOptions to;
  to.perplexity = a.number("perplexity", 1, 1000);
  to.iterations = a.integer("iters", 50, 100000);
  to.seed = uint64_t(a.integer("seed", 0, 2147483647));
  const bool quiet = a.on("quiet");
  require(!a.given("weights") && !a.given("arch") && !a.given("device"),
          "embed: --weights/--arch/--device do not apply (the feature file holds the features)");
  const FeatureSet f = load_features(a.positional[0]);
  const int n = int(f.count());
  std::vector<double> xy;
  if (method == "pca") {
    require(n >= 2,
            "embed: PCA needs at least 2 images, the feature file has " + std::to_string(n));
    xy = pca(f.features, n, f.dim, std::min(2, f.dim));
    if (f.dim == 1) {
      std::vector<double> two(size_t(2) * n, 0.0);
      for (int i = 0; i < n; ++i) two[2 * i] = xy[i];
      xy = two;
    }
  } else {
    require(n >= 4,
            "embed: t-SNE needs at least 4 images, the feature file has " + std::to_string(n));
    if (!quiet)
      std::fprintf(stderr, "t-SNE of %d point(s) (%s), perplexity %g, %d iterations\n", n,
                   n < to.exact_below ? "exact" : "Barnes-Hut", to.perplexity, to.iterations);
    xy = tsne(f.features, n, f.dim, to);
  }
  std::vector<Tensor> thumbs;
  for (const auto& p : f.paths) thumbs.push_back(thumbnail(p, thumb, quiet));
  const Tensor map = image_map(thumbs, xy, canvas, thumb);
  std::string text = "index,path,x,y\n";
  char buf[80];
  for (int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, ",%.9g,%.9g\n", xy[2 * i], xy[2 * i + 1]);
    text += std::to_string(i) + "," + csv_field(f.paths[i]) + buf;
  }
  write_all({{out, [&](const std::string& p) { save_png(map.view(), p); }},
             {csv, [&](const std::string& p) { write_text(p, text); }}});
  std::printf("%s\n%s\n", out.c_str(), csv.c_str());
  return 0;
}

int run_patches(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  require(a.given("layer"), "patches: --layer L is required");
  require(a.given("channel"), "patches: --channel C is required");
  const std::string tap = a.text("layer");
  const int channel = a.integer("channel", 0, 1 << 20);
  const int k = a.integer("k", 1, 10000);
  const int size = square_size(a, 128);
  const int tile = a.integer("tile", 8, 1024);
  const auto files = list_images(a.positional[0]);
  Session s = open(a);
  s.net->check_taps({tap});
  std::vector<std::string> skipped;
  const auto top = top_patches(*s.net, files, tap, channel, size, k, &skipped);
  s.announce();
  std::vector<Tensor> tiles;
  for (const auto& p : top)
    tiles.push_back(crop_patch(resize(load_image(files[p.image]).view(), size, size), p));
  const Tensor grid = tile_grid(tiles, std::min(int(tiles.size()), 8), tile);
  save_png(grid.view(), out);
  report_skipped(s, skipped);
  std::printf("rank activation y0 x0 size path\n");
  for (size_t i = 0; i < top.size(); ++i)
    std::printf("%zu %.6g %d %d %d %s\n", i + 1, top[i].activation, top[i].y0, top[i].x0,
                top[i].size, files[top[i].image].c_str());
  std::printf("%s\n", out.c_str());
  return 0;
}

int run_filters(const Args& a) {
  const std::string out = a.text("out");
  check_output(out, "--out", ".png");
  const std::string layer = a.text("layer");
  require(layer == "conv1_1",
          "--layer: filters shows the first layer's colour filters (conv1_1), got '" + layer + "'");
  const int tile = a.integer("tile", 3, 512);
  Session s = open(a);
  s.announce();
  const Tensor w = s.net->weights().layers.at("conv1_1").weight.to(Device::CPU);
  save_png(filter_grid(w, tile).view(), out);
  if (!s.quiet)
    std::fprintf(stderr, "%d filters of %dx%d\n", w.shape().n, w.shape().h, w.shape().w);
  std::printf("%s\n", out.c_str());
  return 0;
}

int run_head(const Args& a) {
  namespace fs = std::filesystem;
  const std::string out = a.text("out");
  check_output(out, "--out", ".h5");
  require(a.given("layer"), "head: --layer L is required");
  const std::string tap = a.text("layer");
  const int size = square_size(a, 128);
  const int batch = a.integer("batch", 1, 4096);
  const float l2 = float(a.number("l2", 0, 1e6));
  const int iters = a.integer("iters", 1, 100000);
  const std::string dir = a.positional[0];
  std::error_code ec;
  require(fs::is_directory(dir, ec), "directory '" + dir + "' does not exist");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] != '.' && e.is_directory(ec)) classes.push_back(name);
  }
  std::sort(classes.begin(), classes.end());
  require(classes.size() >= 2, "head: directory '" + dir +
                                   "' needs one subdirectory of images per class (at least 2), "
                                   "found " +
                                   std::to_string(classes.size()));
  std::vector<std::vector<std::string>> files;
  for (const auto& c : classes) files.push_back(list_images((fs::path(dir) / c).string()));
  Session s = open(a);
  s.net->check_taps({tap});
  s.net->tap_shape(tap, {1, 3, size, size});
  std::vector<float> feats;
  std::vector<int> labels;
  std::vector<std::string> skipped;
  int dim = 0;
  for (size_t k = 0; k < classes.size(); ++k) {
    ProgressPrinter progress(s.quiet, "features of class " + classes[k], "", "img");
    FeatureSet f;
    try {
      f = extract_features(*s.net, files[k], tap, size, batch, [&](int done, int total) {
        s.announce();
        progress.update(done, total);
      });
    } catch (const Error& e) {
      throw Error("class '" + classes[k] + "': " + e.what());
    }
    feats.insert(feats.end(), f.features.begin(), f.features.end());
    labels.insert(labels.end(), f.count(), int(k));
    skipped.insert(skipped.end(), f.skipped.begin(), f.skipped.end());
    dim = f.dim;
  }
  LinearHead h = train_linear_head(tap, feats, dim, labels, int(classes.size()), l2, iters);
  h.names = classes;
  save_head(h, out);
  report_skipped(s, skipped);
  if (!s.quiet)
    std::fprintf(stderr, "head on %s: %zu classes, %zu images, training accuracy %.1f%%\n",
                 tap.c_str(), classes.size(), labels.size(), 100.0 * h.accuracy);
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace

bool is_analysis_command(const std::string& command) {
  return find_spec(command) != nullptr;
}

int run_analysis(const std::string& command, int argc, char** argv) {
  const Spec* spec = find_spec(command);
  require(spec != nullptr, "unknown command '" + command + "'");
  if (argc > 2 && (std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h")) {
    std::printf("%s", analysis_help(command).c_str());
    return 0;
  }
  const Args a = parse_args(*spec, argc, argv);
  if (command == "saliency") return run_saliency(a);
  if (command == "adversarial") return run_adversarial(a);
  if (command == "features") return run_features(a);
  if (command == "neighbors") return run_neighbors(a);
  if (command == "embed") return run_embed(a);
  if (command == "patches") return run_patches(a);
  if (command == "head") return run_head(a);
  return run_filters(a);
}

std::vector<std::pair<std::string, std::string>> analysis_commands() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const Spec& s : specs()) out.emplace_back(s.name, s.summary);
  return out;
}

std::string analysis_help(const std::string& command) {
  const Spec* spec = find_spec(command);
  require(spec != nullptr, "unknown command '" + command + "'");
  return flags_help(
      command + (spec->positional.empty() ? "" : " " + spec->positional) + " [options]",
      spec->summary, spec->flags);
}

void print_analysis_usage() {
  for (const Spec& s : specs())
    std::fprintf(stderr, "  %-11s %s\n", s.name.c_str(), s.summary.c_str());
}

}  // namespace preimage::cli
