// Both backends forward the compute ops of Backend to free functions with identical names and
// signatures (preimage::cpu::… and preimage::kernels::…); this macro writes those overrides once.
#pragma once

#define PREIMAGE_BACKEND_FORWARD_OPS(ns)                                                        \
  void conv2d_fwd(const float* x, const float* w, const float* b, float* y, const ConvShape& s, \
                  bool relu) override {                                                         \
    ns::conv2d_fwd(x, w, b, y, s, relu);                                                        \
  }                                                                                             \
  void conv2d_bwd_data(const float* dy, const float* w, const float* mask, float* dx,           \
                       const ConvShape& s) override {                                           \
    ns::conv2d_bwd_data(dy, w, mask, dx, s);                                                    \
  }                                                                                             \
  void conv2d_bwd_filter(const float* x, const float* dy, float* dw, float* db,                 \
                         const ConvShape& s, bool accumulate) override {                        \
    ns::conv2d_bwd_filter(x, dy, dw, db, s, accumulate);                                        \
  }                                                                                             \
  void maxpool_fwd(const float* x, float* y, const PoolShape& s) override {                     \
    ns::maxpool_fwd(x, y, s);                                                                   \
  }                                                                                             \
  void maxpool_bwd(const float* x, const float* dy, float* dx, const PoolShape& s) override {   \
    ns::maxpool_bwd(x, dy, dx, s);                                                              \
  }                                                                                             \
  void avgpool_fwd(const float* x, float* y, const PoolShape& s) override {                     \
    ns::avgpool_fwd(x, y, s);                                                                   \
  }                                                                                             \
  void avgpool_bwd(const float* dy, float* dx, const PoolShape& s) override {                   \
    ns::avgpool_bwd(dy, dx, s);                                                                 \
  }                                                                                             \
  void relu_fwd(const float* x, float* y, size_t n) override {                                  \
    ns::relu_fwd(x, y, n);                                                                      \
  }                                                                                             \
  void relu_bwd(const float* y, const float* dy, float* dx, size_t n) override {                \
    ns::relu_bwd(y, dy, dx, n);                                                                 \
  }                                                                                             \
  void fill(float* x, float v, size_t n) override {                                             \
    ns::fill(x, v, n);                                                                          \
  }                                                                                             \
  void axpby(float a, const float* x, float b, float* y, size_t n) override {                   \
    ns::axpby(a, x, b, y, n);                                                                   \
  }                                                                                             \
  void mul(const float* a, const float* b, float* y, size_t n) override {                       \
    ns::mul(a, b, y, n);                                                                        \
  }                                                                                             \
  void channel_affine(const float* x, float* y, int n, size_t plane, const ChannelAffine& a)    \
      override {                                                                                \
    ns::channel_affine(x, y, n, plane, a);                                                      \
  }                                                                                             \
  double dot(const float* a, const float* b, size_t n) override {                               \
    return ns::dot(a, b, n);                                                                    \
  }                                                                                             \
  double sum(const float* x, size_t n) override {                                               \
    return ns::sum(x, n);                                                                       \
  }                                                                                             \
  double sum_squares(const float* x, size_t n) override {                                       \
    return ns::sum_squares(x, n);                                                               \
  }                                                                                             \
  void linear_fwd(const float* x, const float* w, const float* b, float* y, int n, int in,      \
                  int out) override {                                                           \
    ns::linear_fwd(x, w, b, y, n, in, out);                                                     \
  }                                                                                             \
  void linear_bwd_data(const float* dy, const float* w, float* dx, int n, int in, int out)      \
      override {                                                                                \
    ns::linear_bwd_data(dy, w, dx, n, in, out);                                                 \
  }                                                                                             \
  void linear_bwd_weights(const float* x, const float* dy, float* dw, float* db, int n, int in, \
                          int out, bool accumulate) override {                                  \
    ns::linear_bwd_weights(x, dy, dw, db, n, in, out, accumulate);                              \
  }
