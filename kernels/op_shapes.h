// Shapes of the ops that both backends implement (engine/cpu/ and kernels/ take the same structs).
#pragma once

namespace preimage {

// Convolution: x (N,C,H,W) * w (O,C,KH,KW) → y (N,O,HO,WO); zero padding, same on both axes.
struct ConvShape {
  int n, c, h, w;   // input
  int o, kh, kw;    // filters
  int stride, pad;  // same for both axes
  int ho() const { return (h + 2 * pad - kh) / stride + 1; }
  int wo() const { return (w + 2 * pad - kw) / stride + 1; }
};

// Pooling: square window k, stride, padding (-inf for max; zeros counted for avg, as PyTorch's
// count_include_pad=True), x (N,C,H,W) → y (N,C,HO,WO).
struct PoolShape {
  int n, c, h, w;
  int k, stride, pad;
  int ho() const { return (h + 2 * pad - k) / stride + 1; }
  int wo() const { return (w + 2 * pad - k) / stride + 1; }
};

// Transposed convolution (PyTorch ConvTranspose2d, groups = dilation = 1): x (N,C,H,W),
// w (C,O,K,K) → y (N,O,HO,WO), HO = (H−1)·stride − 2·pad + K + out_pad (0 ≤ out_pad < stride).
struct ConvTransposeShape {
  int n, c, h, w;   // input
  int o, k;         // output channels, square kernel
  int stride, pad;  // same for both axes
  int out_pad = 0;  // extra rows/columns at the bottom/right of the output
  int ho() const { return (h - 1) * stride - 2 * pad + k + out_pad; }
  int wo() const { return (w - 1) * stride - 2 * pad + k + out_pad; }
};

// Per-channel affine map with a channel permutation (colour order + normalization):
// y[n,c] = scale[c] * x[n,perm[c]] + shift[c]; c ≤ 8. Passed by value to kernels.
struct ChannelAffine {
  int c = 0;
  int perm[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  float scale[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  float shift[8] = {0, 0, 0, 0, 0, 0, 0, 0};
};

}  // namespace preimage
