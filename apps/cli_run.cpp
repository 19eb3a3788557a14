// The command-line side of the recipe subcommands (see cli_run.h).
#include "cli_run.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "cli_progress.h"
#include "preimage/atomic_file.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/version.h"
#include "preimage/weights.h"

namespace preimage::cli {
namespace {

// The signal that asked the run to stop (0: none), and the library's cancel flag. The handler
// resets itself (SA_RESETHAND), so a second Ctrl-C while the checkpoint is written terminates.
std::atomic<int> g_signal{0};
std::atomic<bool> g_cancel{false};
std::vector<std::string> g_argv;

extern "C" void on_signal(int sig) {
  g_signal.store(sig);
  g_cancel.store(true);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Flags that may differ between the interrupted run and its --resume.
const std::set<std::string> kResumeFree = {"resume", "quiet", "save-every", "iters", "json"};

std::string hostname_or_empty() {
  char buf[256] = {0};
  return gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string();
}

std::string png_stem(const std::string& out) {
  return out.size() > 4 && out.substr(out.size() - 4) == ".png" ? out.substr(0, out.size() - 4)
                                                                : out;
}

// Every setting of the run as used, for the flags this command accepts.
void write_effective_settings(Json& j, const Options& o, const RecipeOptions* r) {
  auto has = [&](const char* f) { return o.accepts(f); };
  j.begin_object("effective_settings");
  j.value("weights", o.weights);
  j.value("arch", o.arch);
  j.value("device", o.device);
  if (has("input")) j.value("input", o.input);
  if (has("size")) j.value("size", o.size.empty() ? std::string("(input size)") : o.size);
  if (r) {
    if (has("layers")) {
      j.begin_object("layers");
      for (const auto& l : r->layers) j.value(l.layer, double(l.weight));
      j.end_object();
    }
    j.value("iters", r->iterations);
    j.value("history", r->history);
    j.value("seed", (long long)r->seed);
    j.value("octaves", r->octaves);
    j.value("octave_scale", double(r->octave_scale));
    j.value("init", o.given("init") ? o.init : r->init);
    j.value("tv", double(r->tv));
    j.value("tv_beta", double(r->tv_beta));
    j.value("alpha", double(r->alpha));
    j.value("alpha_weight", double(r->alpha_weight));
    j.value("jitter", r->jitter);
  }
  j.value("out", o.out);
  j.value("save_every", o.save_every);
  j.value("resume", o.resume);
  j.value("quiet", o.quiet);
  if (has("stats")) j.value("stats", o.stats);
  if (has("style")) {
    j.value("style", o.style);
    j.value("content_weight", double(o.content_weight));
    j.value("style_weight", double(o.style_weight));
    j.value("style_scale", double(o.style_scale));
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

// The RecipeOptions of the last apply_common (for the sidecar's effective settings).
const RecipeOptions* g_last_options = nullptr;

}  // namespace

void set_command_line(int argc, char** argv) {
  g_argv.assign(argv, argv + argc);
}
const std::vector<std::string>& command_line() {
  return g_argv;
}
const char* version_string() {
  return PREIMAGE_VERSION_STRING;
}
const char* git_commit() {
  return PREIMAGE_GIT_COMMIT;
}

std::string cli_message(const std::string& m) {
  // Longest names first where one is a prefix of another.
  static const std::vector<std::pair<std::string, std::string>> special = {
      {"options.iterations", "--iters"},          {"options.class_index", "--class"},
      {"options.neuron_y", "--neuron"},           {"options.neuron_x", "--neuron"},
      {"options.init_image", "--init"},           {"options.checkpoint_prefix", "--out"},
      {"options.snapshot_every", "--save-every"}, {"options.descriptor", "--representation"},
  };
  std::string out;
  size_t i = 0;
  if (m.rfind("image: ", 0) == 0 || m.rfind("content: ", 0) == 0) {
    out = "--input: ";
    i = m.find(' ') + 1;
  } else if (m.rfind("source: ", 0) == 0) {
    out = "--input: ";
    i = 8;
  }
  while (i < m.size()) {
    if (m.compare(i, 8, "options.") == 0) {
      size_t e = i + 8;
      while (e < m.size() && (std::isalnum((unsigned char)m[e]) || m[e] == '_')) ++e;
      const std::string token = m.substr(i, e - i);
      std::string flag;
      for (const auto& [k, v] : special)
        if (k == token) flag = v;
      if (flag.empty()) {
        flag = "--" + token.substr(8);
        std::replace(flag.begin(), flag.end(), '_', '-');
      }
      out += flag;
      i = e;
    } else {
      out += m[i++];
    }
  }
  return out;
}

Session open_session(const Options& opt, bool avg_pool, bool network) {
  Session s;
  s.opt = opt;
  s.device = resolve_device(opt.device);
  s.results.begin_object();
  install_signal_handlers();
  if (!network) return s;
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
  NetworkOptions no;
  no.avg_pool = avg_pool;
  s.net = std::make_unique<Network>(std::move(w), s.device, no);
  return s;
}

Tensor load_rgb(Session& s, const std::string& path, const std::string& flag) {
  require(!path.empty(), flag + ": an image is required");
  try {
    Tensor t = load_image(path);
    s.inputs.emplace_back(flag, path);
    return t;
  } catch (const Error& e) {
    throw Error(flag + ": " + e.what());
  }
}

void apply_common(Session& s, RecipeOptions& r) {
  const Options& o = s.opt;
  if (!o.layers.empty()) r.layers = o.layers;
  if (o.given("size")) r.size = o.size;
  if (o.iters) r.iterations = o.iters;
  r.history = o.history;
  r.seed = o.seed;
  if (o.given("octaves")) r.octaves = o.octaves;
  if (o.given("octave-scale")) r.octave_scale = o.octave_scale;
  if (o.given("init")) {
    if (o.init == "noise" || o.init == "random" || o.init == "input") {
      r.init = o.init;
    } else {
      r.init = "image";
      r.init_image = std::make_shared<const Tensor>(load_rgb(s, o.init, "--init"));
    }
  }
  if (o.tv >= 0) r.tv = o.tv;
  r.tv_beta = o.tv_beta;
  r.alpha = o.alpha;
  r.alpha_weight = o.alpha_weight;
  if (o.given("jitter")) r.jitter = o.jitter;
  r.checkpoint_prefix = o.out;
  r.resume = o.resume;
  r.settings.clear();
  for (const auto& [k, v] : o.args.flags)
    if (!kResumeFree.count(k)) r.settings["--" + k] = v;
  r.snapshot_every = o.save_every;
  const std::string out = o.out;
  const bool numbered = o.command == "style";  // neural-style's -save_iter: numbered files
  r.on_snapshot = [out, numbered](const Tensor& x, int stage, int iteration) {
    save_png(x.view(), out);
    if (numbered)
      save_png(x.view(), png_stem(out) + (stage > 0 ? "_o" + std::to_string(stage + 1) : "") + "_" +
                             std::to_string(iteration) + ".png");
  };
  // Test hooks (test/test_cli.py): a reproducible Ctrl-C, and a crash, after iteration k.
  int interrupt_at = 0, kill_at = 0;
  if (const char* e = std::getenv("PREIMAGE_TEST_INTERRUPT_AT")) interrupt_at = std::atoi(e);
  if (const char* e = std::getenv("PREIMAGE_TEST_KILL_AT")) kill_at = std::atoi(e);
  // One bar per stage; a resumed stage's rate counts only this process's iterations.
  auto bar = std::make_shared<ProgressPrinter>(o.quiet, "optimizing", "iteration", "it");
  bar->every(50);
  auto stage = std::make_shared<int>(-1);
  r.progress = [bar, stage, interrupt_at, kill_at](const ProgressInfo& p) {
    if (interrupt_at > 0 && p.recorded == interrupt_at) {
      g_signal.store(SIGINT);
      g_cancel.store(true);
    }
    if (p.stage != *stage) {
      *stage = p.stage;
      bar->restart(p.stages > 1
                       ? "octave " + std::to_string(p.stage + 1) + "/" + std::to_string(p.stages)
                       : std::string("optimizing"),
                   p.iteration - 1);
    }
    char loss[48];
    std::snprintf(loss, sizeof loss, "loss %.6e", p.loss);
    bar->update(p.iteration, p.iterations, loss);
    if (p.iteration == p.iterations) bar->finish();
    if (kill_at > 0 && p.recorded == kill_at) std::raise(SIGKILL);  // no handler, no cleanup
    return g_signal.load() == 0;
  };
  const bool quiet = o.quiet;
  std::string banner = s.banner;
  r.on_start = [banner, quiet]() {
    if (!quiet && !banner.empty()) std::fprintf(stderr, "%s\n", banner.c_str());
  };
  r.on_resume = [quiet](const std::string& ckpt, int it) {
    if (!quiet) std::fprintf(stderr, "resuming from %s after iteration %d\n", ckpt.c_str(), it);
  };
  r.cancel = &g_cancel;
  g_last_options = &r;
}

int finish(Session& s, const RecipeResult& r) {
  if (s.print_terms && !s.opt.quiet && !r.terms.empty()) {
    const auto& last = r.terms.back();
    for (size_t i = 0; i < last.size() && i < r.term_labels.size(); ++i)
      std::fprintf(stderr, "  %-20s %.6e\n", r.term_labels[i].c_str(), last[i]);
  }
  const Tensor& x = r.image;
  Json j;
  j.begin_object();
  j.value("command", s.opt.command);
  j.value("version", version_string());
  j.value("commit", git_commit());
  j.begin_array("argv");
  for (const auto& a : command_line()) j.value("", a);
  j.end_array();
  j.value("output", s.opt.out);
  j.begin_object("settings");  // the flags as given
  for (const auto& [k, v] : s.opt.args.flags) j.value(k, v);
  j.end_object();
  write_effective_settings(j, s.opt, g_last_options);
  j.begin_array("inputs");  // every image read, with its SHA-256
  for (const auto& [flag, path] : s.inputs) {
    j.begin_object();
    j.value("flag", flag);
    j.value("path", path);
    j.value("sha256", sha256_file(path));
    j.end_object();
  }
  j.end_array();
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
  j.value("arch", s.net ? std::string(arch_name(s.net->arch())) : s.opt.arch);
  j.value("device", device_name(s.device));
  j.value("host", hostname_or_empty());
  j.value("width", x.shape().w);
  j.value("height", x.shape().h);
  j.value("stop_reason", r.stop_reason);
  j.value("interrupted", r.cancelled);
  if (r.cancelled) j.value("checkpoint", r.checkpoint);
  j.value("resumed", r.resumed);
  j.value("iterations", r.loss.size());
  j.value("evaluations", r.evaluations);
  j.value("wall_time_s", r.wall_time_s);
  j.value("predicted_peak_memory_bytes", r.predicted_peak_bytes);
  j.value("measured_peak_memory_bytes", (long long)r.peak_rss_bytes);
  j.value("measured_peak_memory_kind", "host resident set (getrusage ru_maxrss)");
  j.begin_array("terms");
  for (const auto& l : r.term_labels) j.value("", l);
  j.end_array();
  j.begin_array("history");
  for (size_t i = 0; i < r.loss.size(); ++i) {
    j.begin_object();
    j.value("iteration", int(i + 1));
    j.value("stage", r.stage[i]);
    j.value("loss", r.loss[i]);
    j.begin_array("terms");
    for (double t : r.terms[i]) j.value("", t);
    j.end_array();
    j.end_object();
  }
  j.end_array();
  // The recipe's notes and metrics; "a:b" metrics group into an object a {b: …}.
  for (const auto& [k, v] : r.notes) s.results.value(k, v);
  std::string open;
  for (const auto& [k, v] : r.metrics) {
    const auto c = k.find(':');
    const std::string group = c == std::string::npos ? "" : k.substr(0, c);
    if (group != open) {
      if (!open.empty()) s.results.end_object();
      if (!group.empty()) s.results.begin_object(group);
      open = group;
    }
    s.results.value(c == std::string::npos ? k : k.substr(c + 1), v);
  }
  if (!open.empty()) s.results.end_object();
  s.results.end_object();
  j.raw("results", s.results.str());
  j.end_object();
  std::string text = j.str() + "\n";
  save_png(x.view(), s.opt.out);
  write_file_atomically(s.opt.out + ".json", text.data(), text.size());
  if (!s.opt.quiet || r.cancelled)
    std::fprintf(stderr, "%s: %s (sidecar %s.json)%s\n",
                 r.cancelled ? "interrupted, saved" : "wrote", s.opt.out.c_str(), s.opt.out.c_str(),
                 r.cancelled ? "; continue with the same command and --resume" : "");
  if (s.opt.json)
    std::printf("%s", text.c_str());
  else if (!r.cancelled)
    std::printf("%s\n", s.opt.out.c_str());
  return r.cancelled ? 128 + (g_signal.load() ? g_signal.load() : SIGINT) : 0;
}

}  // namespace preimage::cli
