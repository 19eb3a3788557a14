/*
HOG / dense SIFT as differentiable ops: oriented-gradient cell histograms, L2-Hys block
normalization (Dalal–Triggs HOG, dense SIFT) and the UoCTTI normalization (Felzenszwalb et al.),
forward and backward. Definitions (shared with the CPU reference engine/cpu/hog.cpp) in
kernels/hog_shape.h and docs/descriptors.md.

Layouts: x, dx (N,C,H,W), C = 1 or 3 (luma)    hist, dhist (N,B,HC,WC), HC = H / cell
         blocks y, dy (N,block²·B,HB,WB)        uoctti y, dy (N,31,HC−2,WC−2), hist B = 18

Algorithm (one version of each; all gather, so every output is written once, without atomics or
a memset, deterministically):
  hog_cells_fwd   one thread per histogram entry (n, bin, cell): visits the pixels whose votes
                  reach the cell (2·cell × 2·cell bilinear, cell × cell box), recomputes their
                  gradient and orientation votes, and sums magnitude × spatial × angular weight.
  hog_cells_bwd   one thread per pixel (n, y, x): the image enters the gradients of its four
                  neighbours (±x, ±y); for each, the vote adjoint (∂/∂gx, ∂/∂gy of
                  m·(a0·s0 + a1·s1), s = dhist gathered over the pixel's cells) is recomputed;
                  writes all C channels (luma weights).
  hog_block_fwd   one thread per output entry: block norms recomputed from the histogram.
  hog_block_bwd   one thread per histogram entry: sums the L2-Hys adjoints of the (at most
                  block²) blocks holding the cell, each from its recomputed block scalars.
  hog_uoctti_fwd  one thread per output entry (n, feature, cell): the four window norms from the
                  cell energies, then the feature.
  hog_uoctti_bwd  one thread per histogram entry: the direct (numerator) term of its own cell
                  plus, for each output cell in the 3×3 neighbourhood whose norm windows hold the
                  cell, ∂E/∂n_k · ∂n_k/∂energy · ∂energy/∂h.

Test: ctest -R hog   (test/test_hog.cpp: every op vs preimage::cpu on odd shapes, C = 1 and 3,
      soft/hard bins, bilinear/box cells, NaN-prefilled outputs, all three simulator thread
      orders).
Bench: not benchmarked (a HOG of a 512² image is ~10⁷ flops; inversion time is the solver's).
*/
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

constexpr int kThreads = 256;
constexpr float kTextureWeight = 0.2357f;

unsigned blocks_for(long long total) {
  const long long b = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

struct CellGeom {
  int n, c, h, w, cell, bins, hc, wc;
  bool sgn, soft, bilinear;
};

CellGeom cell_geom(const HogCellShape& s) {
  if (s.n < 1 || (s.c != 1 && s.c != 3) || s.h < 1 || s.w < 1 || s.cell < 1 || s.bins < 2 ||
      s.hc() < 1 || s.wc() < 1)
    throw std::invalid_argument("hog_cells: invalid shape (n=" + std::to_string(s.n) +
                                " c=" + std::to_string(s.c) + " " + std::to_string(s.h) + "x" +
                                std::to_string(s.w) + " cell=" + std::to_string(s.cell) +
                                " bins=" + std::to_string(s.bins) + ")");
  return {s.n,    s.c,    s.h,           s.w,         s.cell,          s.bins,
          s.hc(), s.wc(), s.signed_bins, s.soft_bins, s.bilinear_cells};
}

__device__ __forceinline__ float grey_at(const float* __restrict__ xn, const CellGeom& g, int y,
                                         int x) {
  const long long plane = (long long)g.h * g.w, i = (long long)y * g.w + x;
  if (g.c == 1) return xn[i];
  return 0.299f * xn[i] + 0.587f * xn[plane + i] + 0.114f * xn[2 * plane + i];
}

__device__ __forceinline__ void gradient_at(const float* __restrict__ xn, const CellGeom& g, int y,
                                            int x, float* gx, float* gy) {
  *gx = (x > 0 && x < g.w - 1) ? grey_at(xn, g, y, x + 1) - grey_at(xn, g, y, x - 1) : 0.f;
  *gy = (y > 0 && y < g.h - 1) ? grey_at(xn, g, y + 1, x) - grey_at(xn, g, y - 1, x) : 0.f;
}

// Orientation votes: bins k0, k1 with weights a0, a1, and d a1/dθ.
__device__ __forceinline__ void votes_of(float gx, float gy, const CellGeom& g, int* k0, int* k1,
                                         float* a0, float* a1, float* slope) {
  const float pi = 3.14159265358979323846f;
  const float period = g.sgn ? 2.f * pi : pi;
  float theta = atan2f(gy, gx);
  if (theta < 0.f) theta += period;
  if (theta >= period) theta -= period;
  const float bw = period / (float)g.bins;
  if (g.soft) {
    const float t = theta / bw - 0.5f;
    const float f = floorf(t);
    *a1 = t - f;
    *a0 = 1.f - *a1;
    *k0 = ((int)f + g.bins) % g.bins;
    *k1 = (*k0 + 1) % g.bins;
    *slope = 1.f / bw;
  } else {
    const int k = (int)(theta / bw);
    *k0 = k < g.bins - 1 ? k : g.bins - 1;
    *k1 = *k0;
    *a0 = 1.f;
    *a1 = 0.f;
    *slope = 0.f;
  }
}

// Spatial weight of pixel coordinate p in cell c along one axis (0 when it does not vote there).
__device__ __forceinline__ float cell_weight(int p, int c, const CellGeom& g) {
  if (!g.bilinear) return p / g.cell == c ? 1.f : 0.f;
  const float f = ((float)p + 0.5f) / (float)g.cell - 0.5f;
  const float fl = floorf(f);
  const int c0 = (int)fl;
  const float t = f - fl;
  return c == c0 ? 1.f - t : (c == c0 + 1 ? t : 0.f);
}

// First cell a coordinate votes into along an axis (the second is first + 1 when bilinear).
__device__ __forceinline__ int first_cell(int p, const CellGeom& g) {
  if (!g.bilinear) return p / g.cell;
  return (int)floorf(((float)p + 0.5f) / (float)g.cell - 0.5f);
}

__global__ void hog_cells_fwd_kernel(const float* __restrict__ x, float* __restrict__ hist,
                                     CellGeom g) {
  const long long total = (long long)g.n * g.bins * g.hc * g.wc;
  const float norm = 1.f / ((float)g.cell * (float)g.cell);
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int cx = (int)(e % g.wc), cy = (int)((e / g.wc) % g.hc);
    const int k = (int)((e / ((long long)g.wc * g.hc)) % g.bins);
    const int n = (int)(e / ((long long)g.wc * g.hc * g.bins));
    const float* xn = x + (long long)n * g.c * g.h * g.w;
    const int y0 = g.bilinear ? cy * g.cell - g.cell : cy * g.cell;
    const int y1 = g.bilinear ? cy * g.cell + 2 * g.cell : cy * g.cell + g.cell;
    const int x0 = g.bilinear ? cx * g.cell - g.cell : cx * g.cell;
    const int x1 = g.bilinear ? cx * g.cell + 2 * g.cell : cx * g.cell + g.cell;
    float acc = 0.f;
    for (int y = y0 > 0 ? y0 : 0; y < y1 && y < g.h; ++y) {
      const float wy = cell_weight(y, cy, g);
      if (wy == 0.f) continue;
      for (int xx = x0 > 0 ? x0 : 0; xx < x1 && xx < g.w; ++xx) {
        const float wx = cell_weight(xx, cx, g);
        if (wx == 0.f) continue;
        float gx, gy;
        gradient_at(xn, g, y, xx, &gx, &gy);
        const float m = sqrtf(gx * gx + gy * gy);
        if (!(m > 0.f)) continue;
        int k0, k1;
        float a0, a1, slope;
        votes_of(gx, gy, g, &k0, &k1, &a0, &a1, &slope);
        const float w = m * wy * wx * norm;
        if (k0 == k) acc += w * a0;
        if (k1 == k) acc += w * a1;
      }
    }
    hist[e] = acc;
  }
}

// ∂/∂gx and ∂/∂gy of the pixel's votes against dhist.
__device__ __forceinline__ void vote_adjoint(const float* __restrict__ xn,
                                             const float* __restrict__ dh, const CellGeom& g, int y,
                                             int x, float* dgx, float* dgy) {
  *dgx = 0.f;
  *dgy = 0.f;
  float gx, gy;
  gradient_at(xn, g, y, x, &gx, &gy);
  const float m = sqrtf(gx * gx + gy * gy);
  if (!(m > 0.f)) return;
  int k0, k1;
  float a0, a1, slope;
  votes_of(gx, gy, g, &k0, &k1, &a0, &a1, &slope);
  const float norm = 1.f / ((float)g.cell * (float)g.cell);
  const int cy0 = first_cell(y, g), cx0 = first_cell(x, g);
  const int span = g.bilinear ? 2 : 1;
  const long long plane = (long long)g.hc * g.wc;
  float s0 = 0.f, s1 = 0.f;
  for (int cy = cy0; cy < cy0 + span; ++cy) {
    if (cy < 0 || cy >= g.hc) continue;
    const float wy = cell_weight(y, cy, g);
    for (int cx = cx0; cx < cx0 + span; ++cx) {
      if (cx < 0 || cx >= g.wc) continue;
      const float w = wy * cell_weight(x, cx, g) * norm;
      const long long at = (long long)cy * g.wc + cx;
      s0 += w * dh[k0 * plane + at];
      s1 += w * dh[k1 * plane + at];
    }
  }
  const float lm = a0 * s0 + a1 * s1;
  const float lt = slope * (s1 - s0);
  *dgx = (lm * gx - lt * gy) / m;
  *dgy = (lm * gy + lt * gx) / m;
}

__global__ void hog_cells_bwd_kernel(const float* __restrict__ x, const float* __restrict__ dhist,
                                     float* __restrict__ dx, CellGeom g) {
  const long long plane = (long long)g.h * g.w;
  const long long total = (long long)g.n * plane;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int n = (int)(e / plane), p = (int)(e % plane), y = p / g.w, xx = p % g.w;
    const float* xn = x + (long long)n * g.c * plane;
    const float* dh = dhist + (long long)n * g.bins * g.hc * g.wc;
    float d = 0.f, dgx, dgy;
    // grey(y, x) = +1 in gx of (y, x−1), −1 in gx of (y, x+1); same for gy along rows.
    if (xx - 1 > 0 && xx - 1 < g.w - 1) {
      vote_adjoint(xn, dh, g, y, xx - 1, &dgx, &dgy);
      d += dgx;
    }
    if (xx + 1 > 0 && xx + 1 < g.w - 1) {
      vote_adjoint(xn, dh, g, y, xx + 1, &dgx, &dgy);
      d -= dgx;
    }
    if (y - 1 > 0 && y - 1 < g.h - 1) {
      vote_adjoint(xn, dh, g, y - 1, xx, &dgx, &dgy);
      d += dgy;
    }
    if (y + 1 > 0 && y + 1 < g.h - 1) {
      vote_adjoint(xn, dh, g, y + 1, xx, &dgx, &dgy);
      d -= dgy;
    }
    float* dxn = dx + (long long)n * g.c * plane;
    if (g.c == 1) {
      dxn[p] = d;
    } else {
      dxn[p] = 0.299f * d;
      dxn[plane + p] = 0.587f * d;
      dxn[2 * plane + p] = 0.114f * d;
    }
  }
}

// ---- L2-Hys blocks -------------------------------------------------------------------------
struct BlockGeom {
  int n, bins, hc, wc, block, stride, hb, wb, d;
  float clip, eps;
};

BlockGeom block_geom(const HogBlockShape& s) {
  if (s.n < 1 || s.bins < 1 || s.block < 1 || s.stride < 1 || s.hc < s.block || s.wc < s.block ||
      !(s.clip > 0.f) || !(s.eps > 0.f))
    throw std::invalid_argument("hog_block: invalid shape (" + std::to_string(s.hc) + "x" +
                                std::to_string(s.wc) + " cells, block=" + std::to_string(s.block) +
                                " stride=" + std::to_string(s.stride) + ")");
  return {s.n, s.bins, s.hc, s.wc, s.block, s.stride, s.hb(), s.wb(), s.channels(), s.clip, s.eps};
}

__device__ __forceinline__ float block_value(const float* __restrict__ hn, const BlockGeom& g,
                                             int i, int j, int d) {
  const int o = d % g.bins, b = d / g.bins, by = b / g.block, bx = b % g.block;
  return hn[((long long)o * g.hc + i * g.stride + by) * g.wc + j * g.stride + bx];
}

// n1 = sqrt(‖v‖² + eps²), n2 = sqrt(‖min(v/n1, clip)‖² + eps²) of block (i, j).
__device__ __forceinline__ void block_norms(const float* __restrict__ hn, const BlockGeom& g, int i,
                                            int j, float* n1, float* n2) {
  float ss = 0.f;
  for (int d = 0; d < g.d; ++d) {
    const float v = block_value(hn, g, i, j, d);
    ss += v * v;
  }
  *n1 = sqrtf(ss + g.eps * g.eps);
  float cs = 0.f;
  for (int d = 0; d < g.d; ++d) {
    const float c = fminf(block_value(hn, g, i, j, d) / *n1, g.clip);
    cs += c * c;
  }
  *n2 = sqrtf(cs + g.eps * g.eps);
}

__global__ void hog_block_fwd_kernel(const float* __restrict__ hist, float* __restrict__ y,
                                     BlockGeom g) {
  const long long total = (long long)g.n * g.d * g.hb * g.wb;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(e % g.wb), i = (int)((e / g.wb) % g.hb);
    const int d = (int)((e / ((long long)g.wb * g.hb)) % g.d);
    const int n = (int)(e / ((long long)g.wb * g.hb * g.d));
    const float* hn = hist + (long long)n * g.bins * g.hc * g.wc;
    float n1, n2;
    block_norms(hn, g, i, j, &n1, &n2);
    y[e] = fminf(block_value(hn, g, i, j, d) / n1, g.clip) / n2;
  }
}

__global__ void hog_block_bwd_kernel(const float* __restrict__ hist, const float* __restrict__ dy,
                                     float* __restrict__ dhist, BlockGeom g) {
  const long long total = (long long)g.n * g.bins * g.hc * g.wc;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int cx = (int)(e % g.wc), cy = (int)((e / g.wc) % g.hc);
    const int o = (int)((e / ((long long)g.wc * g.hc)) % g.bins);
    const int n = (int)(e / ((long long)g.wc * g.hc * g.bins));
    const float* hn = hist + (long long)n * g.bins * g.hc * g.wc;
    const float* dyn = dy + (long long)n * g.d * g.hb * g.wb;
    const float v_self = hn[((long long)o * g.hc + cy) * g.wc + cx];
    const int lo_y = cy - g.block + 1 > 0 ? (cy - g.block + 1 + g.stride - 1) / g.stride : 0;
    const int lo_x = cx - g.block + 1 > 0 ? (cx - g.block + 1 + g.stride - 1) / g.stride : 0;
    const int hi_y = cy / g.stride < g.hb - 1 ? cy / g.stride : g.hb - 1;
    const int hi_x = cx / g.stride < g.wb - 1 ? cx / g.stride : g.wb - 1;
    float acc = 0.f;
    for (int i = lo_y; i <= hi_y; ++i)
      for (int j = lo_x; j <= hi_x; ++j) {
        const int by = cy - i * g.stride, bx = cx - j * g.stride;
        if (by >= g.block || bx >= g.block) continue;
        float n1, n2;
        block_norms(hn, g, i, j, &n1, &n2);
        const long long plane = (long long)g.hb * g.wb, at = (long long)i * g.wb + j;
        float a = 0.f;
        for (int d = 0; d < g.d; ++d)
          a += dyn[d * plane + at] * fminf(block_value(hn, g, i, j, d) / n1, g.clip);
        const float n2c = n2 * n2 * n2;
        float b = 0.f, du_self = 0.f;
        const int d_self = (by * g.block + bx) * g.bins + o;
        for (int d = 0; d < g.d; ++d) {
          const float v = block_value(hn, g, i, j, d);
          const float u = v / n1;
          const float c = fminf(u, g.clip);
          const float du = u < g.clip ? dyn[d * plane + at] / n2 - c * a / n2c : 0.f;
          b += du * v;
          if (d == d_self) du_self = du;
        }
        acc += du_self / n1 - v_self * b / (n1 * n1 * n1);
      }
    dhist[e] = acc;
  }
}

// ---- UoCTTI --------------------------------------------------------------------------------
struct UocttiGeom {
  int n, hc, wc, ho, wo;
  float clip, eps;
};

UocttiGeom uoctti_geom(const HogUocttiShape& s) {
  if (s.n < 1 || s.hc < 3 || s.wc < 3 || !(s.clip > 0.f) || !(s.eps > 0.f))
    throw std::invalid_argument("hog_uoctti: invalid shape (" + std::to_string(s.hc) + "x" +
                                std::to_string(s.wc) + " cells; at least 3x3 needed)");
  return {s.n, s.hc, s.wc, s.ho(), s.wo(), s.clip, s.eps};
}

__device__ __forceinline__ float h_at(const float* __restrict__ hn, const UocttiGeom& g, int o,
                                      int cy, int cx) {
  return hn[((long long)o * g.hc + cy) * g.wc + cx];
}

__device__ __forceinline__ float energy(const float* __restrict__ hn, const UocttiGeom& g, int cy,
                                        int cx) {
  float e = 0.f;
  for (int o = 0; o < 9; ++o) {
    const float s = h_at(hn, g, o, cy, cx) + h_at(hn, g, o + 9, cy, cx);
    e += s * s;
  }
  return e;
}

// n_k of the output cell at cell (cy, cx).
__device__ __forceinline__ float window_norm(const float* __restrict__ hn, const UocttiGeom& g,
                                             int cy, int cx, int k) {
  const int ty = cy + k / 2 - 1, tx = cx + k % 2 - 1;
  const float s = energy(hn, g, ty, tx) + energy(hn, g, ty, tx + 1) + energy(hn, g, ty + 1, tx) +
                  energy(hn, g, ty + 1, tx + 1);
  return 1.f / sqrtf(s + g.eps);
}

__global__ void hog_uoctti_fwd_kernel(const float* __restrict__ hist, float* __restrict__ y,
                                      UocttiGeom g) {
  const long long total = (long long)g.n * kUocttiDims * g.ho * g.wo;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int j = (int)(e % g.wo), i = (int)((e / g.wo) % g.ho);
    const int f = (int)((e / ((long long)g.wo * g.ho)) % kUocttiDims);
    const int n = (int)(e / ((long long)g.wo * g.ho * kUocttiDims));
    const float* hn = hist + (long long)n * kUocttiBins * g.hc * g.wc;
    const int cy = i + 1, cx = j + 1;
    float out = 0.f;
    if (f < 27) {
      const float v = f < 18 ? h_at(hn, g, f, cy, cx)
                             : h_at(hn, g, f - 18, cy, cx) + h_at(hn, g, f - 9, cy, cx);
      float acc = 0.f;
      for (int k = 0; k < 4; ++k) acc += fminf(v * window_norm(hn, g, cy, cx, k), g.clip);
      out = 0.5f * acc;
    } else {
      const float nk = window_norm(hn, g, cy, cx, f - 27);
      float acc = 0.f;
      for (int o = 0; o < 18; ++o) acc += fminf(h_at(hn, g, o, cy, cx) * nk, g.clip);
      out = kTextureWeight * acc;
    }
    y[e] = out;
  }
}

__global__ void hog_uoctti_bwd_kernel(const float* __restrict__ hist, const float* __restrict__ dy,
                                      float* __restrict__ dhist, UocttiGeom g) {
  const long long total = (long long)g.n * kUocttiBins * g.hc * g.wc;
  const long long oplane = (long long)g.ho * g.wo;
  for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
       e += (long long)gridDim.x * blockDim.x) {
    const int cx = (int)(e % g.wc), cy = (int)((e / g.wc) % g.hc);
    const int o = (int)((e / ((long long)g.wc * g.hc)) % kUocttiBins);
    const int n = (int)(e / ((long long)g.wc * g.hc * kUocttiBins));
    const float* hn = hist + (long long)n * kUocttiBins * g.hc * g.wc;
    const float* dyn = dy + (long long)n * kUocttiDims * oplane;
    const int u = o % 9;
    const float pair = h_at(hn, g, u, cy, cx) + h_at(hn, g, u + 9, cy, cx);
    float acc = 0.f;
    for (int oy = cy - 2; oy <= cy; ++oy) {
      if (oy < 0 || oy >= g.ho) continue;
      for (int ox = cx - 2; ox <= cx; ++ox) {
        if (ox < 0 || ox >= g.wo) continue;
        const int ocy = oy + 1, ocx = ox + 1;
        const long long at = (long long)oy * g.wo + ox;
        for (int k = 0; k < 4; ++k) {
          const float nk = window_norm(hn, g, ocy, ocx, k);
          const float gt = kTextureWeight * dyn[(27 + k) * oplane + at];
          if (ocy == cy && ocx == cx) {
            if (h_at(hn, g, o, cy, cx) * nk < g.clip)
              acc += (0.5f * dyn[o * oplane + at] + gt) * nk;
            if (pair * nk < g.clip) acc += 0.5f * dyn[(18 + u) * oplane + at] * nk;
          }
          const int ty = ocy + k / 2 - 1, tx = ocx + k % 2 - 1;
          if (cy - ty < 0 || cy - ty > 1 || cx - tx < 0 || cx - tx > 1) continue;
          float dn = 0.f;
          for (int q = 0; q < 18; ++q) {
            const float v = h_at(hn, g, q, ocy, ocx);
            if (v * nk < g.clip) dn += (0.5f * dyn[q * oplane + at] + gt) * v;
          }
          for (int q = 0; q < 9; ++q) {
            const float s = h_at(hn, g, q, ocy, ocx) + h_at(hn, g, q + 9, ocy, ocx);
            if (s * nk < g.clip) dn += 0.5f * dyn[(18 + q) * oplane + at] * s;
          }
          acc += dn * (-0.5f * nk * nk * nk) * 2.f * pair;
        }
      }
    }
    dhist[e] = acc;
  }
}

}  // namespace

void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s) {
  const CellGeom g = cell_geom(s);
  cuda::launch(hog_cells_fwd_kernel, dim3(blocks_for((long long)g.n * g.bins * g.hc * g.wc)),
               dim3(kThreads), 0, nullptr, x, hist, g);
}

void hog_cells_bwd(const float* x, const float* dhist, float* dx, const HogCellShape& s) {
  const CellGeom g = cell_geom(s);
  cuda::launch(hog_cells_bwd_kernel, dim3(blocks_for((long long)g.n * g.h * g.w)), dim3(kThreads),
               0, nullptr, x, dhist, dx, g);
}

void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s) {
  const BlockGeom g = block_geom(s);
  cuda::launch(hog_block_fwd_kernel, dim3(blocks_for((long long)g.n * g.d * g.hb * g.wb)),
               dim3(kThreads), 0, nullptr, hist, y, g);
}

void hog_block_bwd(const float* hist, const float* dy, float* dhist, const HogBlockShape& s) {
  const BlockGeom g = block_geom(s);
  cuda::launch(hog_block_bwd_kernel, dim3(blocks_for((long long)g.n * g.bins * g.hc * g.wc)),
               dim3(kThreads), 0, nullptr, hist, dy, dhist, g);
}

void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s) {
  const UocttiGeom g = uoctti_geom(s);
  cuda::launch(hog_uoctti_fwd_kernel, dim3(blocks_for((long long)g.n * kUocttiDims * g.ho * g.wo)),
               dim3(kThreads), 0, nullptr, hist, y, g);
}

void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist, const HogUocttiShape& s) {
  const UocttiGeom g = uoctti_geom(s);
  cuda::launch(hog_uoctti_bwd_kernel, dim3(blocks_for((long long)g.n * kUocttiBins * g.hc * g.wc)),
               dim3(kThreads), 0, nullptr, hist, dy, dhist, g);
}

}  // namespace preimage::kernels
