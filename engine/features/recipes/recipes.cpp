// The recipes (preimage/recipes.h): each builds its objective per octave and runs the shared
// driver (driver.h).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "driver.h"
#include "image_ops.h"
#include "preimage/error.h"
#include "preimage/image.h"

namespace preimage {
namespace {

using recipes_detail::Driver;
using recipes_detail::tap_list;

void forward_host(Network& net, const Tensor& img, const std::vector<std::string>& taps) {
  Tensor d = img.to(net.device());
  net.forward(d.view(), taps);
}

void require_image(const Tensor& t, const std::string& what) {
  require(t.numel() > 0 && t.shape().n == 1 && t.shape().c == 3,
          what + ": expected an RGB image (1,3,H,W), got " + t.shape().str());
}

void require_layers(const RecipeOptions& o) {
  require(!o.layers.empty(), "options.layers: at least one layer is required");
}

// The source scaled by f, at least 8 px a side.
Tensor scaled(const Tensor& src, double f) {
  return resize(src.view(), std::max(8, int(std::lround(src.shape().h * f))),
                std::max(8, int(std::lround(src.shape().w * f))));
}

bool is_linear_tap(const Network& net, const std::string& tap) {
  for (const auto& l : net.layers())
    if (l.name == tap) return l.kind == LayerKind::Linear;
  return false;
}

// One normalized ascent step on the objective (which is minimized, so we step against its
// gradient), with jitter: x ← x − step/255 · g / mean|g|. Returns the objective value at x
// (before the step) and its per-term values.
double ascent_step(Network& net, Objective& obj, Tensor& x, int jitter, float step,
                   std::mt19937_64& rng, std::vector<double>& terms) {
  using namespace recipes_detail;
  int dy = 0, dx = 0;
  if (jitter > 0) {
    std::uniform_int_distribution<int> d(-jitter, jitter);
    dy = d(rng);
    dx = d(rng);
  }
  Tensor xj = jitter > 0 ? roll(x, dy, dx) : x.clone();
  Tensor xd = xj.to(net.device()), g;
  const double val = obj.evaluate(net, xd.view(), g, &terms);
  Tensor gh = g.to(Device::CPU);
  if (jitter > 0) gh = roll(gh, -dy, -dx);
  std::vector<float> gv = gh.to_vector(), xv = x.to_vector();
  double mean_abs = 0;
  for (float v : gv) mean_abs += std::fabs(v);
  mean_abs = std::max(mean_abs / double(gv.size()), 1e-30);
  const float a = float(step / 255.0 / mean_abs);
  for (size_t i = 0; i < xv.size(); ++i) xv[i] = std::clamp(xv[i] - a * gv[i], 0.f, 1.f);
  x = Tensor::from_vector(x.shape(), xv);
  return val;
}

}  // namespace

RecipeResult optimize_image(Network& net, const std::string& name, int height, int width,
                            const Tensor& input, const std::vector<std::string>& memory_taps,
                            const RecipeOptions& o,
                            const std::function<void(Objective&, int stage, int h, int w)>& build) {
  Driver drv(name, o, &net);
  Tensor x =
      drv.lbfgs_octaves(height, width, memory_taps, [&](Objective& obj, int k, int h, int w) {
        build(obj, k, h, w);
        return input.numel() ? input.clone() : Tensor();  // options.init "input" resizes it
      });
  return drv.finish(std::move(x));
}

RecipeResult synthesize_texture(Network& net, const Tensor& source, const TextureOptions& o) {
  require_image(source, "source");
  require_layers(o);
  require(o.stats == "gram" || o.stats == "bcnn",
          "options.stats: expected gram or bcnn, got '" + o.stats + "'");
  Driver drv("texture", o, &net);
  const auto taps = tap_list(o.layers);
  net.check_taps(taps);
  const auto [H, W] = drv.target_size(source.shape().h, source.shape().w);
  const int full_h = H;  // clang 14 cannot capture a structured binding
  Tensor x = drv.lbfgs_octaves(H, W, taps, [&](Objective& obj, int, int h, int) {
    // The source is scaled like the output relative to its full size.
    forward_host(net, scaled(source, double(h) / full_h), taps);
    for (const auto& l : o.layers) {
      std::unique_ptr<Term> t = o.stats == "gram"
                                    ? make_gram_term(l.layer, net.tap(l.layer).view(), l.weight)
                                    : make_bcnn_term(l.layer, l.layer, net.tap(l.layer).view(),
                                                     net.tap(l.layer).view(), l.weight);
      t->label = o.stats + ":" + l.layer;
      obj.add(std::move(t));
    }
    return source.clone();  // options.init "input" resizes it
  });
  RecipeResult& r = drv.result();
  r.notes.emplace_back("stats", o.stats);
  if (!r.loss.empty()) r.metrics.emplace_back("final_loss", r.loss.back());
  return drv.finish(std::move(x));
}

namespace {

// invert with options.descriptor: the same L-BFGS, octaves and priors as network inversion,
// with the descriptor's normalized reconstruction loss ‖Φ(x) − Φ₀‖² / ‖Φ₀‖².
RecipeResult invert_descriptor(const Tensor& image, const InvertOptions& o) {
  const DescriptorOptions& d = *o.descriptor;
  Driver drv("invert", o, nullptr);
  const Descriptor probe(d);
  const auto [H, W] = drv.target_size(image.shape().h, image.shape().w);
  const Tensor img =
      H != image.shape().h || W != image.shape().w ? resize(image.view(), H, W) : image.clone();
  const auto sizes = drv.octaves(H, W);
  try {
    probe.output_shape({1, 3, H, W});
    for (const auto& [h, w] : sizes) probe.output_shape({1, 3, h, w});
  } catch (const Error& e) {
    throw Error(std::string("image: ") + e.what() +
                (o.octaves > 1 ? " (at the first octave: try fewer options.octaves)" : ""));
  }
  Tensor x = drv.lbfgs_octaves(H, W, {}, [&](Objective& obj, int, int h, int w) {
    Tensor imh = resize(img.view(), h, w);
    Tensor imk = imh.to(drv.device());
    auto t = make_descriptor_term(d, imk.view(), 1.f);
    t->label = descriptor_name(d.kind);
    obj.add(std::move(t));
    return imh;
  });
  RecipeResult& r = drv.result();
  r.notes.emplace_back("representation", descriptor_name(d.kind));
  r.notes.emplace_back("descriptor", probe.describe());
  r.notes.emplace_back("descriptor_shape", probe.output_shape(x.shape()).str());
  if (!drv.cancelled()) {
    // At the result's size (octave sizes are at least 16 px, so it may differ from size).
    Tensor ref = resize(img.view(), x.shape().h, x.shape().w);
    const Tensor x0 = drv.initial_image(x.shape().h, x.shape().w, &img);
    r.metrics.emplace_back("initial_descriptor_error", descriptor_error(d, x0.view(), ref.view()));
    r.metrics.emplace_back(
        std::string("normalized_reconstruction_error:") + descriptor_name(d.kind),
        descriptor_error(d, x.view(), ref.view()));
  }
  return drv.finish(std::move(x));
}

}  // namespace

RecipeResult invert(Network* net, const Tensor& image, const InvertOptions& o) {
  require_image(image, "image");
  if (o.descriptor) return invert_descriptor(image, o);
  require(net != nullptr, "invert: a network is required (or options.descriptor)");
  require_layers(o);
  Driver drv("invert", o, net);
  const auto taps = tap_list(o.layers);
  net->check_taps(taps);
  const auto [H, W] = drv.target_size(image.shape().h, image.shape().w);
  drv.check_memory(H, W, taps);
  const Tensor img =
      H != image.shape().h || W != image.shape().w ? resize(image.view(), H, W) : image.clone();
  Tensor x = drv.lbfgs_octaves(H, W, taps, [&](Objective& obj, int, int h, int w) {
    Tensor imk = resize(img.view(), h, w);
    forward_host(*net, imk, taps);
    for (const auto& l : o.layers) {
      auto t = make_feature_term(l.layer, net->tap(l.layer).view(), nullptr, l.weight);
      t->label = "feature:" + l.layer;
      obj.add(std::move(t));
    }
    return imk;
  });
  // Normalized reconstruction error ‖Φ(x) − Φ₀‖ / ‖Φ₀‖ per layer, at full size.
  if (!drv.cancelled()) {
    forward_host(*net, resize(img.view(), x.shape().h, x.shape().w), taps);
    std::vector<Tensor> ref;
    for (const auto& t : taps) ref.push_back(net->tap(t).clone());
    forward_host(*net, x, taps);
    for (size_t i = 0; i < taps.size(); ++i)
      drv.result().metrics.emplace_back(
          "normalized_reconstruction_error:" + taps[i],
          recipes_detail::relative_error(net->tap(taps[i]).view(), ref[i].view()));
  }
  return drv.finish(std::move(x));
}

RecipeResult style_transfer(Network& net, const Tensor& content, const std::vector<Tensor>& styles,
                            const StyleOptions& o) {
  require_image(content, "content");
  require(!styles.empty(), "style_transfer: at least one style image is required");
  for (size_t i = 0; i < styles.size(); ++i)
    require_image(styles[i], "style image " + std::to_string(i + 1));
  require_layers(o);
  require(!o.content_layers.empty(), "options.content_layers: at least one layer is required");
  require(o.style_scale > 0 && std::isfinite(o.style_scale),
          "options.style_scale: expected a positive number");
  require(o.style_blend_weights.empty() || o.style_blend_weights.size() == styles.size(),
          "options.style_blend_weights: " + std::to_string(o.style_blend_weights.size()) +
              " weights for " + std::to_string(styles.size()) + " style images");
  // Blend weights normalized to sum 1 (neural-style); equal without any.
  std::vector<float> blend(styles.size(), 1.f / float(styles.size()));
  if (!o.style_blend_weights.empty()) {
    double sum = 0;
    for (float b : o.style_blend_weights) {
      require(b >= 0 && std::isfinite(b), "options.style_blend_weights: expected weights >= 0");
      sum += b;
    }
    require(sum > 0, "options.style_blend_weights: the weights sum to 0");
    for (size_t i = 0; i < blend.size(); ++i) blend[i] = float(o.style_blend_weights[i] / sum);
  }
  Driver drv("style", o, &net);
  const auto taps = tap_list(o.layers);
  const auto ctaps = tap_list(o.content_layers);
  net.check_taps(taps);
  net.check_taps(ctaps);
  auto all_taps = taps;
  all_taps.insert(all_taps.end(), ctaps.begin(), ctaps.end());
  const auto [H, W] = drv.target_size(content.shape().h, content.shape().w);
  drv.check_memory(H, W, all_taps);
  const Tensor cimg = H != content.shape().h || W != content.shape().w
                          ? resize(content.view(), H, W)
                          : content.clone();
  Tensor x = drv.lbfgs_octaves(H, W, all_taps, [&](Objective& obj, int, int h, int w) {
    Tensor ck = resize(cimg.view(), h, w);
    forward_host(net, ck, ctaps);
    for (const auto& l : o.content_layers) {
      auto ct =
          make_feature_term(l.layer, net.tap(l.layer).view(), nullptr, l.weight * o.content_weight);
      ct->label = "content:" + l.layer;
      obj.add(std::move(ct));
    }
    for (size_t si = 0; si < styles.size(); ++si) {
      // neural-style: the style image's long side is style_scale × the output's.
      const Tensor& st = styles[si];
      const double f =
          o.style_scale * double(std::max(h, w)) / std::max(st.shape().h, st.shape().w);
      forward_host(net, scaled(st, f), taps);
      for (const auto& l : o.layers) {
        auto t =
            make_gram_term(l.layer, net.tap(l.layer).view(), l.weight * o.style_weight * blend[si]);
        t->label = styles.size() > 1 ? "style" + std::to_string(si + 1) + ":" + l.layer
                                     : "style:" + l.layer;
        obj.add(std::move(t));
      }
    }
    return ck;
  });
  if (o.original_colors && !drv.cancelled())
    x = recipes_detail::transfer_luminance(x, resize(cimg.view(), x.shape().h, x.shape().w));
  return drv.finish(std::move(x));
}

RecipeResult caricature(Network& net, const Tensor& image, const CaricatureOptions& o) {
  require_image(image, "image");
  require_layers(o);
  Driver drv("caricature", o, &net);
  const auto taps = tap_list(o.layers);
  net.check_taps(taps);
  const auto [H, W] = drv.target_size(image.shape().h, image.shape().w);
  drv.check_memory(H, W, taps);
  const Tensor img =
      H != image.shape().h || W != image.shape().w ? resize(image.view(), H, W) : image.clone();
  Tensor x = drv.lbfgs_octaves(H, W, taps, [&](Objective& obj, int, int h, int w) {
    Tensor imk = resize(img.view(), h, w);
    forward_host(net, imk, taps);
    for (const auto& l : o.layers) {
      auto t = make_caricature_term(l.layer, net.tap(l.layer).view(), l.weight);
      t->label = "caricature:" + l.layer;
      obj.add(std::move(t));
    }
    return imk;
  });
  return drv.finish(std::move(x));
}

RecipeResult visualize(Network& net, const Tensor& input, const VisualizeOptions& o) {
  std::vector<LayerWeight> layers = o.layers;
  if (o.class_index >= 0 && layers.empty()) layers = parse_layer_weights("fc8", "");
  require(layers.size() == 1,
          "visualize: options.layers takes exactly one layer, e.g. relu4_1 with options.channel 7");
  require(o.channel >= 0 || o.class_index >= 0,
          "visualize: set options.channel or options.class_index");
  require(o.channel < 0 || o.class_index < 0,
          "visualize: options.channel and options.class_index exclude each other");
  require((o.neuron_y < 0) == (o.neuron_x < 0),
          "visualize: options.neuron_y and options.neuron_x go together");
  Driver drv("visualize", o, &net);
  const std::string tap = layers[0].layer;
  net.check_taps({tap});
  require(o.class_index < 0 || is_linear_tap(net, tap),
          "options.class_index needs a classifier layer (options.layers fc8), not '" + tap +
              "'; use options.channel");
  const bool from_input = o.init == "input";
  if (from_input) require_image(input, "input");
  int h = 0, w = 0;
  if (from_input)
    std::tie(h, w) = drv.target_size(input.shape().h, input.shape().w);
  else
    parse_size(o.size.empty() ? "128" : o.size, 128, 128, &h, &w, "options.size");
  const Shape ts = net.tap_shape(tap, {1, 3, h, w});
  const int ch = o.class_index >= 0 ? o.class_index : o.channel;
  require(ch < ts.c, std::string(o.class_index >= 0 ? "options.class_index " : "options.channel ") +
                         std::to_string(ch) + " out of range: layer " + tap + " has " +
                         std::to_string(ts.c) + (o.class_index >= 0 ? " classes" : " channels"));
  require(o.neuron_y < ts.h && o.neuron_x < ts.w,
          "options.neuron " + std::to_string(o.neuron_y) + "," + std::to_string(o.neuron_x) +
              " outside layer " + tap + " (" + std::to_string(ts.h) + "x" + std::to_string(ts.w) +
              ")");
  drv.check_memory(h, w, {tap});
  drv.resume_stage(1);  // with resume: there must be a checkpoint
  Objective obj;
  auto t = make_activation_term(tap, ch, o.neuron_y, o.neuron_x, 1.f);
  t->label = "activation:" + tap + ":" + std::to_string(ch);
  obj.add(std::move(t));
  drv.add_priors(obj, h, w);
  // Noise: mid-grey with a little seeded noise (Yosinski et al.); otherwise options.init.
  Tensor x = o.init == "noise" || o.init == "random" ? [&] {
    std::mt19937_64 r(o.seed);
    std::normal_distribution<float> d(0.5f, 0.02f);
    std::vector<float> v(size_t(3) * h * w);
    for (auto& e : v) e = std::clamp(d(r), 0.f, 1.f);
    return Tensor::from_vector({1, 3, h, w}, v);
  }()
                                                     : drv.initial_image(h, w, &input);
  std::mt19937_64 rng(o.seed + 1);
  drv.ascent(obj, x, 0, 1, rng, [&](Tensor& xx, int it, std::vector<double>& terms) {
    const double v = ascent_step(net, obj, xx, o.jitter, o.step, rng, terms);
    if (o.l2_decay > 0) {  // decay towards mid-grey
      std::vector<float> xv = xx.to_vector();
      for (auto& e : xv) e = 0.5f + (1.f - o.l2_decay) * (e - 0.5f);
      xx = Tensor::from_vector(xx.shape(), xv);
    }
    if (o.blur_every > 0 && (it + 1) % o.blur_every == 0)
      recipes_detail::gaussian_blur(xx, o.blur_sigma);
    recipes_detail::clip_small(xx, o.clip_small);
    return v;
  });
  // The activation term is the first; it holds −activation.
  RecipeResult& r = drv.result();
  if (!r.terms.empty() && !r.terms.back().empty())
    r.metrics.emplace_back("final_activation", -r.terms.back()[0]);
  return drv.finish(std::move(x));
}

RecipeResult dream(Network& net, const Tensor& image, const DreamOptions& o) {
  require_image(image, "image");
  require_layers(o);
  Driver drv("dream", o, &net);
  const auto taps = tap_list(o.layers);
  net.check_taps(taps);
  const auto [H, W] = drv.target_size(image.shape().h, image.shape().w);
  drv.check_memory(H, W, taps);
  const Tensor img =
      H != image.shape().h || W != image.shape().w ? resize(image.view(), H, W) : image.clone();
  const auto sizes = drv.octaves(H, W);
  std::mt19937_64 rng(o.seed);
  const int first = drv.resume_stage(int(sizes.size()));
  Tensor x, base_prev;
  for (int k = 0; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    Tensor base = resize(img.view(), h, w);
    if (k < first) {  // replay the octave bases only; the checkpoint holds the image
      base_prev = std::move(base);
      continue;
    }
    drv.check_memory(h, w, taps);
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
    drv.add_priors(obj, h, w);
    drv.ascent(obj, x, k, int(sizes.size()), rng, [&](Tensor& xx, int, std::vector<double>& terms) {
      return ascent_step(net, obj, xx, o.jitter, o.step, rng, terms);
    });
    base_prev = std::move(base);
    if (drv.cancelled()) break;
  }
  return drv.finish(std::move(x));
}

}  // namespace preimage
