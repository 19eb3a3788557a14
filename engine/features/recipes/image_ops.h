// Host-side image helpers of the ascent commands (visualize, dream) and of style's
// --original-colors: jitter rolls, Gaussian blur, pixel clipping and YIQ colour transfer on
// (1,3,H,W) RGB [0,1] tensors.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "preimage/tensor.h"

namespace preimage::recipes_detail {

// Circular shift by (dy, dx); roll(x, -dy, -dx) undoes it.
inline Tensor roll(const Tensor& x, int dy, int dx) {
  const Shape s = x.shape();
  std::vector<float> in = x.to_vector(), out(in.size());
  for (int p = 0; p < s.n * s.c; ++p)
    for (int y = 0; y < s.h; ++y)
      for (int xx = 0; xx < s.w; ++xx) {
        const int ty = ((y + dy) % s.h + s.h) % s.h, tx = ((xx + dx) % s.w + s.w) % s.w;
        out[(size_t(p) * s.h + ty) * s.w + tx] = in[(size_t(p) * s.h + y) * s.w + xx];
      }
  return Tensor::from_vector(s, out);
}

// Separable Gaussian blur with clamped borders.
inline void gaussian_blur(Tensor& x, float sigma) {
  if (sigma <= 0) return;
  const int r = std::max(1, int(std::ceil(3 * sigma)));
  std::vector<float> k(2 * r + 1);
  float sum = 0;
  for (int i = -r; i <= r; ++i) sum += k[i + r] = std::exp(-0.5f * i * i / (sigma * sigma));
  for (auto& v : k) v /= sum;
  const Shape s = x.shape();
  std::vector<float> v = x.to_vector(), tmp(v.size());
  for (int p = 0; p < s.n * s.c; ++p) {
    float* a = v.data() + size_t(p) * s.h * s.w;
    float* t = tmp.data() + size_t(p) * s.h * s.w;
    for (int y = 0; y < s.h; ++y)
      for (int xx = 0; xx < s.w; ++xx) {
        float acc = 0;
        for (int i = -r; i <= r; ++i) acc += k[i + r] * a[y * s.w + std::clamp(xx + i, 0, s.w - 1)];
        t[y * s.w + xx] = acc;
      }
    for (int y = 0; y < s.h; ++y)
      for (int xx = 0; xx < s.w; ++xx) {
        float acc = 0;
        for (int i = -r; i <= r; ++i) acc += k[i + r] * t[std::clamp(y + i, 0, s.h - 1) * s.w + xx];
        a[y * s.w + xx] = acc;
      }
  }
  x = Tensor::from_vector(s, v);
}

// Yosinski's clip-small-values: pixels whose colour deviation from grey is below
// `fraction` of the largest deviation are set to grey.
inline void clip_small(Tensor& x, float fraction) {
  if (fraction <= 0) return;
  const Shape s = x.shape();
  std::vector<float> v = x.to_vector();
  const size_t plane = s.plane();
  std::vector<float> norm(plane);
  float mx = 0;
  for (size_t i = 0; i < plane; ++i) {
    float acc = 0;
    for (int c = 0; c < 3; ++c) acc += (v[c * plane + i] - 0.5f) * (v[c * plane + i] - 0.5f);
    norm[i] = std::sqrt(acc);
    mx = std::max(mx, norm[i]);
  }
  for (size_t i = 0; i < plane; ++i)
    if (norm[i] < fraction * mx)
      for (int c = 0; c < 3; ++c) v[c * plane + i] = 0.5f;
  x = Tensor::from_vector(s, v);
}

// Luminance of `stylized` with the chrominance (I, Q of YIQ) of `content`: Gatys et al.'s
// colour-preserving style transfer, applied as the last step.
inline Tensor transfer_luminance(const Tensor& stylized, const Tensor& content) {
  const Shape s = stylized.shape();
  std::vector<float> a = stylized.to_vector(), b = content.to_vector(), out(a.size());
  const size_t plane = s.plane();
  for (size_t i = 0; i < plane; ++i) {
    const float y = 0.299f * a[i] + 0.587f * a[plane + i] + 0.114f * a[2 * plane + i];
    const float r = b[i], g = b[plane + i], bl = b[2 * plane + i];
    const float ii = 0.596f * r - 0.274f * g - 0.322f * bl;
    const float q = 0.211f * r - 0.523f * g + 0.312f * bl;
    out[i] = std::clamp(y + 0.956f * ii + 0.621f * q, 0.f, 1.f);
    out[plane + i] = std::clamp(y - 0.272f * ii - 0.647f * q, 0.f, 1.f);
    out[2 * plane + i] = std::clamp(y - 1.106f * ii + 1.703f * q, 0.f, 1.f);
  }
  return Tensor::from_vector(s, out);
}

}  // namespace preimage::recipes_detail
