/*
Kernels for 2-D convolution: forward (bias + ReLU fused), backward-data (ReLU mask fused) and
backward-filter (+ bias gradient). FP32 throughout, no cuDNN/cuBLAS.

Layouts (all contiguous, row-major):
  x:  (N,C,H,W)     w: (O,C,KH,KW)     b: (O)     y, dy: (N,O,HO,WO)
  HO = (H + 2·pad - KH)/stride + 1, same for WO; zero padding, one stride/pad for both axes.

Every op is an implicit GEMM over an im2col matrix that is never materialized:
  forward      Y[o, p]       = Σ_k W[o, k] · X̂[k, p]          M = O,  N = N·HO·WO, K = C·KH·KW
               X̂[(c,kh,kw), (n,oh,ow)] = x[n, c, oh·s - pad + kh, ow·s - pad + kw]  (0 outside)
  bwd-data     dX[c, p]      = Σ_k Wᵀ[c, k] · dŶ[k, p]        M = C,  N = N·H·W,   K = O·KH·KW
               dŶ[(o,kh,kw), (n,ih,iw)] = dy[n, o, oh, ow] where oh·s = ih + pad - kh (0 when not
               an integer in range): the transposed convolution as a gather, no atomics.
  bwd-filter   dW[o, j]      = Σ_p dY[o, p] · X̂ᵀ[p, j]        M = O,  N = C·KH·KW, K = N·HO·WO
               db[o]         = Σ_p dY[o, p]

Versions (launcher argument `version`, 0 = the launcher's choice):
  conv2d_fwd
    v1  direct: one thread per output element, loops over (c, kh, kw). The reference.
    v2  shared-memory tiled implicit GEMM: 16×16 threads, one output each, 16×16 tiles of W and
        of X̂ (gathered im2col-style on the fly) per 16-wide K step; FP32 accumulation; bias and
        ReLU in the epilogue.
    v3  v2 + register blocking: 256 threads, a BM×128 output tile per block and TM×TN outputs per
        thread (8×8 for O > 64, 4×8 for O ≤ 64, 4×4 for O ≤ 32), BK = 8, double-buffered shared
        tiles (one __syncthreads per K step), float4 weight loads when K % 4 == 0, float4 shared
        reads, float4 stores when HO·WO % 4 == 0; filter size specialized at compile time for
        3×3 and 1×1 (constant divisions in the gather). The tuned one: version 0 → v3.
  conv2d_bwd_data
    v1  direct gather: one thread per dx element, loops over (o, kh, kw) with the stride test.
    v2  the v3 machinery on the transposed problem above (M = C), mask fused in the epilogue;
        3×3 and 1×1 stride-1 specialized, everything else through the generic gather (at most
        the 64-row tile there, to stay spill-free).
    v3  small C (VGG's conv1_1, i.e. the gradient of the image, where a GEMM tile would be
        ≥ 90 % padding rows): one thread per input pixel × 4 channels, per-tap dy offsets
        computed once per pixel (3×3 at compile time, any stride), weights staged as float4 in
        shared memory; mask fused. Filters with more than 1024 taps run v1's kernel.
        Version 0 → v3 when C ≤ 4, else v2.
  conv2d_bwd_filter
    v1  direct: one thread per weight, loops over N·HO·WO; db one thread per channel.
    v2  register-blocked tiled GEMM (as v3 above, with M = O, N = C·KH·KW), split-K over
        N·HO·WO in gridDim.z slices reduced with atomicAdd into dw (zeroed first unless
        accumulate; one slice → plain stores); db by a block reduction per channel (shuffles,
        double). Version 0 → v2.

Products accumulate as `acc += a * b`, which nvcc contracts to FFMA (default --fmad=true); not
fmaf(), which g++ without -mfma turns into a libm call per product in the simulated build (2×).

Test: ctest -R kernels   (test/test_kernels_conv.cpp: every version vs preimage::cpu on odd shapes,
      NaN-prefilled outputs, all three simulator thread orders).
Bench: build/bench/bench_vgg --device cuda --sizes 512 (VGG forward / forward+backward through these
       launchers, version 0); registers, shared memory and the H100 roofline per VGG-19 layer:
       docs/kernels.md.
*/
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

// Everything a kernel needs about the shape, by value, derived sizes precomputed.
struct ConvGeom {
  int n, c, h, w, o, kh, kw, stride, pad, ho, wo;
};

ConvGeom make_geom(const ConvShape& s) {
  if (s.n < 0 || s.c <= 0 || s.h <= 0 || s.w <= 0 || s.o <= 0 || s.kh <= 0 || s.kw <= 0 ||
      s.stride <= 0 || s.pad < 0 || s.ho() <= 0 || s.wo() <= 0)
    throw std::invalid_argument(
        "conv2d: invalid shape (n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) +
        " h=" + std::to_string(s.h) + " w=" + std::to_string(s.w) + " o=" + std::to_string(s.o) +
        " k=" + std::to_string(s.kh) + "x" + std::to_string(s.kw) +
        " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad) + ")");
  return {s.n, s.c, s.h, s.w, s.o, s.kh, s.kw, s.stride, s.pad, s.ho(), s.wo()};
}

void bad_version(const char* op, int version, int count) {
  throw std::invalid_argument(std::string(op) + ": version " + std::to_string(version) +
                              " does not exist (0.." + std::to_string(count) + ")");
}

bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

unsigned blocks_for(long long total, int threads) {
  return static_cast<unsigned>((total + threads - 1) / threads);
}

// ============================== v1: direct ==============================================

__global__ void conv2d_fwd_v1_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                     const float* __restrict__ b, float* __restrict__ y, ConvGeom g,
                                     bool relu) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.o * g.ho * g.wo;
  if (i >= total) return;
  const int ow = (int)(i % g.wo);
  const int oh = (int)((i / g.wo) % g.ho);
  const int o = (int)((i / ((long long)g.wo * g.ho)) % g.o);
  const int n = (int)(i / ((long long)g.wo * g.ho * g.o));
  float acc = 0.f;
  for (int c = 0; c < g.c; ++c) {
    const float* xc = x + ((long long)n * g.c + c) * g.h * g.w;
    const float* wc = w + ((long long)o * g.c + c) * g.kh * g.kw;
    for (int kh = 0; kh < g.kh; ++kh) {
      const int ih = oh * g.stride - g.pad + kh;
      if (ih < 0 || ih >= g.h) continue;
      for (int kw = 0; kw < g.kw; ++kw) {
        const int iw = ow * g.stride - g.pad + kw;
        if (iw < 0 || iw >= g.w) continue;
        acc += xc[ih * g.w + iw] * wc[kh * g.kw + kw];
      }
    }
  }
  if (b) acc += b[o];
  if (relu && acc < 0.f) acc = 0.f;  // NaN propagates, as on the CPU
  y[i] = acc;
}

__global__ void conv2d_bwd_data_v1_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                                          const float* __restrict__ mask, float* __restrict__ dx,
                                          ConvGeom g) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (i >= total) return;
  if (mask && !(mask[i] > 0.f)) {
    dx[i] = 0.f;
    return;
  }
  const int iw = (int)(i % g.w);
  const int ih = (int)((i / g.w) % g.h);
  const int c = (int)((i / ((long long)g.w * g.h)) % g.c);
  const int n = (int)(i / ((long long)g.w * g.h * g.c));
  float acc = 0.f;
  for (int o = 0; o < g.o; ++o) {
    const float* dyo = dy + ((long long)n * g.o + o) * g.ho * g.wo;
    const float* wt = w + ((long long)o * g.c + c) * g.kh * g.kw;
    for (int kh = 0; kh < g.kh; ++kh) {
      const int th = ih + g.pad - kh;  // = oh·stride
      if (th < 0 || th % g.stride != 0) continue;
      const int oh = th / g.stride;
      if (oh >= g.ho) continue;
      for (int kw = 0; kw < g.kw; ++kw) {
        const int tw = iw + g.pad - kw;
        if (tw < 0 || tw % g.stride != 0) continue;
        const int ow = tw / g.stride;
        if (ow >= g.wo) continue;
        acc += dyo[oh * g.wo + ow] * wt[kh * g.kw + kw];
      }
    }
  }
  dx[i] = acc;
}

__global__ void conv2d_bwd_filter_v1_kernel(const float* __restrict__ x,
                                            const float* __restrict__ dy, float* __restrict__ dw,
                                            ConvGeom g, bool accumulate) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  const long long total = (long long)g.o * g.c * g.kh * g.kw;
  if (i >= total) return;
  const int kw = (int)(i % g.kw);
  const int kh = (int)((i / g.kw) % g.kh);
  const int c = (int)((i / ((long long)g.kw * g.kh)) % g.c);
  const int o = (int)(i / ((long long)g.kw * g.kh * g.c));
  float acc = 0.f;
  for (int n = 0; n < g.n; ++n) {
    const float* xc = x + ((long long)n * g.c + c) * g.h * g.w;
    const float* dyo = dy + ((long long)n * g.o + o) * g.ho * g.wo;
    for (int oh = 0; oh < g.ho; ++oh) {
      const int ih = oh * g.stride - g.pad + kh;
      if (ih < 0 || ih >= g.h) continue;
      for (int ow = 0; ow < g.wo; ++ow) {
        const int iw = ow * g.stride - g.pad + kw;
        if (iw < 0 || iw >= g.w) continue;
        acc += dyo[oh * g.wo + ow] * xc[ih * g.w + iw];
      }
    }
  }
  dw[i] = accumulate ? dw[i] + acc : acc;
}

__global__ void conv2d_bwd_bias_v1_kernel(const float* __restrict__ dy, float* __restrict__ db,
                                          ConvGeom g, bool accumulate) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= g.o) return;
  const long long plane = (long long)g.ho * g.wo;
  double acc = 0.0;
  for (int n = 0; n < g.n; ++n) {
    const float* d = dy + ((long long)n * g.o + o) * plane;
    for (long long i = 0; i < plane; ++i) acc += d[i];
  }
  db[o] = accumulate ? (float)(db[o] + acc) : (float)acc;
}

// ============================== v2 forward: 16×16 shared tiles ===========================

constexpr int kT2 = 16;

__global__ void conv2d_fwd_v2_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                     const float* __restrict__ b, float* __restrict__ y, ConvGeom g,
                                     bool relu) {
  __shared__ float ws[kT2][kT2 + 1];  // [m][k]
  __shared__ float xs[kT2][kT2 + 1];  // [k][p]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int khw = g.kh * g.kw, K = g.c * khw, plane = g.ho * g.wo, P = g.n * plane;
  const int m = blockIdx.y * kT2 + ty;   // output channel of this thread's result
  const int p = blockIdx.x * kT2 + tx;   // output pixel (n, oh, ow) of this thread's column
  const int wm = blockIdx.y * kT2 + ty;  // weight row this thread loads (k offset tx)
  int n = 0, pix = 0, ih0 = -(1 << 29), iw0 = 0;
  if (p < P) {
    n = p / plane;
    pix = p - n * plane;
    const int oh = pix / g.wo, ow = pix - (pix / g.wo) * g.wo;
    ih0 = oh * g.stride - g.pad;
    iw0 = ow * g.stride - g.pad;
  }
  const float* xn = x + (long long)n * g.c * g.h * g.w;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += kT2) {
    const int ka = k0 + tx;
    ws[ty][tx] = (wm < g.o && ka < K) ? w[(long long)wm * K + ka] : 0.f;
    const int kb = k0 + ty;
    float v = 0.f;
    if (kb < K) {
      const int c = kb / khw, r = kb - c * khw, kh = r / g.kw, kw = r - kh * g.kw;
      const int ih = ih0 + kh, iw = iw0 + kw;
      if ((unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w)
        v = xn[(long long)c * g.h * g.w + ih * g.w + iw];
    }
    xs[ty][tx] = v;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kT2; ++k) acc += ws[ty][k] * xs[k][tx];
    __syncthreads();
  }
  if (m < g.o && p < P) {
    if (b) acc += b[m];
    if (relu && acc < 0.f) acc = 0.f;  // NaN propagates, as on the CPU
    y[((long long)n * g.o + m) * plane + pix] = acc;
  }
}

// ============================== register-blocked implicit GEMM ===========================

// A block computes a BM×BN tile of C = A·B with 256 threads, each TM×TN outputs arranged as
// (TM/4)×(TN/4) groups of 4×4 so that every shared read is a float4 (rows of a group are
// consecutive; groups are BM/(TM/4) apart). Shared tiles are stored k-major: As[k][m], Bs[k][n],
// rows padded by 4 floats so that transposing stores hit distinct banks.
template <int BM_, int BN_, int TM_, int TN_>
struct Tiling {
  static constexpr int BM = BM_, BN = BN_, BK = 8, TM = TM_, TN = TN_;
  static constexpr int TX = BN / TN, TY = BM / TM, THREADS = TX * TY;
  static_assert(THREADS == 256, "tilings use 256 threads");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "4-wide register groups");
  static constexpr int A_PER = BM * BK / THREADS, B_PER = BK * BN / THREADS;
  static constexpr int APAD = BM + 4, BPAD = BN + 4;
  static constexpr int RSTRIDE = BM / (TM / 4), CSTRIDE = BN / (TN / 4);
  // row / column (within the tile) of this thread's i-th / j-th accumulator
  __device__ __forceinline__ static int row(int ty, int i) {
    return (i / 4) * RSTRIDE + ty * 4 + (i % 4);
  }
  __device__ __forceinline__ static int col(int tx, int j) {
    return (j / 4) * CSTRIDE + tx * 4 + (j % 4);
  }
};
using TileL = Tiling<128, 128, 8, 8>;  // M > 64
using TileM = Tiling<64, 128, 4, 8>;   // 32 < M ≤ 64
using TileS = Tiling<32, 128, 4, 4>;   // M ≤ 32

// acc += As·Bs over one BK slice.
template <class T>
__device__ __forceinline__ void tile_fma(const float (*__restrict__ as)[T::APAD],
                                         const float (*__restrict__ bs)[T::BPAD],
                                         float (&acc)[T::TM][T::TN], int ty, int tx) {
#pragma unroll
  for (int k = 0; k < T::BK; ++k) {
    float a[T::TM], b[T::TN];
#pragma unroll
    for (int g = 0; g < T::TM / 4; ++g) {
      const float4 v = *reinterpret_cast<const float4*>(&as[k][g * T::RSTRIDE + ty * 4]);
      a[4 * g + 0] = v.x;
      a[4 * g + 1] = v.y;
      a[4 * g + 2] = v.z;
      a[4 * g + 3] = v.w;
    }
#pragma unroll
    for (int g = 0; g < T::TN / 4; ++g) {
      const float4 v = *reinterpret_cast<const float4*>(&bs[k][g * T::CSTRIDE + tx * 4]);
      b[4 * g + 0] = v.x;
      b[4 * g + 1] = v.y;
      b[4 * g + 2] = v.z;
      b[4 * g + 3] = v.w;
    }
#pragma unroll
    for (int i = 0; i < T::TM; ++i)
#pragma unroll
      for (int j = 0; j < T::TN; ++j) acc[i][j] += a[i] * b[j];
  }
}

// Filter size, compile-time when KH_/KW_ > 0 (3×3, 1×1), else read from the geometry.
template <int KH_, int KW_>
struct Filter {
  int kh_rt, kw_rt;
  __device__ __forceinline__ int kh() const { return KH_ > 0 ? KH_ : kh_rt; }
  __device__ __forceinline__ int kw() const { return KW_ > 0 ? KW_ : kw_rt; }
  __device__ __forceinline__ int khw() const { return kh() * kw(); }
  // k = (q·KH + fh)·KW + fw  →  q, fh, fw
  __device__ __forceinline__ void split(int k, int& q, int& fh, int& fw) const {
    q = k / khw();
    const int r = k - q * khw();
    fh = r / kw();
    fw = r - fh * kw();
  }
};

// Forward (BWD = false) and backward-data (BWD = true) share this body; see the header comment
// for the two GEMMs. For BWD with KH_ > 0 the launcher guarantees stride 1.
template <class T, int KH_, int KW_, bool BWD>
__device__ __forceinline__ void conv_igemm_body(const float* __restrict__ src,
                                                const float* __restrict__ w,
                                                const float* __restrict__ bias,
                                                const float* __restrict__ mask,
                                                float* __restrict__ out, const ConvGeom& g,
                                                bool relu, bool vec_a, bool vec_out) {
  __shared__ __align__(16) float as[2][T::BK][T::APAD];
  __shared__ __align__(16) float bs[2][T::BK][T::BPAD];

  const Filter<KH_, KW_> f{g.kh, g.kw};
  const int tid = threadIdx.x;
  const int tx = tid % T::TX, ty = tid / T::TX;
  // GEMM sizes and the geometry of the gathered tensor (x forward, dy backward).
  const int M = BWD ? g.c : g.o;
  const int K = (BWD ? g.o : g.c) * f.khw();
  const int out_h = BWD ? g.h : g.ho, out_w = BWD ? g.w : g.wo;
  const int src_h = BWD ? g.ho : g.h, src_w = BWD ? g.wo : g.w;
  const int out_plane = out_h * out_w, src_plane = src_h * src_w;
  const int src_ch = BWD ? g.o : g.c;
  const int P = g.n * out_plane;
  const int m0 = blockIdx.y * T::BM, p0 = blockIdx.x * T::BN;

  // B loads: this thread always gathers column p0 + b_col, rows b_row + j·(256/BN).
  constexpr int B_ROWS = T::THREADS / T::BN;
  const int b_col = tid % T::BN, b_row = tid / T::BN;
  int org_h = -(1 << 29), org_w = 0;  // forward: oh·s - pad; backward: ih + pad
  const float* src_n = src;
  {
    const int p = p0 + b_col;
    if (p < P) {
      const int n = p / out_plane, pix = p - n * out_plane;
      const int ph = pix / out_w, pw = pix - ph * out_w;
      org_h = BWD ? ph + g.pad : ph * g.stride - g.pad;
      org_w = BWD ? pw + g.pad : pw * g.stride - g.pad;
      src_n = src + (long long)n * src_ch * src_plane;
    }
  }
  // A loads: row a_m of the tile, A_PER consecutive k from a_k.
  constexpr int A_TPR = T::BK / T::A_PER;
  const int a_m = tid / A_TPR, a_k = (tid % A_TPR) * T::A_PER;
  const bool a_ok = m0 + a_m < M;
  const float* w_row = BWD ? w + (long long)(m0 + a_m) * f.khw() : w + (long long)(m0 + a_m) * K;

  float ra[T::A_PER], rb[T::B_PER];
  auto load = [&](int k0) {
    if constexpr (!BWD && T::A_PER == 4) {
      const int k = k0 + a_k;
      if (vec_a && a_ok && k + 3 < K) {
        const float4 v = *reinterpret_cast<const float4*>(w_row + k);
        ra[0] = v.x;
        ra[1] = v.y;
        ra[2] = v.z;
        ra[3] = v.w;
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) ra[j] = (a_ok && k + j < K) ? w_row[k + j] : 0.f;
      }
    } else {
#pragma unroll
      for (int j = 0; j < T::A_PER; ++j) {
        const int k = k0 + a_k + j;
        float v = 0.f;
        if (a_ok && k < K) {
          if constexpr (BWD) {
            const int q = k / f.khw(), r = k - q * f.khw();  // q = o
            v = w_row[(long long)q * g.c * f.khw() + r];
          } else {
            v = w_row[k];
          }
        }
        ra[j] = v;
      }
    }
#pragma unroll
    for (int j = 0; j < T::B_PER; ++j) {
      const int k = k0 + b_row + j * B_ROWS;
      int q, fh, fw;
      f.split(k, q, fh, fw);
      float v = 0.f;
      if constexpr (!BWD) {
        const int ih = org_h + fh, iw = org_w + fw;
        if (k < K && (unsigned)ih < (unsigned)src_h && (unsigned)iw < (unsigned)src_w)
          v = src_n[q * src_plane + ih * src_w + iw];
      } else if constexpr (KH_ > 0) {  // stride 1
        const int oh = org_h - fh, ow = org_w - fw;
        if (k < K && (unsigned)oh < (unsigned)src_h && (unsigned)ow < (unsigned)src_w)
          v = src_n[q * src_plane + oh * src_w + ow];
      } else {
        const int th = org_h - fh, tw = org_w - fw;  // = oh·stride, ow·stride when valid
        const int oh = th / g.stride, ow = tw / g.stride;
        if (k < K && th >= 0 && tw >= 0 && oh * g.stride == th && ow * g.stride == tw &&
            oh < src_h && ow < src_w)
          v = src_n[q * src_plane + oh * src_w + ow];
      }
      rb[j] = v;
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int j = 0; j < T::A_PER; ++j) as[buf][a_k + j][a_m] = ra[j];
#pragma unroll
    for (int j = 0; j < T::B_PER; ++j) bs[buf][b_row + j * B_ROWS][b_col] = rb[j];
  };

  float acc[T::TM][T::TN];
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.f;

  const int ktiles = (K + T::BK - 1) / T::BK;
  load(0);
  store(0);
  __syncthreads();
  for (int t = 0; t < ktiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < ktiles) load((t + 1) * T::BK);  // global loads in flight during the FMAs
    tile_fma<T>(as[cur], bs[cur], acc, ty, tx);
    if (t + 1 < ktiles) store(cur ^ 1);
    __syncthreads();
  }

  // Epilogue: forward adds bias and applies ReLU; backward multiplies by the mask.
  float bias_r[T::TM];
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int m = m0 + T::row(ty, i);
    bias_r[i] = (!BWD && bias && m < M) ? bias[m] : 0.f;
  }
  auto finish = [&](float v, int i) {
    v += bias_r[i];
    return (relu && v < 0.f) ? 0.f : v;
  };
#pragma unroll
  for (int cg = 0; cg < T::TN / 4; ++cg) {
    const int pb = p0 + T::col(tx, 4 * cg);
    if (vec_out) {  // out_plane % 4 == 0: the 4 columns share one image, all in or all out
      if (pb >= P) continue;
      const int n = pb / out_plane, pix = pb - n * out_plane;
      const long long base = (long long)n * M * out_plane + pix;
#pragma unroll
      for (int i = 0; i < T::TM; ++i) {
        const int m = m0 + T::row(ty, i);
        if (m >= M) continue;
        const long long idx = base + (long long)m * out_plane;
        float4 v = make_float4(finish(acc[i][4 * cg + 0], i), finish(acc[i][4 * cg + 1], i),
                               finish(acc[i][4 * cg + 2], i), finish(acc[i][4 * cg + 3], i));
        if (BWD && mask) {
          const float4 mk = *reinterpret_cast<const float4*>(mask + idx);
          v.x = mk.x > 0.f ? v.x : 0.f;
          v.y = mk.y > 0.f ? v.y : 0.f;
          v.z = mk.z > 0.f ? v.z : 0.f;
          v.w = mk.w > 0.f ? v.w : 0.f;
        }
        *reinterpret_cast<float4*>(out + idx) = v;
      }
    } else {
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        const int p = pb + jj;
        if (p >= P) continue;
        const int n = p / out_plane, pix = p - n * out_plane;
        const long long base = (long long)n * M * out_plane + pix;
#pragma unroll
        for (int i = 0; i < T::TM; ++i) {
          const int m = m0 + T::row(ty, i);
          if (m >= M) continue;
          const long long idx = base + (long long)m * out_plane;
          float v = finish(acc[i][4 * cg + jj], i);
          if (BWD && mask && !(mask[idx] > 0.f)) v = 0.f;
          out[idx] = v;
        }
      }
    }
  }
}

template <class T, int KH_, int KW_>
__global__ void __launch_bounds__(256, 2)
    conv2d_fwd_v3_kernel(const float* __restrict__ x, const float* __restrict__ w,
                         const float* __restrict__ b, float* __restrict__ y, ConvGeom g, bool relu,
                         bool vec_a, bool vec_out) {
  conv_igemm_body<T, KH_, KW_, false>(x, w, b, nullptr, y, g, relu, vec_a, vec_out);
}

template <class T, int KH_, int KW_>
__global__ void __launch_bounds__(256, 2)
    conv2d_bwd_data_v2_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                              const float* __restrict__ mask, float* __restrict__ dx, ConvGeom g,
                              bool vec_out) {
  conv_igemm_body<T, KH_, KW_, true>(dy, w, nullptr, mask, dx, g, false, false, vec_out);
}

// ============================== backward-data v3: small C =================================

// dx for few input channels (C ≤ 4 in VGG's conv1_1: the gradient of the image). A GEMM tile
// would be ≥ 32 rows of which 3 are used; here one thread owns one input pixel and 4 channels
// (blockIdx.y picks the group c0..c0+3): for every output channel o and filter tap it loads one
// dy value (coalesced along the row) and one float4 of weights (a shared-memory broadcast) for 4
// FMAs. Which taps of this pixel hit an output (and where) does not depend on o, so for a
// compile-time filter (3×3) the per-tap offsets are computed once, stride tests included.
// Weights of kV3Chunk (o, tap) pairs are staged per pass as float4 (zero past C).
constexpr int kV3Threads = 256;
constexpr int kV3Chunk = 1024;  // float4 entries: 16 KB

// Offset of tap (fh, fw)'s output in a dy plane for input pixel (ih, iw), or -1 when none.
__device__ __forceinline__ int bwd_tap_offset(int ih, int iw, int fh, int fw, const ConvGeom& g) {
  const int th = ih + g.pad - fh, tw = iw + g.pad - fw;  // = oh·stride, ow·stride
  if (th < 0 || tw < 0) return -1;
  const int oh = th / g.stride, ow = tw / g.stride;
  if (oh * g.stride != th || ow * g.stride != tw || oh >= g.ho || ow >= g.wo) return -1;
  return oh * g.wo + ow;
}

template <int KH_, int KW_>
__global__ void __launch_bounds__(kV3Threads, 4)
    conv2d_bwd_data_v3_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                              const float* __restrict__ mask, float* __restrict__ dx, ConvGeom g) {
  __shared__ float4 ws[kV3Chunk];
  constexpr int TAPS = KH_ * KW_;  // 0: runtime filter size
  const Filter<KH_, KW_> f{g.kh, g.kw};
  const int khw = f.khw();
  const int c0 = blockIdx.y * 4;
  const int plane_in = g.h * g.w, plane_out = g.ho * g.wo;
  const int p = blockIdx.x * kV3Threads + threadIdx.x;
  const bool active = p < g.n * plane_in;
  int n = 0, pix = 0, ih = 0, iw = 0;
  if (active) {
    n = p / plane_in;
    pix = p - n * plane_in;
    ih = pix / g.w;
    iw = pix - ih * g.w;
  }
  const float* dyn = dy + (long long)n * g.o * plane_out;
  int tap_off[TAPS > 0 ? TAPS : 1];
  if constexpr (TAPS > 0) {
#pragma unroll
    for (int t = 0; t < TAPS; ++t)
      tap_off[t] = active ? bwd_tap_offset(ih, iw, t / KW_, t % KW_, g) : -1;
  }
  float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
  const int o_per = kV3Chunk / khw;  // ≥ 1: the launcher guarantees khw ≤ kV3Chunk
  for (int o0 = 0; o0 < g.o; o0 += o_per) {
    const int o_cnt = min(o_per, g.o - o0);
    __syncthreads();  // the previous chunk has been consumed
    for (int e = threadIdx.x; e < o_cnt * khw; e += kV3Threads) {
      const int oc = e / khw, t = e - oc * khw;
      const float* wp = w + ((long long)(o0 + oc) * g.c + c0) * khw + t;
      ws[e] = make_float4(c0 < g.c ? wp[0] : 0.f, c0 + 1 < g.c ? wp[khw] : 0.f,
                          c0 + 2 < g.c ? wp[2 * khw] : 0.f, c0 + 3 < g.c ? wp[3 * khw] : 0.f);
    }
    __syncthreads();
    for (int oc = 0; oc < o_cnt; ++oc) {
      const float* dyo = dyn + (long long)(o0 + oc) * plane_out;
      const float4* wt = ws + oc * khw;
      if constexpr (TAPS > 0) {
#pragma unroll
        for (int t = 0; t < TAPS; ++t) {
          const float v = tap_off[t] >= 0 ? dyo[tap_off[t]] : 0.f;
          const float4 wv = wt[t];
          a0 += v * wv.x;
          a1 += v * wv.y;
          a2 += v * wv.z;
          a3 += v * wv.w;
        }
      } else {
        for (int t = 0; t < khw; ++t) {
          const int off = active ? bwd_tap_offset(ih, iw, t / g.kw, t % g.kw, g) : -1;
          const float v = off >= 0 ? dyo[off] : 0.f;
          const float4 wv = wt[t];
          a0 += v * wv.x;
          a1 += v * wv.y;
          a2 += v * wv.z;
          a3 += v * wv.w;
        }
      }
    }
  }
  if (!active) return;
  const float accs[4] = {a0, a1, a2, a3};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int c = c0 + j;
    if (c >= g.c) break;
    const long long idx = ((long long)n * g.c + c) * plane_in + pix;
    dx[idx] = (mask && !(mask[idx] > 0.f)) ? 0.f : accs[j];
  }
}

// dW tile (BM output channels × BN filter taps j = (c,kh,kw)) over the reduction slice
// [blockIdx.z·chunk, +chunk) of p = (n,oh,ow). Each thread loads, per BK step, one p
// (kk = tid % BK) for BM/32 rows of dy and BN/32 taps of x, so the p → (n,oh,ow) division
// happens once per step and the taps' offsets stay in registers.
template <class T>
__global__ void __launch_bounds__(256, 2)
    conv2d_bwd_filter_v2_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                float* __restrict__ dw, ConvGeom g, int chunk, bool accumulate,
                                bool atomic) {
  __shared__ __align__(16) float as[2][T::BK][T::APAD];
  __shared__ __align__(16) float bs[2][T::BK][T::BPAD];
  constexpr int ROWS = T::THREADS / T::BK;  // 32
  static_assert(T::A_PER * ROWS == T::BM && T::B_PER * ROWS == T::BN, "load mapping");

  const int tid = threadIdx.x;
  const int tx = tid % T::TX, ty = tid / T::TX;
  const int khw = g.kh * g.kw, NJ = g.c * khw;
  const int plane = g.ho * g.wo, P = g.n * plane, hw = g.h * g.w;
  const int m0 = blockIdx.y * T::BM, j0 = blockIdx.x * T::BN;
  const int pbeg = blockIdx.z * chunk, pend = min(P, pbeg + chunk);

  const int kk = tid % T::BK, r = tid / T::BK;
  int a_off[T::A_PER];  // o·plane, or -1 outside
#pragma unroll
  for (int i = 0; i < T::A_PER; ++i) {
    const int m = m0 + r + i * ROWS;
    a_off[i] = m < g.o ? m * plane : -1;
  }
  int b_off[T::B_PER], b_fh[T::B_PER], b_fw[T::B_PER];  // c·H·W + fh·W + fw, fh, fw
#pragma unroll
  for (int i = 0; i < T::B_PER; ++i) {
    const int j = j0 + r + i * ROWS;
    if (j < NJ) {
      const int c = j / khw, q = j - c * khw, fh = q / g.kw, fw = q - fh * g.kw;
      b_off[i] = c * hw + fh * g.w + fw;
      b_fh[i] = fh;
      b_fw[i] = fw;
    } else {
      b_off[i] = 0;
      b_fh[i] = 1 << 29;  // fails the bounds test
      b_fw[i] = 0;
    }
  }

  float ra[T::A_PER], rb[T::B_PER];
  auto load = [&](int k0) {
    const int p = k0 + kk;
    int ih0 = -(1 << 29), iw0 = 0;
    const float* dyp = dy;
    const float* xn = x;
    bool ok = p < pend;
    if (ok) {
      const int n = p / plane, pix = p - n * plane;
      const int oh = pix / g.wo, ow = pix - oh * g.wo;
      ih0 = oh * g.stride - g.pad;
      iw0 = ow * g.stride - g.pad;
      dyp = dy + (long long)n * g.o * plane + pix;
      xn = x + (long long)n * g.c * hw + ih0 * g.w + iw0;
    }
#pragma unroll
    for (int i = 0; i < T::A_PER; ++i) ra[i] = (ok && a_off[i] >= 0) ? dyp[a_off[i]] : 0.f;
#pragma unroll
    for (int i = 0; i < T::B_PER; ++i) {
      const int ih = ih0 + b_fh[i], iw = iw0 + b_fw[i];
      rb[i] = ((unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w) ? xn[b_off[i]] : 0.f;
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < T::A_PER; ++i) as[buf][kk][r + i * ROWS] = ra[i];
#pragma unroll
    for (int i = 0; i < T::B_PER; ++i) bs[buf][kk][r + i * ROWS] = rb[i];
  };

  float acc[T::TM][T::TN];
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.f;

  const int ktiles = pend > pbeg ? (pend - pbeg + T::BK - 1) / T::BK : 0;
  if (ktiles > 0) {
    load(pbeg);
    store(0);
  }
  __syncthreads();
  for (int t = 0; t < ktiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < ktiles) load(pbeg + (t + 1) * T::BK);
    tile_fma<T>(as[cur], bs[cur], acc, ty, tx);
    if (t + 1 < ktiles) store(cur ^ 1);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int m = m0 + T::row(ty, i);
    if (m >= g.o) continue;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int jc = j0 + T::col(tx, j);
      if (jc >= NJ) continue;
      float* d = dw + (long long)m * NJ + jc;
      if (atomic)
        atomicAdd(d, acc[i][j]);
      else
        *d = accumulate ? *d + acc[i][j] : acc[i][j];
    }
  }
}

// db[o] (+)= Σ_{n,pix} dy[n,o,pix]: one block per channel, double accumulation, warp shuffles.
constexpr int kBiasThreads = 256;
__global__ void __launch_bounds__(kBiasThreads)
    conv2d_bwd_bias_v2_kernel(const float* __restrict__ dy, float* __restrict__ db, ConvGeom g,
                              bool accumulate) {
  __shared__ double partial[kBiasThreads / 32];
  const int o = blockIdx.x;
  const int plane = g.ho * g.wo;
  double acc = 0.0;
  for (int n = 0; n < g.n; ++n) {
    const float* d = dy + ((long long)n * g.o + o) * plane;
    for (int i = threadIdx.x; i < plane; i += kBiasThreads) acc += d[i];
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
#pragma unroll
    for (int i = 0; i < kBiasThreads / 32; ++i) total += partial[i];
    db[o] = accumulate ? (float)(db[o] + total) : (float)total;
  }
}

// ============================== dispatch helpers =========================================

// Calls fn(Tiling{}) with the tiling for an M-row GEMM.
template <class Fn>
void with_tiling(int m, Fn&& fn) {
  if (m <= 32)
    fn(TileS{});
  else if (m <= 64)
    fn(TileM{});
  else
    fn(TileL{});
}

template <class T>
dim3 igemm_grid(int m, long long p) {
  return dim3(static_cast<unsigned>((p + T::BN - 1) / T::BN),
              static_cast<unsigned>((m + T::BM - 1) / T::BM));
}

// Backward-data version 0 uses the small-C kernel (v3) up to this many input channels.
constexpr int kSmallC = 4;

// Blocks to aim for in split-K: ~2 resident 256-thread blocks on each of 132 H100 SMs, twice.
constexpr int kSplitTargetBlocks = 528;
// Each split-K slice reduces at least this many BK steps.
constexpr int kMinStepsPerSlice = 16;

}  // namespace

// ============================== launchers ================================================

int conv2d_fwd_versions() {
  return 3;
}
int conv2d_bwd_data_versions() {
  return 3;
}
int conv2d_bwd_filter_versions() {
  return 2;
}

void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                bool relu, int version) {
  const ConvGeom g = make_geom(s);
  if (version < 0 || version > conv2d_fwd_versions()) bad_version("conv2d_fwd", version, 3);
  const long long total = (long long)g.n * g.o * g.ho * g.wo;
  if (total == 0) return;
  const long long P = (long long)g.n * g.ho * g.wo;
  if (version == 1) {
    cuda::launch(conv2d_fwd_v1_kernel, dim3(blocks_for(total, 256)), dim3(256), 0, nullptr, x, w, b,
                 y, g, relu);
  } else if (version == 2) {
    const dim3 grid(static_cast<unsigned>((P + kT2 - 1) / kT2), (g.o + kT2 - 1) / kT2);
    cuda::launch(conv2d_fwd_v2_kernel, grid, dim3(kT2, kT2), 0, nullptr, x, w, b, y, g, relu);
  } else {
    const int K = g.c * g.kh * g.kw;
    const bool vec_a = K % 4 == 0 && aligned16(w);
    const bool vec_out = (g.ho * g.wo) % 4 == 0 && aligned16(y);
    with_tiling(g.o, [&](auto tile) {
      using T = decltype(tile);
      const dim3 grid = igemm_grid<T>(g.o, P);
      if (g.kh == 3 && g.kw == 3)
        cuda::launch(conv2d_fwd_v3_kernel<T, 3, 3>, grid, dim3(256), 0, nullptr, x, w, b, y, g,
                     relu, vec_a, vec_out);
      else if (g.kh == 1 && g.kw == 1)
        cuda::launch(conv2d_fwd_v3_kernel<T, 1, 1>, grid, dim3(256), 0, nullptr, x, w, b, y, g,
                     relu, vec_a, vec_out);
      else
        cuda::launch(conv2d_fwd_v3_kernel<T, 0, 0>, grid, dim3(256), 0, nullptr, x, w, b, y, g,
                     relu, vec_a, vec_out);
    });
  }
}

void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                     const ConvShape& s, int version) {
  const ConvGeom g = make_geom(s);
  if (version < 0 || version > conv2d_bwd_data_versions())
    bad_version("conv2d_bwd_data", version, 3);
  const long long total = (long long)g.n * g.c * g.h * g.w;
  if (total == 0) return;
  if (version == 0) version = g.c <= kSmallC ? 3 : 2;
  // v3 stages whole output channels' taps: filters beyond 32×32 taps run the direct kernel.
  if (version == 3 && g.kh * g.kw > kV3Chunk) version = 1;
  if (version == 3) {
    const dim3 grid(blocks_for(total / g.c, kV3Threads), (g.c + 3) / 4);
    if (g.kh == 3 && g.kw == 3)
      cuda::launch(conv2d_bwd_data_v3_kernel<3, 3>, grid, dim3(kV3Threads), 0, nullptr, dy, w, mask,
                   dx, g);
    else
      cuda::launch(conv2d_bwd_data_v3_kernel<0, 0>, grid, dim3(kV3Threads), 0, nullptr, dy, w, mask,
                   dx, g);
  } else if (version == 1) {
    cuda::launch(conv2d_bwd_data_v1_kernel, dim3(blocks_for(total, 256)), dim3(256), 0, nullptr, dy,
                 w, mask, dx, g);
  } else {
    const bool vec_out =
        (g.h * g.w) % 4 == 0 && aligned16(dx) && (mask == nullptr || aligned16(mask));
    const bool special =
        (g.kh == 3 && g.kw == 3 && g.stride == 1) || (g.kh == 1 && g.kw == 1 && g.stride == 1);
    // The generic gather (stride tests, runtime filter size) needs more registers: at most the
    // 64-row tile there, so that it does not spill.
    with_tiling(special ? g.c : std::min(g.c, 64), [&](auto tile) {
      using T = decltype(tile);
      const dim3 grid = igemm_grid<T>(g.c, total / g.c);
      if (g.kh == 3 && g.kw == 3 && g.stride == 1)
        cuda::launch(conv2d_bwd_data_v2_kernel<T, 3, 3>, grid, dim3(256), 0, nullptr, dy, w, mask,
                     dx, g, vec_out);
      else if (g.kh == 1 && g.kw == 1 && g.stride == 1)
        cuda::launch(conv2d_bwd_data_v2_kernel<T, 1, 1>, grid, dim3(256), 0, nullptr, dy, w, mask,
                     dx, g, vec_out);
      else if constexpr (T::BM <= 64)  // (never the 128-row tile here, see above)
        cuda::launch(conv2d_bwd_data_v2_kernel<T, 0, 0>, grid, dim3(256), 0, nullptr, dy, w, mask,
                     dx, g, vec_out);
    });
  }
}

void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                       bool accumulate, int version) {
  const ConvGeom g = make_geom(s);
  if (version < 0 || version > conv2d_bwd_filter_versions())
    bad_version("conv2d_bwd_filter", version, 2);
  const long long nw = (long long)g.o * g.c * g.kh * g.kw;
  const long long P = (long long)g.n * g.ho * g.wo;
  if (P == 0) {  // empty batch: the sums are zero
    if (!accumulate) {
      fill(dw, 0.f, static_cast<size_t>(nw));
      if (db) fill(db, 0.f, static_cast<size_t>(g.o));
    }
    return;
  }
  if (version == 1) {
    cuda::launch(conv2d_bwd_filter_v1_kernel, dim3(blocks_for(nw, 256)), dim3(256), 0, nullptr, x,
                 dy, dw, g, accumulate);
    if (db) {
      cuda::launch(conv2d_bwd_bias_v1_kernel, dim3(blocks_for(g.o, 128)), dim3(128), 0, nullptr, dy,
                   db, g, accumulate);
    }
    return;
  }
  const int NJ = g.c * g.kh * g.kw;
  with_tiling(g.o, [&](auto tile) {
    using T = decltype(tile);
    const long long tiles = (long long)((g.o + T::BM - 1) / T::BM) * ((NJ + T::BN - 1) / T::BN);
    const long long steps = (P + T::BK - 1) / T::BK;
    long long splits = (kSplitTargetBlocks + tiles - 1) / tiles;
    splits = std::max(1LL, std::min({splits, steps / kMinStepsPerSlice, 4096LL}));
    const long long chunk = (steps + splits - 1) / splits * T::BK;
    splits = (P + chunk - 1) / chunk;
    const bool atomic = splits > 1;
    if (atomic && !accumulate) fill(dw, 0.f, static_cast<size_t>(nw));
    const dim3 grid((NJ + T::BN - 1) / T::BN, (g.o + T::BM - 1) / T::BM,
                    static_cast<unsigned>(splits));
    cuda::launch(conv2d_bwd_filter_v2_kernel<T>, grid, dim3(256), 0, nullptr, x, dy, dw, g,
                 static_cast<int>(chunk), accumulate, atomic);
  });
  if (db) {
    cuda::launch(conv2d_bwd_bias_v2_kernel, dim3(g.o), dim3(kBiasThreads), 0, nullptr, dy, db, g,
                 accumulate);
  }
}

}  // namespace preimage::kernels
