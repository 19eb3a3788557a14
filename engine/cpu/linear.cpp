// CPU fully connected layer through sgemm. x: (N,IN), w: (OUT,IN), y: (N,OUT). Paired with
// kernels/linear.cu.
#include <cblas.h>

#include "engine/cpu/cpu_ops.h"

namespace preimage::cpu {

void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in, int out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.f, x, in, w, in, 0.f, y, out);
  if (b)
    for (int i = 0; i < n; ++i)
      for (int o = 0; o < out; ++o) y[size_t(i) * out + o] += b[o];
}

void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.f, dy, out, w, in, 0.f, dx,
              in);
}

void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in,
                        int out, bool accumulate) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.f, dy, out, x, in,
              accumulate ? 1.f : 0.f, dw, in);
  if (db)
    for (int o = 0; o < out; ++o) {
      double acc = accumulate ? db[o] : 0.0;
      for (int i = 0; i < n; ++i) acc += dy[size_t(i) * out + o];
      db[o] = float(acc);
    }
}

}  // namespace preimage::cpu
