// bench_search: texture search latency and index build throughput (issue 9, docs/benchmarks.md).
//
//   search  exact distances of nq queries to ne synthetic entries (unit vectors with the
//           pool1+pool2 layout of VGG-19: 2080 + 8256 = 10336 floats), ne ∈ {10k, 100k}:
//           the CPU backend (sgemm per layer segment) and, where a GPU exists, every version of
//           kernels/search.cu (entries resident on the device, as TextureSearcher keeps them).
//           ms = one call for the whole batch (median of repeats); per-query = ms / nq;
//           GB/s = entry bytes read per call / time.
//   build   feature extraction throughput (images/s) of TextureFeatures — the VGG-19 forward to
//           pool2 and the Gram matrices — at 64, 128 and 256 px, batch 8, random:0 weights, on
//           the CPU and (where available) CUDA.
//
// usage: bench_search [--entries 10000,100000] [--queries 1,32,256] [--repeats 3] [--no-build]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "preimage/device.h"
#include "preimage/texture_index.h"

using namespace preimage;

namespace {

using Clock = std::chrono::steady_clock;

std::vector<long> parse_list(const char* s) {
  std::vector<long> v;
  std::string str = s;
  size_t p = 0;
  while (p < str.size()) {
    size_t q = str.find(',', p);
    if (q == std::string::npos) q = str.size();
    v.push_back(std::atol(str.substr(p, q - p).c_str()));
    p = q + 1;
  }
  return v;
}

// Unit vectors per segment from a fast generator (xorshift, uniform in [-1, 1]).
void fill_unit(std::vector<float>& v, size_t rows, const std::vector<int>& seg, uint64_t seed) {
  const int dim = seg.back();
  v.resize(rows * dim);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < long(rows); ++r) {
    uint64_t s = x ^ (uint64_t(r) * 0xD1B54A32D192ED03ull);
    for (size_t t = 0; t + 1 < seg.size(); ++t) {
      double ss = 0;
      float* p = v.data() + size_t(r) * dim;
      for (int k = seg[t]; k < seg[t + 1]; ++k) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[k] = float(int64_t(s >> 11) - (int64_t(1) << 52)) / float(int64_t(1) << 52);
        ss += double(p[k]) * p[k];
      }
      const float inv = float(1.0 / std::sqrt(ss));
      for (int k = seg[t]; k < seg[t + 1]; ++k) p[k] *= inv;
    }
  }
}

template <class F>
double median_ms(int repeats, F&& f) {
  std::vector<double> t;
  f();  // warm-up
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(const char* op, const std::string& shape, const std::string& version, double ms,
         double flops, double ratio, double per_query_ms, double gbs) {
  std::printf("| %-7s | %-26s | %-10s | %10.3f | %8.1f | %6.2f | %10.4f | %7.1f |\n", op,
              shape.c_str(), version.c_str(), ms, flops / (ms * 1e6), ratio, per_query_ms, gbs);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> entries = {10000, 100000}, queries = {1, 32, 256};
  int repeats = 3;
  bool build = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--entries" && i + 1 < argc)
      entries = parse_list(argv[++i]);
    else if (a == "--queries" && i + 1 < argc)
      queries = parse_list(argv[++i]);
    else if (a == "--repeats" && i + 1 < argc)
      repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--no-build")
      build = false;
    else {
      std::fprintf(stderr,
                   "usage: bench_search [--entries 10000,100000] [--queries 1,32,256] "
                   "[--repeats 3] [--no-build]\n");
      return 2;
    }
  }
  const std::vector<int> seg = {0, 2080, 2080 + 8256};  // pool1 (64 ch), pool2 (128 ch)
  const int dim = seg.back(), nseg = 2;
  const bool gpu = cuda_available();
  std::printf("bench_search: dim %d (pool1+pool2 of VGG-19), GPU: %s\n\n", dim,
              gpu ? "yes" : cuda_unavailable_reason().c_str());
  std::printf(
      "| op      | shape                      | version    |         ms |  GFLOP/s |  ratio "
      "| ms/query   |    GB/s |\n");
  std::printf(
      "| ------- | -------------------------- | ---------- | ---------- | -------- | ------ "
      "| ---------- | ------- |\n");
  const long max_q = *std::max_element(queries.begin(), queries.end());
  std::vector<float> q;
  fill_unit(q, size_t(max_q), seg, 1);
  for (long ne : entries) {
    std::vector<float> e;
    fill_unit(e, size_t(ne), seg, 2);
    const double bytes = double(ne) * dim * 4;
    float* de = nullptr;
    float* dq = nullptr;
    float* dd = nullptr;
    if (gpu) {
      de = kernels::device_alloc(size_t(ne) * dim);
      kernels::copy_h2d(de, e.data(), size_t(ne) * dim);
      dq = kernels::device_alloc(size_t(max_q) * dim);
      kernels::copy_h2d(dq, q.data(), size_t(max_q) * dim);
      dd = kernels::device_alloc(size_t(max_q) * ne);
    }
    for (long nq : queries) {
      // The CPU at 100k entries and large batches takes seconds per call: fewer repeats.
      const int reps = double(nq) * ne > 5e6 ? 1 : repeats;
      const double flops = 2.0 * nq * ne * dim;
      const std::string shape = "nq=" + std::to_string(nq) + " ne=" + std::to_string(ne);
      std::vector<float> out(size_t(nq) * ne);
      const double cpu_ms = median_ms(reps, [&] {
        texture_distances(Device::CPU, q.data(), int(nq), e.data(), int(ne), seg).swap(out);
      });
      row("search", shape, "cpu", cpu_ms, flops, 1.0, cpu_ms / nq, bytes / (cpu_ms * 1e6));
      if (gpu) {
        for (int v = 1; v <= kernels::search_versions(); ++v) {
          const double ms = median_ms(repeats, [&] {
            kernels::search_distances(dq, de, dd, int(nq), int(ne), dim, seg.data(), nseg, v);
            kernels::synchronize();
          });
          row("search", shape, "cuda v" + std::to_string(v), ms, flops, cpu_ms / ms, ms / nq,
              bytes / (ms * 1e6));
        }
      }
      std::fflush(stdout);
    }
    if (gpu) {
      kernels::device_free(de);
      kernels::device_free(dq);
      kernels::device_free(dd);
    }
  }

  if (build) {
    std::printf("\n| op      | shape                      | device     |  images/s | ms/image |\n");
    std::printf("| ------- | -------------------------- | ---------- | --------- | -------- |\n");
    std::vector<Device> devices = {Device::CPU};
    if (gpu) devices.push_back(Device::CUDA);
    for (Device d : devices) {
      for (int size : {64, 128, 256}) {
        TextureIndexSettings s;
        s.size = size;
        TextureFeatures feat(s, d);
        const int batch = 8;
        std::vector<Tensor> imgs;
        std::vector<float> px(size_t(3) * size * size);
        for (int i = 0; i < batch; ++i) {
          for (size_t k = 0; k < px.size(); ++k)
            px[k] = float((k * 2654435761u + i * 97) % 255) / 255.f;
          imgs.push_back(Tensor::from_vector({1, 3, size, size}, px));
        }
        std::vector<const Tensor*> ptrs;
        for (auto& t : imgs) ptrs.push_back(&t);
        std::vector<float> out(size_t(batch) * feat.dim());
        const int reps = d == Device::CPU && size >= 256 ? 1 : repeats;
        const double ms = median_ms(reps, [&] { feat.compute(ptrs, out.data()); });
        std::printf("| build   | %-26s | %-10s | %9.1f | %8.2f |\n",
                    (std::to_string(size) + "x" + std::to_string(size) + " batch 8").c_str(),
                    device_name(d), batch / (ms / 1000), ms / batch);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
