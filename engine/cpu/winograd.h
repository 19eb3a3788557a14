// Winograd F(4×4, 3×3) convolution for the CPU backend (engine/cpu/winograd.cpp): 3×3,
// stride 1, padding 1 convolutions forward and backward-data. engine/cpu/conv2d.cpp picks it
// per call (see conv_algo in engine/cpu/cpu_ops.h); the im2col path stays as the reference.
#pragma once
#include "kernels/op_shapes.h"

namespace preimage::cpu {

// 3×3 kernel, stride 1, padding 1 (output size = input size).
bool winograd_applicable(const ConvShape& s);
// Same contracts as conv2d_fwd / conv2d_bwd_data (engine/cpu/cpu_ops.h).
void winograd_conv3x3_fwd(const float* x, const float* w, const float* b, float* y,
                          const ConvShape& s, bool relu);
void winograd_conv3x3_bwd_data(const float* dy, const float* w, const float* mask, float* dx,
                               const ConvShape& s);
// Drops the cached transformed filters (they are otherwise kept, keyed by pointer, shape and a
// hash of the values, so that an iteration loop transforms each filter bank once).
void winograd_clear_cache();

}  // namespace preimage::cpu
