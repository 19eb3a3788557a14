// The recipes' shared driver (driver.h).
#include "driver.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "preimage/error.h"
#include "preimage/image.h"

namespace preimage {

std::vector<LayerWeight> parse_layer_weights(const std::string& spec, const std::string& what) {
  std::vector<LayerWeight> out;
  const std::string who = what.empty() ? std::string("layers") : what;
  size_t p = 0;
  while (p <= spec.size()) {
    size_t q = spec.find(',', p);
    if (q == std::string::npos) q = spec.size();
    std::string item = spec.substr(p, q - p);
    p = q + 1;
    if (item.empty()) continue;
    LayerWeight lw;
    const auto colon = item.find(':');
    lw.layer = item.substr(0, colon);
    if (colon != std::string::npos) {
      const std::string v = item.substr(colon + 1);
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      require(!v.empty() && end && *end == '\0' && std::isfinite(x) && x >= 0 && x <= 1e12,
              who + ": expected a number in [0, 1e12] as the weight of '" + lw.layer + "', got '" +
                  v + "'");
      lw.weight = float(x);
    }
    require(!lw.layer.empty(), who + ": empty layer name in '" + spec + "'");
    out.push_back(lw);
  }
  require(!out.empty(), who + ": expected name[:weight],… got '" + spec + "'");
  return out;
}

std::vector<std::pair<int, int>> octave_sizes(int h, int w, int octaves, float octave_scale) {
  require(octaves >= 1, "options.octaves: expected at least 1, got " + std::to_string(octaves));
  require(octave_scale >= 1.f, "options.octave_scale: expected at least 1");
  std::vector<std::pair<int, int>> out;
  for (int k = octaves - 1; k >= 0; --k) {
    const double f = std::pow(double(octave_scale), k);
    out.emplace_back(std::max(16, int(std::lround(h / f))), std::max(16, int(std::lround(w / f))));
  }
  return out;
}

namespace {

size_t available_bytes(Device d) {
  if (d == Device::CPU) {
    std::FILE* f = std::fopen("/proc/meminfo", "r");
    size_t kb = 0;
    if (f) {
      char line[256];
      while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "MemAvailable: %zu kB", &kb) == 1) break;
      std::fclose(f);
    }
    return kb ? kb * 1024 : size_t(-1);
  }
  return size_t(-1);  // device memory: cudaMalloc reports exhaustion with a clear error
}

long long peak_rss() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (long long)ru.ru_maxrss * 1024;
}

std::string fmt_double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string one_line(std::string v) {
  std::replace(v.begin(), v.end(), '\n', ' ');
  return v;
}

std::vector<std::string> labels_of(const Objective& obj) {
  std::vector<std::string> out;
  for (const auto& t : obj.terms()) out.push_back(t->label.empty() ? t->kind() : t->label);
  return out;
}

// The checkpoint's user blob is text: a header, the recipe, the stage, the ascent iteration and
// RNG state, the caller's settings (a resume with others is refused, naming them) and the loss
// history so far (so that a resumed result holds every iteration).
constexpr const char* kBlobMagic = "preimage-run-state 1";

}  // namespace

size_t check_recipe_memory(const Network& net, int h, int w, const std::vector<std::string>& taps,
                           int history) {
  const Shape img{1, 3, h, w};
  size_t bytes = 0, max_act = 0;
  int deepest = 0;
  const auto& layers = net.layers();
  for (const auto& t : taps)
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i].name == t) deepest = std::max(deepest, int(i));
  for (const auto& [name, lw] : net.weights().layers)
    bytes += (lw.weight.numel() + lw.bias.numel()) * sizeof(float);
  for (int i = 0; i <= deepest; ++i) {
    if (layers[i].kind == LayerKind::Flatten) continue;
    const size_t n = net.tap_shape(layers[i].name, img).numel() * sizeof(float);
    bytes += n;
    max_act = std::max(max_act, n);
  }
  for (const auto& t : taps) bytes += 3 * net.tap_shape(t, img).numel() * sizeof(float);
  const size_t n_img = img.numel() * sizeof(float);
  bytes += 2 * max_act + n_img * (2 * size_t(history) + 8) + (size_t(48) << 20);
  const size_t avail = available_bytes(net.device());
  if (bytes > avail) {
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "estimated peak memory %.2f GiB for a %dx%d image exceeds the %.2f GiB "
                  "available on %s; try a smaller options.size, fewer or shallower "
                  "options.layers, or a shorter options.history",
                  bytes / 1073741824.0, w, h, avail / 1073741824.0, device_name(net.device()));
    throw Error(msg);
  }
  return bytes;
}

namespace recipes_detail {

std::vector<std::string> tap_list(const std::vector<LayerWeight>& lw) {
  std::vector<std::string> t;
  for (const auto& l : lw) t.push_back(l.layer);
  return t;
}

double relative_error(const View& a, const View& b) {
  Tensor ta(a.shape, Device::CPU), tb(b.shape, Device::CPU);
  ta.copy_from(a);
  tb.copy_from(b);
  const auto av = ta.to_vector(), bv = tb.to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    num += (double(av[i]) - bv[i]) * (double(av[i]) - bv[i]);
    den += double(bv[i]) * bv[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

Driver::Driver(std::string recipe, const RecipeOptions& o, Network* net)
    : recipe_(std::move(recipe)),
      o_(o),
      net_(net),
      device_(net ? net->device() : Device::CPU),
      start_(std::chrono::steady_clock::now()) {
  require(o.iterations >= 1,
          "options.iterations: expected at least 1, got " + std::to_string(o.iterations));
  require(o.history >= 1, "options.history: expected at least 1");
  require(o.snapshot_every >= 0, "options.snapshot_every: expected >= 0");
  require(!o.resume || !o.checkpoint_prefix.empty(),
          "options.resume needs options.checkpoint_prefix (where the checkpoints are)");
  require(o.init == "noise" || o.init == "random" || o.init == "input" || o.init == "image",
          "options.init: expected noise, random, input or image, got '" + o.init + "'");
  require(o.init != "image" || (o.init_image && o.init_image->numel() > 0),
          "options.init 'image' needs options.init_image");
}

std::pair<int, int> Driver::target_size(int h, int w) const {
  if (o_.size.empty()) return {h, w};
  int th = 0, tw = 0;
  parse_size(o_.size, h, w, &th, &tw, "options.size");
  return {th, tw};
}

std::vector<std::pair<int, int>> Driver::octaves(int h, int w) const {
  return octave_sizes(h, w, o_.octaves, o_.octave_scale);
}

void Driver::check_memory(int h, int w, const std::vector<std::string>& taps) {
  const size_t b = check_recipe_memory(*net_, h, w, taps, o_.history);
  r_.predicted_peak_bytes = std::max(r_.predicted_peak_bytes, b);
}

Tensor Driver::initial_image(int h, int w, const Tensor* input) const {
  if (o_.init == "noise" || o_.init == "random") {
    std::mt19937_64 rng(o_.seed);
    std::uniform_real_distribution<float> d(0.25f, 0.75f);
    std::vector<float> v(size_t(3) * h * w);
    for (auto& x : v) x = d(rng);
    return Tensor::from_vector({1, 3, h, w}, v);
  }
  if (o_.init == "input") {
    require(input != nullptr && input->numel() > 0,
            "options.init 'input': recipe " + recipe_ + " was given no input image");
    return resize(input->view(), h, w);
  }
  return resize(o_.init_image->view(), h, w);
}

// The engine's priors are raw sums over pixels and channels; the options weigh their means
// (Mahendran & Vedaldi normalize by the image size too), so that a weight means the same at
// every size and octave.
void Driver::add_priors(Objective& obj, int h, int w) const {
  const float per_value = 1.f / (3.f * float(h) * float(w));
  if (o_.tv > 0) {
    auto t = make_tv_term(o_.tv_beta, o_.tv * per_value);
    t->label = "tv";
    obj.add(std::move(t));
  }
  if (o_.alpha_weight > 0) {
    auto t = make_alpha_term(o_.alpha, o_.alpha_weight * per_value);
    t->label = "alpha";
    obj.add(std::move(t));
  }
}

std::string Driver::checkpoint_path(int stage) const {
  return o_.checkpoint_prefix + ".stage" + std::to_string(stage) + ".ckpt.h5";
}

int Driver::resume_stage(int stages) {
  if (!o_.resume) return 0;
  for (int k = stages - 1; k >= 0; --k)
    if (std::filesystem::exists(checkpoint_path(k))) {
      r_.resumed = true;
      return resume_from_ = k;
    }
  throw Error("options.resume: no checkpoint found (expected " + checkpoint_path(0) +
              (stages > 1 ? " or a later stage's" : "") + ")");
}

void Driver::clear_checkpoints(int keep) const {
  if (o_.checkpoint_prefix.empty()) return;
  for (int k = 0; k < 64; ++k)
    if (k != keep) std::filesystem::remove(checkpoint_path(k));
}

double Driver::wall() const {
  return prior_wall_s_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Driver::make_blob(int stage, int iteration, const std::mt19937_64* rng) const {
  std::ostringstream os;
  os << kBlobMagic << "\n";
  os << "command " << recipe_ << "\n";
  os << "stage " << stage << "\n";
  os << "wall " << fmt_double(wall()) << "\n";
  os << "peak " << std::max(prior_peak_, peak_rss()) << "\n";
  os << "evaluations " << done_evals_ << "\n";
  if (iteration >= 0) os << "iteration " << iteration << "\n";
  if (rng) os << "rng " << *rng << "\n";
  for (const auto& [k, v] : o_.settings) os << "setting " << k << "=" << one_line(v) << "\n";
  for (size_t i = 0; i < r_.loss.size(); ++i) {
    os << "history " << r_.stage[i] << " " << fmt_double(r_.loss[i]);
    for (double t : r_.terms[i]) os << " " << fmt_double(t);
    os << "\n";
  }
  return os.str();
}

void Driver::apply_blob(const std::string& blob, const std::string& ckpt, int* iteration,
                        std::mt19937_64* rng) {
  std::istringstream is(blob);
  std::string line;
  require(std::getline(is, line) && line == kBlobMagic,
          "options.resume: '" + ckpt + "' holds no preimage run state (not written by preimage?)");
  std::map<std::string, std::string> settings;
  std::string command, rng_text;
  int it = -1;
  double wall = 0;
  long long peak = 0;
  int evals = 0;
  std::vector<double> losses;
  std::vector<std::vector<double>> terms;
  std::vector<int> stages;
  while (std::getline(is, line)) {
    const auto sp = line.find(' ');
    const std::string key = line.substr(0, sp);
    const std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (key == "command") {
      command = rest;
    } else if (key == "wall") {
      wall = std::strtod(rest.c_str(), nullptr);
    } else if (key == "peak") {
      peak = std::atoll(rest.c_str());
    } else if (key == "evaluations") {
      evals = std::atoi(rest.c_str());
    } else if (key == "iteration") {
      it = std::atoi(rest.c_str());
    } else if (key == "rng") {
      rng_text = rest;
    } else if (key == "setting") {
      const auto eq = rest.find('=');
      settings[rest.substr(0, eq)] = eq == std::string::npos ? "" : rest.substr(eq + 1);
    } else if (key == "history") {
      const char* p = rest.c_str();
      char* end = nullptr;
      stages.push_back(int(std::strtol(p, &end, 10)));
      p = end;
      losses.push_back(std::strtod(p, &end));
      p = end;
      std::vector<double> t;
      for (;;) {
        const double v = std::strtod(p, &end);
        if (end == p) break;
        t.push_back(v);
        p = end;
      }
      terms.push_back(std::move(t));
    }
  }
  require(command == recipe_, "options.resume: '" + ckpt + "' was written by recipe '" + command +
                                  "', not '" + recipe_ + "'");
  std::map<std::string, std::string> now;
  for (const auto& [k, v] : o_.settings) now[k] = one_line(v);
  if (now != settings) {
    std::string diff;
    std::set<std::string> keys;
    for (const auto& [k, v] : now) keys.insert(k);
    for (const auto& [k, v] : settings) keys.insert(k);
    for (const auto& k : keys) {
      const auto a = settings.find(k), b = now.find(k);
      const std::string then = a == settings.end() ? "(not given)" : "'" + a->second + "'";
      const std::string cur = b == now.end() ? "(not given)" : "'" + b->second + "'";
      if (then != cur)
        diff += (diff.empty() ? "" : ", ") + (k + " " + then + " then, " + cur + " now");
    }
    throw Error("options.resume: '" + ckpt + "' was written with other settings (" + diff +
                "); resume with the settings that wrote it");
  }
  if (iteration) {
    require(it >= 0, "options.resume: '" + ckpt + "' records no iteration");
    *iteration = it;
  }
  if (rng) {
    std::istringstream rs(rng_text);
    rs >> *rng;
    require(!rs.fail(), "options.resume: '" + ckpt + "' holds no random generator state");
  }
  prior_wall_s_ = wall;
  prior_peak_ = peak;
  done_evals_ = r_.evaluations = evals;
  r_.loss = std::move(losses);
  r_.terms = std::move(terms);
  r_.stage = std::move(stages);
}

void Driver::started() {
  if (started_) return;
  started_ = true;
  if (o_.on_start) o_.on_start();
}

bool Driver::stopping() const {
  return stop_ || (o_.cancel && o_.cancel->load());
}

void Driver::record(int stage, int it, int iters, double f, const std::vector<double>& terms) {
  r_.loss.push_back(f);
  r_.terms.push_back(terms);
  r_.stage.push_back(stage);
  if (o_.progress) {
    ProgressInfo info;
    info.stage = stage;
    info.stages = std::max(o_.octaves, 1);
    info.iteration = it;
    info.iterations = iters;
    info.loss = f;
    info.recorded = int(r_.loss.size());
    info.labels = &r_.term_labels;
    info.terms = &r_.terms.back();
    if (!o_.progress(info)) stop_ = true;
  }
}

void Driver::lbfgs(Objective& obj, Tensor& x, int stage, int stages) {
  r_.term_labels = labels_of(obj);
  LbfgsOptions lo;
  lo.history = o_.history;
  lo.max_iterations = o_.iterations;
  // options.iterations is the budget; the solver's default of 2.5 evaluations per iteration
  // stopped short on near-linear objectives (caricature: 4-5 evaluations per line search), so
  // only each line search's own cap bounds the evaluations here.
  lo.max_evaluations = lo.max_line_search * (o_.iterations + 1);
  lo.bounded = true;
  lo.lower = 0.f;
  lo.upper = 1.f;
  Tensor xd = x.to(device_);
  Lbfgs solver(device_, xd.numel(), lo);
  const std::string ckpt = checkpoint_path(stage);
  int first_it = 0;
  if (stage == resume_from_) {
    try {
      solver.load_checkpoint(ckpt, xd);
    } catch (const Error& e) {
      throw Error(std::string("options.resume: ") + e.what() +
                  "; resume with the settings that wrote it");
    }
    apply_blob(solver.user_blob(), ckpt, nullptr, nullptr);
    solver.set_options(lo);  // options.iterations may extend the interrupted run
    first_it = int(std::count(r_.stage.begin(), r_.stage.end(), stage));
    started();
    if (o_.on_resume) o_.on_resume(ckpt, first_it);
  }
  started();
  (void)stages;
  std::vector<double> last_terms;
  Tensor grad;
  // The objective evaluates into its own gradient tensor; the solver owns gv.
  auto eval = [&](const View& xv, const View& gv) -> double {
    std::vector<double> per;
    const double val = obj.evaluate(net_, xv, grad, &per);  // null: descriptor terms
    copy_view(grad.view(), gv);
    last_terms = std::move(per);
    return val;
  };
  auto save_state = [&]() {
    if (o_.checkpoint_prefix.empty()) return;
    solver.set_user_blob(make_blob(stage, -1, nullptr));
    solver.save_checkpoint(ckpt, xd);
    clear_checkpoints(stage);
    r_.checkpoint = ckpt;
  };
  auto on_iter = [&](const IterationInfo& info) {
    record(stage, info.iteration, o_.iterations, info.f, last_terms);
    if (o_.snapshot_every > 0 && info.iteration % o_.snapshot_every == 0 && !stopping()) {
      if (o_.on_snapshot) o_.on_snapshot(xd.to(Device::CPU), stage, info.iteration);
      save_state();
    }
    return !stopping();
  };
  LbfgsResult res = solver.minimize(xd, eval, on_iter);
  r_.evaluations = done_evals_ + res.evaluations;  // a resumed stage counts its earlier part
  r_.stop_reason = stop_reason_name(res.reason);
  if (res.reason == StopReason::Interrupted) {
    r_.cancelled = true;
    save_state();
  }
  done_evals_ = r_.evaluations;
  x = xd.to(Device::CPU);
}

Tensor Driver::lbfgs_octaves(int height, int width, const std::vector<std::string>& memory_taps,
                             const StageBuilder& build) {
  if (!memory_taps.empty()) check_memory(height, width, memory_taps);
  const auto sizes = octaves(height, width);
  const int first = resume_stage(int(sizes.size()));
  Tensor x;
  for (int k = first; k < int(sizes.size()); ++k) {
    const auto [h, w] = sizes[k];
    if (!memory_taps.empty()) check_memory(h, w, memory_taps);
    Objective obj;
    const Tensor input = build(obj, k, h, w);
    add_priors(obj, h, w);
    // A resumed stage then loads its checkpoint over this start.
    x = k == first ? initial_image(h, w, input.numel() ? &input : nullptr) : resize(x.view(), h, w);
    lbfgs(obj, x, k, int(sizes.size()));
    if (cancelled()) break;
  }
  return x;
}

void Driver::ascent(
    const Objective& obj, Tensor& x, int stage, int stages, std::mt19937_64& rng,
    const std::function<double(Tensor& x, int it, std::vector<double>& terms)>& step) {
  r_.term_labels = labels_of(obj);
  const std::string ckpt = checkpoint_path(stage);
  int first = 0;
  if (stage == resume_from_) {
    Lbfgs holder(Device::CPU, x.numel());
    try {
      holder.load_checkpoint(ckpt, x);
    } catch (const Error& e) {
      throw Error(std::string("options.resume: ") + e.what() +
                  "; resume with the settings that wrote it");
    }
    apply_blob(holder.user_blob(), ckpt, &first, &rng);
    r_.evaluations = done_evals_ + first;
    started();
    if (o_.on_resume) o_.on_resume(ckpt, first);
  }
  auto save_state = [&](int it) {
    if (o_.checkpoint_prefix.empty()) return;
    Lbfgs holder(Device::CPU, x.numel());
    holder.set_user_blob(make_blob(stage, it, &rng));
    holder.save_checkpoint(ckpt, x);
    clear_checkpoints(stage);
    r_.checkpoint = ckpt;
  };
  started();
  const int iters = o_.iterations;
  r_.stop_reason = stop_reason_name(StopReason::MaxIterations);
  for (int it = first; it < iters; ++it) {
    if (stopping()) {
      r_.cancelled = true;
      r_.stop_reason = stop_reason_name(StopReason::Interrupted);
      save_state(it);
      break;
    }
    std::vector<double> terms;
    const double v = step(x, it, terms);
    r_.evaluations = done_evals_ + it + 1;  // one gradient per step
    record(stage, it + 1, iters, v, terms);
    if (o_.snapshot_every > 0 && (it + 1) % o_.snapshot_every == 0 && !stopping()) {
      if (o_.on_snapshot) o_.on_snapshot(x, stage, it + 1);
      save_state(it + 1);
    }
  }
  // Cancelled right after the stage's last iteration with stages left: stop here.
  if (!r_.cancelled && stopping() && stage + 1 < stages) {
    r_.cancelled = true;
    r_.stop_reason = stop_reason_name(StopReason::Interrupted);
    save_state(iters);
  }
  done_evals_ = r_.evaluations;
}

RecipeResult Driver::finish(Tensor x) {
  r_.image = std::move(x);
  r_.wall_time_s = wall();
  r_.peak_rss_bytes = std::max(prior_peak_, peak_rss());
  if (!r_.cancelled) clear_checkpoints(-1);
  return std::move(r_);
}

}  // namespace recipes_detail
}  // namespace preimage
