// Launchers of the hand-written CUDA kernels: the engine's only door into kernels/. The op
// launchers are declared from the op list (kernels/ops.def, where their contracts are): the
// signature of the op, plus a leading Workspace& (WS tags) and a trailing `int version = 0`
// (VER tags).
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

#include "kernels/hog_shape.h"
#include "kernels/op_macros.h"
#include "kernels/op_shapes.h"
#include "kernels/workspace.h"

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

// ---- the ops (kernels/ops.def), one .cu per family (conv2d.cu, pool.cu, elementwise.cu, …) ----
#define PREIMAGE_OP(ret, name, params, args, tag, test) ret name PREIMAGE_OP_KPARAMS(tag, params);
#include "kernels/ops.def"
#undef PREIMAGE_OP

// ---- kernel versions (side by side, 1 = plain reference … n = tuned) -------------------------
int conv2d_fwd_versions();
int conv2d_bwd_data_versions();
int conv2d_bwd_filter_versions();
int pool_versions();            // maxpool_fwd/bwd, avgpool_fwd/bwd
int gram_versions();            // gram_fwd, gram_loss_grad
int bilinear_versions();        // bilinear_pool_fwd/bwd
int search_versions();          // search_distances
int conv_transpose_versions();  // conv_transpose_bwd_filter; fwd and bwd_data have one

// search_distances: at most this many segments.
inline constexpr int kSearchMaxSegments = 40;

}  // namespace preimage::kernels
