// preimage decoder train|invert|eval: up-convolutional decoders (Dosovitskiy & Brox) that invert a
// VGG layer in one forward pass (preimage/decoder.h, docs/decoders.md).
//
//   preimage decoder train --layer L --data DIR --out dec.h5 [--weights random:0] [--arch vgg19]
//            [--size 64] [--width 64] [--batch 8] [--lr 1e-3] [--steps 2000] [--max-seconds S]
//            [--holdout K] [--seed S] [--feature-loss W] [--checkpoint-every N] [--resume]
//            [--device auto|cpu|cuda] [--quiet]
//   preimage decoder invert --decoder dec.h5 --input IMG --out rec.png [--weights W] [--layer L]
//            [--device D]
//   preimage decoder eval --decoder dec.h5 --data DIR [--holdout K] [--lbfgs-images N]
//            [--lbfgs-iters N] [--weights W] [--layer L] [--device D] [--json]
#include "cli_decoder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cli_options.h"
#include "cli_progress.h"
#include "json.h"
#include "preimage/analysis.h"
#include "preimage/decoder.h"
#include "preimage/descriptors.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/lbfgs.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using Args = FlagArgs;

// decoder train|invert|eval: usage, summary and flags.
const CommandSpec& decoder_spec(const std::string& command) {
  static const std::map<std::string, CommandSpec> specs = {
      {"decoder train",
       {"decoder train --data DIR --out dec.h5 [options]",
        "train an up-convolutional decoder (Dosovitskiy & Brox) for a layer",
        FlagSet(
            {"weights", "arch", "device", "quiet", "batch", "resume"},
            {{"layer", "L", "the VGG layer to invert (--representation vgg)", "required"},
             {"representation", "vgg|hog|hog-uoctti|dsift", "what the decoder inverts", "vgg"},
             {"cell", "PX", "HOG/DSIFT cell size", "the descriptor's"},
             {"data", "DIR", "training images", "required"},
             {"out", "FILE.h5", "the decoder (FILE.h5.ckpt: its training checkpoint)", "required"},
             {"size", "N", "images are resized to N x N", "64"},
             {"width", "C", "channels of the decoder's first up-convolution", "64"},
             {"lr", "R", "Adam learning rate", "0.001"},
             {"steps", "N", "training steps", "2000"},
             {"max-seconds", "S", "stop after S seconds (0: no limit)", "0"},
             {"holdout", "K", "held-out images", "a tenth of --data"},
             {"seed", "S", "initialization and batch order seed", "0"},
             {"feature-loss", "W", "weight of the feature-space loss (VGG)", "0"},
             {"checkpoint-every", "N", "checkpoint every N steps (for --resume)", "200"},
             {"resume", "", "continue from FILE.h5.ckpt", "off"}})}},
      {"decoder invert",
       {"decoder invert --decoder dec.h5 --input IMG --out rec.png [options]",
        "reconstruct an image from its features in one decoder pass",
        FlagSet({"device", "quiet"},
                {{"decoder", "FILE.h5", "a trained decoder", "required"},
                 {"input", "IMAGE", "the image to reconstruct", "required"},
                 {"out", "FILE.png", "the reconstruction", "required"},
                 {"weights", "FILE|random:SEED", "the network's weights", "the decoder's"},
                 {"layer", "L", "the layer", "the decoder's"}})}},
      {"decoder eval",
       {"decoder eval --decoder dec.h5 --data DIR [options]",
        "held-out reconstruction error of a decoder, against L-BFGS inversion",
        FlagSet({"device", "quiet"},
                {{"decoder", "FILE.h5", "a trained decoder", "required"},
                 {"data", "DIR", "evaluation images", "required"},
                 {"holdout", "K", "evaluate the last K images (0: all)",
                  "the decoder's held-out count"},
                 {"lbfgs-images", "N", "images also inverted by L-BFGS for comparison", "2"},
                 {"lbfgs-iters", "N", "L-BFGS iterations per image", "200"},
                 {"weights", "FILE|random:SEED", "the network's weights", "the decoder's"},
                 {"layer", "L", "the layer", "the decoder's"},
                 {"json", "", "print the evaluation as JSON on stdout", "off"}})}},
  };
  return specs.at(command);
}

Args parse(const std::string& what, int argc, char** argv) {
  Args a = parse_flags(what, argc, argv, 3, decoder_spec(what).flags);
  a.no_more_positional(0);
  return a;
}

// An output path: the extension, an existing directory, not a directory itself.
void check_output(const std::string& path, const std::string& ext, const std::string& flag) {
  require(path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0,
          "--" + flag + " '" + path + "': expected a " + ext + " file");
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  require(parent.empty() || fs::is_directory(parent, ec),
          "--" + flag + " '" + path + "': directory '" + parent.string() + "' does not exist");
  require(!fs::is_directory(path, ec), "--" + flag + " '" + path + "' is a directory");
}

// Images of a directory (sorted by name) as one host tensor (N,3,size,size).
Tensor load_set(const std::vector<std::string>& files, int h, int w) {
  Tensor out({int(files.size()), 3, h, w});
  for (size_t i = 0; i < files.size(); ++i) {
    Tensor img = load_image(files[i]);
    if (img.shape().h != h || img.shape().w != w) img = resize(img.view(), h, w);
    copy_view(img.view(), out.batch(int(i)));
  }
  return out;
}

Tensor slice(const Tensor& t, int first, int count) {
  Tensor out({count, t.shape().c, t.shape().h, t.shape().w}, t.device());
  if (count) copy_view(t.batch(first, count), out.view());
  return out;
}

Tensor mean_of(const Tensor& imgs) {
  const Shape s = imgs.shape();
  const size_t per = size_t(s.c) * s.h * s.w;
  std::vector<double> acc(per, 0.0);
  const float* p = imgs.data();
  for (int n = 0; n < s.n; ++n)
    for (size_t i = 0; i < per; ++i) acc[i] += p[n * per + i];
  std::vector<float> m(per);
  for (size_t i = 0; i < per; ++i) m[i] = float(acc[i] / std::max(1, s.n));
  return Tensor::from_vector({1, s.c, s.h, s.w}, m);
}

// MSE of predicting one image (the mean) for every image of the set.
double mean_image_mse(const Tensor& mean, const Tensor& imgs) {
  const Shape s = imgs.shape();
  const size_t per = size_t(s.c) * s.h * s.w;
  const auto m = mean.to_vector();
  const float* p = imgs.data();
  double acc = 0;
  for (int n = 0; n < s.n; ++n)
    for (size_t i = 0; i < per; ++i) {
      const double d = double(p[n * per + i]) - m[i];
      acc += d * d;
    }
  return s.n ? acc / double(size_t(s.n) * per) : 0.0;
}

// Decoder reconstructions of host features in batches → host images (N,3,H,W).
Tensor decode_all(Decoder& dec, const Tensor& feats, int batch) {
  const Shape fs = feats.shape();
  const DecoderConfig& c = dec.config();
  Tensor out({fs.n, 3, c.out_h, c.out_w});
  for (int i = 0; i < fs.n; i += batch) {
    const int k = std::min(batch, fs.n - i);
    Tensor f({k, fs.c, fs.h, fs.w}, dec.device());
    copy_view(feats.batch(i, k), f.view());
    copy_view(dec.forward(f.view()).view(), out.batch(i, k));
  }
  return out;
}

// Where the features come from: a VGG tap (net) or a hand-crafted descriptor (desc; the network
// is then only the host of the L-BFGS objective in eval).
struct Source {
  std::unique_ptr<Network> net;
  std::unique_ptr<Descriptor> desc;
  std::string layer;     // tap or descriptor name
  std::string identity;  // weights identity or descriptor description
  std::string hash;      // features_hash / descriptor_hash
  std::string spec;      // --weights, or "NAME:cell=N" for descriptors

  Shape shape(int size) const {
    if (desc) return desc->output_shape({1, 3, size, size});
    return net->tap_shape(layer, {1, 3, size, size});
  }
  // Features of host images (N,3,H,W) on the host.
  Tensor extract(const Tensor& imgs, Device dev) {
    if (!desc) return extract_features(*net, imgs.view(), layer, 16);
    const Shape is = imgs.shape(), ds = desc->output_shape({1, 3, is.h, is.w});
    Tensor out({is.n, ds.c, ds.h, ds.w});
    for (int i = 0; i < is.n; ++i) {
      Tensor x({1, 3, is.h, is.w}, dev);
      copy_view(imgs.batch(i), x.view());
      copy_view(desc->forward(x.view()).view(), out.batch(i));
    }
    return out;
  }
};

const std::pair<const char*, DescriptorKind> kDescriptors[] = {
    {"hog", DescriptorKind::Hog},
    {"hog-uoctti", DescriptorKind::HogUoctti},
    {"dsift", DescriptorKind::Dsift}};

// A descriptor source from its name and cell size.
Source descriptor_source(const std::string& name, int cell, Device dev) {
  Source src;
  for (const auto& [n, kind] : kDescriptors) {
    if (name != n) continue;
    DescriptorOptions d = DescriptorOptions::defaults(kind);
    if (cell > 0) d.cell = cell;
    src.desc = std::make_unique<Descriptor>(d);
    src.layer = name;
    src.identity = src.desc->describe();
    src.hash = descriptor_hash(src.identity);
    src.spec = name + ":cell=" + std::to_string(d.cell);
    // the objective in eval needs a network to run on; descriptor terms never use it
    src.net = std::make_unique<Network>(random_weights(Arch::VGG19, 0), dev);
    return src;
  }
  throw Error("--representation: expected vgg, hog, hog-uoctti or dsift, got '" + name + "'");
}

double psnr(double mse) {
  return mse > 0 ? 10.0 * std::log10(1.0 / mse) : INFINITY;
}

// ---- train ---------------------------------------------------------------------------------

int cmd_train(int argc, char** argv) {
  const Args a = parse("decoder train", argc, argv);
  const std::string rep = a.text("representation");
  const bool vgg = rep == "vgg";
  if (!vgg)
    for (const char* f : {"layer", "weights", "arch", "feature-loss"})
      require(!a.given(f), std::string("--") + f + " applies to --representation vgg only (" + rep +
                               " uses no network)");
  require(!vgg || !a.given("cell"), "--cell applies to --representation hog|hog-uoctti|dsift");
  const std::string layer = vgg ? a.required("layer") : rep;
  const std::string data = a.required("data");
  const std::string out = a.required("out");
  check_output(out, ".h5", "out");
  const std::string ckpt = out + ".ckpt";
  const int size = int(a.integer("size", 8, 4096));
  const int width = int(a.integer("width", 4, 1024));
  const int batch = int(a.integer("batch", 1, 4096));
  const double lr = a.number("lr", 1e-8, 1.0);
  const long long steps = a.integer("steps", 1, 100000000);
  const double max_seconds = a.number("max-seconds", 0, 1e9);
  const uint64_t seed = uint64_t(a.integer("seed", 0, 1L << 62));
  const double feature_loss = a.number("feature-loss", 0, 1e6);
  const long long every = a.integer("checkpoint-every", 1, 100000000);
  const bool resume = a.on("resume");
  const bool quiet = a.on("quiet");
  const Device dev = resolve_device(a.text("device"));
  Source src;
  if (vgg) {
    src.spec = a.text("weights");
    Weights w = load_weights(src.spec, parse_arch(a.text("arch")));
    src.net = std::make_unique<Network>(std::move(w), dev);
    src.net->check_taps({layer});
    src.layer = layer;
    src.identity = src.net->weights().identity;
    src.hash = features_hash(src.net->weights(), layer);
  } else {
    src = descriptor_source(rep, a.given("cell") ? int(a.integer("cell", 1, 256)) : 0, dev);
  }
  Network& net = *src.net;
  const Shape ts = src.shape(size);

  auto files = list_images(data);
  require(files.size() >= 2,
          "--data '" + data + "': needs at least 2 images (training + held out)");
  const int holdout = a.given("holdout")
                          ? int(a.integer("holdout", 1, std::max<long>(1, long(files.size()) - 1)))
                          : int(std::max<long>(1, long(files.size()) / 10));
  const int ntrain = int(files.size()) - holdout;

  DecoderConfig cfg;
  cfg.in_c = ts.c;
  cfg.in_h = ts.h;
  cfg.in_w = ts.w;
  cfg.out_h = size;
  cfg.out_w = size;
  cfg.width = width;
  // Descriptors that drop border cells (UoCTTI HOG) get the smallest zero padding that makes
  // the image size a power-of-two multiple of the padded feature size.
  for (int p = 0; !vgg && p <= 8; ++p) {
    cfg.in_pad = p;
    const int hp = ts.h + 2 * p;
    if (hp > 0 && size % hp == 0 && ((size / hp) & (size / hp - 1)) == 0 && ts.w == ts.h) break;
    cfg.in_pad = 0;
  }
  try {
    (void)cfg.ups();
  } catch (const Error& e) {
    throw Error("--size " + std::to_string(size) + ": " + e.what() + " (layer " + layer + ")");
  }

  // Resume: the checkpoint, else a finished decoder with its Adam state.
  std::unique_ptr<Decoder> dec;
  if (resume) {
    std::error_code ec;
    const std::string from = fs::exists(ckpt, ec) ? ckpt : out;
    require(fs::exists(from, ec),
            "--resume: neither the checkpoint '" + ckpt + "' nor the decoder '" + out + "' exists");
    dec = std::make_unique<Decoder>(Decoder::load(from, dev));
    const DecoderMeta& m = dec->meta();
    const std::string what = "--resume: '" + from + "'";
    if (vgg)
      dec->check_compatible(layer, net.weights(), what);
    else
      dec->check_compatible_descriptor(layer, src.hash, src.identity, what);
    require(dec->config().out_h == size && dec->config().width == width,
            what + " has size " + std::to_string(dec->config().out_h) + " and width " +
                std::to_string(dec->config().width) + ", not " + std::to_string(size) + " and " +
                std::to_string(width));
    require(m.data_dir == data && m.holdout == holdout && m.train_images == ntrain &&
                m.batch == batch && m.seed == seed,
            what + " was trained with other data or settings (data " + m.data_dir + ", " +
                std::to_string(m.train_images) + "+" + std::to_string(m.holdout) +
                " images, batch " + std::to_string(m.batch) + ", seed " + std::to_string(m.seed) +
                ")");
    require(dec->has_optimizer_state(), what + " holds no Adam state to resume from");
    require(m.step < steps, what + " has already done " + std::to_string(m.step) + " of " +
                                std::to_string(steps) + " steps (raise --steps to train longer)");
    dec->meta().total_steps = steps;
    dec->meta().lr = lr;
  }

  if (!quiet)
    std::fprintf(
        stderr,
        "features: %s%s\ndecoder: layer %s %s -> 3x%dx%d, %d training + %d held-out "
        "images of %s, device %s\n",
        src.identity.c_str(),
        vgg && net.weights().random ? "  (RANDOM features: seeded He-initialized VGG)" : "",
        layer.c_str(), ts.str().c_str(), size, size, ntrain, holdout, data.c_str(),
        device_name(dev));
  const auto t0 = Clock::now();
  const std::vector<std::string> train_files(files.begin(), files.begin() + ntrain),
      hold_files(files.begin() + ntrain, files.end());
  const Tensor train_imgs = load_set(train_files, size, size);
  const Tensor hold_imgs = load_set(hold_files, size, size);
  const Tensor train_feats = src.extract(train_imgs, dev);
  const Tensor hold_feats = src.extract(hold_imgs, dev);
  const Tensor mean = mean_of(train_imgs);

  if (!dec) {
    DecoderMeta m;
    m.layer = layer;
    m.arch = vgg ? arch_name(net.arch()) : "descriptor";
    m.weights_spec = src.spec;
    m.weights_identity = src.identity;
    m.weights_hash = src.hash;
    double ss = 0;
    for (float v : train_feats.to_vector()) ss += double(v) * v;
    const double rms = std::sqrt(ss / double(std::max<size_t>(1, train_feats.numel())));
    m.feature_scale = rms > 0 ? float(1.0 / rms) : 1.f;
    m.lr = lr;
    m.batch = batch;
    m.seed = seed;
    m.total_steps = steps;
    m.train_images = ntrain;
    m.holdout = holdout;
    m.data_dir = data;
    m.feature_loss = feature_loss;
    dec = std::make_unique<Decoder>(cfg, m, dev, seed);
    dec->mean_image() = mean.clone();
    dec->init_output_bias(mean);
  } else if (!quiet) {
    std::fprintf(stderr, "resuming from step %lld of %lld\n", dec->meta().step, steps);
  }
  if (!quiet)
    std::fprintf(stderr, "decoder: %zu parameters; features ready in %.1f s\n",
                 dec->parameter_count(), std::chrono::duration<double>(Clock::now() - t0).count());

  // Training data on the device; batches are gathered from a per-epoch seeded permutation, so a
  // resumed run sees exactly the batches an uninterrupted one would.
  const Tensor feats_dev = train_feats.to(dev), imgs_dev = train_imgs.to(dev);
  Tensor fb({batch, ts.c, ts.h, ts.w}, dev), ib({batch, 3, size, size}, dev);
  std::vector<int> perm;
  long long perm_epoch = -1;
  auto index_at = [&](long long pos) {
    const long long epoch = pos / ntrain;
    if (epoch != perm_epoch) {
      perm.resize(ntrain);
      std::iota(perm.begin(), perm.end(), 0);
      std::mt19937_64 rng(seed * 1000003ull + uint64_t(epoch));
      std::shuffle(perm.begin(), perm.end(), rng);
      perm_epoch = epoch;
    }
    return perm[pos % ntrain];
  };
  ProgressPrinter progress(quiet, "decoder", "step", "img", batch);
  progress.restart("decoder", dec->meta().step);
  const double prior_seconds = dec->meta().train_seconds;
  const auto train_start = Clock::now();
  bool time_up = false;
  double loss = 0;
  while (dec->meta().step < steps) {
    const long long step = dec->meta().step;
    for (int j = 0; j < batch; ++j) {
      const int idx = index_at(step * batch + j);
      copy_view(feats_dev.batch(idx), fb.batch(j));
      copy_view(imgs_dev.batch(idx), ib.batch(j));
    }
    loss = dec->train_step(fb.view(), ib.view(), feature_loss > 0 ? &net : nullptr,
                           float(feature_loss));
    require(std::isfinite(loss), "decoder train: the loss became " + std::to_string(loss) +
                                     " at step " + std::to_string(step + 1) + " (lower --lr)");
    dec->meta().loss_history.push_back(loss);
    const double el = std::chrono::duration<double>(Clock::now() - train_start).count();
    dec->meta().train_seconds = prior_seconds + el;
    char detail[48];
    std::snprintf(detail, sizeof detail, "loss %.6e", loss);
    progress.update(dec->meta().step, steps, detail);
    if (dec->meta().step % every == 0 && dec->meta().step < steps) dec->save(ckpt, true);
    if (max_seconds > 0 && el >= max_seconds) {
      time_up = dec->meta().step < steps;
      break;
    }
  }
  progress.finish();

  const Tensor rec = decode_all(*dec, hold_feats, 16);
  const double dmse = mse(rec.view(), hold_imgs.view());
  const double mmse = mean_image_mse(mean, hold_imgs);
  dec->save(out, true);
  std::error_code ec;
  fs::remove(ckpt, ec);
  if (!quiet && time_up)
    std::fprintf(stderr, "stopped by --max-seconds %.0f after step %lld of %lld\n", max_seconds,
                 dec->meta().step, steps);
  std::printf(
      "decoder %s: %lld steps (batch %d, %.1f s); held-out MSE %.6f vs mean image %.6f "
      "(ratio %.3f, PSNR %.2f dB)\n",
      out.c_str(), dec->meta().step, batch, dec->meta().train_seconds, dmse, mmse,
      mmse > 0 ? dmse / mmse : 0.0, psnr(dmse));
  return 0;
}

// ---- invert / eval: the decoder, its weights and network -------------------------------------

struct Loaded {
  std::unique_ptr<Decoder> dec;
  Source src;
};

Loaded open_decoder(const Args& a, Device dev) {
  const std::string path = a.required("decoder");
  const std::string what = "decoder '" + path + "'";
  Loaded l;
  l.dec = std::make_unique<Decoder>(Decoder::load(path, dev));
  const DecoderMeta& m = l.dec->meta();
  if (m.arch == "descriptor" && !a.given("layer") && !a.given("weights")) {
    const std::string& spec = m.weights_spec;
    const size_t colon = spec.find(":cell=");
    if (colon == std::string::npos)
      throw Error(what + ": descriptor spec '" + spec + "' is not NAME:cell=N");
    l.src = descriptor_source(spec.substr(0, colon), std::atoi(spec.c_str() + colon + 6), dev);
    l.dec->check_compatible_descriptor(l.src.layer, l.src.hash, l.src.identity, what);
    return l;
  }
  l.src.layer = a.given("layer") ? a.text("layer") : m.layer;
  const std::string spec = a.given("weights")       ? a.text("weights")
                           : m.arch == "descriptor" ? "random:0"
                                                    : m.weights_spec;
  Weights w = load_weights(spec, m.arch == "descriptor" ? Arch::VGG19 : parse_arch(m.arch));
  l.src.net = std::make_unique<Network>(std::move(w), dev);
  l.dec->check_compatible(l.src.layer, l.src.net->weights(), what);
  l.src.net->check_taps({l.src.layer});
  l.src.identity = l.src.net->weights().identity;
  return l;
}

int cmd_invert(int argc, char** argv) {
  const Args a = parse("decoder invert", argc, argv);
  const std::string input = a.required("input");
  const std::string out = a.required("out");
  check_output(out, ".png", "out");
  const Device dev = resolve_device(a.text("device"));
  Loaded l = open_decoder(a, dev);
  const DecoderConfig& c = l.dec->config();
  Tensor img = load_image(input);
  const bool resized = img.shape().h != c.out_h || img.shape().w != c.out_w;
  if (resized) img = resize(img.view(), c.out_h, c.out_w);
  const auto t0 = Clock::now();
  const Tensor f = l.src.extract(img, dev);
  Tensor fd = f.to(dev);
  const Tensor rec = l.dec->forward(fd.view()).to(Device::CPU);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  save_png(rec.view(), out);
  const double e = mse(rec.view(), img.view());
  std::printf(
      "%s: reconstructed %s from %s in one decoder pass (%.1f ms%s); MSE %.6f (PSNR %.2f "
      "dB)\n",
      out.c_str(), input.c_str(), l.src.layer.c_str(), ms,
      resized ? ", input resized to the decoder's size" : "", e, psnr(e));
  return 0;
}

int cmd_eval(int argc, char** argv) {
  const Args a = parse("decoder eval", argc, argv);
  const std::string data = a.required("data");
  const Device dev = resolve_device(a.text("device"));
  Loaded l = open_decoder(a, dev);
  const DecoderConfig& c = l.dec->config();
  const DecoderMeta& m = l.dec->meta();
  require(!l.dec->mean_image().empty(),
          "decoder '" + a.text("decoder") + "': dataset '/mean_image' missing");
  auto files = list_images(data);
  const long hold = a.given("holdout") ? a.integer("holdout", 0, long(files.size()))
                    : m.holdout > 0    ? m.holdout
                                       : long(files.size());
  if (hold > 0) files.erase(files.begin(), files.end() - hold);
  const int lb_images = int(a.integer("lbfgs-images", 0, long(files.size())));
  const int lb_iters = int(a.integer("lbfgs-iters", 1, 100000));
  const bool json = a.on("json");

  const Tensor imgs = load_set(files, c.out_h, c.out_w);
  const auto t0 = Clock::now();
  const Tensor feats = l.src.extract(imgs, dev);
  const Tensor rec = decode_all(*l.dec, feats, 16);
  const double dec_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / double(files.size());
  const double dmse = mse(rec.view(), imgs.view());
  const double mmse = mean_image_mse(l.dec->mean_image(), imgs);

  // L-BFGS inversion (Mahendran & Vedaldi's feature term, box [0,1]) of the first images.
  double lb_sum = 0, lb_sec = 0, dec_sub = 0;
  for (int i = 0; i < lb_images; ++i) {
    Tensor target = slice(feats, i, 1).to(dev);
    Objective obj;
    if (l.src.desc)
      obj.add(make_descriptor_term(l.src.desc->options(), slice(imgs, i, 1).to(dev).view()));
    else
      obj.add(make_feature_term(l.src.layer, target.view()));
    std::mt19937_64 rng(1234 + i);
    std::uniform_real_distribution<float> u(0.45f, 0.55f);
    std::vector<float> init(size_t(3) * c.out_h * c.out_w);
    for (auto& v : init) v = u(rng);
    Tensor x = Tensor::from_vector({1, 3, c.out_h, c.out_w}, init, dev);
    LbfgsOptions lo;
    lo.max_iterations = lb_iters;
    lo.bounded = true;
    Lbfgs solver(dev, x.numel(), lo);
    Tensor grad;
    const auto s0 = Clock::now();
    solver.minimize(x, [&](const View& xv, const View& gv) {
      const double e = obj.evaluate(*l.src.net, xv, grad);
      copy_view(grad.view(), gv);
      return e;
    });
    lb_sec += std::chrono::duration<double>(Clock::now() - s0).count();
    const Tensor xh = x.to(Device::CPU);
    const Tensor orig = slice(imgs, i, 1);
    lb_sum += mse(xh.view(), orig.view());
    dec_sub += mse(slice(rec, i, 1).view(), orig.view());
  }
  const double lb_mse = lb_images ? lb_sum / lb_images : NAN;
  const double dec_sub_mse = lb_images ? dec_sub / lb_images : NAN;
  const double lb_s = lb_images ? lb_sec / lb_images : NAN;

  if (json) {
    Json j;
    j.begin_object();
    j.value("decoder", a.text("decoder"));
    j.value("layer", l.src.layer);
    j.value("weights", l.src.identity);
    j.value("images", int(files.size()));
    j.value("mean_image_mse", mmse);
    j.value("decoder_mse", dmse);
    j.value("decoder_ms_per_image", dec_ms);
    j.value("lbfgs_images", lb_images);
    j.value("lbfgs_iterations", lb_iters);
    if (lb_images) {
      j.value("decoder_mse_lbfgs_subset", dec_sub_mse);
      j.value("lbfgs_mse", lb_mse);
      j.value("lbfgs_seconds_per_image", lb_s);
    }
    j.end_object();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("decoder eval: %zu images of %s at %dx%d, layer %s, features of %s\n", files.size(),
              data.c_str(), c.out_w, c.out_h, l.src.layer.c_str(), l.src.identity.c_str());
  std::printf("%-34s %7s %12s %9s %14s\n", "method", "images", "MSE", "PSNR dB", "time/image");
  std::printf("%-34s %7zu %12.6f %9.2f %14s\n", "mean training image", files.size(), mmse,
              psnr(mmse), "-");
  char t[32];
  std::snprintf(t, sizeof t, "%.2f ms", dec_ms);
  std::printf("%-34s %7zu %12.6f %9.2f %14s\n", "decoder (features + 1 pass)", files.size(), dmse,
              psnr(dmse), t);
  if (lb_images) {
    std::printf("%-34s %7d %12.6f %9.2f %14s\n", "decoder, same images as L-BFGS", lb_images,
                dec_sub_mse, psnr(dec_sub_mse), t);
    std::snprintf(t, sizeof t, "%.2f s", lb_s);
    const std::string name = "L-BFGS inversion (" + std::to_string(lb_iters) + " iterations)";
    std::printf("%-34s %7d %12.6f %9.2f %14s\n", name.c_str(), lb_images, lb_mse, psnr(lb_mse), t);
  }
  return 0;
}

}  // namespace

const char* decoder_usage() {
  return "  decoder     up-convolutional decoders (docs/decoders.md):\n"
         "              decoder train --layer L --data DIR --out dec.h5 [--steps N] "
         "[--max-seconds S] [--resume] ...\n"
         "              decoder invert --decoder dec.h5 --input IMG --out rec.png\n"
         "              decoder eval --decoder dec.h5 --data DIR [--lbfgs-images N] [--json]\n";
}

std::string decoder_help(const std::string& command) {
  return decoder_spec(command).help();
}

int run_decoder_command(int argc, char** argv) {
  const std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "train") return cmd_train(argc, argv);
  if (sub == "invert") return cmd_invert(argc, argv);
  if (sub == "eval") return cmd_eval(argc, argv);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::fprintf(stderr, "%s", decoder_usage());
    return 0;
  }
  throw Error("decoder: expected a subcommand train|invert|eval, got '" + sub + "'");
}

}  // namespace preimage::cli
