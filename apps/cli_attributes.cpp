// `preimage attributes train|show|apply` (see cli_attributes.h and docs/attributes.md). train
// validates the data set and the output before loading the network, extracts B-CNN features in
// batches with a progress bar (unreadable images are skipped and counted), trains the classifier
// on the device and reports per-class held-out accuracy; show and apply check the classifier
// against the run's network (architecture, layers, weights fingerprint) before any output is
// written and then run the shared L-BFGS driver (cli_run.h): PNG + JSON sidecar, both atomic.
#include "cli_attributes.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli_options.h"
#include "cli_progress.h"
#include "cli_run.h"
#include "engine/core/strings.h"
#include "preimage/attributes.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

namespace fs = std::filesystem;

const char* kUsage =
    "  attributes  B-CNN attribute classifiers and edits (Lin & Maji; docs/attributes.md):\n"
    "      attributes train --data DIR | --list FILE --out C.h5 [--layers L,..] [--size N]\n"
    "                       [--pool max|avg] [--batch B] [--l2 L] [--iters N] [--test-fraction F]\n"
    "      attributes show --classifier C.h5 --attribute NAME|all --out X.png [--size N]\n"
    "      attributes apply --input IMG --classifier C.h5 --attribute NAME|all --strength B\n"
    "                       --out X.png [--keep-content] [--layers L,..]\n";

// attributes train|show|apply: usage, summary and flags.
const CommandSpec& attribute_spec(const std::string& command) {
  static const std::vector<Flag> kRun = {
      {"classifier", "FILE.h5", "a classifier from `attributes train`", "required"},
      {"attribute", "NAME|all", "the class to render or strengthen (all: one output each)",
       "required"},
      {"strength", "B", "weight of the attribute's log-probability", "1"},
      {"out", "FILE.png", "output image (with all: FILE_<name>.png each); FILE.png.json",
       "required"},
      {"weights", "FILE|random:SEED", "VGG weights", "the classifier's"},
      {"arch", "vgg16|vgg19", "network architecture", "the classifier's"},
      {"iters", "N", "iterations per octave", "100"},
      {"tv", "W", "weight of the per-pixel mean of TV^B", "1"},
  };
  static const std::map<std::string, CommandSpec> specs = [] {
    std::map<std::string, CommandSpec> m;
    FlagSet train(
        {"weights", "arch", "device", "quiet", "batch", "seed"},
        {{"data", "DIR", "one subfolder of images per attribute", "--data or --list"},
         {"list", "FILE", "lines 'path attribute' (split given by the file)", "--data or --list"},
         {"layers", "L,...", "B-CNN layers", "relu2_2,relu3_4,relu4_4,relu5_4 (VGG-16: _3)"},
         {"size", "N", "images are resized to N x N", "224"},
         {"pool", "max|avg", "the network's pooling", "max"},
         {"l2", "L", "L2 regularization of the logistic classifiers", "0.01"},
         {"iters", "N", "training iterations (L-BFGS)", "300"},
         {"test-fraction", "F", "held-out fraction per class (--data)", "0.25"},
         {"seed", "S", "train/test split seed (--data)", "0"},
         {"out", "FILE.h5", "the classifier", "required"}});
    m["attributes train"] = {"attributes train --data DIR | --list FILE --out C.h5 [options]",
                             "train B-CNN attribute classifiers (Lin & Maji; docs/attributes.md)",
                             train};
    FlagSet show({"device", "quiet", "size", "history", "seed", "octaves", "octave-scale", "init",
                  "tv-beta", "alpha", "alpha-weight"},
                 kRun);
    show.set_default("size", "the classifier's training size");
    m["attributes show"] = {
        "attributes show --classifier C.h5 --attribute NAME|all --out X.png [options]",
        "an image that the classifier sees as the attribute (from noise)", show};
    FlagSet apply = show;
    apply.add({"input", "IMAGE", "the image to edit", "required"});
    apply.add({"size", "N|WxH", "output size", "the input's size"});
    apply.add({"layers", "L[:W],...", "Gram taps that keep the input's texture",
               "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"});
    apply.add(
        {"keep-content", "", "also keep the input's relu4_2 content (starts from it)", "off"});
    apply.add({"content-weight", "W", "weight of the content term (--keep-content)", "1"});
    apply.add(
        {"init", "noise|random|input|FILE", "initial image", "noise (--keep-content: input)"});
    apply.set_default("tv", "0");
    m["attributes apply"] = {
        "attributes apply --input IMG --classifier C.h5 --attribute NAME|all --out X.png "
        "[options]",
        "strengthen (or with a negative --strength weaken) an attribute in --input", apply};
    return m;
  }();
  return specs.at(command);
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (const auto& lw : parse_layers(s, "layers")) out.push_back(lw.layer);
  return out;
}

// An output path: the extension, an existing directory, not a directory itself.
void check_out(const std::string& out, const std::string& ext) {
  require(!out.empty(), "--out FILE" + ext + " is required");
  require(out.size() > ext.size() && out.substr(out.size() - ext.size()) == ext,
          "--out: expected a " + ext + " path, got '" + out + "'");
  const auto dir = fs::path(out).parent_path();
  require(dir.empty() || fs::is_directory(dir),
          "--out: directory '" + dir.string() + "' does not exist");
  require(!fs::is_directory(out), "--out: '" + out + "' is a directory");
}

// ---- train -----------------------------------------------------------------------------------

int run_train(int argc, char** argv) {
  const std::string cmd = "attributes train";
  const FlagArgs a = parse_flags(cmd, argc, argv, 3, attribute_spec(cmd).flags);
  a.no_more_positional(0);
  const bool quiet = a.on("quiet");
  const std::string out = a.text("out");
  check_out(out, ".h5");
  require(a.given("data") + a.given("list") == 1,
          cmd + ": give exactly one of --data DIR (one subfolder per class) or --list FILE");
  const int size = int(a.integer("size", 16, 4096));
  const int batch = int(a.integer("batch", 1, 4096));
  const std::string pool = a.text("pool");
  require(pool == "max" || pool == "avg", "--pool: expected max or avg, got '" + pool + "'");
  AttributeTrainOptions topt;
  topt.l2 = float(a.number("l2", 0, 1e6));
  topt.iterations = int(a.integer("iters", 1, 100000));
  const double fraction = a.number("test-fraction", 1e-6, 1 - 1e-6);
  const uint64_t seed = uint64_t(a.integer("seed", 0, 2147483647));

  // The data set first: a bad folder or list fails before the network is built.
  const AttributeDataset ds = a.given("data")
                                  ? attribute_dataset_from_dir(a.text("data"), fraction, seed)
                                  : attribute_dataset_from_list(a.text("list"));
  const Device dev = resolve_device(a.text("device"));
  Arch arch = Arch::VGG19;
  try {
    arch = parse_arch(a.text("arch"));
  } catch (const Error& e) {
    throw Error(std::string("--arch: ") + e.what());
  }
  Weights w;
  try {
    w = load_weights(a.text("weights"), arch);
  } catch (const Error& e) {
    throw Error(std::string("--weights: ") + e.what());
  }
  const std::string identity = w.identity;
  const bool random = w.random;
  NetworkOptions no;
  no.avg_pool = pool == "avg";
  Network net(std::move(w), dev, no);
  BcnnFeatureSettings fs_;
  fs_.layers =
      a.given("layers") ? split_list(a.text("layers")) : default_attribute_layers(net.arch());
  fs_.size = size;
  fs_.pool = pool;
  try {
    bcnn_layer_channels(net, fs_.layers);
  } catch (const Error& e) {
    throw Error(std::string("--layers: ") + e.what());
  }
  if (!quiet)
    std::fprintf(
        stderr,
        "preimage %s: weights %s%s, device %s\n%zu classes; B-CNN features at %s, "
        "%dx%d images\n",
        cmd.c_str(), identity.c_str(),
        random ? " (RANDOM features: seeded He-initialized VGG, not a trained network)" : "",
        device_name(dev), ds.classes.size(), join(fs_.layers).c_str(), size, size);

  // Features of every class and split with one progress bar.
  int total = 0;
  for (size_t k = 0; k < ds.classes.size(); ++k)
    total += int(ds.train[k].size() + ds.test[k].size());
  ProgressPrinter bar(quiet, "features", "", "img");
  int done = 0;
  std::vector<float> xtr, xte;
  std::vector<int> ytr, yte;
  std::vector<std::string> skipped;
  int dim = 0;
  std::vector<int> channels;
  std::vector<int> train_count(ds.classes.size()), test_count(ds.classes.size());
  for (size_t k = 0; k < ds.classes.size(); ++k) {
    for (int split = 0; split < 2; ++split) {
      const auto& files = split == 0 ? ds.train[k] : ds.test[k];
      const BcnnFeatures f = extract_bcnn_features(
          net, files, fs_, batch, [&](int d, int) { bar.update(done + d, total); });
      done += int(files.size());
      bar.update(done, total);
      dim = f.dim;
      channels = f.channels;
      skipped.insert(skipped.end(), f.skipped.begin(), f.skipped.end());
      auto& x = split == 0 ? xtr : xte;
      auto& y = split == 0 ? ytr : yte;
      x.insert(x.end(), f.features.begin(), f.features.end());
      y.insert(y.end(), f.count(), int(k));
      (split == 0 ? train_count : test_count)[k] = int(f.count());
    }
    require(train_count[k] > 0,
            "class '" + ds.classes[k] + "': none of its " + std::to_string(ds.train[k].size()) +
                " training image(s) could be read" +
                (skipped.empty() ? std::string() : " (" + skipped.back() + ")"));
  }
  if (!skipped.empty() && !quiet) {
    std::fprintf(stderr, "skipped %zu unreadable file(s):\n", skipped.size());
    for (const auto& m : skipped) std::fprintf(stderr, "  %s\n", m.c_str());
  }
  if (!quiet)
    std::fprintf(stderr, "training on %zu images (%d dimensions, %zu classes), testing on %zu\n",
                 ytr.size(), dim, ds.classes.size(), yte.size());
  AttributeClassifier c = train_attribute_classifier(xtr, dim, ytr, ds.classes, dev, topt);
  c.features = fs_;
  c.channels = channels;
  c.arch = arch_name(net.arch());
  c.weights = identity;
  c.fingerprint = weights_fingerprint(net, fs_.layers);
  c.test_class_accuracy = attribute_class_accuracy(c, xte, yte);
  double sum = 0;
  int defined = 0;
  for (double v : c.test_class_accuracy)
    if (std::isfinite(v)) sum += v, ++defined;
  c.test_accuracy = defined ? sum / defined : -1;
  // NaN (a class whose test images were all unreadable) is stored as −1.
  for (double& v : c.test_class_accuracy)
    if (!std::isfinite(v)) v = -1;
  save_attribute_classifier(c, out);
  // The table goes to stdout (machine-readable), the rest to stderr.
  std::printf("%-24s %6s %6s %9s\n", "class", "train", "test", "accuracy");
  for (size_t k = 0; k < c.classes.size(); ++k) {
    char acc[32];
    if (c.test_class_accuracy[k] >= 0)
      std::snprintf(acc, sizeof acc, "%.1f%%", 100.0 * c.test_class_accuracy[k]);
    else
      std::snprintf(acc, sizeof acc, "n/a");
    std::printf("%-24s %6d %6d %9s\n", c.classes[k].c_str(), train_count[k], test_count[k], acc);
  }
  std::printf(
      "mean held-out accuracy %.1f%% (training %.1f%%, %d L-BFGS iterations, %zu skipped)\n",
      100.0 * c.test_accuracy, 100.0 * c.train_accuracy, c.iterations, skipped.size());
  std::printf("%s\n", out.c_str());
  return 0;
}

// ---- show / apply ----------------------------------------------------------------------------

struct Loaded {
  std::string path;
  AttributeClassifier c;
  std::vector<int> targets;       // class indices to render
  std::vector<std::string> outs;  // one output per target
};

// Loads --classifier, resolves --attribute (before the network is built), the output paths and
// the run's defaults for --weights / --arch (the classifier's, when not given).
Loaded load_classifier(Options& o) {
  Loaded l;
  l.path = o.args.required("classifier");
  const std::string attr = o.args.required("attribute");
  require(!o.out.empty(), o.command + ": --out FILE.png is required");
  const auto dir = fs::path(o.out).parent_path();
  require(dir.empty() || fs::is_directory(dir),
          "--out: directory '" + dir.string() + "' does not exist");
  require(!fs::is_directory(o.out), "--out: '" + o.out + "' is a directory");
  try {
    l.c = load_attribute_classifier(l.path);
  } catch (const Error& e) {
    throw Error(std::string("--classifier: ") + e.what());
  }
  if (attr == "all") {
    const std::string stem = o.out.substr(0, o.out.size() - 4);
    for (int k = 0; k < l.c.classes_count(); ++k) {
      std::string name = l.c.classes[size_t(k)];
      for (char& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
          ch = '_';
      l.targets.push_back(k);
      l.outs.push_back(stem + "_" + name + ".png");
    }
  } else {
    l.targets.push_back(attribute_index(l.c, attr));
    l.outs.push_back(o.out);
  }
  for (const auto& p : l.outs) require(!fs::is_directory(p), "--out: '" + p + "' is a directory");
  if (!o.given("weights")) {
    const auto p = l.c.weights.rfind(" (sha256 ");
    o.weights = p == std::string::npos ? l.c.weights : l.c.weights.substr(0, p);
  }
  if (!o.given("arch")) o.arch = l.c.arch;
  return l;
}

// Starts a fresh output (one per rendered attribute) in the same session.
void reset_run(Session& s, const std::string& out) {
  s.opt.out = out;
  s.results = Json();
  s.results.begin_object();
}

std::vector<double> probabilities(Session& s, const AttributeClassifier& c, const Tensor& x) {
  const Tensor xd = x.to(s.device);
  return attribute_probabilities(
      c, bcnn_features(*s.net, xd.view(), c.features.layers, c.features.eps));
}

void record_classifier(Session& s, const Loaded& l, int target, const std::vector<double>& p) {
  s.results.value("classifier", l.path);
  s.results.value("classifier_weights", l.c.weights);
  s.results.value("classifier_fingerprint", l.c.fingerprint);
  s.results.value("attribute", l.c.classes[size_t(target)]);
  s.results.value("class_index", target);
  s.results.value("probability", p[size_t(target)]);
  s.results.begin_object("probabilities");
  for (size_t k = 0; k < l.c.classes.size(); ++k) s.results.value(l.c.classes[k], p[k]);
  s.results.end_object();
}

Tensor device_tensor(const std::vector<float>& v, int rows, int cols, Device d) {
  return Tensor::from_vector({1, 1, rows, cols}, v, d);
}

int run_show(Options o) {
  Loaded l = load_classifier(o);
  const AttributeClassifier& c = l.c;
  Session s = open_session(o, c.features.pool == "avg");
  check_attribute_classifier(c, *s.net, "--classifier '" + l.path + "'");
  int h = 0, w = 0;
  parse_size(o.size.empty() ? std::to_string(c.features.size) : o.size, c.features.size,
             c.features.size, &h, &w);
  check_recipe_memory(*s.net, h, w, c.features.layers, o.history);
  const int K = c.classes_count();
  const Tensor W = device_tensor(c.w, K, c.dim, s.device);
  const Tensor B = device_tensor(c.b, 1, K, s.device);
  for (size_t i = 0; i < l.targets.size(); ++i) {
    const int target = l.targets[i];
    reset_run(s, l.outs[i]);
    RecipeOptions r;
    r.tv = 1.f;
    apply_common(s, r);
    const RecipeResult res =
        optimize_image(*s.net, o.command, h, w, Tensor(), c.features.layers, r,
                       [&](Objective& obj, int, int, int) {
                         auto t = make_attribute_term(c.features.layers, W.view(), B.view(), target,
                                                      o.strength, c.features.eps);
                         t->label = "attribute:" + c.classes[size_t(target)];
                         obj.add(std::move(t));
                       });
    if (res.cancelled) return finish(s, res);
    const Tensor& x = res.image;
    const std::vector<double> p = probabilities(s, c, x);
    record_classifier(s, l, target, p);
    if (!o.quiet)
      std::fprintf(stderr, "attribute %s: probability %.4f\n", c.classes[size_t(target)].c_str(),
                   p[size_t(target)]);
    const int rc = finish(s, res);
    if (rc) return rc;
  }
  return 0;
}

int run_apply(Options o) {
  require(!o.input.empty(), o.command + ": --input IMAGE is required");
  Loaded l = load_classifier(o);
  const bool keep = o.args.on("keep-content");
  if (o.layers.empty())
    o.layers = parse_layers("relu1_1,relu2_1,relu3_1,relu4_1,relu5_1", "layers");
  const AttributeClassifier& c = l.c;
  Session s = open_session(o, c.features.pool == "avg");
  check_attribute_classifier(c, *s.net, "--classifier '" + l.path + "'");
  std::vector<std::string> tex;
  for (const auto& lw : o.layers) tex.push_back(lw.layer);
  try {
    bcnn_layer_channels(*s.net, tex);
  } catch (const Error& e) {
    throw Error(std::string("--layers: ") + e.what());
  }
  const std::string content_tap = "relu4_2";
  std::vector<std::string> all = tex;
  for (const auto& t : c.features.layers) all.push_back(t);
  if (keep) all.push_back(content_tap);
  s.net->check_taps(all);
  Tensor src = load_rgb(s, o.input, "--input");
  int H = src.shape().h, W_ = src.shape().w;
  if (!o.size.empty()) parse_size(o.size, src.shape().h, src.shape().w, &H, &W_);
  check_recipe_memory(*s.net, H, W_, all, o.history);
  if (H != src.shape().h || W_ != src.shape().w) src = resize(src.view(), H, W_);
  const auto sizes = octave_sizes(H, W_, o.octaves, o.octave_scale);
  // The source's statistics at every octave, computed once and shared by every attribute.
  std::vector<std::map<std::string, Tensor>> stats(sizes.size());
  std::vector<Tensor> srcs;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const auto [hk, wk] = sizes[k];
    srcs.push_back(resize(src.view(), hk, wk));
    const Tensor d = srcs.back().to(s.device);
    const std::vector<std::string> taps = keep ? std::vector<std::string>{content_tap} : tex;
    s.net->forward(d.view(), taps);
    for (const auto& t : taps) stats[k][t] = s.net->tap(t).clone();
  }
  const Tensor srcd = src.to(s.device);
  const std::vector<float> z_src = bcnn_features(*s.net, srcd.view(), tex);
  const std::vector<double> p_src = probabilities(s, c, src);
  std::vector<int> tex_ch = bcnn_layer_channels(*s.net, tex);
  const int K = c.classes_count();
  const Tensor Wt = device_tensor(c.w, K, c.dim, s.device);
  const Tensor Bt = device_tensor(c.b, 1, K, s.device);
  for (size_t i = 0; i < l.targets.size(); ++i) {
    const int target = l.targets[i];
    reset_run(s, l.outs[i]);
    RecipeOptions r;
    r.init = keep ? "input" : "noise";
    apply_common(s, r);
    const RecipeResult res =
        optimize_image(*s.net, o.command, H, W_, src, all, r, [&](Objective& obj, int k, int, int) {
          if (keep) {
            auto t = make_feature_term(content_tap, stats[size_t(k)].at(content_tap).view(),
                                       nullptr, o.content_weight);
            t->label = "content:" + content_tap;
            obj.add(std::move(t));
          } else {
            for (const auto& lw : o.layers) {
              const View v = stats[size_t(k)].at(lw.layer).view();
              auto t = make_bcnn_term(lw.layer, lw.layer, v, v, lw.weight);
              t->label = "bcnn:" + lw.layer;
              obj.add(std::move(t));
            }
          }
          auto t = make_attribute_term(c.features.layers, Wt.view(), Bt.view(), target, o.strength,
                                       c.features.eps);
          t->label = "attribute:" + c.classes[size_t(target)];
          obj.add(std::move(t));
        });
    if (res.cancelled) return finish(s, res);
    const Tensor& x = res.image;
    const std::vector<double> p = probabilities(s, c, x);
    record_classifier(s, l, target, p);
    s.results.value("mode", keep ? "content+attribute" : "texture+attribute");
    s.results.value("strength", double(o.strength));
    s.results.value("probability_source", p_src[size_t(target)]);
    // B-CNN texture distance to the source at the texture layers: Σ_l ‖z_l(x) − z_l(src)‖².
    const Tensor xd = resize(x.view(), H, W_).to(s.device);
    const std::vector<float> z_x = bcnn_features(*s.net, xd.view(), tex);
    double dist = 0;
    size_t off = 0;
    s.results.begin_object("bcnn_distance_per_layer");
    for (size_t t = 0; t < tex.size(); ++t) {
      const size_t cc = size_t(tex_ch[t]) * tex_ch[t];
      double d = 0;
      for (size_t j = off; j < off + cc; ++j)
        d += (double(z_x[j]) - z_src[j]) * (z_x[j] - z_src[j]);
      s.results.value(tex[t], d);
      dist += d;
      off += cc;
    }
    s.results.end_object();
    s.results.value("bcnn_distance", dist);
    if (!o.quiet)
      std::fprintf(stderr,
                   "attribute %s: probability %.4f (source %.4f), B-CNN distance to the source "
                   "%.4f over %zu layer(s)\n",
                   c.classes[size_t(target)].c_str(), p[size_t(target)], p_src[size_t(target)],
                   dist, tex.size());
    const int rc = finish(s, res);
    if (rc) return rc;
  }
  return 0;
}

}  // namespace

std::string attributes_help(const std::string& command) {
  return attribute_spec(command).help();
}

const char* attributes_usage() {
  return kUsage;
}

int run_attributes(int argc, char** argv) {
  require(
      argc >= 3,
      "attributes: expected a subcommand: train, show or apply (see preimage attributes --help)");
  const std::string sub = argv[2];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fprintf(stderr, "%s", kUsage);
    return 0;
  }
  if (argc > 3 && (std::string(argv[3]) == "--help" || std::string(argv[3]) == "-h")) {
    std::fprintf(stderr, "%s", kUsage);
    return 0;
  }
  if (sub == "train") return run_train(argc, argv);
  if (sub == "show")
    return run_show(
        parse_options("attributes show", argc, argv, 3, attribute_spec("attributes show").flags));
  if (sub == "apply")
    return run_apply(
        parse_options("attributes apply", argc, argv, 3, attribute_spec("attributes apply").flags));
  throw Error("attributes: unknown subcommand '" + sub + "' (expected train, show or apply)");
}

}  // namespace preimage::cli
