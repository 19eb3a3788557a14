// bench_decoder: the up-convolutional decoder's ops (docs/decoders.md) at decoder shapes —
// transposed convolution forward / backward-data / backward-filter (CPU sgemm path; with the CUDA
// backend built and a GPU present, every kernel version of kernels/conv_transpose.cu as well),
// the Adam step, and one whole training step (features → image, pixel MSE, backward, Adam).
//
//   bench_decoder [--reps N] [--batch N]
//
// Prints op | shape | version | ms | GFLOP/s | ratio (ratio: time / the first row of the op).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "preimage/decoder.h"
#include "preimage/device.h"
#ifdef PREIMAGE_BENCH_KERNELS
#include "kernels/kernels.h"
#endif

using namespace preimage;

namespace {

int g_reps = 5;

double time_ms(
    const std::function<void()>& f, const std::function<void()>& sync = [] {}) {
  f();  // warm-up
  sync();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < g_reps; ++i) f();
  sync();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
         g_reps;
}

void row(const std::string& op, const std::string& shape, const std::string& version, double ms,
         double flops, double base) {
  std::printf("%-26s | %-28s | %-8s | %9.3f | %8.2f | %5.2f\n", op.c_str(), shape.c_str(),
              version.c_str(), ms, flops / (ms * 1e6), base > 0 ? ms / base : 1.0);
}

std::vector<float> filled(size_t n, float v) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = v * float((i * 2654435761u) % 1000) / 1000.f - 0.5f * v;
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--reps") g_reps = std::atoi(argv[i + 1]);
    if (a == "--batch") batch = std::atoi(argv[i + 1]);
  }
  std::printf("%-26s | %-28s | %-8s | %9s | %8s | %5s\n", "op", "shape", "version", "ms", "GFLOP/s",
              "ratio");
  // The decoders' up stages (relu2_2: 32→16 channels at 32×32; relu3_1: 64→32 at 16×16).
  const ConvTransposeShape shapes[] = {{batch, 32, 32, 32, 16, 4, 2, 1, 0},
                                       {batch, 64, 16, 16, 32, 4, 2, 1, 0},
                                       {batch, 128, 16, 16, 64, 4, 2, 1, 0}};
  for (const auto& s : shapes) {
    const std::string shape = "n" + std::to_string(s.n) + " " + std::to_string(s.c) + "x" +
                              std::to_string(s.h) + "x" + std::to_string(s.w) + " -> " +
                              std::to_string(s.o) + "x" + std::to_string(s.ho()) + "x" +
                              std::to_string(s.wo());
    const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.o * s.ho() * s.wo(),
                 nw = size_t(s.c) * s.o * s.k * s.k;
    const double flops = 2.0 * s.n * s.c * s.h * s.w * s.o * s.k * s.k;
    auto x = filled(nx, 1.f), w = filled(nw, 0.1f), b = filled(s.o, 0.1f), dy = filled(ny, 1.f);
    std::vector<float> y(ny), dx(nx), dw(nw), db(s.o);
    const double f =
        time_ms([&] { cpu::conv_transpose_fwd(x.data(), w.data(), b.data(), y.data(), s); });
    row("conv_transpose_fwd", shape, "cpu", f, flops, 0);
    const double d =
        time_ms([&] { cpu::conv_transpose_bwd_data(dy.data(), w.data(), dx.data(), s); });
    row("conv_transpose_bwd_data", shape, "cpu", d, flops, 0);
    const double g = time_ms([&] {
      cpu::conv_transpose_bwd_filter(x.data(), dy.data(), dw.data(), db.data(), s, false);
    });
    row("conv_transpose_bwd_filter", shape, "cpu", g, flops, 0);
#ifdef PREIMAGE_BENCH_KERNELS
    if (cuda_available()) {
      float *gx = kernels::device_alloc(nx), *gw = kernels::device_alloc(nw),
            *gb = kernels::device_alloc(s.o), *gy = kernels::device_alloc(ny),
            *gdx = kernels::device_alloc(nx), *gdw = kernels::device_alloc(nw);
      kernels::copy_h2d(gx, x.data(), nx);
      kernels::copy_h2d(gw, w.data(), nw);
      kernels::copy_h2d(gb, b.data(), s.o);
      kernels::copy_h2d(gy, dy.data(), ny);
      auto sync = [] { kernels::synchronize(); };
      row("conv_transpose_fwd", shape, "cuda v1",
          time_ms([&] { kernels::conv_transpose_fwd(gx, gw, gb, gy, s, 1); }, sync), flops, f);
      row("conv_transpose_bwd_data", shape, "cuda v1",
          time_ms([&] { kernels::conv_transpose_bwd_data(gy, gw, gdx, s, 1); }, sync), flops, d);
      for (int v = 1; v <= kernels::conv_transpose_versions(); ++v)
        row("conv_transpose_bwd_filter", shape, "cuda v" + std::to_string(v),
            time_ms([&] { kernels::conv_transpose_bwd_filter(gx, gy, gdw, gb, s, false, v); },
                    sync),
            flops, g);
      for (float* p : {gx, gw, gb, gy, gdx, gdw}) kernels::device_free(p);
    }
#endif
  }
  {
    const size_t n = 1 << 20;
    auto p = filled(n, 1.f), gr = filled(n, 1.f);
    std::vector<float> m(n, 0.f), v(n, 0.f);
    long t = 0;
    const double ms = time_ms([&] {
      cpu::adam_update(p.data(), gr.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.999f, 1e-8f, ++t,
                       1.f);
    });
    row("adam_update", "1M parameters", "cpu", ms, 10.0 * n, 0);
  }
  // One training step of the relu2_2 decoder (width 32) on 64×64 images.
  for (Device dev : {Device::CPU, Device::CUDA}) {
    if (dev == Device::CUDA && !cuda_available()) continue;
    DecoderConfig c;
    c.in_c = 128;
    c.in_h = c.in_w = 32;
    c.out_h = c.out_w = 64;
    c.width = 32;
    DecoderMeta meta;
    meta.layer = "relu2_2";
    Decoder dec(c, meta, dev, 0);
    Tensor f =
        Tensor::from_vector({batch, 128, 32, 32}, filled(size_t(batch) * 128 * 32 * 32, 1.f), dev);
    Tensor img =
        Tensor::from_vector({batch, 3, 64, 64}, filled(size_t(batch) * 3 * 64 * 64, 1.f), dev);
    const double ms = time_ms([&] { dec.train_step(f.view(), img.view()); });
    // forward + 2× backward ≈ 3× the forward FLOPs of the conv layers
    const double fwd = 2.0 * batch *
                       (128.0 * 32 * 9 * 32 * 32 + 32.0 * 16 * 16 * 32 * 32 +
                        16.0 * 16 * 9 * 64 * 64 + 16.0 * 3 * 9 * 64 * 64);
    row("decoder train_step", "relu2_2 w32, 64x64, batch " + std::to_string(batch),
        device_name(dev), ms, 3 * fwd, 0);
  }
  return 0;
}
