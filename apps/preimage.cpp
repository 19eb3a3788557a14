// preimage: the command line. Subcommands share one option vocabulary (apps/cli_options.h):
//   texture | invert | style | visualize | dream | caricature  (apps/cli_commands.cpp)
//   saliency | adversarial | features | neighbors | embed | patches | filters | head
//            (apps/cli_analysis.cpp, docs/analysis.md)
//   attributes train | show | apply: B-CNN attribute classifiers and edits
//            (apps/cli_attributes.cpp, docs/attributes.md)
//   forward: VGG forward/backward printing per-layer shapes and norms of the activations and of
//            the input gradient of L = Σ ½‖A‖²/numel over the layers.
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cli_analysis.h"
#include "cli_attributes.h"
#include "cli_commands.h"
#include "cli_decoder.h"
#include "cli_index.h"
#include "cli_run.h"
#include "json.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/hdf5_probe.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/weights.h"

using namespace preimage;

namespace {

using Args = cli::FlagArgs;

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    if (q > p) out.push_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

double norm(const Tensor& t) {
  double acc = 0;
  for (float v : t.to_vector()) acc += double(v) * v;
  return std::sqrt(acc);
}

const cli::FlagSet& forward_flags() {
  static const cli::FlagSet f(
      {"weights", "arch", "device"},
      {{"input", "IMAGE", "input image", "a synthetic 64x64 pattern"},
       {"size", "N|WxH", "resize the input first", "its size"},
       {"layers", "L,...", "taps", "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"},
       {"json", "", "print the result as JSON on stdout", "off"}});
  return f;
}

int cmd_forward(const Args& a) {
  a.no_more_positional(0);
  const Device dev = resolve_device(a.text("device"));
  Weights w = load_weights(a.text("weights"), parse_arch(a.text("arch")));
  const bool json = a.on("json");
  cli::Json j;
  j.begin_object();
  j.value("command", "forward");
  j.value("version", cli::version_string());
  j.value("commit", cli::git_commit());
  j.value("weights", w.identity);
  j.value("random_weights", w.random);
  if (!json)
    std::printf(
        "weights: %s%s\n", w.identity.c_str(),
        w.random ? "  (RANDOM features: seeded He-initialized VGG, not a trained network)" : "");
  const std::string input = a.given("input") ? a.text("input") : "";
  Tensor img;
  if (input.empty()) {
    std::vector<float> v(3 * 64 * 64);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f + 0.4f * std::sin(0.05f * float(i));
    img = Tensor::from_vector({1, 3, 64, 64}, v);
  } else {
    img = load_image(input);
  }
  if (a.given("size")) {
    int h = 0, wd = 0;
    parse_size(a.text("size"), img.shape().h, img.shape().w, &h, &wd);
    img = resize(img.view(), h, wd);
  }
  Network net(std::move(w), dev);
  std::vector<std::string> taps = split(a.text("layers"));
  img = img.to(dev);
  j.value("input", input.empty() ? std::string("(synthetic)") : input);
  if (!input.empty()) j.value("input_sha256", sha256_file(input));
  j.value("device", device_name(dev));
  j.value("shape", img.shape().str());
  if (!json)
    std::printf("input %s on %s: %s\n", input.empty() ? "(synthetic)" : input.c_str(),
                device_name(dev), img.shape().str().c_str());
  auto t0 = std::chrono::steady_clock::now();
  net.forward(img.view(), taps);
  std::map<std::string, View> grads;
  std::vector<Tensor> scaled;
  if (!json) std::printf("%-10s %-16s %14s\n", "layer", "shape", "||A||");
  j.begin_array("layers");
  for (const auto& t : taps) {
    const Tensor& act = net.tap(t);
    if (!json) std::printf("%-10s %-16s %14.6g\n", t.c_str(), act.shape().str().c_str(), norm(act));
    j.begin_object();
    j.value("layer", t);
    j.value("shape", act.shape().str());
    j.value("norm", norm(act));
    j.end_object();
    // dL/dA for L = ½‖A‖²/numel
    std::vector<float> g = act.to_vector();
    for (float& v : g) v /= float(act.numel());
    scaled.push_back(Tensor::from_vector(act.shape(), g, dev));
    grads[t] = scaled.back().view();
  }
  Tensor gimg;
  net.backward(grads, gimg);
  auto t1 = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  j.end_array();
  j.value("input_gradient_norm", norm(gimg));
  j.value("forward_backward_ms", ms);
  j.end_object();
  if (json) {
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  std::printf("input gradient %s: ||dL/dx|| = %.6g\n", gimg.shape().str().c_str(), norm(gimg));
  std::printf("forward+backward: %.1f ms\n", ms);
  return 0;
}

// The one command registry: every subcommand (two-word ones as "index build"), its summary, how
// to run it and its --help text.
struct Entry {
  std::string name, summary;
  std::function<int(int, char**)> run;
  std::function<std::string()> help;
  bool native_json = true;  // prints its own --json result; otherwise json_wrapped() does
};

// --json for a command whose result is the files it writes (printed one a line on stdout):
// runs it with --json removed and stdout captured, then prints {command, version, commit, argv,
// outputs}.
int json_wrapped(const Entry& e, int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i)
    if (std::string(argv[i]) != "--json") args.push_back(argv[i]);
  args.push_back(nullptr);
  std::fflush(stdout);
  std::FILE* tmp = std::tmpfile();
  require(tmp != nullptr, "--json: cannot create a temporary file");
  const int saved = dup(STDOUT_FILENO);
  dup2(fileno(tmp), STDOUT_FILENO);
  int rc = 1;
  auto restore = [&] {
    std::fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
  };
  try {
    rc = e.run(int(args.size()) - 1, args.data());
  } catch (...) {
    restore();
    std::fclose(tmp);
    throw;
  }
  restore();
  std::rewind(tmp);
  std::vector<std::string> lines;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, tmp)) {
    std::string l = buf;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (!l.empty()) lines.push_back(l);
  }
  std::fclose(tmp);
  cli::Json j;
  j.begin_object();
  j.value("command", e.name);
  j.value("version", cli::version_string());
  j.value("commit", cli::git_commit());
  j.begin_array("argv");
  for (int i = 0; i < argc; ++i) j.value("", std::string(argv[i]));
  j.end_array();
  j.value("exit_code", rc);
  j.begin_array("outputs");
  for (const auto& l : lines) j.value("", l);
  j.end_array();
  j.end_object();
  std::printf("%s\n", j.str().c_str());
  return rc;
}

std::string group_help(const char* usage) {
  return std::string("usage:\n") + usage;
}

const std::vector<Entry>& registry() {
  static const std::vector<Entry> list = [] {
    std::vector<Entry> r;
    for (const auto& c : cli::commands())
      r.push_back({c.name, c.summary,
                   [&c](int argc, char** argv) {
                     return c.run(cli::parse_options(c.name, argc, argv, 2, c.flags));
                   },
                   [&c] { return cli::command_help(c); }});
    const std::string fwd = "VGG forward/backward: per-layer shapes and norms";
    r.push_back({"forward", fwd,
                 [](int argc, char** argv) {
                   return cmd_forward(cli::parse_flags("forward", argc, argv, 2, forward_flags()));
                 },
                 [fwd] {
                   return cli::flags_help("forward [options]",
                                          fwd +
                                              " of the activations and of the input gradient of "
                                              "L = sum ||A||^2/(2 numel) over the layers",
                                          forward_flags());
                 }});
    for (const auto& [name, summary] : cli::analysis_commands()) {
      const std::string n = name;
      r.push_back({n, summary,
                   [n](int argc, char** argv) { return cli::run_analysis(n, argc, argv); },
                   [n] { return cli::analysis_help(n); }, false});
    }
    for (const char* sub : {"build", "add", "info", "verify"}) {
      const std::string n = std::string("index ") + sub;
      r.push_back({n, "texture index of an image collection", cli::run_index_command,
                   [n] { return cli::index_help(n); }, n == "index info" || n == "index verify"});
    }
    r.push_back({"search", "nearest textures in an index", cli::run_index_command,
                 [] { return cli::index_help("search"); }});
    for (const char* sub : {"train", "invert", "eval"}) {
      const std::string n = std::string("decoder ") + sub;
      r.push_back({n, "feature-inversion decoder", cli::run_decoder_command,
                   [n] { return cli::decoder_help(n); }, n == "decoder eval"});
    }
    for (const char* sub : {"train", "show", "apply"}) {
      const std::string n = std::string("attributes ") + sub;
      r.push_back({n, "B-CNN attribute classifiers and edits", cli::run_attributes,
                   [n] { return cli::attributes_help(n); }, false});
    }
    return r;
  }();
  return list;
}

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: preimage <command> [options]   (preimage <command> --help for its flags)\n"
               "       preimage --version | commands\ncommands:\n");
  for (const auto& c : cli::commands())
    std::fprintf(to, "  %-11s %s\n", c.name.c_str(), c.summary.c_str());
  std::fprintf(to, "  %-11s %s\n", "forward", "VGG forward/backward: per-layer shapes and norms");
  for (const auto& [name, summary] : cli::analysis_commands())
    std::fprintf(to, "  %-11s %s\n", name.c_str(), summary.c_str());
  std::fprintf(to, "%s", cli::index_usage());
  std::fprintf(to, "%s", cli::decoder_usage());
  std::fprintf(to, "%s", cli::attributes_usage());
}

bool asks_help(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (RLIMIT_FSIZE) write() then fails with EFBIG, which the atomic writers
  // report and clean up, instead of SIGXFSZ killing the process mid-file.
  std::signal(SIGXFSZ, SIG_IGN);
  // HDF5 inputs come from anywhere: each is walked in a child process first, so that a crash
  // inside HDF5 1.10.8 on a crafted file becomes an error naming it (preimage/hdf5_probe.h).
  set_hdf5_probe(true);
  cli::set_command_line(argc, argv);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage(stdout);
      return 0;
    }
    if (cmd == "--version" || cmd == "version") {
      std::printf("preimage %s (commit %s)\n", cli::version_string(), cli::git_commit());
      return 0;
    }
    if (cmd == "commands") {  // every subcommand, one a line (the tests' source of truth)
      for (const auto& e : registry()) std::printf("%s\n", e.name.c_str());
      return 0;
    }
    const Entry* found = nullptr;
    int first = 2;
    const std::string two = argc > 2 ? cmd + " " + argv[2] : "";
    for (const auto& e : registry())
      if (e.name == two) {
        found = &e;
        first = 3;
      }
    if (!found)
      for (const auto& e : registry())
        if (e.name == cmd) found = &e;
    if (found) {
      if (asks_help(argc, argv, first)) {
        std::printf("%s", found->help().c_str());
        return 0;
      }
      bool json = false;
      for (int i = first; i < argc; ++i) json = json || std::string(argv[i]) == "--json";
      if (json && !found->native_json) return json_wrapped(*found, argc, argv);
      return found->run(argc, argv);
    }
    // A command group without (or with an unknown) subcommand: its own message, or its usage.
    if (cmd == "index" || cmd == "decoder" || cmd == "attributes") {
      if (asks_help(argc, argv, 2)) {
        std::printf("%s", group_help(cmd == "index"     ? cli::index_usage()
                                     : cmd == "decoder" ? cli::decoder_usage()
                                                        : cli::attributes_usage())
                              .c_str());
        return 0;
      }
      if (cmd == "index") return cli::run_index_command(argc, argv);
      if (cmd == "decoder") return cli::run_decoder_command(argc, argv);
      return cli::run_attributes(argc, argv);
    }
    throw Error("unknown command '" + cmd + "' (try: preimage --help)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "preimage: error: %s\n", cli::cli_message(e.what()).c_str());
    return 1;
  }
}
