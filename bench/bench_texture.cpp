// bench_texture: texture statistics at VGG-like tap sizes — the Gatys Gram term (forward + loss
// + gradient) and the B-CNN texture term (pooling + signed sqrt + normalization + loss +
// backward) — fused paths against unfused GEMM paths.
//   CPU rows:  cpu-fused    the engine's CPU ops (ssyrk upper triangle + one fused D/loss pass +
//                           sgemm; B-CNN: ssyrk + fused element-wise passes + one sgemm)
//              cpu-unfused  full sgemm for G/B, every element-wise step a separate pass over
//                           memory, and (B-CNN) the backward as two sgemms
//   GPU rows:  cuda-v1/v2   kernels/gram.cu, kernels/bilinear.cu versions (CUDA builds)
//              cublas       cuBLAS sgemm/geam/dot for the same math (the B-CNN element-wise steps
//                           through this project's kernels)
//              On a machine without a GPU the GPU rows print "no GPU"; without the CUDA backend
//              the kernel rows print "not built".
// Prints op | shape | version | ms | GFLOP/s | GB/s | ratio, median of --reps after a warm-up
// (the CPU fused and unfused bodies are timed alternately: a shared machine's noise hits both).
// FLOPs: 4·C²·M (the C×C×M product of the forward counted as a full GEMM, plus the gradient
// GEMM), the same for every version so that GFLOP/s compare directly (the upper-triangle
// versions do 3/4 of them). GB/s: compulsory traffic 16·C·M + 12·C² bytes (read F twice, read
// and write dF, G/Ĝ/D once). ratio: the device's unfused row's time / this row's time.
//   bench_texture [--reps 5] [--threads N] [--device cpu|cuda|all] [--shapes 64x65536,...]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu/cpu_ops.h"

#if defined(PREIMAGE_BENCH_KERNELS)
#include "kernels/kernels.h"
#endif
#if defined(PREIMAGE_BENCH_CUBLAS)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

namespace {

struct Shape2 {
  int c, m;
};

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::vector<float> v(n);
  unsigned s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float((s >> 8) & 0xFFFF) / 65536.f;  // [0, 1): ReLU-like activations
  }
  return v;
}

double median_ms(int reps, const std::function<void()>& body, const std::function<void()>& sync) {
  body();  // warm-up
  sync();
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    sync();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Medians of two bodies timed alternately (A, B, A, B, ...): a core lost to another process
// then hurts both alike, so their ratio stays meaningful on a shared machine.
std::pair<double, double> median_pair_ms(int reps, const std::function<void()>& a,
                                         const std::function<void()>& b) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r)
    for (int which = 0; which < 2; ++which) {
      const auto t0 = std::chrono::steady_clock::now();
      (which == 0 ? a : b)();
      const auto t1 = std::chrono::steady_clock::now();
      (which == 0 ? ta : tb).push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  return {ta[ta.size() / 2], tb[tb.size() / 2]};
}

void row(const char* op, const Shape2& s, const char* version, double ms, double ref_ms) {
  const double flops = 4.0 * double(s.c) * s.c * s.m;
  const double bytes = 16.0 * s.c * s.m + 12.0 * double(s.c) * s.c;
  const std::string shape = "C=" + std::to_string(s.c) + " M=" + std::to_string(s.m);
  std::printf("%-8s | %-16s | %-11s | %9.3f | %8.1f | %7.1f | %6.2f\n", op, shape.c_str(), version,
              ms, flops / ms / 1e6, bytes / ms / 1e6, ref_ms / ms);
}

void note_row(const char* op, const Shape2& s, const char* version, const char* why) {
  const std::string shape = "C=" + std::to_string(s.c) + " M=" + std::to_string(s.m);
  std::printf("%-8s | %-16s | %-11s | %9s | %8s | %7s | %6s\n", op, shape.c_str(), version, why,
              "-", "-", "-");
}

// ---- CPU ---------------------------------------------------------------------------------
void bench_cpu(const Shape2& s, int reps) {
  namespace cpu = preimage::cpu;
  const int c = s.c, m = s.m;
  const size_t cc = size_t(c) * c, cm = size_t(c) * m;
  const auto f = random_floats(cm, 1), t = random_floats(cm, 2);
  std::vector<float> g(cc), gt(cc), d(cc), df(cm, 0.f), y(cc), db(cc), zt(cc);
  cpu::gram_fwd(t.data(), gt.data(), c, m);
  const float scale = float(1.0 / (double(c) * c * double(m) * m));
  double sink = 0;

  // Gram, fused: ssyrk (upper, mirrored) + fused D / Σ D² + sgemm.
  auto fused_body = [&] {
    cpu::gram_fwd(f.data(), g.data(), c, m);
    sink += cpu::gram_loss_grad(f.data(), g.data(), gt.data(), df.data(), c, m, scale);
  };
  // Gram, unfused: full sgemm, D pass, loss pass, sgemm.
  auto unfused_body = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, c, m, 1.f, f.data(), m, f.data(), m,
                0.f, g.data(), c);
    for (size_t i = 0; i < cc; ++i) d[i] = g[i] - gt[i];
    double loss = 0;
    for (size_t i = 0; i < cc; ++i) loss += double(d[i]) * d[i];
    sink += loss;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, m, c, scale, d.data(), c, f.data(), m,
                1.f, df.data(), m);
  };
  const auto [fused, unfused] = median_pair_ms(reps, fused_body, unfused_body);
  row("gram", s, "cpu-fused", fused, unfused);
  row("gram", s, "cpu-unfused", unfused, unfused);

  // B-CNN texture term, same layer.
  const float eps = 1e-8f;
  {
    cpu::bilinear_pool_fwd(t.data(), t.data(), db.data(), c, c, m);
    const double n = std::sqrt(cpu::bilinear_ssqrt_fwd(db.data(), zt.data(), cc, eps));
    for (auto& v : zt) v = float(v / n);
  }
  auto bfused_body = [&] {
    cpu::bilinear_pool_fwd(f.data(), f.data(), db.data(), c, c, m);
    const double n = std::sqrt(cpu::bilinear_ssqrt_fwd(db.data(), y.data(), cc, eps));
    const double sdot = cpu::dot(y.data(), zt.data(), cc);
    sink += cpu::bilinear_ssqrt_bwd(y.data(), zt.data(), nullptr, db.data(), cc, n,
                                    2.0 * (1.0 - sdot / n), 1.f);
    cpu::bilinear_pool_bwd(db.data(), f.data(), f.data(), df.data(), df.data(), c, c, m);
  };
  std::vector<float> z(cc), gz(cc);
  auto bunfused_body = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, c, m, 1.f / float(m), f.data(), m,
                f.data(), m, 0.f, db.data(), c);
    for (size_t i = 0; i < cc; ++i) {
      const float r = std::sqrt(std::fabs(db[i]) + eps);
      y[i] = db[i] < 0 ? -r : r;
    }
    double n2 = 0;
    for (size_t i = 0; i < cc; ++i) n2 += double(y[i]) * y[i];
    const float inv = float(1.0 / std::sqrt(n2));
    for (size_t i = 0; i < cc; ++i) z[i] = y[i] * inv;
    double loss = 0;
    for (size_t i = 0; i < cc; ++i) loss += double(z[i] - zt[i]) * (z[i] - zt[i]);
    sink += loss;
    for (size_t i = 0; i < cc; ++i) gz[i] = 2.f * (z[i] - zt[i]);
    double zg = 0;
    for (size_t i = 0; i < cc; ++i) zg += double(z[i]) * gz[i];
    for (size_t i = 0; i < cc; ++i) gz[i] = (gz[i] - z[i] * float(zg)) * inv;
    for (size_t i = 0; i < cc; ++i) db[i] = gz[i] / (2.f * std::fabs(y[i]));
    const float sm = 1.f / float(m);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c, m, c, sm, db.data(), c, f.data(), m,
                1.f, df.data(), m);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, m, c, sm, db.data(), c, f.data(), m,
                1.f, df.data(), m);
  };
  const auto [bfused, bunfused] = median_pair_ms(reps, bfused_body, bunfused_body);
  row("bilinear", s, "cpu-fused", bfused, bunfused);
  row("bilinear", s, "cpu-unfused", bunfused, bunfused);
  if (sink == 12345.678) std::printf("#\n");  // keeps the work observable
}

// ---- GPU ---------------------------------------------------------------------------------
#if defined(PREIMAGE_BENCH_CUBLAS)
bool gpu_present() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) (void)cudaGetLastError();
  return err == cudaSuccess && n > 0;
}

void sync_gpu() {
  cudaDeviceSynchronize();
}

struct DevBuf {
  float* p = nullptr;
  explicit DevBuf(const std::vector<float>& h) {
    cudaMalloc(&p, h.size() * sizeof(float));
    cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
  }
  explicit DevBuf(size_t n) { cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

void bench_gpu(const Shape2& s, int reps) {
  const int c = s.c, m = s.m;
  const size_t cc = size_t(c) * c, cm = size_t(c) * m;
  DevBuf f(random_floats(cm, 1)), t(random_floats(cm, 2)), g(cc), gt(cc), d(cc), df(cm), y(cc),
      zt(cc), db(cc);
  cudaMemset(df.p, 0, cm * sizeof(float));
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    note_row("gram", s, "cublas", "no cuBLAS");
    return;
  }
  // Row-major (C, M) F is column-major (M, C): G = F Fᵀ is Fᵀ_cm · F_cm in column-major terms.
  const float one = 1.f, zero = 0.f, minus = -1.f;
  const float scale = float(1.0 / (double(c) * c * double(m) * m));
  cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, c, c, m, &one, t.p, m, t.p, m, &zero, gt.p, c);
  double sink = 0;
  auto cublas_gram = [&] {
    cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, c, c, m, &one, f.p, m, f.p, m, &zero, g.p, c);
    cublasSgeam(h, CUBLAS_OP_N, CUBLAS_OP_N, c, c, &one, g.p, c, &minus, gt.p, c, d.p, c);
    float loss = 0;
    cublasSdot(h, int(cc), d.p, 1, d.p, 1, &loss);
    sink += loss;
    // dF (row-major C×M) += s·D·F  ⇔  column-major dFᵀ (M×C) += s·Fᵀ·Dᵀ (D symmetric)
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, c, c, &scale, f.p, m, d.p, c, &one, df.p, m);
  };
  const double ref = median_ms(reps, cublas_gram, sync_gpu);
#if defined(PREIMAGE_BENCH_KERNELS)
  namespace k = preimage::kernels;
  k::Workspace ws;  // the reductions' device scratch
  for (int v = 1; v <= k::gram_versions(); ++v) {
    const double ms = median_ms(
        reps,
        [&] {
          k::gram_fwd(f.p, g.p, c, m, v);
          sink += k::gram_loss_grad(ws, f.p, g.p, gt.p, df.p, c, m, scale, v);
        },
        sync_gpu);
    row("gram", s, v == 1 ? "cuda-v1" : "cuda-v2", ms, ref);
  }
#else
  note_row("gram", s, "cuda-v1/v2", "not built");
#endif
  row("gram", s, "cublas", ref, ref);

#if defined(PREIMAGE_BENCH_KERNELS)
  const float eps = 1e-8f, inv_m = 1.f / float(m);
  k::bilinear_pool_fwd(t.p, t.p, db.p, c, c, m);
  const double tn = std::sqrt(k::bilinear_ssqrt_fwd(ws, db.p, zt.p, cc, eps));
  k::axpby(float(1.0 / tn), zt.p, 0.f, zt.p, cc);
  auto tail = [&](float* pooled) {
    const double n = std::sqrt(k::bilinear_ssqrt_fwd(ws, pooled, y.p, cc, eps));
    const double sd = k::dot(ws, y.p, zt.p, cc);
    sink += k::bilinear_ssqrt_bwd(ws, y.p, zt.p, nullptr, db.p, cc, n, 2.0 * (1.0 - sd / n), 1.f);
  };
  const double bref = median_ms(
      reps,
      [&] {
        cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, c, c, m, &inv_m, f.p, m, f.p, m, &zero, g.p, c);
        tail(g.p);
        // dF += (1/M)(dB + dBᵀ)F as two GEMMs
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, c, c, &inv_m, f.p, m, db.p, c, &one, df.p, m);
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, m, c, c, &inv_m, f.p, m, db.p, c, &one, df.p, m);
      },
      sync_gpu);
  for (int v = 1; v <= k::bilinear_versions(); ++v) {
    const double ms = median_ms(
        reps,
        [&] {
          k::bilinear_pool_fwd(f.p, f.p, g.p, c, c, m, v);
          tail(g.p);
          k::bilinear_pool_bwd(db.p, f.p, f.p, df.p, df.p, c, c, m, v);
        },
        sync_gpu);
    row("bilinear", s, v == 1 ? "cuda-v1" : "cuda-v2", ms, bref);
  }
  row("bilinear", s, "cublas", bref, bref);
#else
  note_row("bilinear", s, "cuda+cublas", "not built");
#endif
  cublasDestroy(h);
  if (sink == 12345.678) std::printf("#\n");
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int reps = 5;
  std::string device = "all", shapes = "64x65536,128x16384,256x4096,512x1024";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], val = argv[i + 1];
    if (key == "--reps")
      reps = std::max(1, std::atoi(val.c_str()));
    else if (key == "--threads")
      omp_set_num_threads(std::atoi(val.c_str()));
    else if (key == "--device")
      device = val;
    else if (key == "--shapes")
      shapes = val;
    else {
      std::fprintf(stderr, "bench_texture: unknown flag %s\n", key.c_str());
      return 2;
    }
  }
  if ((argc - 1) % 2 != 0) {
    std::fprintf(stderr, "bench_texture: flag %s needs a value\n", argv[argc - 1]);
    return 2;
  }
  if (device != "cpu" && device != "cuda" && device != "all") {
    std::fprintf(stderr, "bench_texture: --device must be cpu, cuda or all\n");
    return 2;
  }
  std::vector<Shape2> list;
  size_t p = 0;
  while (p < shapes.size()) {
    size_t q = shapes.find(',', p);
    if (q == std::string::npos) q = shapes.size();
    const std::string item = shapes.substr(p, q - p);
    const size_t x = item.find('x');
    if (x == std::string::npos) {
      std::fprintf(stderr, "bench_texture: shape '%s' is not CxM\n", item.c_str());
      return 2;
    }
    list.push_back({std::atoi(item.substr(0, x).c_str()), std::atoi(item.substr(x + 1).c_str())});
    if (list.back().c <= 0 || list.back().m <= 0) {
      std::fprintf(stderr, "bench_texture: shape '%s' must be positive\n", item.c_str());
      return 2;
    }
    p = q + 1;
  }
  preimage::cpu::init_threads();
  std::printf("# bench_texture: %d OpenMP threads, median of %d after 1 warm-up\n",
              omp_get_max_threads(), reps);
  std::printf("%-8s | %-16s | %-11s | %9s | %8s | %7s | %6s\n", "op", "shape", "version", "ms",
              "GFLOP/s", "GB/s", "ratio");
  for (const Shape2& s : list) {
    if (device != "cuda") bench_cpu(s, reps);
    if (device == "cpu") continue;
#if defined(PREIMAGE_BENCH_CUBLAS)
    if (gpu_present()) {
      bench_gpu(s, reps);
      continue;
    }
#endif
    note_row("gram", s, "cuda/cublas", "no GPU");
    note_row("bilinear", s, "cuda/cublas", "no GPU");
  }
  return 0;
}
