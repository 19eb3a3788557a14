// CPU backend ops: the same signatures as the CUDA launchers in kernels/kernels.h, so tests compare
// them call for call. Multi-threaded with OpenMP; GEMMs through OpenBLAS (cblas_sgemm).
// Layouts: activations (N,C,H,W), conv weights (O,C,KH,KW), linear weights (OUT,IN), float32.
#pragma once
#include <cstddef>

#include "kernels/op_shapes.h"

namespace preimage::cpu {

// Sets flush-to-zero / denormals-are-zero in the calling thread and in every OpenMP worker:
// Gatys gradients underflow to denormals and would otherwise run ~5x slower.
void init_threads();

void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s,
                bool relu);
void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                     const ConvShape& s);
void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db, const ConvShape& s,
                       bool accumulate);

void maxpool_fwd(const float* x, float* y, const PoolShape& s);
void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s);
void avgpool_fwd(const float* x, float* y, const PoolShape& s);
void avgpool_bwd(const float* dy, float* dx, const PoolShape& s);

void relu_fwd(const float* x, float* y, size_t count);
void relu_bwd(const float* y, const float* dy, float* dx, size_t count);
void fill(float* x, float value, size_t count);
void axpby(float a, const float* x, float b, float* y, size_t count);
void mul(const float* a, const float* b, float* y, size_t count);
void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a);
double dot(const float* a, const float* b, size_t count);
double sum(const float* x, size_t count);
double sum_squares(const float* x, size_t count);

void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in, int out);
void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out);
void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in,
                        int out, bool accumulate);

}  // namespace preimage::cpu
