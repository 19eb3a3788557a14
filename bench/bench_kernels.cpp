// bench_kernels: every version of the conv / pool / linear launchers (kernels/kernels.h) against
// the vendor libraries, at VGG-19 layer sizes (conv1_2 … conv5_2 of a --size² image, N = 1; max-
// and average-pooling at pool1; fc6 25088→4096 at N = 1 and 8, fc7 4096→4096 with --quick).
//   GPU rows:  v1..vn   the launcher's version k (conv2d_*_versions(), pool_versions());
//              cuda     kernels/linear.cu (no versions: it picks its tile itself)
//              cudnn    cuDNN: the fastest algorithm cudnnFind*Algorithm reports, restricted to
//                       FP32 FMA math (CUDNN_FMA_MATH: no TF32 tensor cores, the kernels'
//                       arithmetic), its workspace allocated once; pooling via cudnnPooling*
//              cublas   cuBLAS sgemm (FP32 default math) for the linear ops, no bias
//              Each GPU time: --warmup runs, then per rep the L2 flushed (cudaMemsetAsync of
//              2 × cudaDeviceProp::l2CacheSize bytes) outside a pair of CUDA events around one
//              call; median of --reps. check = max|out − ref| / max|ref| of the row's last output
//              against cuDNN's / cuBLAS's (outputs NaN-filled first); > 1e-3 warns on stderr.
//   CPU rows:  cpu      preimage::cpu ops (engine/cpu/), wall clock, median of --reps after one
//              warm-up; run when there is no GPU (after "no GPU: <reason>") or with --device cpu.
// Prints op | shape | version | ms | TFLOP/s | % cuDNN | check, where % cuDNN = reference ms /
// row ms × 100 (the reference is cuDNN for conv and pool, cuBLAS for linear), or with --json one
// JSON object {"bench", "device", "note", ..., "rows": [...]} instead of the table.
// FLOPs (the same for every version, so TFLOP/s compare directly): conv 2·N·O·C·KH·KW·HO·WO for
// forward, backward-data and backward-filter alike (direct-convolution equivalent; the timed calls
// have no bias, ReLU or mask); pool N·C·HO·WO·k² (one compare/add per window element); linear
// 2·N·IN·OUT.
//   bench_kernels [--quick] [--json] [--reps 5] [--warmup 2] [--size 512] [--threads N]
//                 [--device auto|cpu|cuda]
// --quick: --size 64 and fc7 instead of fc6 (a CPU run well under a minute on 2 cores).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "kernels/op_shapes.h"

#if defined(PREIMAGE_BENCH_KERNELS)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/kernels.h"
#if defined(PREIMAGE_BENCH_CUDNN)
#include <cudnn.h>
#endif
#endif

namespace {

using preimage::ConvShape;
using preimage::PoolShape;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- cases ---------------------------------------------------------------------------------
struct ConvCase {
  std::string layer;
  ConvShape s;
};
struct PoolCase {
  std::string layer;
  PoolShape s;
};
struct LinearCase {
  std::string layer;
  int n, in, out;
};
struct Cases {
  std::vector<ConvCase> conv;
  std::vector<PoolCase> pool;
  std::vector<LinearCase> linear;
};

Cases make_cases(int size, bool quick) {
  Cases cases;
  // VGG-19's second conv of each block: C → C, 3×3, stride 1, pad 1, at size / 2^(block − 1).
  const struct {
    const char* name;
    int c, div;
  } layers[] = {{"conv1_2", 64, 1},
                {"conv2_2", 128, 2},
                {"conv3_2", 256, 4},
                {"conv4_2", 512, 8},
                {"conv5_2", 512, 16}};
  for (const auto& l : layers) {
    const int hw = std::max(1, size / l.div);
    cases.conv.push_back({l.name, ConvShape{1, l.c, hw, hw, l.c, 3, 3, 1, 1}});
  }
  if (size >= 2) cases.pool.push_back({"pool1", PoolShape{1, 64, size, size, 2, 2, 0}});
  for (int n : {1, 8}) {
    if (quick)
      cases.linear.push_back({"fc7", n, 4096, 4096});
    else
      cases.linear.push_back({"fc6", n, 25088, 4096});
  }
  return cases;
}

double conv_flops(const ConvShape& s) {
  return 2.0 * s.n * s.o * double(s.c) * s.kh * s.kw * s.ho() * s.wo();
}
double pool_flops(const PoolShape& s) {
  return double(s.n) * s.c * s.ho() * s.wo() * s.k * s.k;
}
double linear_flops(const LinearCase& l) {
  return 2.0 * l.n * double(l.in) * l.out;
}

std::string conv_shape_str(const ConvCase& c) {
  const ConvShape& s = c.s;
  return c.layer + " n" + std::to_string(s.n) + " c" + std::to_string(s.c) + " o" +
         std::to_string(s.o) + " " + std::to_string(s.h) + "x" + std::to_string(s.w);
}
std::string pool_shape_str(const PoolCase& p) {
  const PoolShape& s = p.s;
  return p.layer + " n" + std::to_string(s.n) + " c" + std::to_string(s.c) + " " +
         std::to_string(s.h) + "x" + std::to_string(s.w) + " k" + std::to_string(s.k) + "s" +
         std::to_string(s.stride);
}
std::string linear_shape_str(const LinearCase& l) {
  return l.layer + " n" + std::to_string(l.n) + " " + std::to_string(l.in) + "->" +
         std::to_string(l.out);
}

// ---- data ----------------------------------------------------------------------------------
// Uniform in [lo, lo + 1), 24-bit resolution.
std::vector<float> random_floats(size_t n, unsigned seed, float lo) {
  std::vector<float> v(n);
  uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + float(s >> 8) * 0x1p-24f;
  }
  return v;
}

// Pairwise distinct values in [0, 1) (an affine bijection of the indices): max-pooling then has
// no ties, so every version and cuDNN route each gradient to the same element.
std::vector<float> distinct_floats(size_t n) {
  std::vector<float> v(n);
  if (n == 0) return v;
  uint64_t a = 2654435761u % n;
  auto gcd = [](uint64_t p, uint64_t q) {
    while (q) p = std::exchange(q, p % q);
    return p;
  };
  if (a == 0) a = 1;
  while (gcd(a, n) != 1) ++a;
  const double scale = 1.0 / double(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(double((a * i + 12345) % n) * scale);
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? kNaN : v[v.size() / 2];
}

// ---- report --------------------------------------------------------------------------------
struct Row {
  std::string op, shape, version;
  double ms = kNaN, flops = 0, ref_ms = kNaN, check = kNaN;
  std::string ref;    // "cudnn", "cublas" or "" (CPU rows)
  std::string error;  // non-empty: the row failed or was not built
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += char(ch);
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += char(ch);
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

class Report {
 public:
  explicit Report(bool json) : json_(json) {}
  bool json() const { return json_; }

  // A line of context: table mode prints it ("# ..."), JSON mode keeps it for "notes".
  void note(const std::string& line) {
    if (json_)
      notes_.push_back(line);
    else
      std::printf("# %s\n", line.c_str());
  }

  void table_header() const {
    if (json_) return;
    std::printf("%-15s | %-28s | %-7s | %10s | %8s | %8s | %8s\n", "op", "shape", "version", "ms",
                "TFLOP/s", "% cuDNN", "check");
  }

  void add(const Row& r) {
    rows_.push_back(r);
    if (!r.error.empty())
      std::fprintf(stderr, "bench_kernels: %s %s %s: %s\n", r.op.c_str(), r.shape.c_str(),
                   r.version.c_str(), r.error.c_str());
    if (std::isfinite(r.check) && r.check > 1e-3)
      std::fprintf(stderr, "bench_kernels: warning: %s %s %s differs from %s by %.2e (relative)\n",
                   r.op.c_str(), r.shape.c_str(), r.version.c_str(), r.ref.c_str(), r.check);
    if (json_) return;
    char ms[32] = "-", tf[32] = "-", pct[32] = "-", chk[32] = "-";
    if (!r.error.empty())
      std::snprintf(ms, sizeof ms, "%s",
                    r.error.rfind("not built", 0) == 0 ? "not built" : "error");
    else if (std::isfinite(r.ms)) {
      std::snprintf(ms, sizeof ms, "%.4f", r.ms);
      std::snprintf(tf, sizeof tf, "%.3g", r.flops / r.ms / 1e9);
      if (std::isfinite(r.ref_ms)) std::snprintf(pct, sizeof pct, "%.1f", 100.0 * r.ref_ms / r.ms);
    }
    if (!std::isnan(r.check)) std::snprintf(chk, sizeof chk, "%.1e", r.check);
    std::printf("%-15s | %-28s | %-7s | %10s | %8s | %8s | %8s\n", r.op.c_str(), r.shape.c_str(),
                r.version.c_str(), ms, tf, pct, chk);
    std::fflush(stdout);
  }

  void print_json(const std::string& device, const std::string& no_gpu, int reps, int warmup,
                  int size, bool quick) const {
    std::printf("{\n  \"bench\": \"bench_kernels\",\n  \"device\": %s,\n",
                json_string(device).c_str());
    std::printf("  \"no_gpu\": %s,\n", no_gpu.empty() ? "null" : json_string(no_gpu).c_str());
    std::printf("  \"reps\": %d,\n  \"warmup\": %d,\n  \"size\": %d,\n  \"quick\": %s,\n", reps,
                warmup, size, quick ? "true" : "false");
    std::printf("  \"notes\": [");
    for (size_t i = 0; i < notes_.size(); ++i)
      std::printf("%s%s", i ? ", " : "", json_string(notes_[i]).c_str());
    std::printf("],\n  \"rows\": [\n");
    for (size_t i = 0; i < rows_.size(); ++i) {
      const Row& r = rows_[i];
      const bool ok = r.error.empty() && std::isfinite(r.ms);
      std::printf(
          "    {\"op\": %s, \"shape\": %s, \"version\": %s, \"ms\": %s, \"flops\": %s, "
          "\"tflops\": %s, \"ref\": %s, \"pct_of_ref\": %s, \"check\": %s, \"error\": %s}%s\n",
          json_string(r.op).c_str(), json_string(r.shape).c_str(), json_string(r.version).c_str(),
          json_number(ok ? r.ms : kNaN).c_str(), json_number(r.flops).c_str(),
          json_number(ok ? r.flops / r.ms / 1e9 : kNaN).c_str(),
          r.ref.empty() ? "null" : json_string(r.ref).c_str(),
          json_number(ok ? 100.0 * r.ref_ms / r.ms : kNaN).c_str(), json_number(r.check).c_str(),
          r.error.empty() ? "null" : json_string(r.error).c_str(), i + 1 < rows_.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
  }

 private:
  bool json_;
  std::vector<std::string> notes_;
  std::vector<Row> rows_;
};

// ---- CPU -----------------------------------------------------------------------------------
double cpu_median_ms(int reps, const std::function<void()>& body) {
  body();  // warm-up
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return median(std::move(ms));
}

void cpu_row(Report& rep, const char* op, const std::string& shape, double flops, int reps,
             const std::function<void()>& body) {
  Row r;
  r.op = op;
  r.shape = shape;
  r.version = "cpu";
  r.flops = flops;
  try {
    r.ms = cpu_median_ms(reps, body);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  rep.add(r);
}

void bench_cpu(const Cases& cases, int reps, Report& rep) {
  namespace cpu = preimage::cpu;
  for (const ConvCase& cc : cases.conv) {
    const ConvShape& s = cc.s;
    const size_t nx = size_t(s.n) * s.c * s.h * s.w, nw = size_t(s.o) * s.c * s.kh * s.kw;
    const size_t ny = size_t(s.n) * s.o * s.ho() * s.wo();
    const auto x = random_floats(nx, 1, 0.f), w = random_floats(nw, 2, -0.5f),
               dy = random_floats(ny, 3, -0.5f);
    std::vector<float> y(ny), dx(nx), dw(nw);
    const std::string shape = conv_shape_str(cc);
    const double f = conv_flops(s);
    cpu_row(rep, "conv_fwd", shape, f, reps,
            [&] { cpu::conv2d_fwd(x.data(), w.data(), nullptr, y.data(), s, false); });
    cpu_row(rep, "conv_bwd_data", shape, f, reps,
            [&] { cpu::conv2d_bwd_data(dy.data(), w.data(), nullptr, dx.data(), s); });
    cpu_row(rep, "conv_bwd_filter", shape, f, reps,
            [&] { cpu::conv2d_bwd_filter(x.data(), dy.data(), dw.data(), nullptr, s, false); });
  }
  for (const PoolCase& pc : cases.pool) {
    const PoolShape& s = pc.s;
    const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.c * s.ho() * s.wo();
    const auto x = distinct_floats(nx), dy = random_floats(ny, 4, -0.5f);
    std::vector<float> y(ny), dx(nx);
    const std::string shape = pool_shape_str(pc);
    const double f = pool_flops(s);
    cpu_row(rep, "maxpool_fwd", shape, f, reps, [&] { cpu::maxpool_fwd(x.data(), y.data(), s); });
    cpu_row(rep, "maxpool_bwd", shape, f, reps,
            [&] { cpu::maxpool_bwd(x.data(), dy.data(), dx.data(), s); });
    cpu_row(rep, "avgpool_fwd", shape, f, reps, [&] { cpu::avgpool_fwd(x.data(), y.data(), s); });
    cpu_row(rep, "avgpool_bwd", shape, f, reps, [&] { cpu::avgpool_bwd(dy.data(), dx.data(), s); });
  }
  for (const LinearCase& l : cases.linear) {
    const size_t nx = size_t(l.n) * l.in, nw = size_t(l.out) * l.in, ny = size_t(l.n) * l.out;
    const auto x = random_floats(nx, 5, 0.f), w = random_floats(nw, 6, -0.5f),
               dy = random_floats(ny, 7, -0.5f);
    std::vector<float> y(ny), dx(nx), dw(nw);
    const std::string shape = linear_shape_str(l);
    const double f = linear_flops(l);
    cpu_row(rep, "linear_fwd", shape, f, reps,
            [&] { cpu::linear_fwd(x.data(), w.data(), nullptr, y.data(), l.n, l.in, l.out); });
    cpu_row(rep, "linear_bwd_data", shape, f, reps,
            [&] { cpu::linear_bwd_data(dy.data(), w.data(), dx.data(), l.n, l.in, l.out); });
    cpu_row(rep, "linear_bwd_wts", shape, f, reps, [&] {
      cpu::linear_bwd_weights(x.data(), dy.data(), dw.data(), nullptr, l.n, l.in, l.out, false);
    });
  }
}

// ---- GPU -----------------------------------------------------------------------------------
#if defined(PREIMAGE_BENCH_KERNELS)
namespace k = preimage::kernels;

[[noreturn]] void fail(const char* file, int line, const char* expr, const std::string& what) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " +
                           what);
}
void check_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  if (err != cudaSuccess) fail(file, line, expr, cudaGetErrorString(err));
}
void check_cublas(cublasStatus_t st, const char* expr, const char* file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS) fail(file, line, expr, cublasGetStatusString(st));
}
#define CUDA_OK(expr) check_cuda((expr), #expr, __FILE__, __LINE__)
#define CUBLAS_OK(expr) check_cublas((expr), #expr, __FILE__, __LINE__)
#if defined(PREIMAGE_BENCH_CUDNN)
void check_cudnn(cudnnStatus_t st, const char* expr, const char* file, int line) {
  if (st != CUDNN_STATUS_SUCCESS) fail(file, line, expr, cudnnGetErrorString(st));
}
#define CUDNN_OK(expr) check_cudnn((expr), #expr, __FILE__, __LINE__)
#endif

// Move-only device buffer of floats through the project's allocator.
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t count) : p_(k::device_alloc(std::max<size_t>(count, 1))), n_(count) {}
  explicit DevBuf(const std::vector<float>& host) : DevBuf(host.size()) {
    k::copy_h2d(p_, host.data(), host.size());
  }
  ~DevBuf() { k::device_free(p_); }
  DevBuf(DevBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) {
      k::device_free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;

  float* get() const { return p_; }
  size_t size() const { return n_; }
  std::vector<float> to_host() const {
    std::vector<float> h(n_);
    k::copy_d2h(h.data(), p_, n_);
    return h;
  }
  void fill_nan() { k::fill(p_, std::numeric_limits<float>::quiet_NaN(), n_); }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

// max|out − ref| / max|ref|; +inf when out has a non-finite value.
double rel_error(const DevBuf& out, const std::vector<float>& ref) {
  const std::vector<float> h = out.to_host();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < h.size() && i < ref.size(); ++i) {
    if (!std::isfinite(h[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::fabs(double(h[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// CUDA-event timing on the legacy default stream (the launchers', cuDNN's and cuBLAS's).
class GpuTimer {
 public:
  GpuTimer(int warmup, int reps) : warmup_(warmup), reps_(reps) {
    int dev = 0;
    CUDA_OK(cudaGetDevice(&dev));
    cudaDeviceProp prop{};
    CUDA_OK(cudaGetDeviceProperties(&prop, dev));
    flush_bytes_ = std::max<size_t>(size_t(2) * size_t(std::max(prop.l2CacheSize, 0)), 1 << 20);
    flush_ = DevBuf(flush_bytes_ / sizeof(float));
    CUDA_OK(cudaEventCreate(&start_));
    if (const cudaError_t err = cudaEventCreate(&stop_); err != cudaSuccess) {
      cudaEventDestroy(start_);
      CUDA_OK(err);
    }
  }
  ~GpuTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  GpuTimer(const GpuTimer&) = delete;
  GpuTimer& operator=(const GpuTimer&) = delete;

  size_t flush_bytes() const { return flush_bytes_; }

  double median_ms(const std::function<void()>& body) {
    for (int i = 0; i < warmup_; ++i) body();
    CUDA_OK(cudaDeviceSynchronize());  // errors of the warm-up surface here
    std::vector<double> ms;
    for (int r = 0; r < reps_; ++r) {
      CUDA_OK(cudaMemsetAsync(flush_.get(), r & 0xff, flush_bytes_, nullptr));
      CUDA_OK(cudaEventRecord(start_, nullptr));
      body();
      CUDA_OK(cudaEventRecord(stop_, nullptr));
      CUDA_OK(cudaEventSynchronize(stop_));
      float t = 0;
      CUDA_OK(cudaEventElapsedTime(&t, start_, stop_));
      ms.push_back(t);
    }
    CUDA_OK(cudaGetLastError());
    return median(std::move(ms));
  }

 private:
  int warmup_, reps_;
  size_t flush_bytes_ = 0;
  DevBuf flush_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

class CublasHandle {
 public:
  CublasHandle() {
    CUBLAS_OK(cublasCreate(&h_));
    if (const cublasStatus_t st = cublasSetMathMode(h_, CUBLAS_DEFAULT_MATH);
        st != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(h_);
      CUBLAS_OK(st);
    }
  }
  ~CublasHandle() { cublasDestroy(h_); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// One op on the GPU: the reference (when built) is timed first and its output kept, then each
// kernel version, whose output is compared with the reference's.
struct GpuOp {
  const char* op;
  std::string shape;
  double flops;
  DevBuf* out;                                        // written by every body
  std::vector<std::pair<std::string, int>> versions;  // (label, launcher version)
  std::function<void(int)> kernel;
  const char* ref_name;
  std::function<void()> ref;  // empty: reference not built
  std::string ref_missing;    // why, when empty
};

void run_gpu_op(const GpuOp& g, GpuTimer& timer, Report& rep) {
  double ref_ms = kNaN;
  std::vector<float> ref_out;
  std::string ref_error = g.ref ? "" : g.ref_missing;
  if (g.ref) {
    try {
      g.out->fill_nan();
      ref_ms = timer.median_ms(g.ref);
      ref_out = g.out->to_host();
    } catch (const std::exception& e) {
      ref_error = e.what();
    }
  }
  for (const auto& [label, version] : g.versions) {
    Row r;
    r.op = g.op;
    r.shape = g.shape;
    r.version = label;
    r.flops = g.flops;
    r.ref = g.ref_name;
    r.ref_ms = ref_ms;
    try {
      g.out->fill_nan();
      const int v = version;
      r.ms = timer.median_ms([&] { g.kernel(v); });
      if (!ref_out.empty()) r.check = rel_error(*g.out, ref_out);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    rep.add(r);
  }
  Row r;
  r.op = g.op;
  r.shape = g.shape;
  r.version = g.ref_name;
  r.flops = g.flops;
  r.ref = g.ref_name;
  r.ms = ref_ms;
  r.ref_ms = ref_ms;
  r.error = ref_error;
  rep.add(r);
}

std::vector<std::pair<std::string, int>> version_list(int n) {
  std::vector<std::pair<std::string, int>> v;
  for (int i = 1; i <= n; ++i) {
    std::string label = "v";  // not "v" + to_string(): GCC 12's -Wrestrict false positive
    label += std::to_string(i);
    v.push_back({label, i});
  }
  return v;
}

#if defined(PREIMAGE_BENCH_CUDNN)
// Owning cuDNN object (handle or descriptor).
template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class DnnObject {
 public:
  DnnObject() { CUDNN_OK(Create(&h_)); }
  ~DnnObject() { Destroy(h_); }
  DnnObject(const DnnObject&) = delete;
  DnnObject& operator=(const DnnObject&) = delete;
  T get() const { return h_; }

 private:
  T h_{};
};
using DnnHandle = DnnObject<cudnnHandle_t, cudnnCreate, cudnnDestroy>;
using TensorDesc =
    DnnObject<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc =
    DnnObject<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc = DnnObject<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor,
                           cudnnDestroyConvolutionDescriptor>;
using PoolDesc = DnnObject<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor,
                           cudnnDestroyPoolingDescriptor>;

void set_nchw(const TensorDesc& d, int n, int c, int h, int w) {
  CUDNN_OK(cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
}

// The fastest successful FP32 (non-tensor-op) result that fits in mem_limit bytes.
template <class Perf>
Perf pick_algo(const std::vector<Perf>& perf, int returned, size_t mem_limit, const char* what) {
  const Perf* best = nullptr;
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.time < 0 || p.memory > mem_limit) continue;
    if (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      continue;
    if (!best || p.time < best->time) best = &p;
  }
  if (!best)
    throw std::runtime_error(std::string(what) + ": cudnnFind found no FP32 algorithm within " +
                             std::to_string(mem_limit >> 20) + " MiB of workspace");
  return *best;
}

// cuDNN convolution (cross-correlation, NCHW, FP32 FMA math) with the algorithms picked by
// cudnnFind*Algorithm for each direction and one workspace large enough for all three.
class CudnnConv {
 public:
  CudnnConv(cudnnHandle_t h, const ConvShape& s) : h_(h) {
    set_nchw(x_, s.n, s.c, s.h, s.w);
    set_nchw(y_, s.n, s.o, s.ho(), s.wo());
    CUDNN_OK(cudnnSetFilter4dDescriptor(w_.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.o, s.c,
                                        s.kh, s.kw));
    CUDNN_OK(cudnnSetConvolution2dDescriptor(conv_.get(), s.pad, s.pad, s.stride, s.stride, 1, 1,
                                             CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_OK(cudnnSetConvolutionMathType(conv_.get(), CUDNN_FMA_MATH));
    int n = 0, c = 0, ho = 0, wo = 0;
    CUDNN_OK(
        cudnnGetConvolution2dForwardOutputDim(conv_.get(), x_.get(), w_.get(), &n, &c, &ho, &wo));
    if (n != s.n || c != s.o || ho != s.ho() || wo != s.wo())
      throw std::runtime_error("cudnnGetConvolution2dForwardOutputDim disagrees with ConvShape");
    const size_t limit = k::device_free_memory() / 2;
    {
      int max = 0, got = 0;
      CUDNN_OK(cudnnGetConvolutionForwardAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max, 1));
      CUDNN_OK(cudnnFindConvolutionForwardAlgorithm(h_, x_.get(), w_.get(), conv_.get(), y_.get(),
                                                    int(perf.size()), &got, perf.data()));
      fwd_ = pick_algo(perf, got, limit, "conv forward");
    }
    {
      int max = 0, got = 0;
      CUDNN_OK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::max(max, 1));
      CUDNN_OK(cudnnFindConvolutionBackwardDataAlgorithm(
          h_, w_.get(), y_.get(), conv_.get(), x_.get(), int(perf.size()), &got, perf.data()));
      bwd_data_ = pick_algo(perf, got, limit, "conv backward-data");
    }
    {
      int max = 0, got = 0;
      CUDNN_OK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h_, &max));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::max(max, 1));
      CUDNN_OK(cudnnFindConvolutionBackwardFilterAlgorithm(
          h_, x_.get(), y_.get(), conv_.get(), w_.get(), int(perf.size()), &got, perf.data()));
      bwd_filter_ = pick_algo(perf, got, limit, "conv backward-filter");
    }
    ws_bytes_ = std::max({fwd_.memory, bwd_data_.memory, bwd_filter_.memory});
    ws_ = DevBuf((ws_bytes_ + sizeof(float) - 1) / sizeof(float));
  }

  void fwd(const float* x, const float* w, float* y) const {
    const float one = 1.f, zero = 0.f;
    CUDNN_OK(cudnnConvolutionForward(h_, &one, x_.get(), x, w_.get(), w, conv_.get(), fwd_.algo,
                                     ws_.get(), ws_bytes_, &zero, y_.get(), y));
  }
  void bwd_data(const float* dy, const float* w, float* dx) const {
    const float one = 1.f, zero = 0.f;
    CUDNN_OK(cudnnConvolutionBackwardData(h_, &one, w_.get(), w, y_.get(), dy, conv_.get(),
                                          bwd_data_.algo, ws_.get(), ws_bytes_, &zero, x_.get(),
                                          dx));
  }
  void bwd_filter(const float* x, const float* dy, float* dw) const {
    const float one = 1.f, zero = 0.f;
    CUDNN_OK(cudnnConvolutionBackwardFilter(h_, &one, x_.get(), x, y_.get(), dy, conv_.get(),
                                            bwd_filter_.algo, ws_.get(), ws_bytes_, &zero, w_.get(),
                                            dw));
  }
  std::string describe() const {
    return "fwd algo " + std::to_string(int(fwd_.algo)) + ", bwd-data algo " +
           std::to_string(int(bwd_data_.algo)) + ", bwd-filter algo " +
           std::to_string(int(bwd_filter_.algo)) + ", workspace " +
           std::to_string(ws_bytes_ >> 20) + " MiB";
  }

 private:
  cudnnHandle_t h_;
  TensorDesc x_, y_;
  FilterDesc w_;
  ConvDesc conv_;
  cudnnConvolutionFwdAlgoPerf_t fwd_{};
  cudnnConvolutionBwdDataAlgoPerf_t bwd_data_{};
  cudnnConvolutionBwdFilterAlgoPerf_t bwd_filter_{};
  size_t ws_bytes_ = 0;
  DevBuf ws_;
};

// cuDNN pooling: max (−inf padding) and average counting the padding (PyTorch's
// count_include_pad=True), as kernels/pool.cu.
class CudnnPool {
 public:
  CudnnPool(cudnnHandle_t h, const PoolShape& s) : h_(h) {
    set_nchw(x_, s.n, s.c, s.h, s.w);
    set_nchw(y_, s.n, s.c, s.ho(), s.wo());
    CUDNN_OK(cudnnSetPooling2dDescriptor(max_.get(), CUDNN_POOLING_MAX, CUDNN_NOT_PROPAGATE_NAN,
                                         s.k, s.k, s.pad, s.pad, s.stride, s.stride));
    CUDNN_OK(cudnnSetPooling2dDescriptor(avg_.get(), CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING,
                                         CUDNN_NOT_PROPAGATE_NAN, s.k, s.k, s.pad, s.pad, s.stride,
                                         s.stride));
    int n = 0, c = 0, ho = 0, wo = 0;
    CUDNN_OK(cudnnGetPooling2dForwardOutputDim(max_.get(), x_.get(), &n, &c, &ho, &wo));
    if (n != s.n || c != s.c || ho != s.ho() || wo != s.wo())
      throw std::runtime_error("cudnnGetPooling2dForwardOutputDim disagrees with PoolShape");
  }
  void fwd(bool max, const float* x, float* y) const {
    const float one = 1.f, zero = 0.f;
    CUDNN_OK(
        cudnnPoolingForward(h_, (max ? max_ : avg_).get(), &one, x_.get(), x, &zero, y_.get(), y));
  }
  // y: this op's forward output of x (cuDNN finds the maxima through it).
  void bwd(bool max, const float* x, const float* y, const float* dy, float* dx) const {
    const float one = 1.f, zero = 0.f;
    CUDNN_OK(cudnnPoolingBackward(h_, (max ? max_ : avg_).get(), &one, y_.get(), y, y_.get(), dy,
                                  x_.get(), x, &zero, x_.get(), dx));
  }

 private:
  cudnnHandle_t h_;
  TensorDesc x_, y_;
  PoolDesc max_, avg_;
};
#endif  // PREIMAGE_BENCH_CUDNN

#if defined(PREIMAGE_BENCH_CUDNN)
using DnnPtr = const DnnHandle*;
constexpr const char* kNoCudnn = "";
#else
using DnnPtr = const void*;
constexpr const char* kNoCudnn = "not built (no cuDNN found at configure time)";
#endif

void gpu_conv(const ConvCase& cc, DnnPtr dnn, GpuTimer& timer, Report& rep) {
  const ConvShape& s = cc.s;
  const size_t nx = size_t(s.n) * s.c * s.h * s.w, nw = size_t(s.o) * s.c * s.kh * s.kw;
  const size_t ny = size_t(s.n) * s.o * s.ho() * s.wo();
  DevBuf x(random_floats(nx, 1, 0.f)), w(random_floats(nw, 2, -0.5f)),
      dy(random_floats(ny, 3, -0.5f)), y(ny), dx(nx), dw(nw);
  const std::string shape = conv_shape_str(cc);
  const double f = conv_flops(s);
  std::function<void()> ref_fwd, ref_data, ref_filter;
  std::string missing = kNoCudnn;
#if defined(PREIMAGE_BENCH_CUDNN)
  std::unique_ptr<CudnnConv> conv;
  try {
    conv = std::make_unique<CudnnConv>(dnn->get(), s);
    rep.note("cudnn " + shape + ": " + conv->describe());
  } catch (const std::exception& e) {
    missing = e.what();
  }
  if (conv) {
    ref_fwd = [&] { conv->fwd(x.get(), w.get(), y.get()); };
    ref_data = [&] { conv->bwd_data(dy.get(), w.get(), dx.get()); };
    ref_filter = [&] { conv->bwd_filter(x.get(), dy.get(), dw.get()); };
  }
#else
  (void)dnn;
#endif
  run_gpu_op({"conv_fwd", shape, f, &y, version_list(k::conv2d_fwd_versions()),
              [&](int v) { k::conv2d_fwd(x.get(), w.get(), nullptr, y.get(), s, false, v); },
              "cudnn", ref_fwd, missing},
             timer, rep);
  run_gpu_op({"conv_bwd_data", shape, f, &dx, version_list(k::conv2d_bwd_data_versions()),
              [&](int v) { k::conv2d_bwd_data(dy.get(), w.get(), nullptr, dx.get(), s, v); },
              "cudnn", ref_data, missing},
             timer, rep);
  run_gpu_op(
      {"conv_bwd_filter", shape, f, &dw, version_list(k::conv2d_bwd_filter_versions()),
       [&](int v) { k::conv2d_bwd_filter(x.get(), dy.get(), dw.get(), nullptr, s, false, v); },
       "cudnn", ref_filter, missing},
      timer, rep);
}

void gpu_pool(const PoolCase& pc, DnnPtr dnn, GpuTimer& timer, Report& rep) {
  const PoolShape& s = pc.s;
  const size_t nx = size_t(s.n) * s.c * s.h * s.w, ny = size_t(s.n) * s.c * s.ho() * s.wo();
  DevBuf x(distinct_floats(nx)), dy(random_floats(ny, 4, -0.5f)), y(ny), dx(nx), y_max(ny),
      y_avg(ny);
  const std::string shape = pool_shape_str(pc);
  const double f = pool_flops(s);
  std::function<void()> ref_max_fwd, ref_max_bwd, ref_avg_fwd, ref_avg_bwd;
  std::string missing = kNoCudnn;
#if defined(PREIMAGE_BENCH_CUDNN)
  std::unique_ptr<CudnnPool> pool;
  try {
    pool = std::make_unique<CudnnPool>(dnn->get(), s);
    pool->fwd(true, x.get(), y_max.get());  // the forward outputs cuDNN's backward reads
    pool->fwd(false, x.get(), y_avg.get());
  } catch (const std::exception& e) {
    missing = e.what();
    pool.reset();
  }
  if (pool) {
    ref_max_fwd = [&] { pool->fwd(true, x.get(), y.get()); };
    ref_max_bwd = [&] { pool->bwd(true, x.get(), y_max.get(), dy.get(), dx.get()); };
    ref_avg_fwd = [&] { pool->fwd(false, x.get(), y.get()); };
    ref_avg_bwd = [&] { pool->bwd(false, x.get(), y_avg.get(), dy.get(), dx.get()); };
  }
#else
  (void)dnn;
#endif
  const auto versions = version_list(k::pool_versions());
  run_gpu_op(
      {"maxpool_fwd", shape, f, &y, versions,
       [&](int v) { k::maxpool_fwd(x.get(), y.get(), s, v); }, "cudnn", ref_max_fwd, missing},
      timer, rep);
  run_gpu_op({"maxpool_bwd", shape, f, &dx, versions,
              [&](int v) { k::maxpool_bwd(x.get(), dy.get(), dx.get(), s, v); }, "cudnn",
              ref_max_bwd, missing},
             timer, rep);
  run_gpu_op(
      {"avgpool_fwd", shape, f, &y, versions,
       [&](int v) { k::avgpool_fwd(x.get(), y.get(), s, v); }, "cudnn", ref_avg_fwd, missing},
      timer, rep);
  run_gpu_op(
      {"avgpool_bwd", shape, f, &dx, versions,
       [&](int v) { k::avgpool_bwd(dy.get(), dx.get(), s, v); }, "cudnn", ref_avg_bwd, missing},
      timer, rep);
}

void gpu_linear(const LinearCase& l, const CublasHandle& blas, GpuTimer& timer, Report& rep) {
  const int n = l.n, in = l.in, out = l.out;
  const size_t nx = size_t(n) * in, nw = size_t(out) * in, ny = size_t(n) * out;
  DevBuf x(random_floats(nx, 5, 0.f)), w(random_floats(nw, 6, -0.5f)),
      dy(random_floats(ny, 7, -0.5f)), y(ny), dx(nx), dw(nw);
  const std::string shape = linear_shape_str(l);
  const double f = linear_flops(l);
  const std::vector<std::pair<std::string, int>> cuda = {{"cuda", 0}};
  const cublasHandle_t h = blas.get();
  const float one = 1.f, zero = 0.f;
  // Row-major (R, C) is column-major (C, R): every product below is the transposed one.
  // y (n,out) = x wᵀ       ⇔  yᵀ (out,n) = w_cm(in,out)ᵀ · x_cm(in,n)
  run_gpu_op({"linear_fwd", shape, f, &y, cuda,
              [&](int) { k::linear_fwd(x.get(), w.get(), nullptr, y.get(), n, in, out); }, "cublas",
              [&] {
                CUBLAS_OK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w.get(), in,
                                      x.get(), in, &zero, y.get(), out));
              },
              ""},
             timer, rep);
  // dx (n,in) = dy w       ⇔  dxᵀ (in,n) = w_cm(in,out) · dy_cm(out,n)
  run_gpu_op({"linear_bwd_data", shape, f, &dx, cuda,
              [&](int) { k::linear_bwd_data(dy.get(), w.get(), dx.get(), n, in, out); }, "cublas",
              [&] {
                CUBLAS_OK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w.get(), in,
                                      dy.get(), out, &zero, dx.get(), in));
              },
              ""},
             timer, rep);
  // dw (out,in) = dyᵀ x    ⇔  dwᵀ (in,out) = x_cm(in,n) · dy_cm(out,n)ᵀ
  run_gpu_op(
      {"linear_bwd_wts", shape, f, &dw, cuda,
       [&](int) { k::linear_bwd_weights(x.get(), dy.get(), dw.get(), nullptr, n, in, out, false); },
       "cublas",
       [&] {
         CUBLAS_OK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x.get(), in, dy.get(),
                               out, &zero, dw.get(), in));
       },
       ""},
      timer, rep);
}

// Runs every case; returns the device's name.
std::string bench_gpu(const Cases& cases, int warmup, int reps, Report& rep) {
  int dev = 0;
  CUDA_OK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, dev));
  GpuTimer timer(warmup, reps);
  CublasHandle blas;
  int blas_version = 0;
  CUBLAS_OK(cublasGetVersion(blas.get(), &blas_version));
  char line[512];
  std::snprintf(line, sizeof line,
                "bench_kernels: %s (sm_%d%d, %d SMs, %.0f MiB L2, %.1f GiB), cuBLAS %d, "
                "median of %d after %d warm-up(s), L2 flushed (%zu MiB memset) before each rep",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                prop.l2CacheSize / 1048576.0, double(prop.totalGlobalMem) / (1 << 30), blas_version,
                reps, warmup, timer.flush_bytes() >> 20);
  rep.note(line);
#if defined(PREIMAGE_BENCH_CUDNN)
  const DnnHandle dnn;
  rep.note("cuDNN " + std::to_string(cudnnGetVersion()) +
           ", FP32 FMA math (no TF32), fastest algorithm of cudnnFind*Algorithm");
  const DnnPtr dnn_ptr = &dnn;
#else
  const DnnPtr dnn_ptr = nullptr;
  rep.note("cuDNN not found at configure time: conv/pool rows have no reference");
#endif
  rep.table_header();
  auto guarded = [&](const std::string& what, const std::function<void()>& body) {
    try {
      body();
    } catch (const std::exception& e) {  // e.g. out of memory for the case's buffers
      Row r;
      r.op = "case";
      r.shape = what;
      r.version = "-";
      r.error = e.what();
      rep.add(r);
    }
  };
  for (const ConvCase& c : cases.conv)
    guarded(conv_shape_str(c), [&] { gpu_conv(c, dnn_ptr, timer, rep); });
  for (const PoolCase& p : cases.pool)
    guarded(pool_shape_str(p), [&] { gpu_pool(p, dnn_ptr, timer, rep); });
  for (const LinearCase& l : cases.linear)
    guarded(linear_shape_str(l), [&] { gpu_linear(l, blas, timer, rep); });
  return prop.name;
}
#endif  // PREIMAGE_BENCH_KERNELS

int usage() {
  std::fprintf(stderr,
               "usage: bench_kernels [--quick] [--json] [--reps N] [--warmup N] [--size S]\n"
               "                     [--threads N] [--device auto|cpu|cuda]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 5, warmup = 2, size = 0;
  bool quick = false, json = false;
  std::string device = "auto";
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    if (key == "--quick") {
      quick = true;
      continue;
    }
    if (key == "--json") {
      json = true;
      continue;
    }
    if (key == "--help" || key == "-h") return usage();
    if (key != "--reps" && key != "--warmup" && key != "--size" && key != "--threads" &&
        key != "--device") {
      std::fprintf(stderr, "bench_kernels: unknown flag %s\n", key.c_str());
      return usage();
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "bench_kernels: flag %s needs a value\n", key.c_str());
      return usage();
    }
    const std::string val = argv[++i];
    if (key == "--reps")
      reps = std::max(1, std::atoi(val.c_str()));
    else if (key == "--warmup")
      warmup = std::max(0, std::atoi(val.c_str()));
    else if (key == "--size")
      size = std::atoi(val.c_str());
    else if (key == "--threads")
      omp_set_num_threads(std::max(1, std::atoi(val.c_str())));
    else
      device = val;
  }
  if (device != "auto" && device != "cpu" && device != "cuda") {
    std::fprintf(stderr, "bench_kernels: --device must be auto, cpu or cuda\n");
    return 2;
  }
  if (size == 0) size = quick ? 64 : 512;
  if (size < 16) {
    std::fprintf(stderr, "bench_kernels: --size must be at least 16 (conv5_2 is size/16)\n");
    return 2;
  }
  const Cases cases = make_cases(size, quick);
  Report rep(json);

  std::string reason;
  bool gpu = false;
  if (device != "cpu") {
#if defined(PREIMAGE_BENCH_KERNELS)
    gpu = preimage::kernels::device_count(&reason) > 0;
#else
    reason = "CUDA backend not built (PREIMAGE_CUDA=OFF or no nvcc at configure time)";
#endif
  }
  const std::string no_gpu = (device != "cpu" && !gpu) ? "no GPU: " + reason : "";
  if (!no_gpu.empty()) {
    if (json)
      std::fprintf(stderr, "bench_kernels: %s\n", no_gpu.c_str());
    else
      std::printf("%s\n", no_gpu.c_str());
    if (device == "cuda") return 1;
  }

  std::string device_name = "cpu";
  try {
#if defined(PREIMAGE_BENCH_KERNELS)
    if (gpu) device_name = bench_gpu(cases, warmup, reps, rep);
#endif
    if (!gpu) {
      preimage::cpu::init_threads();
      rep.note("bench_kernels: CPU backend (preimage::cpu), " +
               std::to_string(omp_get_max_threads()) + " OpenMP threads, median of " +
               std::to_string(reps) + " after 1 warm-up (wall clock)");
      rep.table_header();
      bench_cpu(cases, reps, rep);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels: %s\n", e.what());
    return 1;
  }
  if (json) rep.print_json(device_name, no_gpu, reps, gpu ? warmup : 1, size, quick);
  return 0;
}
