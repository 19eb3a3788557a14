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
// (vs the im2col path and double loops, and all VGG-19 taps); benchmarked by bench/bench_vgg.cpp
// and bench/compare_torch.py (docs/benchmarks.md).
#include "engine/cpu/winograd.h"

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

// ---- input transform: V = Bᵀ d B for the tw tiles of tile row ty of one plane ---------------
// Tile tx covers x = 4tx−1 … 4tx+4; with x' = x+1 split by phase p = x' mod 4 into blocks
// b = x' / 4, the tile reads phases 0–3 of block tx and 0–1 of block tx+1.
void input_tile_row(const float* x, int h, int w, int ty, int tw, float* v, size_t xi_stride) {
  const int nb = tw + 1, len = 4 * nb;  // blocks per row, de-interleaved row length
  thread_local std::vector<float> buf;
  if (buf.size() < size_t(13) * len) buf.resize(size_t(13) * len);
  float* lin = buf.data();  // padded row, lin[x'] = x[x' − 1]
  float* P = lin + len;     // 6 rows × [phase][block]
  float* Q = P + 6 * len;   // Bᵀ along y, same layout
  for (int r = 0; r < 6; ++r) {
    const int y = 4 * ty - 1 + r;
    float* pr = P + r * len;
    if (y < 0 || y >= h) {
      std::fill(pr, pr + len, 0.f);
      continue;
    }
    lin[0] = 0.f;
    std::memcpy(lin + 1, x + size_t(y) * w, sizeof(float) * w);
    std::fill(lin + 1 + w, lin + len, 0.f);
    float *p0 = pr, *p1 = pr + nb, *p2 = pr + 2 * nb, *p3 = pr + 3 * nb;
#pragma omp simd
    for (int b = 0; b < nb; ++b) {
      p0[b] = lin[4 * b];
      p1[b] = lin[4 * b + 1];
      p2[b] = lin[4 * b + 2];
      p3[b] = lin[4 * b + 3];
    }
  }
  {
    const float *d0 = P, *d1 = P + len, *d2 = P + 2 * len, *d3 = P + 3 * len, *d4 = P + 4 * len,
                *d5 = P + 5 * len;
    float *q0 = Q, *q1 = Q + len, *q2 = Q + 2 * len, *q3 = Q + 3 * len, *q4 = Q + 4 * len,
          *q5 = Q + 5 * len;
#pragma omp simd
    for (int j = 0; j < len; ++j) {
      q0[j] = 4.f * d0[j] - 5.f * d2[j] + d4[j];
      q1[j] = -4.f * (d1[j] + d2[j]) + d3[j] + d4[j];
      q2[j] = 4.f * (d1[j] - d2[j]) - d3[j] + d4[j];
      q3[j] = 2.f * (d3[j] - d1[j]) - d2[j] + d4[j];
      q4[j] = 2.f * (d1[j] - d3[j]) - d2[j] + d4[j];
      q5[j] = 4.f * d1[j] - 5.f * d3[j] + d5[j];
    }
  }
  for (int i = 0; i < 6; ++i) {
    const float* qi = Q + i * len;
    const float *e0 = qi, *e1 = qi + nb, *e2 = qi + 2 * nb, *e3 = qi + 3 * nb, *e4 = qi + 1,
                *e5 = qi + nb + 1;
    float* v0 = v + size_t(i * 6) * xi_stride;
    float *v1 = v0 + xi_stride, *v2 = v1 + xi_stride, *v3 = v2 + xi_stride, *v4 = v3 + xi_stride,
          *v5 = v4 + xi_stride;
#pragma omp simd
    for (int t = 0; t < tw; ++t) {
      v0[t] = 4.f * e0[t] - 5.f * e2[t] + e4[t];
      v1[t] = -4.f * (e1[t] + e2[t]) + e3[t] + e4[t];
      v2[t] = 4.f * (e1[t] - e2[t]) - e3[t] + e4[t];
      v3[t] = 2.f * (e3[t] - e1[t]) - e2[t] + e4[t];
      v4[t] = 2.f * (e1[t] - e3[t]) - e2[t] + e4[t];
      v5[t] = 4.f * e1[t] - 5.f * e3[t] + e5[t];
    }
  }
}

struct Epilogue {
  const float* bias;  // per output channel, or null
  bool relu;
  const float* mask;  // same layout as the output: keep where mask > 0; or null
};

// ---- output transform: Y = Aᵀ M A for the tw tiles of tile row ty, epilogue, store ----------
void output_tile_row(const float* m, size_t xi_stride, int h, int w, int ty, int tw, float* y,
                     float bias, bool relu, const float* mask) {
  thread_local std::vector<float> buf;
  const size_t need = size_t(24 + 4 + 4) * tw;
  if (buf.size() < need) buf.resize(need);
  float* S = buf.data();    // [a][j][t]: Aᵀ along the first index
  float* O = S + 24 * tw;   // [b][t] of one output row
  float* lin = O + 4 * tw;  // that row re-interleaved
  for (int j = 0; j < 6; ++j) {
    const float *m0 = m + size_t(j) * xi_stride, *m1 = m + size_t(6 + j) * xi_stride,
                *m2 = m + size_t(12 + j) * xi_stride, *m3 = m + size_t(18 + j) * xi_stride,
                *m4 = m + size_t(24 + j) * xi_stride, *m5 = m + size_t(30 + j) * xi_stride;
    float *s0 = S + j * tw, *s1 = S + (6 + j) * tw, *s2 = S + (12 + j) * tw,
          *s3 = S + (18 + j) * tw;
#pragma omp simd
    for (int t = 0; t < tw; ++t) {
      const float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
      s0[t] = m0[t] + a + c;
      s1[t] = b + 2.f * d;
      s2[t] = a + 4.f * c;
      s3[t] = b + 8.f * d + m5[t];
    }
  }
  for (int r = 0; r < 4; ++r) {
    const int yy = 4 * ty + r;
    if (yy >= h) break;
    const float* sr = S + r * 6 * tw;
    const float *m0 = sr, *m1 = sr + tw, *m2 = sr + 2 * tw, *m3 = sr + 3 * tw, *m4 = sr + 4 * tw,
                *m5 = sr + 5 * tw;
    float *o0 = O, *o1 = O + tw, *o2 = O + 2 * tw, *o3 = O + 3 * tw;
#pragma omp simd
    for (int t = 0; t < tw; ++t) {
      const float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
      o0[t] = m0[t] + a + c;
      o1[t] = b + 2.f * d;
      o2[t] = a + 4.f * c;
      o3[t] = b + 8.f * d + m5[t];
    }
#pragma omp simd
    for (int t = 0; t < tw; ++t) {
      lin[4 * t] = o0[t];
      lin[4 * t + 1] = o1[t];
      lin[4 * t + 2] = o2[t];
      lin[4 * t + 3] = o3[t];
    }
    float* yr = y + size_t(yy) * w;
    if (mask) {
      const float* mr = mask + size_t(yy) * w;
#pragma omp simd
      for (int xx = 0; xx < w; ++xx) yr[xx] = mr[xx] > 0.f ? lin[xx] + bias : 0.f;
    } else if (relu) {
#pragma omp simd
      for (int xx = 0; xx < w; ++xx) yr[xx] = std::max(lin[xx] + bias, 0.f);
    } else {
#pragma omp simd
      for (int xx = 0; xx < w; ++xx) yr[xx] = lin[xx] + bias;
    }
  }
}

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
