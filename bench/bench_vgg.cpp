// bench_vgg: VGG forward and forward+input-backward to a tap on the chosen device, median of N
// after warm-up. Prints op | shape | version | ms | GFLOP/s | ratio (ratio = forward-only ms /
// this row's ms, so fwd+bwd shows its cost relative to a forward).
//   bench_vgg [--arch vgg19] [--tap relu5_1] [--sizes 256,512] [--reps 5] [--device cpu|cuda]
//             [--threads N]
// FLOPs count 2 × conv multiply-adds (direct-convolution equivalent); backward-data of conv1_1
// is counted too.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "preimage/device.h"
#include "preimage/network.h"
#include "preimage/weights.h"

using namespace preimage;

static double conv_flops(const Network& net, const Shape& img, const std::string& tap) {
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

int main(int argc, char** argv) {
  std::string arch = "vgg19", tap = "relu5_1", sizes = "256,512", dev = "cpu";
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--arch")
      arch = v;
    else if (k == "--tap")
      tap = v;
    else if (k == "--sizes")
      sizes = v;
    else if (k == "--reps")
      reps = std::atoi(v.c_str());
    else if (k == "--device")
      dev = v;
    else if (k == "--threads")
      omp_set_num_threads(std::atoi(v.c_str()));
    else {
      std::fprintf(stderr, "bench_vgg: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  const Device d = resolve_device(dev);
  Network net(random_weights((arch == "vgg16" ? Arch::VGG16 : Arch::VGG19), 0), d);
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
    Tensor img = Tensor::full({1, 3, sz, sz}, 0.5f, d);
    const double fl = conv_flops(net, img.shape(), tap);
    Tensor g;
    auto time_it = [&](bool bwd) {
      std::vector<double> ms;
      for (int r = 0; r <= reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        net.forward(img.view(), {tap});
        if (bwd) net.backward({{tap, net.tap(tap).view()}}, g);
        auto t1 = std::chrono::steady_clock::now();
        if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      return ms[ms.size() / 2];
    };
    const double f = time_it(false), fb = time_it(true);
    const std::string shape = "1x3x" + std::to_string(sz) + "x" + std::to_string(sz);
    std::printf("%-12s | %-12s | %-8s | %9.1f | %8.1f | %6.2f\n", "forward", shape.c_str(),
                "direct", f, fl / f / 1e6, 1.0);
    std::printf("%-12s | %-12s | %-8s | %9.1f | %8.1f | %6.2f\n", "fwd+bwd", shape.c_str(),
                "direct", fb, 2 * fl / fb / 1e6, f / fb);
  }
  return 0;
}
