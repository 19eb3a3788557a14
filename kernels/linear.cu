/*
Fully connected layer: forward, backward-data, backward-weights (+ bias gradient).

Layouts: x, dx: (N,IN)   w, dw: (OUT,IN)   b, db: (OUT)   y, dy: (N,OUT), row-major float32.
  forward        y  = x · wᵀ + b       GEMM M = N,   N = OUT, K = IN
  backward-data  dx = dy · w           GEMM M = N,   N = IN,  K = OUT
  backward-wts   dw (+)= dyᵀ · x       GEMM M = OUT, N = IN,  K = N;   db (+)= Σ_n dy[n,:]

One tiled SGEMM kernel, linear_gemm_kernel<Tile, A_KC, B_KC>, serves all three: A(m,k) and B(k,n)
are read through strides with either k contiguous (A_KC / B_KC) or m / n contiguous, and the
global→shared load mapping puts consecutive threads along the contiguous index so every load is
coalesced. 256 threads, BK = 16, each thread a 4×4 register block read as float4 from k-major,
padded shared tiles; FP32 accumulation; epilogue adds the bias (per column) and, for
accumulate, the old C. Two tile shapes:
  64×64      M > 16 (batched forward, backward-weights where M = OUT)
  16×256     M ≤ 16 (the batch-1 forward/backward of a classifier: the weight matrix is the
             traffic, so a thin M tile wastes no FLOPs on padding rows)
The bias gradient is a separate one-thread-per-output kernel (double accumulation).
No version argument: the launchers pick the tile by M.

Test: ctest -R kernels   (test/test_kernels_linear.cpp: vs preimage::cpu, odd sizes, NaN-prefilled
      outputs, accumulate on/off, all three simulator thread orders).
Bench: not on the pre-image path (VGG features are convolutional); resources in docs/kernels.md.
*/
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_compat.h"
#include "kernels/kernels.h"

namespace preimage::kernels {
namespace {

template <int BM_, int BN_>
struct LinTile {
  static constexpr int BM = BM_, BN = BN_, BK = 16, TM = 4, TN = 4, THREADS = 256;
  static constexpr int TX = BN / TN, TY = BM / TM;
  static_assert(TX * TY == THREADS, "256 threads");
  static constexpr int A_PER = BM * BK / THREADS, B_PER = BK * BN / THREADS;
};
using LinBig = LinTile<64, 64>;
using LinThin = LinTile<16, 256>;

// C[m,n] = Σ_k A(m,k)·B(k,n) (+ bias[n]) (+ C[m,n] when accumulate), for m < M, n < N.
//   A(m,k) = A_KC ? a[m·lda + k] : a[k·lda + m]
//   B(k,n) = B_KC ? b[n·ldb + k] : b[k·ldb + n]
template <class T, bool A_KC, bool B_KC>
__global__ void __launch_bounds__(256)
    linear_gemm_kernel(const float* __restrict__ a, const float* __restrict__ b,
                       const float* __restrict__ bias, float* __restrict__ c, int M, int N, int K,
                       int lda, int ldb, int ldc, bool accumulate) {
  __shared__ __align__(16) float as[T::BK][T::BM + 4];
  __shared__ __align__(16) float bs[T::BK][T::BN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % T::TX, ty = tid / T::TX;
  const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;

  // load mapping: (row-in-tile, k-in-tile) of this thread's i-th element
  constexpr int A_STEP = A_KC ? T::THREADS / T::BK : T::THREADS / T::BM;
  constexpr int B_STEP = B_KC ? T::THREADS / T::BK : T::THREADS / T::BN;
  const int a_m = A_KC ? tid / T::BK : tid % T::BM, a_k = A_KC ? tid % T::BK : tid / T::BM;
  const int b_n = B_KC ? tid / T::BK : tid % T::BN, b_k = B_KC ? tid % T::BK : tid / T::BN;

  float acc[T::TM][T::TN];
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < K; k0 += T::BK) {
#pragma unroll
    for (int i = 0; i < T::A_PER; ++i) {
      const int mm = A_KC ? a_m + i * A_STEP : a_m, kk = A_KC ? a_k : a_k + i * A_STEP;
      const int m = m0 + mm, k = k0 + kk;
      float v = 0.f;
      if (m < M && k < K) v = A_KC ? a[(long long)m * lda + k] : a[(long long)k * lda + m];
      as[kk][mm] = v;
    }
#pragma unroll
    for (int i = 0; i < T::B_PER; ++i) {
      const int nn = B_KC ? b_n + i * B_STEP : b_n, kk = B_KC ? b_k : b_k + i * B_STEP;
      const int n = n0 + nn, k = k0 + kk;
      float v = 0.f;
      if (n < N && k < K) v = B_KC ? b[(long long)n * ldb + k] : b[(long long)k * ldb + n];
      bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < T::BK; ++k) {
      const float4 av = *reinterpret_cast<const float4*>(&as[k][ty * 4]);
      const float4 bv = *reinterpret_cast<const float4*>(&bs[k][tx * 4]);
      const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += ar[i] * br[j];
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int m = m0 + ty * 4 + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int n = n0 + tx * 4 + j;
      if (n >= N) continue;
      float* d = c + (long long)m * ldc + n;
      float v = acc[i][j];
      if (bias) v += bias[n];
      *d = accumulate ? *d + v : v;
    }
  }
}

__global__ void linear_bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int n,
                                        int out, bool accumulate) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= out) return;
  double acc = accumulate ? (double)db[o] : 0.0;
  for (int i = 0; i < n; ++i) acc += dy[(long long)i * out + o];
  db[o] = (float)acc;
}

template <bool A_KC, bool B_KC>
void gemm(const float* a, const float* b, const float* bias, float* c, int M, int N, int K, int lda,
          int ldb, int ldc, bool accumulate) {
  auto run = [&](auto tile) {
    using T = decltype(tile);
    const dim3 grid((N + T::BN - 1) / T::BN, (M + T::BM - 1) / T::BM);
    cuda::launch(linear_gemm_kernel<T, A_KC, B_KC>, grid, dim3(T::THREADS), 0, nullptr, a, b, bias,
                 c, M, N, K, lda, ldb, ldc, accumulate);
  };
  if (M <= LinThin::BM)
    run(LinThin{});
  else
    run(LinBig{});
}

void check(int n, int in, int out) {
  if (n < 0 || in <= 0 || out <= 0)
    throw std::invalid_argument("linear: invalid sizes (n=" + std::to_string(n) +
                                " in=" + std::to_string(in) + " out=" + std::to_string(out) + ")");
}

}  // namespace

void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in, int out) {
  check(n, in, out);
  if (n == 0) return;
  gemm<true, true>(x, w, b, y, n, out, in, in, in, out, false);
}

void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out) {
  check(n, in, out);
  if (n == 0) return;
  gemm<true, false>(dy, w, nullptr, dx, n, in, out, out, in, in, false);
}

void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in,
                        int out, bool accumulate) {
  check(n, in, out);
  if (n == 0) {
    if (!accumulate) {
      fill(dw, 0.f, size_t(out) * in);
      if (db) fill(db, 0.f, size_t(out));
    }
    return;
  }
  gemm<false, false>(dy, x, nullptr, dw, out, in, n, out, in, in, accumulate);
  if (db) {
    cuda::launch(linear_bias_grad_kernel, dim3((out + 255) / 256), dim3(256), 0, nullptr, dy, db, n,
                 out, accumulate);
  }
}

}  // namespace preimage::kernels
