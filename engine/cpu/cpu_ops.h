// CPU backend ops: the same signatures as the CUDA launchers in kernels/kernels.h, so tests compare
// them call for call. Multi-threaded with OpenMP; GEMMs through OpenBLAS (cblas_sgemm).
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

// ---- texture statistics and priors (engine/cpu/{gram,bilinear,priors}.cpp; the CUDA versions
//      are kernels/{gram,bilinear,priors}.cu; formulas in docs/objectives.md) ----------------
// g (c,c) = f fᵀ for f (c,m): upper triangle computed, mirrored into the lower.
void gram_fwd(const float* f, float* g, int c, int m);
// Fused Gatys loss + gradient: D = g − g_target (c,c); df (c,m) += grad_scale·D·f; returns Σ D².
double gram_loss_grad(const float* f, const float* g, const float* g_target, float* df, int c,
                      int m, float grad_scale);
// Bilinear pooling b (ca,cb) = (1/m)·fa·fbᵀ; fb == fa (same pointer): symmetric path.
void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb, int m);
// dfa (ca,m) += (1/m)·db·fb and dfb (cb,m) += (1/m)·dbᵀ·fa; when fb == fa (then dfb == dfa):
// dfa += (1/m)·(db + dbᵀ)·fa.
void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa, float* dfb,
                       int ca, int cb, int m);
// y = sign(b)·sqrt(|b| + eps), sign(0) = +1; returns Σ y².
double bilinear_ssqrt_fwd(const float* b, float* y, size_t count, float eps);
// Backward through z = y / norm and the signed sqrt. g = 2(z − z_target) when z_target is given
// (returns Σ (z − z_target)²), else g = dz (returns 0); z_dot_g = Σ z·g (from the caller);
// db = scale·(g − z·z_dot_g) / (2·norm·|y|) (overwritten).
double bilinear_ssqrt_bwd(const float* y, const float* z_target, const float* dz, float* db,
                          size_t count, double norm, double z_dot_g, float scale);
// One row of k logits: returns −log softmax(s)[target]; ds = scale·(softmax(s) − onehot).
double softmax_xent_loss_grad(const float* s, float* ds, int k, int target, float scale);
// TV^β over `planes` planes of h×w: Σ ((x[i,j+1]−x[i,j])² + (x[i+1,j]−x[i,j])² + eps)^(β/2),
// differences past the last row/column = 0; dx += grad_scale·∂/∂x; returns the sum.
double tv_loss_grad(const float* x, float* dx, int planes, int h, int w, float beta, float eps,
                    float grad_scale);
// Bounded α-norm: Σ φ(x − mean of its plane), φ(d) = |d|^α (α ≥ 2) or (d² + eps)^(α/2)
// (α < 2); dx += grad_scale·∂/∂x; returns the sum.
double alpha_loss_grad(const float* x, float* dx, int planes, size_t plane, float alpha, float eps,
                       float grad_scale);

// ---- texture search (engine/cpu/search.cpp; CUDA: kernels/search.cu) ----------------------
// q (nq, dim) and e (ne, dim) are concatenations of nseg unit-vector segments, segment s spanning
// columns [seg_offsets[s], seg_offsets[s+1]) (host array of nseg+1, from 0 to dim);
// dist (nq, ne) = Σ_s sqrt(max(0, 2 − 2⟨q_s, e_s⟩)), the dot products by sgemm per segment over
// blocks of entries.
void search_distances(const float* q, const float* e, float* dist, int nq, int ne, int dim,
                      const int* seg_offsets, int nseg);

// ---- up-convolutional decoders (engine/cpu/conv_transpose.cpp, engine/cpu/adam.cpp; CUDA:
//      kernels/conv_transpose.cu, kernels/adam.cu) ----------------------------------------
// Transposed convolution, w (C,O,K,K) as PyTorch's ConvTranspose2d: y = convT(x, w) + b (b may
// be null); dx = conv(dy, w) (overwritten); dw (C,O,K,K) and db (O) summed over the batch,
// overwritten or added to when accumulate (db may be null).
void conv_transpose_fwd(const float* x, const float* w, const float* b, float* y,
                        const ConvTransposeShape& s);
void conv_transpose_bwd_data(const float* dy, const float* w, float* dx,
                             const ConvTransposeShape& s);
void conv_transpose_bwd_filter(const float* x, const float* dy, float* dw, float* db,
                               const ConvTransposeShape& s, bool accumulate);
// Leaky ReLU: y = x > 0 ? x : slope·x (in place allowed); dx = dy · (y > 0 ? 1 : slope)
// (slope ≥ 0, so y > 0 exactly where x > 0).
void leaky_relu_fwd(const float* x, float* y, size_t count, float slope);
void leaky_relu_bwd(const float* y, const float* dy, float* dx, size_t count, float slope);
// One Adam step (PyTorch's torch.optim.Adam, weight_decay = 0) on n parameters, in place:
// g' = grad_scale·g; m = β1·m + (1−β1)·g'; v = β2·v + (1−β2)·g'²;
// p −= lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps), t = step ≥ 1.
void adam_update(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                 float beta2, float eps, long step, float grad_scale);

// ---- HOG / dense SIFT (engine/cpu/hog.cpp; CUDA: kernels/hog.cu; definitions in
//      kernels/hog_shape.h and docs/descriptors.md). Outputs overwritten. The double overloads
//      serve the central-difference gradient checks. ---------------------------------------
void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s);
void hog_cells_fwd(const double* x, double* hist, const HogCellShape& s);
void hog_cells_bwd(const float* x, const float* dhist, float* dx, const HogCellShape& s);
void hog_cells_bwd(const double* x, const double* dhist, double* dx, const HogCellShape& s);
void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s);
void hog_block_fwd(const double* hist, double* y, const HogBlockShape& s);
void hog_block_bwd(const float* hist, const float* dy, float* dhist, const HogBlockShape& s);
void hog_block_bwd(const double* hist, const double* dy, double* dhist, const HogBlockShape& s);
void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s);
void hog_uoctti_fwd(const double* hist, double* y, const HogUocttiShape& s);
void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist, const HogUocttiShape& s);
void hog_uoctti_bwd(const double* hist, const double* dy, double* dhist, const HogUocttiShape& s);

}  // namespace preimage::cpu
