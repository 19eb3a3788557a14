// CPU reference of the HOG / dense-SIFT ops (definitions in kernels/hog_shape.h and
// docs/descriptors.md): oriented-gradient cell histograms, L2-Hys block normalization and the
// UoCTTI normalization, forward and backward. Written as plain scatter loops (each pixel votes
// into its cells; the backward passes are the adjoints of those loops), independently of the
// gather-style kernels in kernels/hog.cu that are tested against them. Templated on the scalar
// so that the tests can check the gradients by central differences in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_ops.h"
#include "preimage/error.h"

namespace preimage::cpu {
namespace {

template <class T>
struct Votes {
  int k0 = 0, k1 = 0;  // bins
  T a0 = 0, a1 = 0;    // their weights
  T slope = 0;         // d a1 / dθ (= −d a0 / dθ)
};

template <class T>
Votes<T> orientation_votes(T gx, T gy, const HogCellShape& s) {
  const T pi = T(3.14159265358979323846);
  const T period = s.signed_bins ? 2 * pi : pi;
  T theta = std::atan2(gy, gx);
  if (theta < 0) theta += period;
  if (theta >= period) theta -= period;
  const T bw = period / T(s.bins);
  Votes<T> v;
  if (s.soft_bins) {
    const T t = theta / bw - T(0.5);
    const T f = std::floor(t);
    v.a1 = t - f;
    v.a0 = 1 - v.a1;
    v.k0 = (int(f) + s.bins) % s.bins;
    v.k1 = (v.k0 + 1) % s.bins;
    v.slope = 1 / bw;
  } else {
    v.k0 = std::min(int(theta / bw), s.bins - 1);
    v.k1 = v.k0;
    v.a0 = 1;
  }
  return v;
}

// The (at most two) cells a pixel coordinate votes into along one axis, with weights.
template <class T>
int cell_votes(int p, int cells, const HogCellShape& s, int* idx, T* wt) {
  if (!s.bilinear_cells) {
    const int c = p / s.cell;
    if (c >= cells) return 0;
    idx[0] = c;
    wt[0] = 1;
    return 1;
  }
  const T f = (T(p) + T(0.5)) / T(s.cell) - T(0.5);
  const T fl = std::floor(f);
  const int c0 = int(fl);
  const T t = f - fl;
  int k = 0;
  if (c0 >= 0 && c0 < cells) {
    idx[k] = c0;
    wt[k++] = 1 - t;
  }
  if (c0 + 1 >= 0 && c0 + 1 < cells) {
    idx[k] = c0 + 1;
    wt[k++] = t;
  }
  return k;
}

void check_cells(const HogCellShape& s) {
  require(s.n >= 1 && (s.c == 1 || s.c == 3) && s.h >= 1 && s.w >= 1 && s.cell >= 1 &&
              s.bins >= 2 && s.hc() >= 1 && s.wc() >= 1,
          "hog_cells: invalid shape (expected N>=1, C 1 or 3, cell>=1, bins>=2 and at least one "
          "cell)");
}

template <class T>
std::vector<T> grey_plane(const T* x, const HogCellShape& s, int n) {
  const size_t plane = size_t(s.h) * s.w;
  std::vector<T> g(plane);
  const T* xn = x + size_t(n) * s.c * plane;
  for (size_t i = 0; i < plane; ++i)
    g[i] = s.c == 1 ? xn[i]
                    : T(0.299f) * xn[i] + T(0.587f) * xn[plane + i] + T(0.114f) * xn[2 * plane + i];
  return g;
}

template <class T>
void cells_fwd(const T* x, T* hist, const HogCellShape& s) {
  check_cells(s);
  const int hc = s.hc(), wc = s.wc(), B = s.bins;
  const T norm = T(1) / (T(s.cell) * T(s.cell));
  for (int n = 0; n < s.n; ++n) {
    const std::vector<T> g = grey_plane(x, s, n);
    T* hn = hist + size_t(n) * B * hc * wc;
    std::fill(hn, hn + size_t(B) * hc * wc, T(0));
    for (int y = 0; y < s.h; ++y) {
      int cy[2];
      T wy[2];
      const int ny = cell_votes(y, hc, s, cy, wy);
      for (int xx = 0; xx < s.w; ++xx) {
        const T gx = (xx > 0 && xx < s.w - 1) ? g[y * s.w + xx + 1] - g[y * s.w + xx - 1] : T(0);
        const T gy = (y > 0 && y < s.h - 1) ? g[(y + 1) * s.w + xx] - g[(y - 1) * s.w + xx] : T(0);
        const T m = std::sqrt(gx * gx + gy * gy);
        if (!(m > 0)) continue;
        const Votes<T> v = orientation_votes(gx, gy, s);
        int cx[2];
        T wx[2];
        const int nx = cell_votes(xx, wc, s, cx, wx);
        for (int i = 0; i < ny; ++i)
          for (int j = 0; j < nx; ++j) {
            const T w = m * wy[i] * wx[j] * norm;
            const size_t at = size_t(cy[i]) * wc + cx[j];
            hn[size_t(v.k0) * hc * wc + at] += w * v.a0;
            hn[size_t(v.k1) * hc * wc + at] += w * v.a1;
          }
      }
    }
  }
}

template <class T>
void cells_bwd(const T* x, const T* dhist, T* dx, const HogCellShape& s) {
  check_cells(s);
  const int hc = s.hc(), wc = s.wc(), B = s.bins;
  const size_t plane = size_t(s.h) * s.w;
  const T norm = T(1) / (T(s.cell) * T(s.cell));
  for (int n = 0; n < s.n; ++n) {
    const std::vector<T> g = grey_plane(x, s, n);
    std::vector<T> dg(plane, T(0));
    const T* dh = dhist + size_t(n) * B * hc * wc;
    for (int y = 0; y < s.h; ++y) {
      int cy[2];
      T wy[2];
      const int ny = cell_votes(y, hc, s, cy, wy);
      for (int xx = 0; xx < s.w; ++xx) {
        const bool inx = xx > 0 && xx<s.w - 1, iny = y> 0 && y < s.h - 1;
        const T gx = inx ? g[y * s.w + xx + 1] - g[y * s.w + xx - 1] : T(0);
        const T gy = iny ? g[(y + 1) * s.w + xx] - g[(y - 1) * s.w + xx] : T(0);
        const T m = std::sqrt(gx * gx + gy * gy);
        if (!(m > 0)) continue;
        const Votes<T> v = orientation_votes(gx, gy, s);
        int cx[2];
        T wx[2];
        const int nx = cell_votes(xx, wc, s, cx, wx);
        T s0 = 0, s1 = 0;
        for (int i = 0; i < ny; ++i)
          for (int j = 0; j < nx; ++j) {
            const T w = wy[i] * wx[j] * norm;
            const size_t at = size_t(cy[i]) * wc + cx[j];
            s0 += w * dh[size_t(v.k0) * hc * wc + at];
            s1 += w * dh[size_t(v.k1) * hc * wc + at];
          }
        // value = m·(a0·s0 + a1·s1): ∂/∂m and ∂/∂θ, then through m(gx, gy) and θ(gx, gy).
        const T lm = v.a0 * s0 + v.a1 * s1;
        const T lt = v.slope * (s1 - s0);  // already divided by m once: m·lt / m²
        const T dgx = (lm * gx - lt * gy) / m;
        const T dgy = (lm * gy + lt * gx) / m;
        if (inx) {
          dg[y * s.w + xx + 1] += dgx;
          dg[y * s.w + xx - 1] -= dgx;
        }
        if (iny) {
          dg[(y + 1) * s.w + xx] += dgy;
          dg[(y - 1) * s.w + xx] -= dgy;
        }
      }
    }
    T* dxn = dx + size_t(n) * s.c * plane;
    if (s.c == 1) {
      std::copy(dg.begin(), dg.end(), dxn);
    } else {
      const T wc3[3] = {T(0.299f), T(0.587f), T(0.114f)};
      for (int c = 0; c < 3; ++c)
        for (size_t i = 0; i < plane; ++i) dxn[c * plane + i] = wc3[c] * dg[i];
    }
  }
}

void check_block(const HogBlockShape& s) {
  require(s.n >= 1 && s.bins >= 1 && s.block >= 1 && s.stride >= 1 && s.hc >= s.block &&
              s.wc >= s.block && s.clip > 0 && s.eps > 0,
          "hog_block: invalid shape (expected at least one block of cells, clip > 0, eps > 0)");
}

// Offset of bin o of cell (cy, cx) in the histogram of image n.
size_t hist_at(const HogBlockShape& s, int n, int o, int cy, int cx) {
  return ((size_t(n) * s.bins + o) * s.hc + cy) * s.wc + cx;
}

template <class T>
void block_fwd(const T* hist, T* y, const HogBlockShape& s) {
  check_block(s);
  const int hb = s.hb(), wb = s.wb(), D = s.channels();
  std::vector<T> v(D);
  for (int n = 0; n < s.n; ++n)
    for (int i = 0; i < hb; ++i)
      for (int j = 0; j < wb; ++j) {
        for (int by = 0; by < s.block; ++by)
          for (int bx = 0; bx < s.block; ++bx)
            for (int o = 0; o < s.bins; ++o)
              v[(by * s.block + bx) * s.bins + o] =
                  hist[hist_at(s, n, o, i * s.stride + by, j * s.stride + bx)];
        T ss = 0;
        for (T e : v) ss += e * e;
        const T n1 = std::sqrt(ss + T(s.eps) * T(s.eps));
        T cs = 0;
        for (T& e : v) {
          e = std::min(e / n1, T(s.clip));
          cs += e * e;
        }
        const T n2 = std::sqrt(cs + T(s.eps) * T(s.eps));
        for (int d = 0; d < D; ++d) y[((size_t(n) * D + d) * hb + i) * wb + j] = v[d] / n2;
      }
}

template <class T>
void block_bwd(const T* hist, const T* dy, T* dhist, const HogBlockShape& s) {
  check_block(s);
  const int hb = s.hb(), wb = s.wb(), D = s.channels();
  std::fill(dhist, dhist + size_t(s.n) * s.bins * s.hc * s.wc, T(0));
  std::vector<T> v(D), u(D), c(D), g(D), du(D);
  for (int n = 0; n < s.n; ++n)
    for (int i = 0; i < hb; ++i)
      for (int j = 0; j < wb; ++j) {
        for (int by = 0; by < s.block; ++by)
          for (int bx = 0; bx < s.block; ++bx)
            for (int o = 0; o < s.bins; ++o)
              v[(by * s.block + bx) * s.bins + o] =
                  hist[hist_at(s, n, o, i * s.stride + by, j * s.stride + bx)];
        for (int d = 0; d < D; ++d) g[d] = dy[((size_t(n) * D + d) * hb + i) * wb + j];
        T ss = 0;
        for (T e : v) ss += e * e;
        const T n1 = std::sqrt(ss + T(s.eps) * T(s.eps));
        T cs = 0;
        for (int d = 0; d < D; ++d) {
          u[d] = v[d] / n1;
          c[d] = std::min(u[d], T(s.clip));
          cs += c[d] * c[d];
        }
        const T n2 = std::sqrt(cs + T(s.eps) * T(s.eps));
        T a = 0;
        for (int d = 0; d < D; ++d) a += g[d] * c[d];
        T b = 0;
        for (int d = 0; d < D; ++d) {
          const T dc = g[d] / n2 - c[d] * a / (n2 * n2 * n2);
          du[d] = u[d] < T(s.clip) ? dc : T(0);
          b += du[d] * v[d];
        }
        for (int by = 0; by < s.block; ++by)
          for (int bx = 0; bx < s.block; ++bx)
            for (int o = 0; o < s.bins; ++o) {
              const int d = (by * s.block + bx) * s.bins + o;
              dhist[hist_at(s, n, o, i * s.stride + by, j * s.stride + bx)] +=
                  du[d] / n1 - v[d] * b / (n1 * n1 * n1);
            }
      }
}

void check_uoctti(const HogUocttiShape& s) {
  require(s.n >= 1 && s.hc >= 3 && s.wc >= 3 && s.clip > 0 && s.eps > 0,
          "hog_uoctti: invalid shape (expected at least 3x3 cells, clip > 0, eps > 0)");
}

constexpr float kTexture = 0.2357f;

template <class T>
void uoctti_fwd(const T* hist, T* y, const HogUocttiShape& s) {
  check_uoctti(s);
  const int hc = s.hc, wc = s.wc, ho = s.ho(), wo = s.wo();
  const size_t cells = size_t(hc) * wc;
  for (int n = 0; n < s.n; ++n) {
    const T* h = hist + size_t(n) * kUocttiBins * cells;
    std::vector<T> e(cells, T(0));
    for (size_t p = 0; p < cells; ++p)
      for (int o = 0; o < 9; ++o)
        e[p] += (h[o * cells + p] + h[(o + 9) * cells + p]) *
                (h[o * cells + p] + h[(o + 9) * cells + p]);
    for (int i = 0; i < ho; ++i)
      for (int j = 0; j < wo; ++j) {
        const int cy = i + 1, cx = j + 1;
        T nk[4];
        for (int k = 0; k < 4; ++k) {
          const int ty = cy + k / 2 - 1, tx = cx + k % 2 - 1;
          const T sum = e[ty * wc + tx] + e[ty * wc + tx + 1] + e[(ty + 1) * wc + tx] +
                        e[(ty + 1) * wc + tx + 1];
          nk[k] = T(1) / std::sqrt(sum + T(s.eps));
        }
        auto out = [&](int f) -> T& {
          return y[((size_t(n) * kUocttiDims + f) * ho + i) * wo + j];
        };
        T tex[4] = {0, 0, 0, 0};
        const size_t p = size_t(cy) * wc + cx;
        for (int o = 0; o < 18; ++o) {
          T acc = 0;
          for (int k = 0; k < 4; ++k) {
            const T hk = std::min(h[o * cells + p] * nk[k], T(s.clip));
            acc += hk;
            tex[k] += hk;
          }
          out(o) = T(0.5) * acc;
        }
        for (int o = 0; o < 9; ++o) {
          const T sum = h[o * cells + p] + h[(o + 9) * cells + p];
          T acc = 0;
          for (int k = 0; k < 4; ++k) acc += std::min(sum * nk[k], T(s.clip));
          out(18 + o) = T(0.5) * acc;
        }
        for (int k = 0; k < 4; ++k) out(27 + k) = T(kTexture) * tex[k];
      }
  }
}

template <class T>
void uoctti_bwd(const T* hist, const T* dy, T* dhist, const HogUocttiShape& s) {
  check_uoctti(s);
  const int hc = s.hc, wc = s.wc, ho = s.ho(), wo = s.wo();
  const size_t cells = size_t(hc) * wc;
  const T clip = T(s.clip);
  for (int n = 0; n < s.n; ++n) {
    const T* h = hist + size_t(n) * kUocttiBins * cells;
    T* dh = dhist + size_t(n) * kUocttiBins * cells;
    std::fill(dh, dh + kUocttiBins * cells, T(0));
    std::vector<T> e(cells, T(0)), de(cells, T(0));
    for (size_t p = 0; p < cells; ++p)
      for (int o = 0; o < 9; ++o)
        e[p] += (h[o * cells + p] + h[(o + 9) * cells + p]) *
                (h[o * cells + p] + h[(o + 9) * cells + p]);
    for (int i = 0; i < ho; ++i)
      for (int j = 0; j < wo; ++j) {
        const int cy = i + 1, cx = j + 1;
        T nk[4], dn[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4; ++k) {
          const int ty = cy + k / 2 - 1, tx = cx + k % 2 - 1;
          const T sum = e[ty * wc + tx] + e[ty * wc + tx + 1] + e[(ty + 1) * wc + tx] +
                        e[(ty + 1) * wc + tx + 1];
          nk[k] = T(1) / std::sqrt(sum + T(s.eps));
        }
        auto g = [&](int f) { return dy[((size_t(n) * kUocttiDims + f) * ho + i) * wo + j]; };
        const size_t p = size_t(cy) * wc + cx;
        for (int o = 0; o < 18; ++o) {
          const T v = h[o * cells + p];
          for (int k = 0; k < 4; ++k)
            if (v * nk[k] < clip) {
              const T coef = T(0.5) * g(o) + T(kTexture) * g(27 + k);
              dh[o * cells + p] += coef * nk[k];
              dn[k] += coef * v;
            }
        }
        for (int o = 0; o < 9; ++o) {
          const T sum = h[o * cells + p] + h[(o + 9) * cells + p];
          for (int k = 0; k < 4; ++k)
            if (sum * nk[k] < clip) {
              const T coef = T(0.5) * g(18 + o);
              dh[o * cells + p] += coef * nk[k];
              dh[(o + 9) * cells + p] += coef * nk[k];
              dn[k] += coef * sum;
            }
        }
        for (int k = 0; k < 4; ++k) {
          const T dsum = dn[k] * T(-0.5) * nk[k] * nk[k] * nk[k];
          const int ty = cy + k / 2 - 1, tx = cx + k % 2 - 1;
          de[ty * wc + tx] += dsum;
          de[ty * wc + tx + 1] += dsum;
          de[(ty + 1) * wc + tx] += dsum;
          de[(ty + 1) * wc + tx + 1] += dsum;
        }
      }
    for (size_t p = 0; p < cells; ++p)
      for (int o = 0; o < 9; ++o) {
        const T d = de[p] * 2 * (h[o * cells + p] + h[(o + 9) * cells + p]);
        dh[o * cells + p] += d;
        dh[(o + 9) * cells + p] += d;
      }
  }
}

}  // namespace

void hog_cells_fwd(const float* x, float* hist, const HogCellShape& s) {
  cells_fwd(x, hist, s);
}
void hog_cells_fwd(const double* x, double* hist, const HogCellShape& s) {
  cells_fwd(x, hist, s);
}
void hog_cells_bwd(const float* x, const float* dhist, float* dx, const HogCellShape& s) {
  cells_bwd(x, dhist, dx, s);
}
void hog_cells_bwd(const double* x, const double* dhist, double* dx, const HogCellShape& s) {
  cells_bwd(x, dhist, dx, s);
}
void hog_block_fwd(const float* hist, float* y, const HogBlockShape& s) {
  block_fwd(hist, y, s);
}
void hog_block_fwd(const double* hist, double* y, const HogBlockShape& s) {
  block_fwd(hist, y, s);
}
void hog_block_bwd(const float* hist, const float* dy, float* dhist, const HogBlockShape& s) {
  block_bwd(hist, dy, dhist, s);
}
void hog_block_bwd(const double* hist, const double* dy, double* dhist, const HogBlockShape& s) {
  block_bwd(hist, dy, dhist, s);
}
void hog_uoctti_fwd(const float* hist, float* y, const HogUocttiShape& s) {
  uoctti_fwd(hist, y, s);
}
void hog_uoctti_fwd(const double* hist, double* y, const HogUocttiShape& s) {
  uoctti_fwd(hist, y, s);
}
void hog_uoctti_bwd(const float* hist, const float* dy, float* dhist, const HogUocttiShape& s) {
  uoctti_bwd(hist, dy, dhist, s);
}
void hog_uoctti_bwd(const double* hist, const double* dy, double* dhist, const HogUocttiShape& s) {
  uoctti_bwd(hist, dy, dhist, s);
}

}  // namespace preimage::cpu
