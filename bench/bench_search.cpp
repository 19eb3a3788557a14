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
//   approx  the FAISS index types (preimage/approx_index.h) at --approx sizes (10^4, 10^5, 10^6):
//           synthetic compact descriptors (128 values: pool1 and pool2 parts of 64) generated
//           directly — full Gram vectors would be 40 KiB each, 40 GB at 10^6 — from a clustered
//           low-rank model (below), written to disk through ApproxTextureIndex::create (entries
//           with 32-character paths and random SHA-256s, a projection of the real pool1+pool2
//           shape), reopened, and searched one query at a time (200 held-out queries of the same
//           model). recall@10 = |top-10 ∩ exact top-10| / 10, exact = the engine's exact scan
//           (texture_distances on the CPU) over the same float32 descriptors; ms/query = mean
//           single-query latency; bytes/entry = every file of the index on disk / entries.
//
// usage: bench_search [--entries 10000,100000] [--queries 1,32,256] [--repeats 3] [--no-build]
//                     [--no-exact] [--approx 10000,100000,1000000] [--types hnsw,ivfpq]
//                     [--dir /tmp] [--nq 200]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "kernels/kernels.h"
#include "preimage/approx_index.h"
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

// ---- approximate index rows -------------------------------------------------------------------
//
// Synthetic model of compact descriptors (per layer part p_l, 64 values, unit norm; stored as
// p_l/√2): catalogue items fall into K = N/100 clusters (styles; cluster sizes uniform at
// random). A cluster has a centre c_k = A_l z_k with z_k ~ N(0, diag(1/j)), j = 1..24 (a
// low-rank subspace with a decaying spectrum, A_l random 64×24) and its own within-cluster
// directions B_lk (64×8); an item is c_k + 0.45·B_lk w + 0.12·ε, w ~ N(0, diag(1/j)),
// ε ~ N(0, I_64), then normalized per layer. The two layers share z and w (one image) through
// different A, B. Items of one cluster are near each other but not equidistant (low intrinsic
// dimension plus isotropic noise, like real descriptors), so recall@10 needs the right 10 of
// ~100 similar items: not separable by cluster identity alone.
struct Synthetic {
  static constexpr int kLayers = 2, kPart = 64, kDim = 128, kRc = 24, kRw = 8;
  std::vector<float> A[kLayers];
  std::vector<std::vector<float>> B;  // per cluster: kLayers × kPart × kRw
  std::vector<std::vector<float>> Z;  // per cluster centre latent
  uint64_t seed;
  int clusters;
  Synthetic(int k, uint64_t s) : seed(s), clusters(k) {
    std::mt19937_64 rng(s);
    std::normal_distribution<float> nd;
    for (auto& a : A) {
      a.resize(size_t(kPart) * kRc);
      for (auto& x : a) x = nd(rng);
    }
    B.resize(size_t(k));
    Z.resize(size_t(k));
    for (int c = 0; c < k; ++c) {
      B[size_t(c)].resize(size_t(kLayers) * kPart * kRw);
      for (auto& x : B[size_t(c)]) x = nd(rng) / std::sqrt(float(kRw));
      Z[size_t(c)].resize(kRc);
      for (int j = 0; j < kRc; ++j) Z[size_t(c)][size_t(j)] = nd(rng) / std::sqrt(float(j + 1));
    }
  }
  // Rows [r0, r0+n) of stream `stream` (items: 0, queries: 1) into out (n × kDim, stored scale).
  void generate(size_t r0, size_t n, int stream, float* out) const {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < long(n); ++i) {
      std::mt19937_64 rng(seed * 1000003u + uint64_t(stream) * 0x9E3779B97F4A7C15ull + r0 +
                          uint64_t(i));
      std::normal_distribution<float> nd;
      const int c = int(rng() % uint64_t(clusters));
      float w[kRw];
      for (int j = 0; j < kRw; ++j) w[j] = nd(rng) / std::sqrt(float(j + 1));
      float* o = out + size_t(i) * kDim;
      for (int l = 0; l < kLayers; ++l) {
        double ss = 0;
        for (int k = 0; k < kPart; ++k) {
          double v = 0;
          for (int j = 0; j < kRc; ++j)
            v += A[l][size_t(k) * kRc + j] * Z[size_t(c)][size_t(j)] / std::sqrt(double(kRc));
          const float* b = B[size_t(c)].data() + (size_t(l) * kPart + k) * kRw;
          for (int j = 0; j < kRw; ++j) v += 0.45 * b[j] * w[j];
          v += 0.12 * nd(rng);
          o[l * kPart + k] = float(v);
          ss += v * v;
        }
        const float inv = float(1.0 / std::sqrt(ss * kLayers));
        for (int k = 0; k < kPart; ++k) o[l * kPart + k] *= inv;
      }
    }
  }
};

// Exact top 10 of each query by the engine's exact scan over unit per-layer vectors (the
// descriptors times √L), in blocks of entries.
std::vector<std::vector<size_t>> exact_top(const std::vector<float>& entries, size_t n,
                                           const std::vector<float>& queries, int nq, int k,
                                           double* ms_per_query) {
  const int d = Synthetic::kDim;
  const std::vector<int> seg = {0, Synthetic::kPart, d};
  const float up = std::sqrt(float(Synthetic::kLayers));
  std::vector<float> q(queries);
  for (auto& x : q) x *= up;
  std::vector<std::vector<std::pair<float, size_t>>> best(static_cast<size_t>(nq));
  const size_t block = 100000;
  std::vector<float> e;
  double total_ms = 0;
  for (size_t b0 = 0; b0 < n; b0 += block) {
    const size_t nb = std::min(block, n - b0);
    e.assign(entries.begin() + long(b0 * d), entries.begin() + long((b0 + nb) * d));
    for (auto& x : e) x *= up;
    const auto t0 = Clock::now();
    const std::vector<float> dist =
        texture_distances(Device::CPU, q.data(), nq, e.data(), int(nb), seg);
    total_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    for (int i = 0; i < nq; ++i) {
      auto& bi = best[size_t(i)];
      for (size_t j = 0; j < nb; ++j) bi.emplace_back(dist[size_t(i) * nb + j], b0 + j);
      std::partial_sort(bi.begin(), bi.begin() + std::min<long>(k, long(bi.size())), bi.end());
      bi.resize(std::min<size_t>(size_t(k), bi.size()));
    }
  }
  *ms_per_query = total_ms / nq;
  std::vector<std::vector<size_t>> out(static_cast<size_t>(nq));
  std::vector<double> r1, r10;
  for (int i = 0; i < nq; ++i) {
    const auto& bi = best[size_t(i)];
    for (int r = 0; r < std::min<int>(10, int(bi.size())); ++r)
      out[size_t(i)].push_back(bi[size_t(r)].second);
    if (bi.size() >= 100) {
      r1.push_back(bi[9].first / std::max(bi[0].first, 1e-6f));
      r10.push_back(bi[99].first / std::max(bi[9].first, 1e-6f));
    }
  }
  // How hard the data is: distance ratios of the exact neighbours (1.0 = indistinguishable).
  if (!r1.empty()) {
    std::sort(r1.begin(), r1.end());
    std::sort(r10.begin(), r10.end());
    std::printf(
        "#   %zu entries: exact neighbours, median d(10th)/d(1st) = %.3f, d(100th)/d(10th) "
        "= %.3f\n",
        n, r1[r1.size() / 2], r10[r10.size() / 2]);
  }
  return out;
}

void approx_rows(const std::vector<long>& sizes, const std::vector<IndexType>& types,
                 const std::string& dir, int nq) {
  namespace fs = std::filesystem;
  const int d = Synthetic::kDim, k = 10;
  std::printf(
      "\n| index | entries | build s | recall@10 | ms/query | bytes/entry | exact ms/query |\n"
      "| ----- | ------: | ------: | --------: | -------: | ----------: | -------------: |\n");
  // A projection of the real pool1+pool2 shape (stored with every index; search does not use
  // it here: the descriptors are generated compact).
  CompactProjection proj;
  proj.segments_ = {0, 2080, 10336};
  proj.compact_segments_ = {0, Synthetic::kPart, d};
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd;
  for (int l = 0; l < 2; ++l) {
    const int D = proj.segments_[l + 1] - proj.segments_[l];
    proj.mean_.emplace_back(size_t(D), 0.f);
    std::vector<float> b(size_t(Synthetic::kPart) * D);
    for (auto& x : b) x = nd(rng) / std::sqrt(float(D));
    proj.basis_.push_back(std::move(b));
  }
  TextureIndexSettings settings;
  settings.weights_identity = "random:0";
  settings.channels = {64, 128};
  for (long n : sizes) {
    const Synthetic model(int(std::max(16L, n / 100)), uint64_t(n));
    std::vector<float> e(size_t(n) * d), q(size_t(nq) * d);
    model.generate(0, size_t(n), 0, e.data());
    model.generate(0, size_t(nq), 1, q.data());
    double exact_ms = 0;
    const auto truth = exact_top(e, size_t(n), q, nq, 100, &exact_ms);
    std::vector<TextureEntry> entries(static_cast<size_t>(n));
    std::mt19937_64 hr(uint64_t(n) + 5);
    for (long i = 0; i < n; ++i) {
      char path[64];
      std::snprintf(path, sizeof path, "/catalogue/images/%010ld.jpg", i);
      entries[size_t(i)].path = path;
      entries[size_t(i)].height = 600;
      entries[size_t(i)].width = 450;
      std::string sha(64, '0');
      for (auto& ch : sha) ch = "0123456789abcdef"[hr() & 15];
      entries[size_t(i)].image_sha256 = sha;
    }
    for (IndexType type : types) {
      const std::string path = dir + "/bench_search_" + index_type_name(type) + "_" +
                               std::to_string(n) + "_" + std::to_string(::getpid()) + ".h5";
      ApproxIndexParams params;
      const auto t0 = Clock::now();
      ApproxTextureIndex::create(path, type, settings, proj, params, entries, e.data());
      const double build_s = std::chrono::duration<double>(Clock::now() - t0).count();
      const ApproxTextureIndex idx = ApproxTextureIndex::open(path);
      double hit = 0, ms = 0;
      for (int i = 0; i < nq; ++i) {
        const auto t1 = Clock::now();
        const auto r = idx.search(q.data() + size_t(i) * d, 1, k);
        ms += std::chrono::duration<double, std::milli>(Clock::now() - t1).count();
        for (const auto& h : r[0])
          hit += std::find(truth[size_t(i)].begin(), truth[size_t(i)].end(), h.entry) !=
                 truth[size_t(i)].end();
      }
      std::printf("| %-5s | %7ld | %7.1f | %9.4f | %8.3f | %11.0f | %14.2f |\n",
                  index_type_name(type), n, build_s, hit / (double(nq) * k), ms / nq,
                  double(idx.bytes_on_disk()) / double(n), exact_ms);
      std::fflush(stdout);
      std::error_code ec;
      fs::remove_all(path + ".d", ec);
      fs::remove(path, ec);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> entries = {10000, 100000}, queries = {1, 32, 256};
  int repeats = 3;
  bool build = true, exact = true;
  std::vector<long> approx = {10000, 100000, 1000000};
  std::vector<IndexType> types = {IndexType::Hnsw, IndexType::IvfPq};
  std::string dir = "/tmp";
  int nq_approx = 200;
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
    else if (a == "--no-exact")
      exact = false;
    else if (a == "--approx" && i + 1 < argc)
      approx = parse_list(argv[++i]);
    else if (a == "--types" && i + 1 < argc) {
      types.clear();
      std::string t = argv[++i];
      for (size_t p = 0; p <= t.size();) {
        size_t e = t.find(',', p);
        if (e == std::string::npos) e = t.size();
        types.push_back(parse_index_type(t.substr(p, e - p)));
        p = e + 1;
      }
    } else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--nq" && i + 1 < argc)
      nq_approx = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr,
                   "usage: bench_search [--entries 10000,100000] [--queries 1,32,256] "
                   "[--repeats 3] [--no-build] [--no-exact] [--approx 10000,100000,1000000] "
                   "[--types hnsw,ivfpq] [--dir /tmp] [--nq 200]\n");
      return 2;
    }
  }
  const std::vector<int> seg = {0, 2080, 2080 + 8256};  // pool1 (64 ch), pool2 (128 ch)
  const int dim = seg.back(), nseg = 2;
  const bool gpu = cuda_available();
  std::printf("bench_search: dim %d (pool1+pool2 of VGG-19), GPU: %s\n\n", dim,
              gpu ? "yes" : cuda_unavailable_reason().c_str());
  if (!exact) entries.clear();
  if (!entries.empty())
    std::printf(
        "| op      | shape                      | version    |         ms |  GFLOP/s |  ratio "
        "| ms/query   |    GB/s |\n");
  if (!entries.empty())
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
  if (!approx.empty()) approx_rows(approx, types, dir, nq_approx);
  return 0;
}
