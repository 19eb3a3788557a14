// CPU transposed convolution (PyTorch ConvTranspose2d layout, w: (C,O,K,K)) and leaky ReLU, the
// ops of the up-convolutional decoders (engine/features/decoder/decoder.cpp). Paired with
// kernels/conv_transpose.cu.
//
// With X the batch's input as a (C, N·H·W) matrix (images side by side) and W the weights as
// (C, O·K·K), one sgemm per op for the whole batch:
//   forward      cols (O·K·K, N·H·W) = Wᵀ X, then col2im scatters cols into y (N,O,HO,WO)
//                (y starts at the bias); oh = ih·stride − pad + kh.
//   bwd_data     cols = im2col(dy) with the same index map (zero outside), dX = W cols.
//   bwd_filter   dW (+)= X colsᵀ with cols = im2col(dy); db[o] = Σ dy[n,o,:,:] in double.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {
namespace {

// The whole batch goes through one sgemm per op: images side by side as columns, (C, N·H·W)
// ("batch-major columns"), so a call costs three parallel regions whatever N is.

// dst (C, N·plane) ← src (N, C, plane), or back when to_nc.
void batch_columns(const float* src, float* dst, int n, int c, size_t plane, bool to_nc) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < n; ++i)
    for (int ch = 0; ch < c; ++ch) {
      const float* from =
          to_nc ? src + (size_t(ch) * n + i) * plane : src + (size_t(i) * c + ch) * plane;
      float* to = to_nc ? dst + (size_t(i) * c + ch) * plane : dst + (size_t(ch) * n + i) * plane;
      std::copy(from, from + plane, to);
    }
}

// cols[(o,kh,kw), (n,ih,iw)] = dy[n, o, ih·s − p + kh, iw·s − p + kw] (0 outside).
void im2col_t(const float* dy, float* cols, const ConvTransposeShape& s) {
  const int ho = s.ho(), wo = s.wo(), k = s.k;
  const size_t plane = size_t(s.h) * s.w, ld = plane * s.n;
#pragma omp parallel for collapse(2) schedule(static)
  for (int r = 0; r < s.o * k * k; ++r)
    for (int n = 0; n < s.n; ++n) {
      const int o = r / (k * k), kh = (r / k) % k, kw = r % k;
      const float* src = dy + (size_t(n) * s.o + o) * ho * wo;
      float* dst = cols + size_t(r) * ld + size_t(n) * plane;
      for (int ih = 0; ih < s.h; ++ih) {
        const int oh = ih * s.stride - s.pad + kh;
        float* row = dst + size_t(ih) * s.w;
        if (oh < 0 || oh >= ho) {
          std::fill(row, row + s.w, 0.f);
          continue;
        }
        for (int iw = 0; iw < s.w; ++iw) {
          const int ow = iw * s.stride - s.pad + kw;
          row[iw] = (ow >= 0 && ow < wo) ? src[size_t(oh) * wo + ow] : 0.f;
        }
      }
    }
}

// y[n, o, oh, ow] = b[o] + Σ cols[(o,kh,kw), (n,ih,iw)]; parallel over (n, o) planes.
void col2im_t(const float* cols, const float* b, float* y, const ConvTransposeShape& s) {
  const int ho = s.ho(), wo = s.wo(), k = s.k;
  const size_t plane = size_t(s.h) * s.w, ld = plane * s.n;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < s.n; ++n)
    for (int o = 0; o < s.o; ++o) {
      float* dst = y + (size_t(n) * s.o + o) * ho * wo;
      std::fill(dst, dst + size_t(ho) * wo, b ? b[o] : 0.f);
      for (int kh = 0; kh < k; ++kh)
        for (int kw = 0; kw < k; ++kw) {
          const float* src = cols + (size_t(o) * k * k + size_t(kh) * k + kw) * ld + n * plane;
          for (int ih = 0; ih < s.h; ++ih) {
            const int oh = ih * s.stride - s.pad + kh;
            if (oh < 0 || oh >= ho) continue;
            float* row = dst + size_t(oh) * wo;
            const float* in = src + size_t(ih) * s.w;
            for (int iw = 0; iw < s.w; ++iw) {
              const int ow = iw * s.stride - s.pad + kw;
              if (ow >= 0 && ow < wo) row[ow] += in[iw];
            }
          }
        }
    }
}

}  // namespace

void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                        const ConvTransposeShape& s) {
  if (s.n == 0) return;
  const int okk = s.o * s.k * s.k;
  const size_t plane = size_t(s.h) * s.w;
  const int cols_n = int(plane * s.n);
  std::vector<float> xt(size_t(s.c) * cols_n), cols(size_t(okk) * cols_n);
  batch_columns(x, xt.data(), s.n, s.c, plane, false);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, okk, cols_n, s.c, 1.f, w, okk, xt.data(),
              cols_n, 0.f, cols.data(), cols_n);
  col2im_t(cols.data(), b, y, s);
}

void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                             const ConvTransposeShape& s) {
  if (s.n == 0) return;
  const int okk = s.o * s.k * s.k;
  const size_t plane = size_t(s.h) * s.w;
  const int cols_n = int(plane * s.n);
  std::vector<float> cols(size_t(okk) * cols_n), dxt(size_t(s.c) * cols_n);
  im2col_t(dy, cols.data(), s);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.c, cols_n, okk, 1.f, w, okk, cols.data(),
              cols_n, 0.f, dxt.data(), cols_n);
  batch_columns(dxt.data(), dx, s.n, s.c, plane, true);
}

void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                               const ConvTransposeShape& s, bool accumulate) {
  const int okk = s.o * s.k * s.k;
  const size_t plane = size_t(s.h) * s.w, out_plane = size_t(s.ho()) * s.wo();
  const int cols_n = int(plane * s.n);
  if (s.n > 0) {
    std::vector<float> xt(size_t(s.c) * cols_n), cols(size_t(okk) * cols_n);
    batch_columns(x, xt.data(), s.n, s.c, plane, false);
    im2col_t(dy, cols.data(), s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.c, okk, cols_n, 1.f, xt.data(), cols_n,
                cols.data(), cols_n, accumulate ? 1.f : 0.f, dw, okk);
  } else if (!accumulate) {
    std::fill(dw, dw + size_t(s.c) * okk, 0.f);
  }
  if (!db) return;
#pragma omp parallel for schedule(static)
  for (int o = 0; o < s.o; ++o) {
    double acc = 0;
    for (int n = 0; n < s.n; ++n) {
      const float* p = dy + (size_t(n) * s.o + o) * out_plane;
      for (size_t i = 0; i < out_plane; ++i) acc += p[i];
    }
    db[o] = accumulate ? float(db[o] + acc) : float(acc);
  }
}

void leaky_relu_fwd(const float* x, float* y, size_t n, float slope) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : slope * x[i];
}

void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t n, float slope) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : slope * dy[i];
}

}  // namespace preimage::cpu
