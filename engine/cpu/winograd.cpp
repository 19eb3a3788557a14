// Winograd F(4×4, 3×3) convolution (Lavin & Gray 2016) for 3×3, stride-1, padding-1 layers of
// the CPU backend: forward (bias + ReLU fused into the output transform) and backward-data
// (the ReLU mask of the layer below fused into the output transform). 36 multiplies per 4×4
// output tile and channel pair instead of 144: ~4× fewer FLOPs than im2col + sgemm
// (engine/cpu/conv2d.cpp, kept as the reference and for every other shape).
//   x: (N,C,H,W)  w: (O,C,3,3)  y: (N,O,H,W)
//   forward:   Y = Aᵀ [ U ⊙ V ] A,  U = G g Gᵀ (6×6 per (o,c)),  V = Bᵀ d B (6×6 input tiles
//              overlapping by 2, zero padding 1), summed over c: for each of the 36 positions ξ
//              one GEMM  M_ξ (O×T) = U_ξ (O×C) · V_ξ (C×T)  over a block of T tiles.
//   bwd-data:  dx = conv(dy, w') with w'[c,o] = w[o,c] rotated by 180°, the same pipeline with
//              U'_ξ (C×O) from the rotated filters.
// Layouts: U [36][O][C] (forward) / [36][C][O] (bwd-data); V [36][C][T]; M [36][O][T]; T runs
// over whole tile rows of all images (N·⌈H/4⌉ rows of ⌈W/4⌉ tiles), blocked so that V and M of
// one block take ≤ 12 MB (L2/L3 resident). Per block, inside one OpenMP region: input transform
// (parallel over channel × tile row), the 36 GEMMs (parallel over ξ, each a single-threaded
// OpenBLAS sgemm since it is called inside the region), output transform (parallel over
// channel × tile row); guided/dynamic schedules, so a preempted thread on a busy machine does
// not leave the others waiting at the barrier. The transforms run along rows de-interleaved by x
// mod 4, so that every loop is unit-stride over tiles and vectorizes. Transformed filters are
// cached (pointer, shape, direction, hash of the values): an iteration loop pays one hash pass over
// the weights per call, not a transform; block buffers are reused. Tested by test/test_winograd.cpp
// (vs the im2col path and double loops, and all VGG-19 taps, on every instruction set:
// the row transforms are dispatched at run time, engine/cpu/isa.h); benchmarked by
// bench/bench_vgg.cpp and bench/compare_torch.py (docs/benchmarks.md).
#include "engine/cpu/winograd.h"

#include "engine/cpu/isa.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

namespace preimage::cpu {
namespace {

constexpr int kXi = 36;                             // 6×6 transformed positions
constexpr size_t kBlockBytes = size_t(12) << 20;    // V + M of one tile block
constexpr size_t kCacheBytes = size_t(1024) << 20;  // transformed filters kept

// ---- filters: u = G g Gᵀ --------------------------------------------------------------------
void filter_transform(const float* g, bool rotate, float* u, size_t xi_stride) {
  static const double G[6][3] = {{1 / 4., 0, 0},
                                 {-1 / 6., -1 / 6., -1 / 6.},
                                 {-1 / 6., 1 / 6., -1 / 6.},
                                 {1 / 24., 1 / 12., 1 / 6.},
                                 {1 / 24., -1 / 12., 1 / 6.},
                                 {0, 0, 1}};
  double gg[3][3], t[6][3];
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx) gg[ky][kx] = rotate ? g[(2 - ky) * 3 + 2 - kx] : g[ky * 3 + kx];
  for (int i = 0; i < 6; ++i)
    for (int k = 0; k < 3; ++k)
      t[i][k] = G[i][0] * gg[0][k] + G[i][1] * gg[1][k] + G[i][2] * gg[2][k];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j)
      u[size_t(i * 6 + j) * xi_stride] =
          float(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
}

uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Hash of the bit patterns: 16 lanes of (rotl(acc ^ v, 13)·odd) per chunk (each step a bijection
// of acc, so a single changed value always changes it), chunks mixed with their index.
uint64_t hash_values(const float* w, size_t n) {
  constexpr size_t kChunk = size_t(1) << 15;
  const long chunks = long((n + kChunk - 1) / kChunk);
  uint64_t h = mix64(n);
#pragma omp parallel for reduction(^ : h) schedule(static)
  for (long ch = 0; ch < chunks; ++ch) {
    const size_t i0 = size_t(ch) * kChunk, i1 = std::min(n, i0 + kChunk);
    uint32_t acc[16];
    for (int l = 0; l < 16; ++l) acc[l] = 0x85EBCA6Bu + uint32_t(l);
    size_t i = i0;
    for (; i + 16 <= i1; i += 16) {
      uint32_t v[16];
      std::memcpy(v, w + i, sizeof v);
      for (int l = 0; l < 16; ++l) {
        const uint32_t a = acc[l] ^ v[l];
        acc[l] = ((a << 13) | (a >> 19)) * 0x9E3779B1u;
      }
    }
    uint64_t c = mix64(uint64_t(ch));
    for (; i < i1; ++i) {
      uint32_t v;
      std::memcpy(&v, w + i, sizeof v);
      c = mix64(c ^ v);
    }
    for (int l = 0; l < 16; ++l) c = mix64(c ^ acc[l]);
    h ^= c;
  }
  return h;
}

struct Filters {
  const float* w;
  int o, c;
  bool bwd;
  uint64_t hash;
  std::vector<float> u;
};

struct FilterCache {
  std::mutex mu;
  std::list<std::shared_ptr<const Filters>> entries;  // most recently used first
  size_t bytes = 0;
};

FilterCache& cache() {
  static FilterCache c;
  return c;
}

// U for weights w (o,c,3,3): [36][o][c] forward, [36][c][o] (rotated filters) for bwd-data.
std::shared_ptr<const Filters> transformed(const float* w, int o, int c, bool bwd) {
  const uint64_t h = hash_values(w, size_t(o) * c * 9);
  FilterCache& fc = cache();
  std::lock_guard<std::mutex> lock(fc.mu);
  for (auto it = fc.entries.begin(); it != fc.entries.end(); ++it) {
    const Filters& f = **it;
    if (f.w != w || f.o != o || f.c != c || f.bwd != bwd) continue;
    if (f.hash == h) {
      fc.entries.splice(fc.entries.begin(), fc.entries, it);
      return fc.entries.front();
    }
    fc.bytes -= f.u.size() * sizeof(float);
    fc.entries.erase(it);
    break;
  }
  auto f = std::make_shared<Filters>(Filters{w, o, c, bwd, h, {}});
  f->u.resize(size_t(kXi) * o * c);
  float* u = f->u.data();
  const size_t xi_stride = size_t(o) * c;
#pragma omp parallel for schedule(static)
  for (int oo = 0; oo < o; ++oo)
    for (int cc = 0; cc < c; ++cc)
      filter_transform(w + (size_t(oo) * c + cc) * 9, bwd,
                       u + (bwd ? size_t(cc) * o + oo : size_t(oo) * c + cc), xi_stride);
  fc.bytes += f->u.size() * sizeof(float);
  fc.entries.push_front(f);
  while (fc.bytes > kCacheBytes && fc.entries.size() > 1) {
    fc.bytes -= fc.entries.back()->u.size() * sizeof(float);
    fc.entries.pop_back();
  }
  return fc.entries.front();
}

struct Epilogue {
  const float* bias;  // per output channel, or null
  bool relu;
  const float* mask;  // same layout as the output: keep where mask > 0; or null
};

// out (n,m,h,w) = 3×3 pad-1 convolution of in (n,k,h,w) with transformed filters U [36][m][k].
void winograd_run(const float* in, int n, int k, int h, int w, const float* U, int m, float* out,
                  const Epilogue& ep) {
  const int tw = (w + 3) / 4, th = (h + 3) / 4, rows_total = n * th;
  const size_t per_row = size_t(kXi) * (k + m) * sizeof(float) * tw;
  const int rows = int(std::clamp<size_t>(kBlockBytes / per_row, 1, size_t(rows_total)));
  const size_t tmax = size_t(rows) * tw;
  thread_local std::vector<float> vbuf, mbuf;  // reused across calls (no per-call allocation)
  if (vbuf.size() < kXi * k * tmax) vbuf.resize(kXi * k * tmax);
  if (mbuf.size() < kXi * m * tmax) mbuf.resize(kXi * m * tmax);
  float* V = vbuf.data();
  float* M = mbuf.data();
  const size_t plane = size_t(h) * w;
  const WinogradTransforms& tf = winograd_transforms(cpu_isa());
  const auto input_tile_row = tf.input_tile_row;
  const auto output_tile_row = tf.output_tile_row;
#pragma omp parallel
  for (int g0 = 0; g0 < rows_total; g0 += rows) {
    const int g1 = std::min(rows_total, g0 + rows), T = (g1 - g0) * tw;
#pragma omp for collapse(2) schedule(guided)
    for (int c = 0; c < k; ++c)
      for (int g = g0; g < g1; ++g)
        input_tile_row(in + (size_t(g / th) * k + c) * plane, h, w, g % th, tw,
                       V + size_t(c) * T + size_t(g - g0) * tw, size_t(k) * T);
#pragma omp for schedule(dynamic, 1)
    for (int xi = 0; xi < kXi; ++xi)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, T, k, 1.f, U + size_t(xi) * m * k,
                  k, V + size_t(xi) * k * T, T, 0.f, M + size_t(xi) * m * T, T);
#pragma omp for collapse(2) schedule(guided)
    for (int o = 0; o < m; ++o)
      for (int g = g0; g < g1; ++g) {
        const size_t off = (size_t(g / th) * m + o) * plane;
        output_tile_row(M + size_t(o) * T + size_t(g - g0) * tw, size_t(m) * T, h, w, g % th, tw,
                        out + off, ep.bias ? ep.bias[o] : 0.f, ep.relu,
                        ep.mask ? ep.mask + off : nullptr);
      }
  }
}

}  // namespace

bool winograd_applicable(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad == 1 && s.c >= 1 && s.o >= 1;
}

void winograd_conv3x3_fwd(const float* x, const float* w, const float* b, float* y,
                          const ConvShape& s, bool relu) {
  if (s.n <= 0 || s.h <= 0 || s.w <= 0) return;
  auto f = transformed(w, s.o, s.c, false);
  winograd_run(x, s.n, s.c, s.h, s.w, f->u.data(), s.o, y, Epilogue{b, relu, nullptr});
}

void winograd_conv3x3_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                               const ConvShape& s) {
  if (s.n <= 0 || s.h <= 0 || s.w <= 0) return;
  auto f = transformed(w, s.o, s.c, true);
  winograd_run(dy, s.n, s.o, s.h, s.w, f->u.data(), s.c, dx, Epilogue{nullptr, false, mask});
}

void winograd_clear_cache() {
  FilterCache& fc = cache();
  std::lock_guard<std::mutex> lock(fc.mu);
  fc.entries.clear();
  fc.bytes = 0;
}

}  // namespace preimage::cpu
