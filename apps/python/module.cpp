// preimage._core: the Python binding (pybind11) of the engine's public API: networks (forward /
// backward at named taps), weights, image I/O, every recipe of <preimage/recipes.h> and the
// saliency / attack / feature calls of <preimage/analysis.h>. docs/python.md is the user guide.
//
// Arrays: inputs are NumPy arrays, (N,C,H,W) or one (H,W,3) image; float32 C-contiguous arrays
// are read in place where the call takes a View (Network.forward on the CPU), anything else is
// converted once (other float dtypes cast, uint8 scaled by 1/255). Outputs are float32 arrays
// that own engine memory (a capsule holding the Tensor) or view a result object, never copies
// of copies. Long calls release the GIL; callbacks reacquire it.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "preimage/analysis.h"
#include "preimage/descriptors.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/recipes.h"
#include "preimage/version.h"
#include "preimage/weights.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace preimage {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

// The conversion rules in one place. `what` names the argument in errors. Only float and uint8
// dtypes are images; a wrong dtype (or a non-array) is a TypeError, a wrong shape an Error.
py::array checked_array(py::handle obj, const std::string& what) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(what + ": expected a numpy.ndarray, got " +
                         std::string(py::str(obj.get_type().attr("__name__"))));
  auto a = py::reinterpret_borrow<py::array>(obj);
  const char kind = a.dtype().kind();
  if (kind != 'f' && !(kind == 'u' && a.dtype().itemsize() == 1))
    throw py::type_error(what + ": dtype " + std::string(py::str(a.dtype())) +
                         " is not an image type; pass float32 (values in [0,1]) or uint8 (0..255)");
  return a;
}

// Float32 C-contiguous NCHW data of an image argument: (N,C,H,W) as is, (H,W,C) → (1,C,H,W).
// channels > 0 requires that channel count.
FloatArray as_nchw(py::handle obj, const std::string& what, int channels) {
  py::array a = checked_array(obj, what);
  const bool u8 = a.dtype().kind() == 'u';
  const std::string expected = channels > 0 ? "(N," + std::to_string(channels) + ",H,W) or (H,W," +
                                                  std::to_string(channels) + ")"
                                            : "(N,C,H,W)";
  if (a.ndim() == 3 && channels > 0 && a.shape(2) == channels) {
    a = py::module_::import("numpy").attr("transpose")(a, py::make_tuple(2, 0, 1));
    a = a.attr("reshape")(py::make_tuple(1, channels, a.shape(1), a.shape(2)));
  } else if (a.ndim() != 4 || (channels > 0 && a.shape(1) != channels)) {
    throw Error(what + ": expected shape " + expected + ", got " + shape_str(a));
  }
  for (int i = 0; i < 4; ++i)
    if (a.shape(i) <= 0) throw Error(what + ": empty array of shape " + shape_str(a));
  FloatArray f = FloatArray::ensure(a);
  if (!f) throw py::error_already_set();
  if (u8) f = FloatArray::ensure(py::object(f.attr("__truediv__")(255.0f)));
  return f;
}

Shape shape_of(const FloatArray& f) {
  return Shape{int(f.shape(0)), int(f.shape(1)), int(f.shape(2)), int(f.shape(3))};
}

// A View straight onto the array's memory (the caller keeps `f` alive while it is used).
View view_of_array(const FloatArray& f) {
  return View{const_cast<float*>(f.data()), shape_of(f), Device::CPU};
}

Tensor to_tensor(py::handle obj, const std::string& what, int channels = 3) {
  FloatArray f = as_nchw(obj, what, channels);
  return Tensor::from_host(shape_of(f), f.data());
}

// Hands a tensor's storage to NumPy: the array's base is a capsule owning the Tensor.
py::array to_array(Tensor t) {
  if (t.device() != Device::CPU) t = t.to(Device::CPU);
  const Shape s = t.shape();
  std::vector<py::ssize_t> dims{s.n, s.c, s.h, s.w};
  if (t.empty()) return py::array_t<float>(dims);
  auto* owned = new Tensor(std::move(t));
  py::capsule base(owned, [](void* p) { delete static_cast<Tensor*>(p); });
  return py::array_t<float>(dims, owned->data(), base);
}

// A tensor kept by a Python object (`owner`), viewed without a copy.
py::array view_array(const Tensor& t, py::handle owner) {
  const Shape s = t.shape();
  std::vector<py::ssize_t> dims{s.n, s.c, s.h, s.w};
  if (t.empty()) return py::array_t<float>(dims);
  return py::array_t<float>(dims, t.data(), owner);
}

py::array map_2d(Tensor m) {  // (1,1,H,W) → (H,W)
  const int h = m.shape().h, w = m.shape().w;
  return to_array(std::move(m)).attr("reshape")(py::make_tuple(h, w));
}

// ---- layer lists: "relu1_1:0.5,relu2_1", ["relu1_1", "relu2_1"], {"relu1_1": 0.5} or
// [("relu1_1", 0.5), ...].
std::vector<LayerWeight> to_layers(py::handle v, const std::string& what) {
  if (py::isinstance<py::str>(v)) return parse_layer_weights(v.cast<std::string>(), what);
  std::vector<LayerWeight> out;
  if (py::isinstance<py::dict>(v)) {
    for (auto [k, w] : v.cast<py::dict>()) out.push_back({k.cast<std::string>(), w.cast<float>()});
    return out;
  }
  if (!py::isinstance<py::sequence>(v))
    throw py::type_error(what + ": expected a string \"relu1_1:0.5,relu2_1\", a list or a dict");
  for (py::handle item : v.cast<py::sequence>()) {
    if (py::isinstance<py::str>(item)) {
      out.push_back({item.cast<std::string>(), 1.f});
    } else {
      auto t = item.cast<py::sequence>();
      if (t.size() != 2) throw py::type_error(what + ": items are names or (name, weight) pairs");
      out.push_back({t[0].cast<std::string>(), t[1].cast<float>()});
    }
  }
  return out;
}

py::list from_layers(const std::vector<LayerWeight>& layers) {
  py::list out;
  for (const auto& l : layers) out.append(py::make_tuple(l.layer, l.weight));
  return out;
}

DescriptorKind parse_descriptor(const std::string& name) {
  for (auto k : {DescriptorKind::Hog, DescriptorKind::HogUoctti, DescriptorKind::Dsift})
    if (name == descriptor_name(k)) return k;
  throw Error("options.descriptor: unknown descriptor '" + name +
              "'; valid: hog, hog-uoctti, dsift");
}

// ---- recipes ---------------------------------------------------------------------------

// Options come either as an options object (options=TextureOptions(...)) or as keyword
// arguments applied to a fresh default one; unknown keywords are a TypeError naming them.
template <class Opt>
py::object make_options(const char* fn, py::object options, const py::kwargs& kw) {
  if (!options.is_none()) {
    if (!py::isinstance<Opt>(options))
      throw py::type_error(std::string(fn) + "(): options must be a " +
                           std::string(py::str(py::type::of<Opt>().attr("__name__"))));
    if (kw.size() > 0)
      throw py::type_error(std::string(fn) +
                           "(): pass either options= or keyword options, not both");
    return options;
  }
  py::object o = py::type::of<Opt>()();
  for (auto [k, v] : kw) {
    const std::string key = py::str(k);
    if (key.rfind("_", 0) == 0 || !py::hasattr(o, key.c_str()))
      throw py::type_error(std::string(fn) + "() got an unexpected keyword argument '" + key +
                           "' (see help(preimage." +
                           std::string(py::str(py::type::of<Opt>().attr("__name__"))) + "))");
    py::setattr(o, key.c_str(), v);
  }
  return o;
}

// Runs a recipe with the GIL released. The progress wrapper reacquires it after every iteration
// to check for Ctrl-C and to call `progress(info)` (returning False cancels); an exception
// raised there cancels the run and is re-raised here.
template <class Opt, class Call>
RecipeResult run_recipe(py::object opt_obj, py::object progress, Call&& call) {
  Opt& opts = opt_obj.cast<Opt&>();
  std::optional<py::error_already_set> raised;
  ProgressFn saved = std::move(opts.progress);
  opts.progress = [&](const ProgressInfo& p) {
    py::gil_scoped_acquire gil;
    try {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (progress.is_none()) return true;
      py::dict terms;
      if (p.labels && p.terms)
        for (size_t i = 0; i < p.labels->size() && i < p.terms->size(); ++i)
          terms[py::str((*p.labels)[i])] = (*p.terms)[i];
      py::dict info("stage"_a = p.stage, "stages"_a = p.stages, "iteration"_a = p.iteration,
                    "iterations"_a = p.iterations, "loss"_a = p.loss, "recorded"_a = p.recorded,
                    "terms"_a = terms);
      py::object r = progress(info);
      return r.is_none() || r.cast<bool>();
    } catch (py::error_already_set& e) {
      raised.emplace(std::move(e));
      return false;
    }
  };
  struct Restore {
    Opt& o;
    ProgressFn& saved;
    ~Restore() { o.progress = std::move(saved); }
  } restore{opts, saved};
  RecipeResult r;
  {
    py::gil_scoped_release nogil;
    r = call(static_cast<const Opt&>(opts));
  }
  if (raised) throw std::move(*raised);
  return r;
}

// The fields every options struct shares.
template <class Opt, class Base>
void bind_recipe_options(py::class_<Opt, Base>& c) {
  c.def_property(
       "layers", [](const Opt& o) { return from_layers(o.layers); },
       [](Opt& o, py::handle v) { o.layers = to_layers(v, "options.layers"); },
       "taps and weights: \"relu1_1:0.5,relu2_1\", a list of names / (name, weight), or a dict")
      .def_readwrite("size", &Opt::size,
                     "output size: \"512\" (long side) or \"WxH\"; \"\" = input")
      .def_readwrite("iterations", &Opt::iterations, "per octave")
      .def_readwrite("history", &Opt::history, "L-BFGS memory")
      .def_readwrite("seed", &Opt::seed)
      .def_readwrite("octaves", &Opt::octaves)
      .def_readwrite("octave_scale", &Opt::octave_scale)
      .def_readwrite("init", &Opt::init, "\"noise\" (\"random\"), \"input\" or \"image\"")
      .def_property(
          "init_image",
          [](const Opt& o) -> py::object {
            if (!o.init_image || o.init_image->empty()) return py::none();
            return to_array(o.init_image->clone());
          },
          [](Opt& o, py::handle v) {
            if (v.is_none()) {
              o.init_image.reset();
            } else {
              o.init_image = std::make_shared<const Tensor>(to_tensor(v, "options.init_image"));
            }
          },
          "the start image of init=\"image\" ((1,3,H,W) or (H,W,3); resized to the output)")
      .def_readwrite("tv", &Opt::tv)
      .def_readwrite("tv_beta", &Opt::tv_beta)
      .def_readwrite("alpha", &Opt::alpha)
      .def_readwrite("alpha_weight", &Opt::alpha_weight)
      .def_readwrite("jitter", &Opt::jitter)
      .def_readwrite("checkpoint_prefix", &Opt::checkpoint_prefix)
      .def_readwrite("resume", &Opt::resume)
      .def_readwrite("settings", &Opt::settings)
      .def_readwrite("snapshot_every", &Opt::snapshot_every)
      .def("__repr__", [](py::object self) {
        std::string s = std::string(py::str(self.get_type().attr("__name__"))) + "(";
        bool first = true;
        for (py::handle name : py::module_::import("builtins").attr("dir")(self)) {
          const std::string n = py::str(name);
          if (n.rfind("_", 0) == 0) continue;
          py::object v = self.attr(name);
          if (PyCallable_Check(v.ptr()) || n == "init_image") continue;
          s += (first ? "" : ", ") + n + "=" + std::string(py::repr(v));
          first = false;
        }
        return s + ")";
      });
}

void bind_recipes(py::module_& m) {
  py::class_<RecipeOptions>(m, "RecipeOptions", "fields shared by every recipe's options");

  py::class_<TextureOptions, RecipeOptions> texture(m, "TextureOptions");
  texture.def(py::init<>()).def_readwrite("stats", &TextureOptions::stats, "gram | bcnn");
  bind_recipe_options(texture);

  py::class_<InvertOptions, RecipeOptions> inv(m, "InvertOptions");
  inv.def(py::init<>())
      .def_property(
          "descriptor",
          [](const InvertOptions& o) -> py::object {
            if (!o.descriptor) return py::none();
            return py::str(descriptor_name(o.descriptor->kind));
          },
          [](InvertOptions& o, py::handle v) {
            if (v.is_none()) {
              o.descriptor.reset();
            } else {
              o.descriptor = DescriptorOptions::defaults(parse_descriptor(v.cast<std::string>()));
            }
          },
          "None (invert the network's taps) or \"hog\" / \"hog-uoctti\" / \"dsift\" (defaults)");
  bind_recipe_options(inv);

  py::class_<StyleOptions, RecipeOptions> style(m, "StyleOptions");
  style.def(py::init<>())
      .def_property(
          "content_layers", [](const StyleOptions& o) { return from_layers(o.content_layers); },
          [](StyleOptions& o, py::handle v) {
            o.content_layers = to_layers(v, "options.content_layers");
          })
      .def_readwrite("content_weight", &StyleOptions::content_weight)
      .def_readwrite("style_weight", &StyleOptions::style_weight)
      .def_readwrite("style_scale", &StyleOptions::style_scale)
      .def_readwrite("style_blend_weights", &StyleOptions::style_blend_weights)
      .def_readwrite("original_colors", &StyleOptions::original_colors);
  bind_recipe_options(style);

  py::class_<CaricatureOptions, RecipeOptions> car(m, "CaricatureOptions");
  car.def(py::init<>());
  bind_recipe_options(car);

  py::class_<VisualizeOptions, RecipeOptions> vis(m, "VisualizeOptions");
  vis.def(py::init<>())
      .def_readwrite("channel", &VisualizeOptions::channel)
      .def_readwrite("neuron_y", &VisualizeOptions::neuron_y)
      .def_readwrite("neuron_x", &VisualizeOptions::neuron_x)
      .def_readwrite("class_index", &VisualizeOptions::class_index)
      .def_readwrite("l2_decay", &VisualizeOptions::l2_decay)
      .def_readwrite("blur_every", &VisualizeOptions::blur_every)
      .def_readwrite("blur_sigma", &VisualizeOptions::blur_sigma)
      .def_readwrite("clip_small", &VisualizeOptions::clip_small)
      .def_readwrite("step", &VisualizeOptions::step);
  bind_recipe_options(vis);

  py::class_<DreamOptions, RecipeOptions> dr(m, "DreamOptions");
  dr.def(py::init<>()).def_readwrite("step", &DreamOptions::step);
  bind_recipe_options(dr);

  py::class_<RecipeResult>(m, "RecipeResult", "image + per-iteration, per-term loss history")
      .def_property_readonly(
          "image",
          [](py::object self) { return view_array(self.cast<RecipeResult&>().image, self); },
          "(1,3,H,W) float32 in [0,1], a view that keeps the result alive")
      .def_property_readonly(
          "image_hwc",
          [](py::object self) {
            py::array a = view_array(self.cast<RecipeResult&>().image, self);
            return py::module_::import("numpy").attr("transpose")(a[py::int_(0)],
                                                                  py::make_tuple(1, 2, 0));
          },
          "(H,W,3) view of image (for matplotlib's imshow)")
      .def_readonly("term_labels", &RecipeResult::term_labels)
      .def_property_readonly("loss",
                             [](const RecipeResult& r) { return py::array(py::cast(r.loss)); })
      .def_property_readonly(
          "terms",
          [](const RecipeResult& r) {
            py::array_t<double> a({py::ssize_t(r.terms.size()), py::ssize_t(r.term_labels.size())});
            auto w = a.mutable_unchecked<2>();
            for (size_t i = 0; i < r.terms.size(); ++i)
              for (size_t j = 0; j < r.term_labels.size(); ++j)
                w(i, j) = j < r.terms[i].size() ? r.terms[i][j] : 0.0;
            return a;
          },
          "(iterations, terms) float64, columns in term_labels' order")
      .def_readonly("stage", &RecipeResult::stage)
      .def_readonly("stop_reason", &RecipeResult::stop_reason)
      .def_readonly("evaluations", &RecipeResult::evaluations)
      .def_readonly("cancelled", &RecipeResult::cancelled)
      .def_readonly("checkpoint", &RecipeResult::checkpoint)
      .def_readonly("resumed", &RecipeResult::resumed)
      .def_readonly("predicted_peak_bytes", &RecipeResult::predicted_peak_bytes)
      .def_readonly("wall_time_s", &RecipeResult::wall_time_s)
      .def_readonly("peak_rss_bytes", &RecipeResult::peak_rss_bytes)
      .def_property_readonly("metrics",
                             [](const RecipeResult& r) {
                               py::dict d;
                               for (const auto& [k, v] : r.metrics) d[py::str(k)] = v;
                               return d;
                             })
      .def_property_readonly("notes", [](const RecipeResult& r) {
        py::dict d;
        for (const auto& [k, v] : r.notes) d[py::str(k)] = v;
        return d;
      });

  const char* kw_doc =
      "Keyword options are the fields of the recipe's options class (or pass "
      "options=...). progress(info: dict) is called after every iteration; "
      "returning False cancels (the result then has cancelled=True).";
  m.def(
      "synthesize_texture",
      [](Network& net, py::handle source, py::object options, py::object progress, py::kwargs kw) {
        Tensor src = to_tensor(source, "source");
        return run_recipe<TextureOptions>(
            make_options<TextureOptions>("synthesize_texture", options, kw), progress,
            [&](const TextureOptions& o) { return synthesize_texture(net, src, o); });
      },
      "net"_a, "source"_a, "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("Gatys texture synthesis from a source image (net built with avg_pool=True). ") +
       kw_doc)
          .c_str());
  m.def(
      "invert",
      [](py::object net, py::handle image, py::object options, py::object progress, py::kwargs kw) {
        Network* n = net.is_none() ? nullptr : &net.cast<Network&>();
        Tensor img = to_tensor(image, "image");
        return run_recipe<InvertOptions>(make_options<InvertOptions>("invert", options, kw),
                                         progress,
                                         [&](const InvertOptions& o) { return invert(n, img, o); });
      },
      "net"_a, "image"_a, "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("Mahendran & Vedaldi inversion of the image's taps (net may be None with "
                   "descriptor=\"hog\"|\"dsift\"). ") +
       kw_doc)
          .c_str());
  m.def(
      "style_transfer",
      [](Network& net, py::handle content, py::handle styles, py::object options,
         py::object progress, py::kwargs kw) {
        Tensor c = to_tensor(content, "content");
        std::vector<Tensor> s;
        if (py::isinstance<py::array>(styles)) {
          s.push_back(to_tensor(styles, "styles"));
        } else {
          int i = 0;
          for (py::handle st : styles.cast<py::sequence>())
            s.push_back(to_tensor(st, "styles[" + std::to_string(i++) + "]"));
        }
        return run_recipe<StyleOptions>(
            make_options<StyleOptions>("style_transfer", options, kw), progress,
            [&](const StyleOptions& o) { return style_transfer(net, c, s, o); });
      },
      "net"_a, "content"_a, "styles"_a, "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("Gatys style transfer; styles: one image or a list (net avg_pool=True). ") +
       kw_doc)
          .c_str());
  m.def(
      "caricature",
      [](Network& net, py::handle image, py::object options, py::object progress, py::kwargs kw) {
        Tensor img = to_tensor(image, "image");
        return run_recipe<CaricatureOptions>(
            make_options<CaricatureOptions>("caricature", options, kw), progress,
            [&](const CaricatureOptions& o) { return caricature(net, img, o); });
      },
      "net"_a, "image"_a, "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("Caricature: amplify the image's own activations. ") + kw_doc).c_str());
  m.def(
      "visualize",
      [](Network& net, py::handle input, py::object options, py::object progress, py::kwargs kw) {
        Tensor img = input.is_none() ? Tensor() : to_tensor(input, "input");
        return run_recipe<VisualizeOptions>(
            make_options<VisualizeOptions>("visualize", options, kw), progress,
            [&](const VisualizeOptions& o) { return visualize(net, img, o); });
      },
      "net"_a, "input"_a = py::none(), "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("Activation maximization of a channel / neuron / class (layers=one tap). ") +
       kw_doc)
          .c_str());
  m.def(
      "dream",
      [](Network& net, py::handle image, py::object options, py::object progress, py::kwargs kw) {
        Tensor img = to_tensor(image, "image");
        return run_recipe<DreamOptions>(make_options<DreamOptions>("dream", options, kw), progress,
                                        [&](const DreamOptions& o) { return dream(net, img, o); });
      },
      "net"_a, "image"_a, "options"_a = py::none(), "progress"_a = py::none(),
      (std::string("DeepDream over octaves. ") + kw_doc).c_str());
}

// ---- analysis ----------------------------------------------------------------------------

Target make_target(const std::string& tap, int channel, int y, int x) {
  Target t;
  t.tap = tap;
  t.channel = channel;
  t.y = y;
  t.x = x;
  return t;
}

void bind_analysis(py::module_& m) {
  m.def(
      "saliency",
      [](Network& net, py::handle image, const std::string& tap, int channel, int y, int x,
         const std::string& method, int patch, int stride, int batch) {
        require(
            method == "gradient" || method == "guided" || method == "occlusion",
            "method: unknown saliency method '" + method + "'; valid: gradient, guided, occlusion");
        Tensor img = to_tensor(image, "image").to(net.device());
        require(img.shape().n == 1,
                "image: saliency takes one image, got a batch of " + std::to_string(img.shape().n));
        Target t = make_target(tap, channel, y, x);
        Tensor map;
        {
          py::gil_scoped_release nogil;
          check_target(net, t, img.shape());
          map = method == "occlusion" ? saliency_occlusion(net, img.view(), t, patch, stride, batch)
                                      : saliency_gradient(net, img.view(), t, method == "guided");
        }
        return map_2d(std::move(map));
      },
      "net"_a, "image"_a, "tap"_a, "channel"_a, "y"_a = -1, "x"_a = -1, "method"_a = "gradient",
      "patch"_a = 32, "stride"_a = 16, "batch"_a = 16,
      "Saliency map (H,W) of a channel's spatial mean (or the neuron (y, x)) at a tap: "
      "Simonyan's gradient, guided backprop, or Zeiler & Fergus occlusion.");
  m.def(
      "attack",
      [](Network& net, py::handle image, const std::string& tap, int channel, int y, int x,
         float epsilon, int steps, bool iterative, float step_size) {
        Tensor img = to_tensor(image, "image").to(net.device());
        require(img.shape().n == 1,
                "image: attack takes one image, got a batch of " + std::to_string(img.shape().n));
        Target t = make_target(tap, channel, y, x);
        AttackOptions o;
        o.epsilon = epsilon;
        o.steps = steps;
        o.iterative = iterative;
        o.step_size = step_size;
        AttackResult r;
        {
          py::gil_scoped_release nogil;
          check_target(net, t, img.shape());
          r = attack(net, img.view(), t, o);
        }
        return py::dict("image"_a = to_array(std::move(r.image)), "score_before"_a = r.score_before,
                        "score_after"_a = r.score_after, "linf"_a = r.linf, "l2"_a = r.l2,
                        "steps"_a = r.steps);
      },
      "net"_a, "image"_a, "tap"_a, "channel"_a, "y"_a = -1, "x"_a = -1, "epsilon"_a = 8.f / 255.f,
      "steps"_a = 20, "iterative"_a = true, "step_size"_a = 0.f,
      "Raises a channel / neuron score within an L-infinity ball (FGSM or iterative); returns a "
      "dict with the image (1,3,H,W) and the scores before / after.");
  m.def(
      "features",
      [](Network& net, py::handle image, const std::string& tap, int size) {
        Tensor img = to_tensor(image, "image");
        std::vector<float> f;
        {
          py::gil_scoped_release nogil;
          f = image_features(net, img, tap, size);
        }
        return py::array_t<float>(py::ssize_t(f.size()), f.data());
      },
      "net"_a, "image"_a, "tap"_a, "size"_a = 224,
      "Mean-pooled features (C,) of one image resized to size x size at a tap (as `preimage "
      "features`).");
}

// ---- networks ------------------------------------------------------------------------------

void bind_network(py::module_& m) {
  py::class_<Network>(m, "Network",
                      "VGG-16/19 with named taps. Not thread-safe: one call at a time per Network.")
      .def_static(
          "load",
          [](const std::string& weights, const std::string& arch, const std::string& device,
             bool avg_pool, bool guided_relu) {
            const Arch a = parse_arch(arch);
            const Device d = resolve_device(device);
            py::gil_scoped_release nogil;  // loading a 500 MB file takes a while
            return Network(load_weights(weights, a), d, NetworkOptions{avg_pool, guided_relu});
          },
          "weights"_a, "arch"_a = "vgg19", "device"_a = "cpu", "avg_pool"_a = false,
          "guided_relu"_a = false,
          "weights: an .h5 file (canonical or Keras layout; its own architecture wins) or "
          "\"random:SEED\" (seeded random features of `arch`). device: cpu | cuda | auto. "
          "avg_pool=True for texture synthesis and style transfer (Gatys).")
      .def_property_readonly("arch", [](const Network& n) { return arch_name(n.arch()); })
      .def_property_readonly("device", [](const Network& n) { return device_name(n.device()); })
      .def_property_readonly(
          "identity", [](const Network& n) { return n.weights().identity; },
          "\"random:SEED\" or \"FILE (sha256 HEX)\"")
      .def_property_readonly(
          "taps", [](const Network& n) { return tap_names(n.arch()); },
          "valid tap names in network order")
      .def_property_readonly("weight_layers",
                             [](const Network& n) {
                               std::vector<std::string> out;
                               for (const auto& [k, v] : n.weights().layers) out.push_back(k);
                               return out;
                             })
      .def_property(
          "avg_pool", [](Network& n) { return n.options().avg_pool; },
          [](Network& n, bool v) { n.options().avg_pool = v; })
      .def_property(
          "guided_relu", [](Network& n) { return n.options().guided_relu; },
          [](Network& n, bool v) { n.options().guided_relu = v; })
      .def(
          "weight",
          [](const Network& n, const std::string& layer) {
            const auto& layers = n.weights().layers;
            auto it = layers.find(layer);
            require(it != layers.end(), "weight: layer '" + layer + "' has no weights");
            return py::make_tuple(to_array(it->second.weight.to(Device::CPU)),
                                  to_array(it->second.bias.to(Device::CPU)));
          },
          "layer"_a, "(weight (O,C,KH,KW), bias (O,1,1,1)) of conv / fc layer, as float32 copies")
      .def(
          "tap_shape",
          [](const Network& n, const std::string& tap, std::vector<int> image_shape) {
            require(image_shape.size() == 4, "image_shape: expected (N,3,H,W)");
            Shape s = n.tap_shape(
                tap, Shape{image_shape[0], image_shape[1], image_shape[2], image_shape[3]});
            return py::make_tuple(s.n, s.c, s.h, s.w);
          },
          "tap"_a, "image_shape"_a)
      .def(
          "forward",
          [](Network& n, py::handle image, std::vector<std::string> taps) {
            require(!taps.empty(), "taps: give at least one tap name");
            FloatArray f = as_nchw(image, "image", 3);
            {
              n.check_taps(taps);
              py::gil_scoped_release nogil;
              if (n.device() == Device::CPU) {
                n.forward(view_of_array(f), taps);  // reads the array in place
              } else {
                Tensor t = Tensor::from_host(shape_of(f), f.data(), n.device());
                n.forward(t.view(), taps);
              }
            }
            py::dict out;
            for (const auto& t : taps) out[py::str(t)] = to_array(n.tap(t).to(Device::CPU));
            return out;
          },
          "image"_a, "taps"_a,
          "Activations {tap: (N,C,h,w) float32} of images (N,3,H,W) or one (H,W,3), RGB in [0,1] "
          "(the weights' preprocessing is applied inside). Keeps what backward needs.")
      .def(
          "backward",
          [](Network& n, py::dict grads) {
            require(grads.size() > 0, "grads: give at least one {tap: gradient}");
            std::vector<FloatArray> keep;
            std::vector<Tensor> dev;
            std::map<std::string, View> g;
            for (auto [k, v] : grads) {
              const std::string tap = k.cast<std::string>();
              FloatArray f = as_nchw(v, "grads['" + tap + "']", 0);
              check_shape(shape_of(f), n.tap(tap).shape(), "grads['" + tap + "']");
              if (n.device() == Device::CPU) {
                g[tap] = view_of_array(f);
              } else {
                dev.push_back(Tensor::from_host(shape_of(f), f.data(), n.device()));
                g[tap] = dev.back().view();
              }
              keep.push_back(std::move(f));
            }
            Tensor image_grad;
            {
              py::gil_scoped_release nogil;
              n.backward(g, image_grad);
            }
            return to_array(std::move(image_grad));
          },
          "grads"_a,
          "d/d image (N,3,H,W) of sum over taps of <grads[tap], activation>, after forward with "
          "those taps.");

  m.def(
      "tap_names", [](const std::string& arch) { return tap_names(parse_arch(arch)); },
      "arch"_a = "vgg19");
  m.def("cuda_available", &cuda_available);
}

void bind_images(py::module_& m) {
  m.def(
      "load_image",
      [](const std::string& path) {
        Tensor t;
        {
          py::gil_scoped_release nogil;
          t = load_image(path);
        }
        return to_array(std::move(t));
      },
      "path"_a, "PNG / JPEG / BMP → (1,3,H,W) float32 RGB in [0,1]");
  m.def(
      "save_png",
      [](py::handle image, const std::string& path) {
        FloatArray f = as_nchw(image, "image", 3);
        require(f.shape(0) == 1,
                "image: save_png writes one image, got a batch of " + std::to_string(f.shape(0)));
        py::gil_scoped_release nogil;
        save_png(view_of_array(f), path);
      },
      "image"_a, "path"_a,
      "Writes (1,3,H,W) or (H,W,3) clamped to [0,1] as 8-bit PNG, atomically.");
  m.def(
      "resize",
      [](py::handle image, int height, int width) {
        require(height > 0 && width > 0, "resize: height and width must be positive");
        FloatArray f = as_nchw(image, "image", 0);
        Tensor t;
        {
          py::gil_scoped_release nogil;
          t = resize(view_of_array(f), height, width);
        }
        return to_array(std::move(t));
      },
      "image"_a, "height"_a, "width"_a,
      "Bilinear (area-averaged when shrinking) resize of (N,C,H,W).");
}

}  // namespace
}  // namespace preimage

PYBIND11_MODULE(_core, m) {
  using namespace preimage;
  m.doc() = "preimage: pre-images of convolutional networks (docs/python.md)";
  m.attr("__version__") = PREIMAGE_VERSION_STRING;
  m.attr("__git_commit__") = PREIMAGE_GIT_COMMIT;
  // Engine errors name the file / layer / option at fault; RuntimeError is their base.
  static py::exception<Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
  bind_network(m);
  bind_images(m);
  bind_recipes(m);
  bind_analysis(m);
}
