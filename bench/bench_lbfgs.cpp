// bench_lbfgs: the native L-BFGS solver's own cost per iteration (everything but the f/g
// evaluation) at image size n = 3×S×S, for history sizes m, on the CPU and (when present) on a
// CUDA device. The objective is a trivial diagonal quadratic evaluated with backend ops; its time
// is measured around every call and subtracted. Timing starts once the history is full (after
// m + 2 iterations) and covers --iters iterations. Also times each vector op alone (median of
// --reps). Prints op | shape | version | ms | GFLOP/s | ratio, ratio = ms / the cost of one
// 512×512 Gatys iteration (--gatys-ms, default 2000 ms; the goal is ratio ≤ 0.05).
//   bench_lbfgs [--size 512] [--history 10,100] [--iters 20] [--reps 5] [--device cpu|cuda|all]
//               [--gatys-ms 2000] [--threads N]
// FLOPs count 2 per multiply-add of the dots and the combination, 1 per element of the
// element-wise parts; the ops are memory-bound, so GB/s is printed in a comment line as well.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "preimage/device.h"
#include "preimage/lbfgs.h"

using namespace preimage;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> v;
  size_t p = 0;
  while (p < s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    v.push_back(std::atoi(s.substr(p, q - p).c_str()));
    p = q + 1;
  }
  return v;
}

void row(const char* op, const std::string& shape, const std::string& version, double ms,
         double flops, double gatys_ms) {
  std::printf("%-24s | %-16s | %-8s | %9.3f | %8.2f | %6.4f\n", op, shape.c_str(), version.c_str(),
              ms, flops / (ms * 1e6), ms / gatys_ms);
}

// Solver overhead per iteration with a full history of m pairs.
void bench_solver(Device dev, int size, int m, int iters, double gatys_ms) {
  Backend& be = backend(dev);
  const Shape sh{1, 3, size, size};
  const size_t n = sh.numel();
  std::vector<float> a(n);
  for (size_t i = 0; i < n; ++i) a[i] = 1.f + 999.f * float((i * 2654435761u) % 4096) / 4095.f;
  Tensor ta = Tensor::from_vector(sh, a, dev), ones = Tensor::full(sh, 0.5f, dev), tmp(sh, dev);
  double obj_ms = 0;
  int evals = 0;
  const Objective_fn fn = [&](const View& x, const View& g) {
    const auto t0 = Clock::now();
    be.copy(g.data, x.data, n);
    be.axpby(-1.f, ones.data(), 1.f, g.data, n);
    be.mul(ta.data(), g.data, tmp.data(), n);
    const double f = 0.5 * be.dot(g.data, tmp.data(), n);
    be.copy(g.data, tmp.data(), n);
    be.synchronize();
    obj_ms += ms_since(t0);
    ++evals;
    return f;
  };
  Tensor x = Tensor::full(sh, 0.f, dev);
  LbfgsOptions o;
  o.history = m;
  o.gtol = o.ftol = 0;
  const int warm = m + 2;
  o.max_iterations = warm + iters;
  o.max_evaluations = 20 * o.max_iterations;
  Lbfgs solver(dev, n, o);
  Clock::time_point t_start;
  double obj_start = 0;
  int evals_start = 0;
  double total_ms = 0, total_obj = 0;
  int timed = 0, timed_evals = 0;
  solver.minimize(x, fn, [&](const IterationInfo& info) {
    if (info.iteration == warm) {
      be.synchronize();
      t_start = Clock::now();
      obj_start = obj_ms;
      evals_start = evals;
    } else if (info.iteration > warm) {
      be.synchronize();
      total_ms = ms_since(t_start);
      total_obj = obj_ms - obj_start;
      timed = info.iteration - warm;
      timed_evals = evals - evals_start;
    }
    return true;
  });
  if (timed == 0) {
    std::printf("# m=%d: the solver stopped before the history was full\n", m);
    return;
  }
  const double per_iter = (total_ms - total_obj) / timed;
  const double ev = double(timed_evals) / timed;
  // dots: 3 queries × 2m rows; combine: 2m + 1 rows; update ≈ 8n; step + deriv ≈ 5n per eval.
  const double flops = (12.0 * m + 2.0 * (2 * m + 1) + 8.0 + 5.0 * ev) * double(n);
  const double bytes = 4.0 * n * (2.0 * m + 3 + 2.0 * m + 1 + 7 + 5 * ev);
  char op[64];
  std::snprintf(op, sizeof op, "lbfgs iteration m=%d", m);
  row(op, sh.str(), device_name(dev), per_iter, flops, gatys_ms);
  std::printf(
      "#   %.2f evaluations/iteration, objective %.3f ms/iteration (excluded), ≈%.1f GB/s\n", ev,
      total_obj / timed, bytes / (per_iter * 1e6));
}

// Each vector op alone with m pairs (2m rows in use, rows = m + 1 with one spare).
void bench_ops(Device dev, int size, int m, int reps, double gatys_ms) {
  Backend& be = backend(dev);
  const size_t n = size_t(3) * size * size, ld = (n + 15) / 16 * 16;
  const int rows = m + 1;
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = float((i * 7919) % 1000) / 1000.f;
  auto make = [&](size_t count) {
    Tensor t(Shape{1, 1, 1, int(count)}, dev);
    for (size_t off = 0; off < count; off += n)
      be.copy_from_host(t.data() + off, h.data(), std::min(n, count - off));
    return t;
  };
  Tensor S = make(rows * ld), Y = make(rows * ld), x = make(n), g = make(n), x2 = make(n),
         g2 = make(n), d = make(n), s = make(n), y = make(n), pg = make(n);
  std::vector<double> coef(2 * rows + 1, 0.01), out(6 * rows);
  coef[m] = coef[rows + m] = 0;  // the spare row
  auto time_op = [&](auto&& op) {
    std::vector<double> t;
    for (int r = 0; r <= reps; ++r) {
      be.synchronize();
      const auto t0 = Clock::now();
      op();
      be.synchronize();
      if (r > 0) t.push_back(ms_since(t0));
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const std::string shape = Shape{1, 3, size, size}.str();
  char op[64];
  std::snprintf(op, sizeof op, "  dots 3q x %d rows", 2 * m);
  row(op, shape, device_name(dev), time_op([&] {
        be.lbfgs_dots(S.data(), Y.data(), ld, rows, m, s.data(), y.data(), pg.data(), n,
                      out.data());
      }),
      12.0 * m * n, gatys_ms);
  std::snprintf(op, sizeof op, "  combine %d rows", 2 * m + 1);
  row(op, shape, device_name(dev), time_op([&] {
        be.lbfgs_combine(S.data(), Y.data(), ld, rows, coef.data(), x.data(), g.data(), 0.f, 1.f,
                         true, d.data(), n, out.data());
      }),
      2.0 * (2 * m + 1) * n, gatys_ms);
  row("  update", shape, device_name(dev), time_op([&] {
        be.lbfgs_update(x.data(), g.data(), x2.data(), g2.data(), 0.f, 1.f, true, s.data(),
                        y.data(), pg.data(), n, out.data());
      }),
      8.0 * n, gatys_ms);
  row("  step", shape, device_name(dev),
      time_op([&] { be.lbfgs_step(x.data(), d.data(), 0.5, 0.f, 1.f, true, x2.data(), n); }),
      2.0 * n, gatys_ms);
  row("  dir_deriv", shape, device_name(dev), time_op([&] {
        be.lbfgs_dir_deriv(x.data(), d.data(), g.data(), 0.5, 0.f, 1.f, true, n, out.data());
      }),
      3.0 * n, gatys_ms);
}

}  // namespace

int main(int argc, char** argv) {
  int size = 512, iters = 20, reps = 5;
  double gatys_ms = 2000;
  std::string histories = "10,100", dev = "";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--size")
      size = std::atoi(v.c_str());
    else if (k == "--history")
      histories = v;
    else if (k == "--iters")
      iters = std::atoi(v.c_str());
    else if (k == "--reps")
      reps = std::atoi(v.c_str());
    else if (k == "--device")
      dev = v;
    else if (k == "--gatys-ms")
      gatys_ms = std::atof(v.c_str());
    else if (k == "--threads")
      omp_set_num_threads(std::atoi(v.c_str()));
    else {
      std::fprintf(stderr, "bench_lbfgs: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  std::vector<Device> devices;
  if (dev.empty() || dev == "all") {
    devices.push_back(Device::CPU);
    if (cuda_available()) devices.push_back(Device::CUDA);
  } else {
    devices.push_back(resolve_device(dev));
  }
  std::printf(
      "# bench_lbfgs: solver overhead per iteration (objective excluded), %d timed "
      "iterations after the history is full; ops: median of %d; %d threads; ratio = ms "
      "/ %.0f ms (one 512x512 Gatys iteration), goal <= 0.05\n",
      iters, reps, omp_get_max_threads(), gatys_ms);
  std::printf("%-24s | %-16s | %-8s | %9s | %8s | %6s\n", "op", "shape", "version", "ms", "GFLOP/s",
              "ratio");
  for (Device d : devices)
    for (int m : parse_list(histories)) {
      bench_solver(d, size, m, iters, gatys_ms);
      bench_ops(d, size, m, reps, gatys_ms);
    }
  return 0;
}
