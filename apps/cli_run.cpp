// Shared machinery of the preimage subcommands (see cli_run.h).
#include "cli_run.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>

#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

// The signal that asked the run to stop (0: none). The handler resets itself (SA_RESETHAND), so
// a second Ctrl-C while the checkpoint is written terminates at once.
std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) {
  g_signal.store(sig);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() {
  return g_signal.load() != 0;
}

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

// A progress bar on a terminal, plain periodic lines otherwise, nothing with --quiet. `first` is
// the iteration a resumed run starts from (the rate counts only this process's iterations).
class Progress {
 public:
  Progress(bool quiet, int total, std::string label, int first = 0)
      : quiet_(quiet),
        tty_(isatty(STDERR_FILENO)),
        total_(total),
        first_(first),
        label_(std::move(label)),
        start_(std::chrono::steady_clock::now()),
        last_(start_) {}
  void update(int it, double loss) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - start_).count();
    const double rate = it > first_ ? (it - first_) / std::max(el, 1e-9) : 0;
    const double eta = rate > 0 ? (total_ - it) / rate : NAN;
    if (tty_) {
      const int width = 24, fill = total_ > 0 ? std::clamp(width * it / total_, 0, width) : 0;
      std::fprintf(stderr, "\r%s [%s%s] %d/%d loss %.4e %.2f it/s ETA %s   ", label_.c_str(),
                   std::string(fill, '#').c_str(), std::string(width - fill, '-').c_str(), it,
                   total_, loss, rate, fmt_time(eta).c_str());
      std::fflush(stderr);
      drawn_ = true;
    } else if (it == total_ || it == first_ + 1 ||
               std::chrono::duration<double>(now - last_).count() >= 5.0 || it % 50 == 0) {
      std::fprintf(stderr, "%s iteration %d/%d loss %.6e (%.2f it/s, ETA %s)\n", label_.c_str(), it,
                   total_, loss, rate, fmt_time(eta).c_str());
      last_ = now;
    }
  }
  void done() {
    if (!quiet_ && tty_ && drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  bool quiet_, tty_, drawn_ = false;
  int total_, first_;
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

std::string fmt_double(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// ---- run state in checkpoints ----------------------------------------------------------------
// The checkpoint's user blob is text: a header, the command, the stage, the ascent iteration and
// RNG state, the settings that shape the result (so that --resume with another command line is
// refused, naming the flags that differ), and the loss history so far (so that the resumed run's
// sidecar holds every iteration).

constexpr const char* kBlobMagic = "preimage-run-state 1";
// Flags that may differ between the interrupted run and its --resume.
const std::set<std::string> kResumeFree = {"resume", "quiet", "save-every", "iters"};

std::string one_line(std::string v) {
  std::replace(v.begin(), v.end(), '\n', ' ');
  return v;
}

long long peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (long long)ru.ru_maxrss * 1024;
}

double wall_so_far(const Session& s) {
  return s.prior_wall_s +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
}

std::string make_blob(const Session& s, int stage, int iteration, const std::mt19937_64* rng) {
  std::ostringstream os;
  os << kBlobMagic << "\n";
  os << "command " << s.opt.command << "\n";
  os << "stage " << stage << "\n";
  os << "wall " << fmt_double(wall_so_far(s)) << "\n";
  os << "peak " << std::max(s.prior_peak_bytes, peak_rss_bytes()) << "\n";
  if (iteration >= 0) os << "iteration " << iteration << "\n";
  if (rng) os << "rng " << *rng << "\n";
  for (const auto& [k, v] : s.opt.raw)
    if (!kResumeFree.count(k)) os << "setting " << k << "=" << one_line(v) << "\n";
  for (size_t i = 0; i < s.loss_history.size(); ++i) {
    os << "history " << s.stage_of_iteration[i] << " " << fmt_double(s.loss_history[i]);
    for (double t : s.term_history[i]) os << " " << fmt_double(t);
    os << "\n";
  }
  return os.str();
}

// Restores the history (and iteration / RNG for ascent stages) from a checkpoint's blob after
// checking that it was written by this command with the same settings.
void apply_blob(Session& s, const std::string& blob, const std::string& ckpt, int* iteration,
                std::mt19937_64* rng) {
  std::istringstream is(blob);
  std::string line;
  require(std::getline(is, line) && line == kBlobMagic,
          "--resume: '" + ckpt + "' holds no preimage run state (not written by this tool?)");
  std::map<std::string, std::string> settings;
  std::string command, rng_text;
  int it = -1;
  double wall = 0;
  long long peak = 0;
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
  require(command == s.opt.command, "--resume: '" + ckpt + "' was written by 'preimage " + command +
                                        "', not 'preimage " + s.opt.command + "'");
  std::map<std::string, std::string> now;
  for (const auto& [k, v] : s.opt.raw)
    if (!kResumeFree.count(k)) now[k] = one_line(v);
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
        diff += (diff.empty() ? "" : ", ") + ("--" + k + " " + then + " then, " + cur + " now");
    }
    throw Error("--resume: '" + ckpt + "' was written with other settings (" + diff +
                "); resume with the command line that wrote it");
  }
  if (iteration) {
    require(it >= 0, "--resume: '" + ckpt + "' records no iteration");
    *iteration = it;
  }
  if (rng) {
    std::istringstream rs(rng_text);
    rs >> *rng;
    require(!rs.fail(), "--resume: '" + ckpt + "' holds no random generator state");
  }
  s.prior_wall_s = wall;
  s.prior_peak_bytes = peak;
  s.loss_history = std::move(losses);
  s.term_history = std::move(terms);
  s.stage_of_iteration = std::move(stages);
}

// Removes every stage's checkpoint except `keep` (-1: all).
void clear_checkpoints(const Options& opt, int keep) {
  for (int k = 0; k < 64; ++k)
    if (k != keep) std::filesystem::remove(checkpoint_path(opt, k));
}

void record_iteration(Session& s, int stage, double f, const std::vector<double>& terms) {
  s.loss_history.push_back(f);
  s.term_history.push_back(terms);
  s.stage_of_iteration.push_back(stage);
  // Test hook: behave as if SIGINT arrived right after this iteration (real signal timing is
  // not reproducible).
  if (s.interrupt_at > 0 && int(s.loss_history.size()) == s.interrupt_at) g_signal.store(SIGINT);
}

// Test hook: dies like a killed process (no handler, no cleanup) after iteration kill_at.
void crash_hook(const Session& s) {
  if (s.kill_at > 0 && int(s.loss_history.size()) == s.kill_at) std::raise(SIGKILL);
}

std::vector<std::string> term_labels(const Objective& obj) {
  std::vector<std::string> out;
  for (const auto& t : obj.terms()) out.push_back(t->label.empty() ? t->kind() : t->label);
  return out;
}

int iterations_in_stage(const Session& s, int stage) {
  return int(std::count(s.stage_of_iteration.begin(), s.stage_of_iteration.end(), stage));
}

}  // namespace

Session open_session(const Options& opt, bool avg_pool) {
  Session s;
  s.opt = opt;
  s.start = std::chrono::steady_clock::now();
  s.device = resolve_device(opt.device);
  Arch arch = Arch::VGG19;
  try {
    arch = parse_arch(opt.arch);
  } catch (const Error& e) {
    throw Error(std::string("--arch: ") + e.what());
  }
  Weights w;
  try {
    w = load_weights(opt.weights, arch);
  } catch (const Error& e) {
    throw Error(std::string("--weights: ") + e.what());
  }
  s.weights_identity = w.identity;
  s.random_weights = w.random;
  s.banner =
      "preimage " + opt.command + ": weights " + w.identity +
      (w.random ? " (RANDOM features: seeded He-initialized VGG, not a trained network)" : "") +
      ", device " + device_name(s.device);
  // Test hooks (test/test_cli.py): a reproducible Ctrl-C, and a crash, after iteration k.
  if (const char* e = std::getenv("PREIMAGE_TEST_INTERRUPT_AT")) s.interrupt_at = std::atoi(e);
  if (const char* e = std::getenv("PREIMAGE_TEST_KILL_AT")) s.kill_at = std::atoi(e);
  NetworkOptions no;
  no.avg_pool = avg_pool;
  s.net = std::make_unique<Network>(std::move(w), s.device, no);
  install_signal_handlers();
  s.results.begin_object();
  return s;
}

void announce(Session& s) {
  if (s.announced) return;
  s.announced = true;
  if (!s.opt.quiet) std::fprintf(stderr, "%s\n", s.banner.c_str());
}

Tensor load_rgb(const std::string& path, const std::string& flag) {
  require(!path.empty(), flag + ": an image is required");
  try {
    return load_image(path);
  } catch (const Error& e) {
    throw Error(flag + ": " + e.what());
  }
}

std::pair<int, int> target_size(int h, int w, const Options& opt) {
  if (opt.size.empty()) return {h, w};
  int th = 0, tw = 0;
  parse_size(opt.size, h, w, &th, &tw);
  return {th, tw};
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
  Tensor f = load_rgb(opt.init, "--init");
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

int resume_stage(Session& s, int stages) {
  if (!s.opt.resume) return 0;
  for (int k = stages - 1; k >= 0; --k)
    if (std::filesystem::exists(checkpoint_path(s.opt, k))) return s.resume_from = k;
  throw Error("--resume: no checkpoint found (expected " + checkpoint_path(s.opt, 0) +
              (stages > 1 ? " or a later stage's" : "") + ")");
}

LbfgsResult run_lbfgs(Session& s, Objective& obj, Tensor& x, int stage, int stages, int iters) {
  s.term_labels = term_labels(obj);
  LbfgsOptions lo;
  lo.history = s.opt.history;
  lo.max_iterations = iters;
  lo.bounded = true;
  lo.lower = 0.f;
  lo.upper = 1.f;
  Tensor xd = x.to(s.device);
  Lbfgs solver(s.device, xd.numel(), lo);
  const std::string ckpt = checkpoint_path(s.opt, stage);
  int first_it = 0;
  if (stage == s.resume_from) {
    try {
      solver.load_checkpoint(ckpt, xd);
    } catch (const Error& e) {
      throw Error(std::string("--resume: ") + e.what() +
                  "; resume with the command line that wrote it");
    }
    apply_blob(s, solver.user_blob(), ckpt, nullptr, nullptr);
    solver.set_options(lo);  // --iters may extend the interrupted run
    first_it = iterations_in_stage(s, stage);
    announce(s);
    if (!s.opt.quiet)
      std::fprintf(stderr, "resuming from %s after iteration %d\n", ckpt.c_str(), first_it);
  }
  announce(s);
  std::vector<double> last_terms;
  Tensor grad;
  Progress bar(s.opt.quiet, iters, stage_label(stage, stages), first_it);
  // The objective evaluates into its own gradient tensor; the solver owns gv.
  auto eval = [&](const View& xv, const View& gv) -> double {
    std::vector<double> per;
    const double val = obj.evaluate(*s.net, xv, grad, &per);
    copy_view(grad.view(), gv);
    last_terms = std::move(per);
    return val;
  };
  auto save_state = [&]() {
    solver.set_user_blob(make_blob(s, stage, -1, nullptr));
    solver.save_checkpoint(ckpt, xd);
    clear_checkpoints(s.opt, stage);
    s.checkpoint = ckpt;
  };
  auto on_iter = [&](const IterationInfo& info) {
    record_iteration(s, stage, info.f, last_terms);
    bar.update(info.iteration, info.f);
    if (s.opt.save_every > 0 && info.iteration % s.opt.save_every == 0 && !stop_requested()) {
      Tensor cur = xd.to(Device::CPU);
      save_png(cur.view(), s.opt.out);
      save_state();
    }
    crash_hook(s);
    return !stop_requested();
  };
  LbfgsResult r = solver.minimize(xd, eval, on_iter);
  bar.done();
  s.stop_reason = stop_reason_name(r.reason);
  if (r.reason == StopReason::Interrupted) {
    s.interrupted = true;
    s.signal = g_signal.load();
    save_state();
  }
  x = xd.to(Device::CPU);
  return r;
}

void run_ascent(Session& s, const Objective& obj, Tensor& x, int stage, int stages, int iters,
                std::mt19937_64& rng,
                const std::function<double(Tensor& x, int it, std::vector<double>& terms)>& step) {
  s.term_labels = term_labels(obj);
  const std::string ckpt = checkpoint_path(s.opt, stage);
  int first = 0;
  if (stage == s.resume_from) {
    Lbfgs holder(Device::CPU, x.numel());
    try {
      holder.load_checkpoint(ckpt, x);
    } catch (const Error& e) {
      throw Error(std::string("--resume: ") + e.what() +
                  "; resume with the command line that wrote it");
    }
    apply_blob(s, holder.user_blob(), ckpt, &first, &rng);
    announce(s);
    if (!s.opt.quiet)
      std::fprintf(stderr, "resuming from %s after iteration %d\n", ckpt.c_str(), first);
  }
  auto save_state = [&](int it) {
    Lbfgs holder(Device::CPU, x.numel());
    holder.set_user_blob(make_blob(s, stage, it, &rng));
    holder.save_checkpoint(ckpt, x);
    clear_checkpoints(s.opt, stage);
    s.checkpoint = ckpt;
  };
  announce(s);
  Progress bar(s.opt.quiet, iters, stage_label(stage, stages), first);
  s.stop_reason = stop_reason_name(StopReason::MaxIterations);
  for (int it = first; it < iters; ++it) {
    if (stop_requested()) {
      s.interrupted = true;
      s.signal = g_signal.load();
      s.stop_reason = stop_reason_name(StopReason::Interrupted);
      save_state(it);
      break;
    }
    std::vector<double> terms;
    const double v = step(x, it, terms);
    record_iteration(s, stage, v, terms);
    bar.update(it + 1, v);
    if (s.opt.save_every > 0 && (it + 1) % s.opt.save_every == 0 && !stop_requested()) {
      save_png(x.view(), s.opt.out);
      save_state(it + 1);
    }
    crash_hook(s);
  }
  // Interrupted right after the last iteration (e.g. by the test hook): nothing is left to do.
  if (!s.interrupted && stop_requested() && stage + 1 < stages) {
    s.interrupted = true;
    s.signal = g_signal.load();
    s.stop_reason = stop_reason_name(StopReason::Interrupted);
    save_state(iters);
  }
  bar.done();
}

namespace {

std::string hostname_or_empty() {
  char buf[256] = {0};
  return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
}

// Every setting of the run as used (defaults resolved), for the flags this command accepts.
void write_effective_settings(Json& j, const Options& o) {
  auto has = [&](const char* f) { return o.flags.count(f) > 0; };
  j.begin_object("effective_settings");
  j.value("weights", o.weights);
  j.value("arch", o.arch);
  j.value("device", o.device);
  if (has("input")) j.value("input", o.input);
  if (has("size")) j.value("size", o.size.empty() ? std::string("(input size)") : o.size);
  if (has("layers")) {
    j.begin_object("layers");
    for (const auto& l : o.layers) j.value(l.layer, double(l.weight));
    j.end_object();
  }
  j.value("iters", o.iters);
  j.value("history", o.history);
  j.value("seed", (long long)o.seed);
  j.value("octaves", o.octaves);
  j.value("octave_scale", double(o.octave_scale));
  j.value("init", o.init);
  j.value("tv", double(std::max(o.tv, 0.f)));
  j.value("tv_beta", double(o.tv_beta));
  j.value("alpha", double(o.alpha));
  j.value("alpha_weight", double(o.alpha_weight));
  j.value("jitter", o.jitter);
  j.value("out", o.out);
  j.value("save_every", o.save_every);
  j.value("resume", o.resume);
  j.value("quiet", o.quiet);
  if (has("stats")) j.value("stats", o.stats);
  if (has("style")) {
    j.value("style", o.style);
    j.value("content_weight", double(o.content_weight));
    j.value("style_weight", double(o.style_weight));
    j.value("original_colors", o.original_colors);
  }
  if (has("channel")) {
    if (o.channel >= 0)
      j.value("channel", o.channel);
    else
      j.null("channel");
    if (o.neuron_y >= 0) {
      j.begin_array("neuron");
      j.value("", o.neuron_y);
      j.value("", o.neuron_x);
      j.end_array();
    } else {
      j.null("neuron");
    }
    if (o.class_index >= 0)
      j.value("class", o.class_index);
    else
      j.null("class");
    j.value("l2_decay", double(o.l2_decay));
    j.value("clip_small", double(o.clip_small));
    j.value("blur_every", o.blur_every);
    j.value("blur_sigma", double(o.blur_sigma));
  }
  if (has("step")) j.value("step", double(o.step));
  j.end_object();
}

}  // namespace

int finish(Session& s, const Tensor& x) {
  const double wall = wall_so_far(s);  // including the interrupted runs this one continues
  Json j;
  j.begin_object();
  j.value("command", s.opt.command);
  j.value("output", s.opt.out);
  j.begin_object("settings");  // the flags as given
  for (const auto& [k, v] : s.opt.raw) j.value(k, v);
  j.end_object();
  write_effective_settings(j, s.opt);
  j.value("seed", (long long)s.opt.seed);
  j.value("weights", s.weights_identity);
  // "FILE (sha256 HEX)" for files, "random:SEED" for random features.
  const auto p = s.weights_identity.rfind(" (sha256 ");
  if (p != std::string::npos) {
    j.value("weights_file", s.weights_identity.substr(0, p));
    std::string hex = s.weights_identity.substr(p + 9);
    if (!hex.empty() && hex.back() == ')') hex.pop_back();
    j.value("weights_sha256", hex);
  } else {
    j.null("weights_file");
    j.null("weights_sha256");
  }
  j.value("random_weights", s.random_weights);
  if (s.random_weights)
    j.value("weights_note", "random features: seeded He-initialized VGG, not a trained network");
  j.value("arch", arch_name(s.net->arch()));
  j.value("device", device_name(s.device));
  j.value("host", hostname_or_empty());
  j.value("width", x.shape().w);
  j.value("height", x.shape().h);
  j.value("stop_reason", s.stop_reason);
  j.value("interrupted", s.interrupted);
  if (s.interrupted) j.value("checkpoint", s.checkpoint);
  j.value("resumed", s.resume_from >= 0);
  j.value("iterations", s.loss_history.size());
  j.value("wall_time_s", wall);
  j.value("predicted_peak_memory_bytes", s.predicted_peak_bytes);
  j.value("measured_peak_memory_bytes", std::max(s.prior_peak_bytes, peak_rss_bytes()));
  j.value("measured_peak_memory_kind", "host resident set (getrusage ru_maxrss)");
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
  j.raw("results", s.results.str());
  j.end_object();
  std::string text = j.str() + "\n";
  save_png(x.view(), s.opt.out);
  write_file_atomically(s.opt.out + ".json", text.data(), text.size());
  if (!s.interrupted) clear_checkpoints(s.opt, -1);
  if (!s.opt.quiet || s.interrupted)
    std::fprintf(stderr, "%s: %s (sidecar %s.json)%s\n",
                 s.interrupted ? "interrupted, saved" : "wrote", s.opt.out.c_str(),
                 s.opt.out.c_str(),
                 s.interrupted ? "; continue with the same command and --resume" : "");
  if (!s.interrupted) std::printf("%s\n", s.opt.out.c_str());
  return s.interrupted ? 128 + (s.signal ? s.signal : SIGINT) : 0;
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

// Adds the image priors requested by --tv / --alpha-weight for an h×w image. The engine's priors
// are raw sums over pixels and channels; the flags weigh their means (Mahendran & Vedaldi
// normalize by the image size too), so that a weight means the same at every --size and octave.
void add_priors(Objective& obj, const Options& o, int h, int w) {
  const float per_value = 1.f / (3.f * float(h) * float(w));
  if (o.tv > 0) {
    auto t = make_tv_term(o.tv_beta, o.tv * per_value);
    t->label = "tv";
    obj.add(std::move(t));
  }
  if (o.alpha_weight > 0) {
    auto t = make_alpha_term(o.alpha, o.alpha_weight * per_value);
    t->label = "alpha";
    obj.add(std::move(t));
  }
}

}  // namespace preimage::cli
