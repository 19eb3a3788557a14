// Both backends forward the compute ops of Backend to free functions with identical names and
// signatures (preimage::cpu::… and preimage::kernels::…); this macro writes those overrides once.
#pragma once

#define PREIMAGE_BACKEND_FORWARD_OPS(ns)                                                           \
  void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s,    \
                  bool relu) override {                                                            \
    ns::conv2d_fwd(x, w, b, y, s, relu);                                                           \
  }                                                                                                \
  void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,              \
                       const ConvShape& s) override {                                              \
    ns::conv2d_bwd_data(dy, w, mask, dx, s);                                                       \
  }                                                                                                \
  void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db,                    \
                         const ConvShape& s, bool accumulate) override {                           \
    ns::conv2d_bwd_filter(x, dy, dw, db, s, accumulate);                                           \
  }                                                                                                \
  void maxpool_fwd(const float* x, float* y, const PoolShape& s) override {                        \
    ns::maxpool_fwd(x, y, s);                                                                      \
  }                                                                                                \
  void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s) override {      \
    ns::maxpool_bwd(x, dy, dx, s);                                                                 \
  }                                                                                                \
  void avgpool_fwd(const float* x, float* y, const PoolShape& s) override {                        \
    ns::avgpool_fwd(x, y, s);                                                                      \
  }                                                                                                \
  void avgpool_bwd(const float* dy, float* dx, const PoolShape& s) override {                      \
    ns::avgpool_bwd(dy, dx, s);                                                                    \
  }                                                                                                \
  void relu_fwd(const float* x, float* y, size_t n) override {                                     \
    ns::relu_fwd(x, y, n);                                                                         \
  }                                                                                                \
  void relu_bwd(const float* y, const float* dy, float* dx, size_t n) override {                   \
    ns::relu_bwd(y, dy, dx, n);                                                                    \
  }                                                                                                \
  void fill(float* x, float v, size_t n) override {                                                \
    ns::fill(x, v, n);                                                                             \
  }                                                                                                \
  void axpby(float a, const float* x, float b, float* y, size_t n) override {                      \
    ns::axpby(a, x, b, y, n);                                                                      \
  }                                                                                                \
  void mul(const float* a, const float* b, float* y, size_t n) override {                          \
    ns::mul(a, b, y, n);                                                                           \
  }                                                                                                \
  void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a)       \
      override {                                                                                   \
    ns::channel_affine(x, y, n, plane, a);                                                         \
  }                                                                                                \
  double dot(const float* a, const float* b, size_t n) override {                                  \
    return ns::dot(a, b, n);                                                                       \
  }                                                                                                \
  double sum(const float* x, size_t n) override {                                                  \
    return ns::sum(x, n);                                                                          \
  }                                                                                                \
  double sum_squares(const float* x, size_t n) override {                                          \
    return ns::sum_squares(x, n);                                                                  \
  }                                                                                                \
  void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in,         \
                  int out) override {                                                              \
    ns::linear_fwd(x, w, b, y, n, in, out);                                                        \
  }                                                                                                \
  void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out)         \
      override {                                                                                   \
    ns::linear_bwd_data(dy, w, dx, n, in, out);                                                    \
  }                                                                                                \
  void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in,    \
                          int out, bool accumulate) override {                                     \
    ns::linear_bwd_weights(x, dy, dw, db, n, in, out, accumulate);                                 \
  }                                                                                                \
  /* ---- L-BFGS vector ops (kernels/lbfgs.cu) ---- */                                             \
  void lbfgs_project_grad(const float* x, const float* g, float lo, float hi, bool bounded,        \
                          float* pg, size_t n, double* out) override {                             \
    ns::lbfgs_project_grad(x, g, lo, hi, bounded, pg, n, out);                                     \
  }                                                                                                \
  void lbfgs_update(const float* x0, const float* g0, const float* x1, const float* g1, float lo,  \
                    float hi, bool bounded, float* s, float* y, float* pg, size_t n, double* out)  \
      override {                                                                                   \
    ns::lbfgs_update(x0, g0, x1, g1, lo, hi, bounded, s, y, pg, n, out);                           \
  }                                                                                                \
  void lbfgs_dots(const float* S, const float* Y, size_t ld, int rows, int skip, const float* q0,  \
                  const float* q1, const float* q2, size_t n, double* out) override {              \
    ns::lbfgs_dots(S, Y, ld, rows, skip, q0, q1, q2, n, out);                                      \
  }                                                                                                \
  void lbfgs_combine(const float* S, const float* Y, size_t ld, int rows, const double* coef,      \
                     const float* x, const float* g, float lo, float hi, bool bounded, float* d,   \
                     size_t n, double* out) override {                                             \
    ns::lbfgs_combine(S, Y, ld, rows, coef, x, g, lo, hi, bounded, d, n, out);                     \
  }                                                                                                \
  void lbfgs_step(const float* x0, const float* d, double t, float lo, float hi, bool bounded,     \
                  float* x1, size_t n) override {                                                  \
    ns::lbfgs_step(x0, d, t, lo, hi, bounded, x1, n);                                              \
  }                                                                                                \
  void lbfgs_dir_deriv(const float* x0, const float* d, const float* g, double t, float lo,        \
                       float hi, bool bounded, size_t n, double* out) override {                   \
    ns::lbfgs_dir_deriv(x0, d, g, t, lo, hi, bounded, n, out);                                     \
  }                                                                                                \
  /* ---- texture statistics and priors (gram / bilinear / priors) ---- */                         \
  void gram_fwd(const float* f, float* g, int c, int m) override {                                 \
    ns::gram_fwd(f, g, c, m);                                                                      \
  }                                                                                                \
  double gram_loss_grad(const float* f, const float* g, const float* gt, float* df, int c, int m,  \
                        float s) override {                                                        \
    return ns::gram_loss_grad(f, g, gt, df, c, m, s);                                              \
  }                                                                                                \
  void bilinear_pool_fwd(const float* fa, const float* fb, float* b, int ca, int cb, int m)        \
      override {                                                                                   \
    ns::bilinear_pool_fwd(fa, fb, b, ca, cb, m);                                                   \
  }                                                                                                \
  void bilinear_pool_bwd(const float* db, const float* fa, const float* fb, float* dfa,            \
                         float* dfb, int ca, int cb, int m) override {                             \
    ns::bilinear_pool_bwd(db, fa, fb, dfa, dfb, ca, cb, m);                                        \
  }                                                                                                \
  double bilinear_ssqrt_fwd(const float* b, float* y, size_t n, float eps) override {              \
    return ns::bilinear_ssqrt_fwd(b, y, n, eps);                                                   \
  }                                                                                                \
  double bilinear_ssqrt_bwd(const float* y, const float* zt, const float* dz, float* db, size_t n, \
                            double norm, double zg, float s) override {                            \
    return ns::bilinear_ssqrt_bwd(y, zt, dz, db, n, norm, zg, s);                                  \
  }                                                                                                \
  double softmax_xent_loss_grad(const float* s, float* ds, int k, int t, float sc) override {      \
    return ns::softmax_xent_loss_grad(s, ds, k, t, sc);                                            \
  }                                                                                                \
  double tv_loss_grad(const float* x, float* dx, int p, int h, int w, float beta, float eps,       \
                      float s) override {                                                          \
    return ns::tv_loss_grad(x, dx, p, h, w, beta, eps, s);                                         \
  }                                                                                                \
  double alpha_loss_grad(const float* x, float* dx, int p, size_t plane, float alpha, float eps,   \
                         float s) override {                                                       \
    return ns::alpha_loss_grad(x, dx, p, plane, alpha, eps, s);                                    \
  }
