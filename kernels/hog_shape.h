// Shapes of the HOG / dense-SIFT ops (engine/cpu/hog.cpp and kernels/hog.cu take the same
// structs; definitions in docs/descriptors.md).
#pragma once

namespace preimage {

// Oriented-gradient cell histograms: image x (N,C,H,W), C = 1 (grey) or 3 (RGB, reduced to
// luma 0.299 R + 0.587 G + 0.114 B) → hist (N,B,HC,WC), HC = H / cell, WC = W / cell.
// Gradients are the [-1,0,1] central differences (0 on the image border rows/columns, as
// scikit-image); orientation θ = atan2(gy, gx) (gy along rows, downwards) over [0, π) (unsigned)
// or [0, 2π) (signed) in B bins of width π/B (2π/B); each pixel votes its magnitude
// m = sqrt(gx² + gy²), split between the two nearest bin centres (soft_bins, bilinear in angle)
// or into the bin holding θ (hard, scikit-image), and between the four nearest cell centres
// (bilinear_cells) or into the cell holding it (box, scikit-image); votes are divided by cell².
struct HogCellShape {
  int n = 1, c = 1, h = 0, w = 0;
  int cell = 8;  // pixels per cell side
  int bins = 9;  // orientation bins (≥ 2)
  bool signed_bins = false;
  bool soft_bins = true;
  bool bilinear_cells = true;
  int hc() const { return h / cell; }
  int wc() const { return w / cell; }
};

// Block normalization (Dalal–Triggs L2-Hys; dense SIFT): hist (N,B,HC,WC) → y (N,D,HB,WB),
// D = block²·B, HB = (HC − block)/stride + 1; channel (by·block + bx)·B + o of block (i, j) is
// bin o of cell (i·stride + by, j·stride + bx). Per block v: u = v / sqrt(‖v‖² + eps²),
// c = min(u, clip), y = c / sqrt(‖c‖² + eps²).
struct HogBlockShape {
  int n = 1, bins = 9, hc = 0, wc = 0;
  int block = 2;   // cells per block side
  int stride = 1;  // block stride in cells
  float clip = 0.2f;
  float eps = 1e-5f;
  int hb() const { return (hc - block) / stride + 1; }
  int wb() const { return (wc - block) / stride + 1; }
  int channels() const { return block * block * bins; }
};

// UoCTTI (Felzenszwalb et al.) normalization: hist (N,18,HC,WC) of signed bins → y (N,31,HC−2,
// WC−2) for the interior cells. E(cell) = Σ_{o<9} (h_o + h_{o+9})²; for output cell (i, j) at
// cell (i+1, j+1), n_k = 1/sqrt(Σ E over the 2×2 window k + eps), windows with top-left corner
// (i+1+dy, j+1+dx), k = 2·(dy+1) + (dx+1), dy, dx ∈ {−1, 0}. Features: 18 signed
// ½Σ_k min(h_o n_k, clip); 9 unsigned ½Σ_k min((h_o + h_{o+9}) n_k, clip); 4 texture
// 0.2357·Σ_o min(h_o n_k, clip).
struct HogUocttiShape {
  int n = 1, hc = 0, wc = 0;
  float clip = 0.2f;
  float eps = 1e-4f;
  int ho() const { return hc - 2; }
  int wo() const { return wc - 2; }
};
inline constexpr int kUocttiBins = 18;
inline constexpr int kUocttiDims = 31;

}  // namespace preimage
