// preimage: the command line. Subcommands share one option vocabulary (apps/cli_options.h):
//   texture | invert | style | visualize | dream | caricature  (apps/cli_commands.cpp)
//   saliency | adversarial | features | neighbors | embed | patches | filters | head
//            (apps/cli_analysis.cpp, docs/analysis.md)
//   attributes train | show | apply: B-CNN attribute classifiers and edits
//            (apps/cli_attributes.cpp, docs/attributes.md)
//   forward: VGG forward/backward printing per-layer shapes and norms of the activations and of
//            the input gradient of L = Σ ½‖A‖²/numel over the layers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli_analysis.h"
#include "cli_attributes.h"
#include "cli_commands.h"
#include "cli_decoder.h"
#include "cli_index.h"
#include "preimage/device.h"
#include "preimage/error.h"
#include "preimage/hdf5_probe.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/weights.h"

using namespace preimage;

namespace {

using Args = cli::FlagArgs;

std::string get(const Args& a, const std::string& k, const std::string& def) {
  auto it = a.flags.find(k);
  return it == a.flags.end() ? def : it->second;
}

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

int cmd_forward(const Args& a) {
  require(a.positional.empty(),
          "forward: unexpected argument '" + (a.positional.empty() ? "" : a.positional[0]) + "'");
  const Device dev = resolve_device(get(a, "device", "auto"));
  Weights w = load_weights(get(a, "weights", "random:0"), parse_arch(get(a, "arch", "vgg19")));
  std::printf(
      "weights: %s%s\n", w.identity.c_str(),
      w.random ? "  (RANDOM features: seeded He-initialized VGG, not a trained network)" : "");
  const std::string input = get(a, "input", "");
  Tensor img;
  if (input.empty()) {
    std::vector<float> v(3 * 64 * 64);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f + 0.4f * std::sin(0.05f * float(i));
    img = Tensor::from_vector({1, 3, 64, 64}, v);
  } else {
    img = load_image(input);
  }
  if (a.flags.count("size")) {
    int h = 0, wd = 0;
    parse_size(get(a, "size", ""), img.shape().h, img.shape().w, &h, &wd);
    img = resize(img.view(), h, wd);
  }
  Network net(std::move(w), dev);
  std::vector<std::string> taps =
      split(get(a, "layers", "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"));
  img = img.to(dev);
  std::printf("input %s on %s: %s\n", input.empty() ? "(synthetic)" : input.c_str(),
              device_name(dev), img.shape().str().c_str());
  auto t0 = std::chrono::steady_clock::now();
  net.forward(img.view(), taps);
  std::map<std::string, View> grads;
  std::vector<Tensor> scaled;
  std::printf("%-10s %-16s %14s\n", "layer", "shape", "||A||");
  for (const auto& t : taps) {
    const Tensor& act = net.tap(t);
    std::printf("%-10s %-16s %14.6g\n", t.c_str(), act.shape().str().c_str(), norm(act));
    // dL/dA for L = ½‖A‖²/numel
    std::vector<float> g = act.to_vector();
    for (float& v : g) v /= float(act.numel());
    scaled.push_back(Tensor::from_vector(act.shape(), g, dev));
    grads[t] = scaled.back().view();
  }
  Tensor gimg;
  net.backward(grads, gimg);
  auto t1 = std::chrono::steady_clock::now();
  std::printf("input gradient %s: ||dL/dx|| = %.6g\n", gimg.shape().str().c_str(), norm(gimg));
  std::printf("forward+backward: %.1f ms\n",
              std::chrono::duration<double, std::milli>(t1 - t0).count());
  return 0;
}

void usage() {
  std::fprintf(stderr, "usage: preimage <command> [options]\ncommands:\n");
  for (const auto& c : cli::commands())
    std::fprintf(stderr, "  %-11s %s\n", c.name.c_str(), c.summary.c_str());
  std::fprintf(stderr, "  %-11s %s\n", "forward",
               "VGG forward/backward: per-layer shapes and norms");
  cli::print_analysis_usage();
  std::fprintf(stderr, "%s", cli::index_usage());
  std::fprintf(stderr, "%s", cli::decoder_usage());
  std::fprintf(stderr, "%s", cli::attributes_usage());
  std::fprintf(stderr,
               "common options: --weights FILE|random:SEED (default random:0) --arch vgg16|vgg19 "
               "--device auto|cpu|cuda --input IMG --size N|WxH --layers name[:weight],... "
               "--iters N --history M --seed S --octaves K --octave-scale F "
               "--init noise|input|FILE --tv W --tv-beta B --alpha A --alpha-weight W (weights of "
               "the per-pixel means of TV^B and |x|^A) "
               "--jitter PX --out FILE.png --save-every K --resume --quiet\n");
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (RLIMIT_FSIZE) write() then fails with EFBIG, which the atomic writers
  // report and clean up, instead of SIGXFSZ killing the process mid-file.
  std::signal(SIGXFSZ, SIG_IGN);
  // HDF5 inputs come from anywhere: each is walked in a child process first, so that a crash
  // inside HDF5 1.10.8 on a crafted file becomes an error naming it (preimage/hdf5_probe.h).
  set_hdf5_probe(true);
  if (argc < 2) {
    usage();
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    for (const auto& c : cli::commands()) {
      if (c.name != cmd) continue;
      if (argc > 2 && (std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h")) {
        std::fprintf(stderr, "preimage %s: %s\nflags:", c.name.c_str(), c.summary.c_str());
        for (const auto& f : c.flags) std::fprintf(stderr, " --%s", f.c_str());
        std::fprintf(stderr, "\n");
        return 0;
      }
      return c.run(cli::parse_options(cmd, argc, argv, 2, c.flags));
    }
    if (cmd == "index" || cmd == "search") return cli::run_index_command(argc, argv);
    if (cmd == "decoder") return cli::run_decoder_command(argc, argv);
    if (cmd == "attributes") return cli::run_attributes(argc, argv);
    if (cli::is_analysis_command(cmd)) return cli::run_analysis(cmd, argc, argv);
    if (cmd == "forward")
      return cmd_forward(cli::parse_flags(
          cmd, argc, argv, 2, {"weights", "arch", "input", "size", "layers", "device"}, {}));
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      usage();
      return 0;
    }
    throw Error("unknown command '" + cmd + "' (try: preimage --help)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "preimage: error: %s\n", e.what());
    return 1;
  }
}
