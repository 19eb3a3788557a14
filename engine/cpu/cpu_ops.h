// CPU backend ops: the ops of kernels/ops.def, with the signatures the CUDA launchers in
// kernels/kernels.h share (less their workspace/version), so tests compare them call for call.
// Multi-threaded with OpenMP; GEMMs through OpenBLAS (cblas_sgemm).
// Layouts: activations (N,C,H,W), conv weights (O,C,KH,KW), linear weights (OUT,IN), float32.
#pragma once
#include <cstddef>

#include "kernels/hog_shape.h"
#include "kernels/op_shapes.h"

namespace preimage::cpu {

// Sets flush-to-zero / denormals-are-zero in the calling thread and in every OpenMP worker:
// Gatys gradients underflow to denormals and would otherwise run ~5x slower.
void init_threads();

// Convolution algorithm (engine/cpu/conv2d.cpp): Auto takes Winograd F(4×4, 3×3)
// (engine/cpu/winograd.cpp) for 3×3 stride-1 pad-1 forward and backward-data with ≥ 16 input and
// output channels and im2col + sgemm otherwise; Direct forces im2col (the reference), Winograd
// forces it wherever it applies. The default comes from PREIMAGE_CPU_CONV=auto|direct|winograd
// (an Error names any other value); set_conv_algo overrides it, reset_conv_algo returns to it.
enum class ConvAlgo { Auto, Direct, Winograd };
ConvAlgo conv_algo();
void set_conv_algo(ConvAlgo a);
void reset_conv_algo();

// The ops of kernels/ops.def (contracts there), one .cpp per family (conv2d.cpp, pool.cpp, …).
#define PREIMAGE_OP(ret, name, params, args, tag, test) ret name params;
#include "kernels/ops.def"
#undef PREIMAGE_OP

// HOG / dense SIFT in double, for the central-difference gradient checks (engine/cpu/hog.cpp).
void hog_cells_fwd(const double* x, double* hist, const HogCellShape& s);
void hog_cells_bwd(const double* x, const double* dhist, double* dx, const HogCellShape& s);
void hog_block_fwd(const double* hist, double* y, const HogBlockShape& s);
void hog_block_bwd(const double* hist, const double* dy, double* dhist, const HogBlockShape& s);
void hog_uoctti_fwd(const double* hist, double* y, const HogUocttiShape& s);
void hog_uoctti_bwd(const double* hist, const double* dy, double* dhist, const HogUocttiShape& s);

}  // namespace preimage::cpu
