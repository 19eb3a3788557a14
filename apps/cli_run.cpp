// Shared machinery of the preimage subcommands (see cli_run.h).
#include "cli_run.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <random>

#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

std::atomic<bool> g_interrupt{false};

extern "C" void on_signal(int) { g_interrupt.store(true); }

std::string fmt_time(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

// A progress bar on a terminal, plain periodic lines otherwise, nothing with --quiet.
class Progress {
 public:
  Progress(bool quiet, int total, std::string label)
      : quiet_(quiet), tty_(isatty(STDERR_FILENO)), total_(total), label_(std::move(label)),
        start_(std::chrono::steady_clock::now()), last_(start_) {}
  void update(int it, double loss) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - start_).count();
    const double rate = it > 0 ? it / std::max(el, 1e-9) : 0;
    const double eta = rate > 0 ? (total_ - it) / rate : NAN;
    if (tty_) {
      const int width = 24, fill = total_ > 0 ? std::min(width, width * it / total_) : 0;
      std::fprintf(stderr, "\r%s [%s%s] %d/%d loss %.4e %.2f it/s ETA %s   ", label_.c_str(),
                   std::string(fill, '#').c_str(), std::string(width - fill, '-').c_str(), it,
                   total_, loss, rate, fmt_time(eta).c_str());
      std::fflush(stderr);
    } else if (it == total_ || it == 1 ||
               std::chrono::duration<double>(now - last_).count() >= 5.0 || it % 50 == 0) {
      std::fprintf(stderr, "%s iteration %d/%d loss %.6e (%.2f it/s, ETA %s)\n", label_.c_str(),
                   it, total_, loss, rate, fmt_time(eta).c_str());
      last_ = now;
    }
  }
  void done() {
    if (!quiet_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  bool quiet_, tty_;
  int total_;
  std::string label_;
  std::chrono::steady_clock::time_point start_, last_;
};

std::vector<float> host_values(const View& v) {
  Tensor tmp(v.shape, Device::CPU);
  tmp.copy_from(v);
  return tmp.to_vector();
}

std::string stage_label(int stage, int stages) {
  return stages > 1 ? "octave " + std::to_string(stage + 1) + "/" + std::to_string(stages)
                    : std::string("optimizing");
}

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

}  // namespace

Session open_session(const Options& opt, bool avg_pool) {
  Session s;
  s.opt = opt;
  s.start = std::chrono::steady_clock::now();
  s.device = resolve_device(opt.device);
  Weights w = load_weights(opt.weights, parse_arch(opt.arch));
  s.weights_identity = w.identity;
  s.random_weights = w.random;
  if (!opt.quiet)
    std::fprintf(stderr, "preimage %s: weights %s%s, device %s\n", opt.command.c_str(),
                 w.identity.c_str(),
                 w.random ? " (RANDOM features: seeded He-initialized VGG, not a trained network)"
                          : "",
                 device_name(s.device));
  NetworkOptions no;
  no.avg_pool = avg_pool;
  s.net = std::make_unique<Network>(std::move(w), s.device, no);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  s.results.begin_object();
  return s;
}

Tensor load_rgb(const std::string& path, const std::string& flag, const Options& opt,
                bool apply_size) {
  require(!path.empty(), flag + ": an image is required");
  Tensor img = load_image(path);
  if (apply_size && !opt.size.empty()) {
    int h = 0, w = 0;
    parse_size(opt.size, img.shape().h, img.shape().w, &h, &w);
    img = resize(img.view(), h, w);
  }
  return img;
}

std::vector<std::pair<int, int>> octave_sizes(int h, int w, const Options& opt) {
  std::vector<std::pair<int, int>> out;
  for (int k = opt.octaves - 1; k >= 0; --k) {
    const double f = std::pow(double(opt.octave_scale), k);
    out.emplace_back(std::max(16, int(std::lround(h / f))), std::max(16, int(std::lround(w / f))));
  }
  return out;
}

Tensor initial_image(const Options& opt, int h, int w, const Tensor* input) {
  if (opt.init == "noise") {
    std::mt19937_64 rng(opt.seed);
    std::uniform_real_distribution<float> d(0.25f, 0.75f);
    std::vector<float> v(size_t(3) * h * w);
    for (auto& x : v) x = d(rng);
    return Tensor::from_vector({1, 3, h, w}, v);
  }
  if (opt.init == "input") {
    require(input != nullptr, "--init input: this command has no --input image");
    return resize(input->view(), h, w);
  }
  Tensor f = load_image(opt.init);
  return resize(f.view(), h, w);
}

void check_memory(Session& s, int h, int w, const std::vector<std::string>& taps) {
  const Shape img{1, 3, h, w};
  size_t bytes = 0, max_act = 0;
  int deepest = 0;
  const auto& layers = s.net->layers();
  for (const auto& t : taps)
    for (size_t i = 0; i < layers.size(); ++i)
      if (layers[i].name == t) deepest = std::max(deepest, int(i));
  for (const auto& [name, lw] : s.net->weights().layers)
    bytes += (lw.weight.numel() + lw.bias.numel()) * sizeof(float);
  for (int i = 0; i <= deepest; ++i) {
    if (layers[i].kind == LayerKind::Flatten) continue;
    const size_t n = s.net->tap_shape(layers[i].name, img).numel() * sizeof(float);
    bytes += n;
    max_act = std::max(max_act, n);
  }
  for (const auto& t : taps) bytes += 3 * s.net->tap_shape(t, img).numel() * sizeof(float);
  const size_t n_img = img.numel() * sizeof(float);
  bytes += 2 * max_act + n_img * (2 * size_t(s.opt.history) + 8) + (size_t(48) << 20);
  s.predicted_peak_bytes = std::max(s.predicted_peak_bytes, bytes);
  const size_t avail = available_bytes(s.device);
  if (bytes > avail) {
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "estimated peak memory %.2f GiB for a %dx%d image exceeds the %.2f GiB "
                  "available on %s; try a smaller --size, fewer or shallower --layers, or a "
                  "shorter --history",
                  bytes / 1073741824.0, w, h, avail / 1073741824.0, device_name(s.device));
    throw Error(msg);
  }
}

std::string checkpoint_path(const Options& opt, int stage) {
  return opt.out + ".stage" + std::to_string(stage) + ".ckpt.h5";
}

int resume_stage(const Options& opt, int stages) {
  for (int k = stages - 1; k >= 0; --k)
    if (std::filesystem::exists(checkpoint_path(opt, k))) return k;
  throw Error("--resume: no checkpoint found (expected " + checkpoint_path(opt, 0) +
              " or a later stage's)");
}

static void clear_checkpoints(const Options& opt, int below_or_all) {
  for (int k = 0; k < 64; ++k)
    if (below_or_all < 0 || k < below_or_all) std::filesystem::remove(checkpoint_path(opt, k));
}

static void record_iteration(Session& s, int stage, double f, const std::vector<double>& terms) {
  s.loss_history.push_back(f);
  s.term_history.push_back(terms);
  s.stage_of_iteration.push_back(stage);
}

LbfgsResult run_lbfgs(Session& s, Objective& obj, Tensor& x, int stage, int stages, int iters) {
  s.term_labels.clear();
  for (const auto& t : obj.terms()) s.term_labels.push_back(t->label.empty() ? t->kind() : t->label);
  LbfgsOptions lo;
  lo.history = s.opt.history;
  lo.max_iterations = iters;
  lo.bounded = true;
  lo.lower = 0.f;
  lo.upper = 1.f;
  Tensor xd = x.to(s.device);
  Lbfgs solver(s.device, xd.numel(), lo);
  const std::string ckpt = checkpoint_path(s.opt, stage);
  if (s.opt.resume && std::filesystem::exists(ckpt)) {
    solver.load_checkpoint(ckpt, xd);
    if (!s.opt.quiet) std::fprintf(stderr, "resuming from %s\n", ckpt.c_str());
  }
  std::vector<double> last_terms;
  Tensor grad;
  Progress bar(s.opt.quiet, iters, stage_label(stage, stages));
  // The objective evaluates into its own gradient tensor; the solver owns gv.
  auto eval = [&](const View& xv, const View& gv) -> double {
    std::vector<double> per;
    const double val = obj.evaluate(*s.net, xv, grad, &per);
    copy_view(grad.view(), gv);
    last_terms = std::move(per);
    return val;
  };
  auto on_iter = [&](const IterationInfo& info) {
    record_iteration(s, stage, info.f, last_terms);
    bar.update(info.iteration, info.f);
    if (s.opt.save_every > 0 && info.iteration % s.opt.save_every == 0) {
      solver.set_user_blob("stage=" + std::to_string(stage));
      Tensor cur(xd.shape(), Device::CPU);
      cur.copy_from(xd.view());
      save_png(cur.view(), s.opt.out);
      solver.save_checkpoint(ckpt, xd);
      clear_checkpoints(s.opt, stage);
    }
    return !g_interrupt.load();
  };
  LbfgsResult r = solver.minimize(xd, eval, on_iter);
  bar.done();
  s.stop_reason = stop_reason_name(r.reason);
  if (r.reason == StopReason::Interrupted) {
    s.interrupted = true;
    solver.set_user_blob("stage=" + std::to_string(stage));
    solver.save_checkpoint(ckpt, xd);
    clear_checkpoints(s.opt, stage);
  }
  x = xd.to(Device::CPU);
  return r;
}

void run_ascent(Session& s, Tensor& x, int stage, int stages, int iters,
                const std::function<double(Tensor& x, int it)>& step) {
  const std::string ckpt = checkpoint_path(s.opt, stage);
  int first = 0;
  if (s.opt.resume && std::filesystem::exists(ckpt)) {
    Lbfgs holder(Device::CPU, x.numel());
    holder.load_checkpoint(ckpt, x);
    const std::string blob = holder.user_blob();
    const auto p = blob.find("iteration=");
    require(p != std::string::npos, "checkpoint " + ckpt + ": no iteration recorded");
    first = std::stoi(blob.substr(p + 10));
    if (!s.opt.quiet) std::fprintf(stderr, "resuming from %s at iteration %d\n", ckpt.c_str(), first);
  }
  auto save_state = [&](int it) {
    Lbfgs holder(Device::CPU, x.numel());
    holder.set_user_blob("stage=" + std::to_string(stage) + ";iteration=" + std::to_string(it));
    holder.save_checkpoint(ckpt, x);
    clear_checkpoints(s.opt, stage);
  };
  Progress bar(s.opt.quiet, iters, stage_label(stage, stages));
  s.term_labels = {"objective"};
  for (int it = first; it < iters; ++it) {
    if (g_interrupt.load()) {
      s.interrupted = true;
      s.stop_reason = stop_reason_name(StopReason::Interrupted);
      save_state(it);
      bar.done();
      return;
    }
    const double v = step(x, it);
    record_iteration(s, stage, v, {v});
    bar.update(it + 1, v);
    if (s.opt.save_every > 0 && (it + 1) % s.opt.save_every == 0) {
      save_png(x.view(), s.opt.out);
      save_state(it + 1);
    }
  }
  bar.done();
  s.stop_reason = stop_reason_name(StopReason::MaxIterations);
}

static std::string hostname_or_empty() {
  char buf[256] = {0};
  return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
}

int finish(Session& s, const Tensor& x) {
  save_png(x.view(), s.opt.out);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  Json j;
  j.begin_object();
  j.value("command", s.opt.command);
  j.value("output", s.opt.out);
  j.begin_object("settings");
  for (const auto& [k, v] : s.opt.raw) j.value(k, v);
  j.end_object();
  j.value("seed", (long long)s.opt.seed);
  j.value("weights", s.weights_identity);
  j.value("random_weights", s.random_weights);
  if (s.random_weights)
    j.value("weights_note", "random features: seeded He-initialized VGG, not a trained network");
  j.value("arch", arch_name(s.net->arch()));
  j.value("device", device_name(s.device));
  j.value("host", hostname_or_empty());
  j.value("stop_reason", s.stop_reason);
  j.value("interrupted", s.interrupted);
  j.value("iterations", s.loss_history.size());
  j.value("wall_time_s", wall);
  j.value("predicted_peak_memory_bytes", s.predicted_peak_bytes);
  j.value("measured_peak_rss_bytes", (long long)ru.ru_maxrss * 1024);
  j.begin_array("terms");
  for (const auto& l : s.term_labels) j.value("", l);
  j.end_array();
  j.begin_array("history");
  for (size_t i = 0; i < s.loss_history.size(); ++i) {
    j.begin_object();
    j.value("iteration", int(i + 1));
    j.value("stage", s.stage_of_iteration[i]);
    j.value("loss", s.loss_history[i]);
    j.begin_array("terms");
    for (double t : s.term_history[i]) j.value("", t);
    j.end_array();
    j.end_object();
  }
  j.end_array();
  s.results.end_object();
  j.value("results", "");  // placeholder key replaced below
  std::string text = j.str();
  // splice the command's results object in place of the placeholder string
  const std::string ph = "\"results\":\"\"";
  text.replace(text.rfind(ph), ph.size(), "\"results\":" + s.results.str());
  text += "}\n";
  write_file_atomically(s.opt.out + ".json", text.data(), text.size());
  if (!s.interrupted) clear_checkpoints(s.opt, -1);
  if (!s.opt.quiet || s.interrupted)
    std::fprintf(stderr, "%s: %s (sidecar %s.json)%s\n",
                 s.interrupted ? "interrupted, saved" : "wrote", s.opt.out.c_str(),
                 s.opt.out.c_str(),
                 s.interrupted ? "; continue with the same command and --resume" : "");
  if (!s.interrupted) std::printf("%s\n", s.opt.out.c_str());
  return s.interrupted ? 130 : 0;
}

double relative_error(const View& a, const View& b) {
  auto av = host_values(a), bv = host_values(b);
  double num = 0, den = 0;
  for (size_t i = 0; i < av.size(); ++i) {
    num += (double(av[i]) - bv[i]) * (double(av[i]) - bv[i]);
    den += double(bv[i]) * bv[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace preimage::cli
