// Launchers of the hand-written CUDA kernels: the engine's only door into kernels/.
//
// Plain C++ signatures (raw device pointers, ints), no engine types, so the same declarations serve
// the nvcc build (real GPU) and the g++ build through the host simulator (kernels/sim/), which
// tests link instead. Every launcher checks its launch (CUDA_CHECK → std::runtime_error with
// file:line). Layouts: activations (N,C,H,W), conv weights (O,C,KH,KW), linear weights (OUT,IN),
// all float32. `version` picks one of the side-by-side kernel versions (1 = plain reference … n =
// tuned); 0 means the launcher's choice (the best for the shape).
#pragma once
#include <cstddef>
#include <string>

#include "kernels/op_shapes.h"

namespace preimage::kernels {

// ---- runtime (kernels/runtime.cu): the one place cudaMalloc/cudaFree are called -------------
float* device_alloc(size_t count);  // throws on failure, with the size asked for
void device_free(float* p) noexcept;
void copy_h2d(float* dst, const float* src, size_t count);
void copy_d2h(float* dst, const float* src, size_t count);
void copy_d2d(float* dst, const float* src, size_t count);
// Number of usable devices; 0 with *reason set (e.g. "cudaGetDeviceCount: ...") when none.
int device_count(std::string* reason);
void synchronize();
size_t device_free_memory();  // bytes free on the current device

// ---- conv2d (kernels/conv2d.cu) ---------------------------------------------------------
// y = [relu](conv(x, w) + b); b may be null.
void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                bool relu, int version = 0);
int conv2d_fwd_versions();
// dx = conv_transpose(dy, w); when mask is non-null (same shape as dx), dx *= (mask > 0): the
// ReLU that produced this conv's input, fused.
void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                     const ConvShape& s, int version = 0);
int conv2d_bwd_data_versions();
// dw (O,C,KH,KW) and db (O) from x and dy, summed over the batch; overwritten, or added to
// when accumulate. db may be null.
void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                       bool accumulate, int version = 0);
int conv2d_bwd_filter_versions();

// ---- pooling (kernels/pool.cu) ---------------------------------------------------------
void maxpool_fwd(const float* x, float* y, const PoolShape& s, int version = 0);
// dx (fully overwritten) gets dy at the first maximum of each window in row-major order.
void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s, int version = 0);
void avgpool_fwd(const float* x, float* y, const PoolShape& s, int version = 0);
void avgpool_bwd(const float* dy, float* dx, const PoolShape& s, int version = 0);
int pool_versions();

// ---- element-wise and reductions (kernels/elementwise.cu) ------------------------------
void relu_fwd(const float* x, float* y, size_t count);                    // in place allowed
void relu_bwd(const float* y, const float* dy, float* dx, size_t count);  // dx = dy·[y > 0]
void fill(float* x, float value, size_t count);
void axpby(float a, const float* x, float b, float* y, size_t count);  // y = a·x + b·y
void mul(const float* a, const float* b, float* y, size_t count);      // y = a ⊙ b
// y[n,c,:,:] = a.scale[c] * x[n, a.perm[c], :, :] + a.shift[c] (colour order, normalization).
void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a);
// Reductions come back as double: the one scalar that crosses to the host.
double dot(const float* a, const float* b, size_t count);
double sum(const float* x, size_t count);
double sum_squares(const float* x, size_t count);

// ---- linear (kernels/linear.cu) --------------------------------------------------------
// y (N,OUT) = x (N,IN) · wᵀ + b
void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in, int out);
void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out);
void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in,
                        int out, bool accumulate);

}  // namespace preimage::kernels
