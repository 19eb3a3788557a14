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

#include "kernels/hog_shape.h"
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

// ---- L-BFGS vector ops (kernels/lbfgs.cu; CPU: engine/cpu/lbfgs_ops.cpp) ------------------
// Box: when `bounded`, variable j is fixed if it sits at a bound with the gradient pushing
// outward (x ≤ lo and g > 0, or x ≥ hi and g < 0); pg = g with fixed variables zeroed. History
// row r lives at S + r·ld (and Y + r·ld). Reductions are deterministic; results go to host `out`.
// pg = projected g; out = {max|pg|, Σ pg², #non-finite g}.
void lbfgs_project_grad(const float* x, const float* g, float lo, float hi, bool bounded, float* pg,
                        size_t n, double* out);
// s = x1 − x0, y = g1 − g0, pg = projected g1; out = {sᵀy, yᵀy, sᵀs, max|pg|, Σ pg²}.
void lbfgs_update(const float* x0, const float* g0, const float* x1, const float* g1, float lo,
                  float hi, bool bounded, float* s, float* y, float* pg, size_t n, double* out);
// Queries q0, q1, q2 (q1/q2 may be null) against rows r < R = rows of S and Y, row `skip` (−1:
// none) left 0 and unread: out[q·2R + r] = qᵀS_r, out[q·2R + R + r] = qᵀY_r.
void lbfgs_dots(const float* S, const float* Y, size_t ld, int rows, int skip, const float* q0,
                const float* q1, const float* q2, size_t n, double* out);
// d = −(coef[2R]·g + Σ coef[r]·S_r + Σ coef[R+r]·Y_r) (zero-coefficient rows are not read;
// coef is a host array of 2R+1), then d_j = 0 where j is fixed or sits at a bound with d_j
// pointing outward; out = {gᵀd, dᵀd, #non-finite d}.
void lbfgs_combine(const float* S, const float* Y, size_t ld, int rows, const double* coef,
                   const float* x, const float* g, float lo, float hi, bool bounded, float* d,
                   size_t n, double* out);
// x1 = P(fmaf(float(t), d, x0)), P = clamp to [lo, hi] when bounded.
void lbfgs_step(const float* x0, const float* d, double t, float lo, float hi, bool bounded,
                float* x1, size_t n);
// Right derivative of f(P(x0 + t·d)) given g = ∇f there: out = {Σ g_j d_j over j with
// lo < fmaf(float(t), d_j, x0_j) < hi (all j when unbounded), #non-finite g}.
void lbfgs_dir_deriv(const float* x0, const float* d, const float* g, double t, float lo, float hi,
                     bool bounded, size_t n, double* out);

// ---- texture statistics and priors (kernels/gram.cu, kernels/bilinear.cu, kernels/priors.cu;
//      formulas in docs/objectives.md; same contracts as engine/cpu/cpu_ops.h) ----------------
// g (c,c) = f fᵀ for f (c,m). v1 plain; v2 upper-triangle tiles only, mirrored, split-K.
void gram_fwd(const float* f, float* g, int c, int m, int version = 0);
// D = g − g_target; df (c,m) += grad_scale·D·f; returns Σ D². v1 unfused; v2 one fused kernel.
double gram_loss_grad(const float* f, const float* g, const float* g_target, float* df, int c,
                      int m, float grad_scale, int version = 0);
int gram_versions();
// b (ca,cb) = (1/m)·fa·fbᵀ; fb == fa: symmetric (upper-triangle) path.
void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb, int m,
                       int version = 0);
// dfa += (1/m)·db·fb, dfb += (1/m)·dbᵀ·fa; fb == fa (dfb == dfa): dfa += (1/m)(db + dbᵀ)·fa.
void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa, float* dfb,
                       int ca, int cb, int m, int version = 0);
int bilinear_versions();
// y = sign(b)·sqrt(|b| + eps) (sign(0) = +1); returns Σ y².
double bilinear_ssqrt_fwd(const float* b, float* y, size_t count, float eps);
// g = 2(z − z_target) (returns Σ (z − z_target)²) or g = dz (returns 0), z = y / norm;
// db = scale·(g − z·z_dot_g) / (2·norm·|y|).
double bilinear_ssqrt_bwd(const float* y, const float* z_target, const float* dz, float* db,
                          size_t count, double norm, double z_dot_g, float scale);
// −log softmax(s)[target] of one row of k logits; ds = scale·(softmax(s) − onehot(target)).
double softmax_xent_loss_grad(const float* s, float* ds, int k, int target, float scale);
// TV^β over planes of h×w (value returned, dx += grad_scale·gradient).
double tv_loss_grad(const float* x, float* dx, int planes, int h, int w, float beta, float eps,
                    float grad_scale);
// Bounded α-norm about each plane's mean (value returned, dx += grad_scale·gradient).
double alpha_loss_grad(const float* x, float* dx, int planes, size_t plane, float alpha, float eps,
                       float grad_scale);

// ---- texture search (kernels/search.cu; CPU: engine/cpu/search.cpp) ------------------------
// q (nq, dim) and e (ne, dim) are concatenations of nseg unit-vector segments, segment s spanning
// columns [seg_offsets[s], seg_offsets[s+1]) (host array of nseg+1, from 0 to dim);
// dist (nq, ne) = Σ_s sqrt(max(0, 2 − 2⟨q_s, e_s⟩)). v1 one thread per pair; v2 tiled product.
inline constexpr int kSearchMaxSegments = 40;
void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                      const int* seg_offsets, int nseg, int version = 0);
int search_versions();

// ---- up-convolutional decoders (kernels/conv_transpose.cu, kernels/adam.cu; CPU:
//      engine/cpu/conv_transpose.cpp, engine/cpu/adam.cpp; contracts in engine/cpu/cpu_ops.h) --
// w (C,O,K,K) as PyTorch's ConvTranspose2d. v1 direct gather (one thread per output / input /
// weight element); bwd_filter v2 one block per weight element with a shared-memory reduction.
void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                        const ConvTransposeShape& s, int version = 0);
void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                             const ConvTransposeShape& s, int version = 0);
void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                               const ConvTransposeShape& s, bool accumulate, int version = 0);
int conv_transpose_versions();  // versions of bwd_filter; fwd and bwd_data have one
void leaky_relu_fwd(const float* x, float* y, size_t count, float slope);
void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t count, float slope);
// Fused Adam step; only the scalars cross (bias corrections computed on the host in double).
void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                 float beta2, float eps, long step, float grad_scale);

// ---- HOG / dense SIFT (kernels/hog.cu; CPU: engine/cpu/hog.cpp; contracts in
//      kernels/hog_shape.h). Gather kernels, outputs overwritten, no atomics. -----------------
void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s);
void hog_cells_bwd(const float* x, const float* dhist, float* dx, const HogCellShape& s);
void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s);
void hog_block_bwd(const float* hist, const float* dy, float* dhist, const HogBlockShape& s);
void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s);
void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist, const HogUocttiShape& s);

}  // namespace preimage::kernels
