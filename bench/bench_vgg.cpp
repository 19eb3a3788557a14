// bench_vgg: VGG forward, forward+input-backward to a tap, and one Gatys loss+gradient
// evaluation (Gram matrices at relu1_1 … relu5_1) on the chosen device, median of N after one
// warm-up, each with the CPU convolution forced to im2col ("direct") and to Winograd F(4×4,3×3)
// ("winograd", PREIMAGE_CPU_CONV; the CUDA backend ignores it). Prints
// op | shape | version | ms | GFLOP/s | ratio, ratio = the direct row's ms / this row's ms.
//   bench_vgg [--arch vgg19] [--tap relu5_1] [--sizes 256,512] [--reps 5] [--device cpu|cuda]
//             [--threads N] [--gatys 1|0]
//   bench_vgg --serve [--arch vgg19] [--tap relu5_1] [--device cpu]
//       one line per request on stdin, "fwd|fwdbwd|gatys SIZE", answered by "ms" on stdout;
//       "rss" answers the peak resident set in MiB (VmHWM); EOF or "quit" ends. Used by
//       bench/compare_torch.py, which interleaves it with PyTorch.
// GFLOP/s counts 2 × conv multiply-adds of a direct convolution (the Winograd rows do ~4×
// fewer); backward-data of conv1_1 is counted too.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "preimage/device.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"

using namespace preimage;

namespace {

const std::vector<std::string> kGramTaps = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};

double conv_flops(const Network& net, const Shape& img, const std::string& tap) {
  double f = 0;
  Shape s = img;
  for (const Layer& l : net.layers()) {
    Shape o = net.tap_shape(l.name, img);
    if (l.kind == LayerKind::Conv) f += 2.0 * o.numel() * s.c * l.k * l.k;
    s = o;
    if (l.name == tap) break;
  }
  return f;
}

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

// Deterministic pseudo-random image in [0,1).
Tensor test_image(int size, uint32_t seed, Device d) {
  std::vector<float> v(size_t(3) * size * size);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(s >> 8) / float(1 << 24);
  }
  return Tensor::from_vector({1, 3, size, size}, v, d);
}

// One case at one size, reusing its network buffers and objective across calls.
class Runner {
 public:
  Runner(Network& net, Device d, std::string tap) : net_(net), dev_(d), tap_(std::move(tap)) {}

  double run(const std::string& op, int size) {
    State& st = state(size);
    const auto t0 = std::chrono::steady_clock::now();
    if (op == "fwd") {
      net_.forward(st.img.view(), {tap_});
    } else if (op == "fwdbwd") {
      net_.forward(st.img.view(), {tap_});
      net_.backward({{tap_, net_.tap(tap_).view()}}, st.grad);
    } else {
      if (!st.gatys) {
        st.gatys = std::make_unique<Objective>();
        Tensor target = test_image(size, 99, dev_);
        net_.forward(target.view(), kGramTaps);
        for (const auto& t : kGramTaps) st.gatys->add(make_gram_term(t, net_.tap(t).view()));
      }
      const auto t1 = std::chrono::steady_clock::now();
      st.gatys->evaluate(net_, st.img.view(), st.grad);
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1)
          .count();
    }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  struct State {
    Tensor img, grad;
    std::unique_ptr<Objective> gatys;
  };
  State& state(int size) {
    auto it = states_.find(size);
    if (it == states_.end()) {
      it = states_.emplace(size, State{}).first;
      it->second.img = test_image(size, 1, dev_);
    }
    return it->second;
  }
  Network& net_;
  Device dev_;
  std::string tap_;
  std::map<int, State> states_;
};

int serve(Runner& r) {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string op;
    int size = 0;
    in >> op >> size;
    if (op == "quit") break;
    if (op == "rss") {
      std::printf("%.1f\n", peak_rss_mib());
    } else if ((op == "fwd" || op == "fwdbwd" || op == "gatys") && size > 0) {
      std::printf("%.3f\n", r.run(op, size));
    } else {
      std::printf("error: expected 'fwd|fwdbwd|gatys SIZE', 'rss' or 'quit', got '%s'\n",
                  line.c_str());
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string arch = "vgg19", tap = "relu5_1", sizes = "256,512", dev = "cpu";
  int reps = 5;
  bool gatys = true, serve_mode = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--serve") {
      serve_mode = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_vgg: flag %s needs a value\n", k.c_str());
      return 2;
    }
    std::string v = argv[++i];
    if (k == "--arch")
      arch = v;
    else if (k == "--tap")
      tap = v;
    else if (k == "--sizes")
      sizes = v;
    else if (k == "--reps")
      reps = std::max(1, std::atoi(v.c_str()));
    else if (k == "--device")
      dev = v;
    else if (k == "--threads")
      omp_set_num_threads(std::atoi(v.c_str()));
    else if (k == "--gatys")
      gatys = v != "0";
    else {
      std::fprintf(stderr, "bench_vgg: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  const Device d = resolve_device(dev);
  Network net(random_weights((arch == "vgg16" ? Arch::VGG16 : Arch::VGG19), 0), d);
  Runner runner(net, d, tap);
  if (serve_mode) return serve(runner);

  const char* env = std::getenv("PREIMAGE_CPU_CONV");
  const std::string env_before = env ? env : "";
  std::printf("# bench_vgg: %s to %s on %s, %d threads, median of %d after 1 warm-up\n",
              arch.c_str(), tap.c_str(), device_name(d), omp_get_max_threads(), reps);
  std::printf("%-12s | %-12s | %-8s | %9s | %8s | %6s\n", "op", "shape", "version", "ms", "GFLOP/s",
              "ratio");
  size_t p = 0;
  while (p < sizes.size()) {
    size_t q = sizes.find(',', p);
    if (q == std::string::npos) q = sizes.size();
    const int sz = std::atoi(sizes.substr(p, q - p).c_str());
    p = q + 1;
    const std::string shape = "1x3x" + std::to_string(sz) + "x" + std::to_string(sz);
    const double fl = conv_flops(net, Shape{1, 3, sz, sz}, tap);
    const double fl_gatys = conv_flops(net, Shape{1, 3, sz, sz}, "relu5_1");
    std::vector<std::pair<std::string, double>> ops = {{"fwd", fl}, {"fwdbwd", 2 * fl}};
    if (gatys) ops.push_back({"gatys", 2 * fl_gatys});
    for (const auto& [op, flops] : ops) {
      double direct_ms = 0;
      for (const char* version : {"direct", "winograd"}) {
        setenv("PREIMAGE_CPU_CONV", version, 1);
        std::vector<double> ms;
        for (int r = 0; r <= reps; ++r) {
          const double t = runner.run(op, sz);
          if (r > 0) ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        const double med = ms[ms.size() / 2];
        if (direct_ms == 0) direct_ms = med;
        const std::string name = op == "fwd" ? "forward" : op == "fwdbwd" ? "fwd+bwd" : "gatys";
        std::printf("%-12s | %-12s | %-8s | %9.1f | %8.1f | %6.2f\n", name.c_str(), shape.c_str(),
                    version, med, flops / med / 1e6, direct_ms / med);
        std::fflush(stdout);
      }
    }
  }
  if (env_before.empty())
    unsetenv("PREIMAGE_CPU_CONV");
  else
    setenv("PREIMAGE_CPU_CONV", env_before.c_str(), 1);
  std::printf("# peak RSS %.1f MiB\n", peak_rss_mib());
  return 0;
}
