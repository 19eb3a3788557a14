// CPU conv2d forward / backward-data / backward-filter: im2col + OpenBLAS sgemm, tiled over
// output rows so the column buffer stays ~16 MB whatever the image size (a 512² conv1_2 would
// need 600 MB untiled). Paired with kernels/conv2d.cu (same semantics, see kernels/kernels.h).
//   x: (N,C,H,W)  w: (O,C,KH,KW)  y: (N,O,HO,WO)
//   forward:  Y[:, tile] = W(O×K) · col(K×tile) (+bias, ReLU fused into the tile's epilogue)
//   data:     col(K×tile) = Wᵀ · dY[:, tile]; col2im adds into dx (tiles in order: no races)
//   filter:   dW(O×K) += dY[:, tile] · col(K×tile)ᵀ;  db += row sums of dY
// 1×1 stride-1 unpadded convolutions skip im2col (the input already is the column matrix).
// 3×3 stride-1 pad-1 convolutions forward and backward-data go through Winograd F(4×4, 3×3)
// (engine/cpu/winograd.cpp) unless the direct path is forced (conv_algo in cpu_ops.h,
// PREIMAGE_CPU_CONV=direct); the gradient w.r.t. the filters always takes the direct path.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "engine/cpu/winograd.h"
#include "preimage/error.h"

namespace preimage::cpu {
namespace {

constexpr size_t kColBudget = size_t(4) << 20;  // floats per column tile

std::vector<float>& scratch() {
  thread_local std::vector<float> buf;
  return buf;
}

bool is_pointwise(const ConvShape& s) {
  return s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0;
}

int tile_rows(const ConvShape& s) {
  size_t k = size_t(s.c) * s.kh * s.kw;
  size_t rows = kColBudget / std::max<size_t>(1, k * s.wo());
  return int(std::clamp<size_t>(rows, 1, size_t(s.ho())));
}

// col[(c,ky,kx), (r - r0)*WO + ox] = x[c, r*stride - pad + ky, ox*stride - pad + kx] (0 outside)
void im2col(const float* x, const ConvShape& s, int r0, int r1, float* col) {
  const int wo = s.wo(), kk = s.kh * s.kw, k = s.c * kk;
  const size_t cols = size_t(r1 - r0) * wo;
#pragma omp parallel for schedule(static)
  for (int row = 0; row < k; ++row) {
    const int c = row / kk, ky = (row % kk) / s.kw, kx = row % s.kw;
    const float* xc = x + size_t(c) * s.h * s.w;
    float* out = col + size_t(row) * cols;
    for (int r = r0; r < r1; ++r) {
      const int iy = r * s.stride - s.pad + ky;
      float* o = out + size_t(r - r0) * wo;
      if (iy < 0 || iy >= s.h) {
        std::fill(o, o + wo, 0.f);
        continue;
      }
      const float* xr = xc + size_t(iy) * s.w;
      if (s.stride == 1) {
        // contiguous run: ox in [lo, hi) maps to ix = ox - pad + kx inside the row
        const int lo = std::clamp(s.pad - kx, 0, wo), hi = std::clamp(s.w + s.pad - kx, lo, wo);
        std::fill(o, o + lo, 0.f);
        std::memcpy(o + lo, xr + (lo - s.pad + kx), sizeof(float) * (hi - lo));
        std::fill(o + hi, o + wo, 0.f);
      } else {
        for (int ox = 0; ox < wo; ++ox) {
          const int ix = ox * s.stride - s.pad + kx;
          o[ox] = (ix >= 0 && ix < s.w) ? xr[ix] : 0.f;
        }
      }
    }
  }
}

// dx[c, iy, ix] += col[(c,ky,kx), ...]: parallel over channels, so no two threads touch one
// element.
void col2im_add(const float* col, const ConvShape& s, int r0, int r1, float* dx) {
  const int wo = s.wo(), kk = s.kh * s.kw;
  const size_t cols = size_t(r1 - r0) * wo;
#pragma omp parallel for schedule(static)
  for (int c = 0; c < s.c; ++c) {
    float* xc = dx + size_t(c) * s.h * s.w;
    for (int q = 0; q < kk; ++q) {
      const int ky = q / s.kw, kx = q % s.kw;
      const float* in = col + size_t(c * kk + q) * cols;
      for (int r = r0; r < r1; ++r) {
        const int iy = r * s.stride - s.pad + ky;
        if (iy < 0 || iy >= s.h) continue;
        float* xr = xc + size_t(iy) * s.w;
        const float* src = in + size_t(r - r0) * wo;
        if (s.stride == 1) {
          const int lo = std::clamp(s.pad - kx, 0, wo), hi = std::clamp(s.w + s.pad - kx, lo, wo);
          float* d = xr + (lo - s.pad + kx);
#pragma omp simd
          for (int i = 0; i < hi - lo; ++i) d[i] += src[lo + i];
        } else {
          for (int ox = 0; ox < wo; ++ox) {
            const int ix = ox * s.stride - s.pad + kx;
            if (ix >= 0 && ix < s.w) xr[ix] += src[ox];
          }
        }
      }
    }
  }
}

std::atomic<int> g_algo_override{-1};  // -1: PREIMAGE_CPU_CONV decides

ConvAlgo algo_from_env() {
  const char* e = std::getenv("PREIMAGE_CPU_CONV");
  if (!e || !*e) return ConvAlgo::Auto;
  const std::string v = e;
  if (v == "auto") return ConvAlgo::Auto;
  if (v == "direct") return ConvAlgo::Direct;
  if (v == "winograd") return ConvAlgo::Winograd;
  throw Error("PREIMAGE_CPU_CONV: expected auto, direct or winograd, got '" + v + "'");
}

// Auto: Winograd where both channel counts are ≥ 16 (conv1_1 with its 3 input channels, and its
// backward-data into the image, stay on im2col, whose GEMM is better shaped there).
bool use_winograd(const ConvShape& s, int k_in, int m_out) {
  if (!winograd_applicable(s)) return false;
  switch (conv_algo()) {
    case ConvAlgo::Direct:
      return false;
    case ConvAlgo::Winograd:
      return true;
    case ConvAlgo::Auto:
      break;
  }
  return k_in >= 16 && m_out >= 16;
}

}  // namespace

ConvAlgo conv_algo() {
  const int o = g_algo_override.load(std::memory_order_relaxed);
  return o >= 0 ? ConvAlgo(o) : algo_from_env();
}

void set_conv_algo(ConvAlgo a) {
  g_algo_override.store(int(a), std::memory_order_relaxed);
}

void reset_conv_algo() {
  g_algo_override.store(-1, std::memory_order_relaxed);
}

void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                bool relu) {
  if (use_winograd(s, s.c, s.o)) {
    winograd_conv3x3_fwd(x, w, b, y, s, relu);
    return;
  }
  const int ho = s.ho(), wo = s.wo(), k = s.c * s.kh * s.kw;
  const size_t out_plane = size_t(ho) * wo;
  const int rows = tile_rows(s);
  auto& col = scratch();
  if (!is_pointwise(s)) col.resize(size_t(k) * rows * wo);
  for (int n = 0; n < s.n; ++n) {
    const float* xn = x + size_t(n) * s.c * s.h * s.w;
    float* yn = y + size_t(n) * s.o * out_plane;
    for (int r0 = 0; r0 < ho; r0 += rows) {
      const int r1 = std::min(ho, r0 + rows);
      const int cols = (r1 - r0) * wo;
      const float* src = xn + size_t(r0) * wo;
      int ld = int(out_plane);
      if (!is_pointwise(s)) {
        im2col(xn, s, r0, r1, col.data());
        src = col.data();
        ld = cols;
      }
      float* dst = yn + size_t(r0) * wo;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.o, cols, k, 1.f, w, k, src, ld, 0.f,
                  dst, int(out_plane));
      if (b || relu) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < s.o; ++o) {
          float* d = dst + size_t(o) * out_plane;
          const float bo = b ? b[o] : 0.f;
          if (relu) {
#pragma omp simd
            for (int i = 0; i < cols; ++i) d[i] = std::max(d[i] + bo, 0.f);
          } else {
#pragma omp simd
            for (int i = 0; i < cols; ++i) d[i] += bo;
          }
        }
      }
    }
  }
}

void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                     const ConvShape& s) {
  if (use_winograd(s, s.o, s.c)) {
    winograd_conv3x3_bwd_data(dy, w, mask, dx, s);
    return;
  }
  const int ho = s.ho(), wo = s.wo(), k = s.c * s.kh * s.kw;
  const size_t out_plane = size_t(ho) * wo, in_size = size_t(s.c) * s.h * s.w;
  if (is_pointwise(s)) {
    for (int n = 0; n < s.n; ++n)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, int(out_plane), s.o, 1.f, w, k,
                  dy + n * s.o * out_plane, int(out_plane), 0.f, dx + n * in_size, int(out_plane));
  } else {
    const int rows = tile_rows(s);
    auto& col = scratch();
    col.resize(size_t(k) * rows * wo);
    fill(dx, 0.f, in_size * s.n);
    for (int n = 0; n < s.n; ++n) {
      for (int r0 = 0; r0 < ho; r0 += rows) {
        const int r1 = std::min(ho, r0 + rows);
        const int cols = (r1 - r0) * wo;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, cols, s.o, 1.f, w, k,
                    dy + n * s.o * out_plane + size_t(r0) * wo, int(out_plane), 0.f, col.data(),
                    cols);
        col2im_add(col.data(), s, r0, r1, dx + n * in_size);
      }
    }
  }
  if (mask) {
    const size_t total = in_size * s.n;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < total; ++i) dx[i] = mask[i] > 0.f ? dx[i] : 0.f;
  }
}

void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                       bool accumulate) {
  const int ho = s.ho(), wo = s.wo(), k = s.c * s.kh * s.kw;
  const size_t out_plane = size_t(ho) * wo, in_size = size_t(s.c) * s.h * s.w;
  const int rows = tile_rows(s);
  auto& col = scratch();
  if (!is_pointwise(s)) col.resize(size_t(k) * rows * wo);
  float beta = accumulate ? 1.f : 0.f;
  for (int n = 0; n < s.n; ++n) {
    for (int r0 = 0; r0 < ho; r0 += rows) {
      const int r1 = std::min(ho, r0 + rows);
      const int cols = (r1 - r0) * wo;
      const float* src = x + n * in_size + size_t(r0) * wo;
      int ld = int(out_plane);
      if (!is_pointwise(s)) {
        im2col(x + n * in_size, s, r0, r1, col.data());
        src = col.data();
        ld = cols;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.o, k, cols, 1.f,
                  dy + n * s.o * out_plane + size_t(r0) * wo, int(out_plane), src, ld, beta, dw, k);
      beta = 1.f;
    }
  }
  if (s.n == 0 && !accumulate) fill(dw, 0.f, size_t(s.o) * k);
  if (db) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < s.o; ++o) {
      double acc = 0;
      for (int n = 0; n < s.n; ++n) {
        const float* d = dy + (size_t(n) * s.o + o) * out_plane;
        double part = 0;
#pragma omp simd reduction(+ : part)
        for (size_t i = 0; i < out_plane; ++i) part += d[i];
        acc += part;
      }
      db[o] = float(accumulate ? db[o] + acc : acc);
    }
  }
}

}  // namespace preimage::cpu
