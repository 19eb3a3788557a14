// Shallow image descriptors as differentiable representations: HOG (Dalal–Triggs cells and
// L2-Hys blocks, or the UoCTTI variant of Felzenszwalb et al.) and dense SIFT, forward and
// backward on the image's device (CPU ops in engine/cpu/hog.cpp, CUDA kernels in kernels/hog.cu).
// A Descriptor is used like a VGG tap: forward(image) → descriptor tensor, backward(d descriptor)
// → d image; make_descriptor_term turns it into an objective term (the Mahendran & Vedaldi
// normalized reconstruction loss) that combines with the TV and α-norm priors.
// Definitions: docs/descriptors.md.
#pragma once
#include <memory>
#include <string>

#include "preimage/objective.h"
#include "preimage/tensor.h"

namespace preimage {

enum class DescriptorKind {
  Hog,        // Dalal–Triggs: unsigned bins, blocks of block×block cells, L2-Hys
  HogUoctti,  // Felzenszwalb et al.: 18 signed bins, 4 normalizations, 31 dims per cell
  Dsift,      // dense SIFT: 4×4 spatial bins × `bins` signed orientations, L2 / clamp / L2
};

struct DescriptorOptions {
  DescriptorKind kind = DescriptorKind::Hog;
  int cell = 8;                // pixels per cell (HOG) or per spatial bin (dense SIFT)
  int bins = 9;                // orientation bins (Hog: unsigned; Dsift: signed; UoCTTI: 18 fixed)
  int block = 2;               // cells per block side (Hog); Dsift: 4 (fixed); UoCTTI: unused
  int step = 1;                // block / descriptor stride in cells
  bool soft_bins = true;       // bilinear orientation votes (false: hard, as scikit-image)
  bool bilinear_cells = true;  // bilinear spatial votes (false: box cells, as scikit-image)
  float clip = 0.2f;           // L2-Hys / UoCTTI truncation
  float eps = 1e-5f;           // L2-Hys ε (UoCTTI uses 1e-4 inside its norms)

  // Defaults per kind: Hog {cell 8, bins 9, block 2}, HogUoctti {cell 8, bins 18},
  // Dsift {cell 4, bins 8, block 4}.
  static DescriptorOptions defaults(DescriptorKind kind);
};

// "hog", "hog-uoctti", "dsift".
const char* descriptor_name(DescriptorKind kind);

class Descriptor {
 public:
  // Throws Error naming the option at fault (cell ≥ 1, bins in [2, 64], block ≥ 1, step ≥ 1,
  // clip > 0, eps > 0; UoCTTI needs 18 bins, dense SIFT 4×4 spatial bins).
  explicit Descriptor(DescriptorOptions options);

  const DescriptorOptions& options() const { return opt_; }
  std::string describe() const;  // e.g. "HOG Dalal-Triggs, 8 px cells, 9 bins, 2x2 blocks"

  // Output shape for an image (N,C,H,W), C = 1 or 3; throws Error when the image is smaller than
  // one block (naming the size needed).
  Shape output_shape(const Shape& image) const;

  // Descriptor of the image (on its device), (N,D,HB,WB). Keeps what backward() needs.
  const Tensor& forward(const View& image);
  // dimage = Jᵀ·ddescriptor at the image of the last forward() (overwritten; resized to the
  // image's shape on its device).
  void backward(const View& ddescriptor, Tensor& dimage);

 private:
  DescriptorOptions opt_;
  Tensor image_, hist_, out_, dhist_;  // image_: a copy of the last forward's input
};

// Mahendran & Vedaldi's normalized reconstruction loss in descriptor space, as an image term:
// E = weight·‖Φ(x) − Φ₀‖² / ‖Φ₀‖², Φ₀ = Φ(target) computed at construction (the target is an
// image of the size the term will see). Its taps() are empty, so the objective evaluates it on
// the image without running the network.
std::unique_ptr<Term> make_descriptor_term(const DescriptorOptions& options, const View& target,
                                           float weight = 1.f);

// ‖Φ(a) − Φ(b)‖ / ‖Φ(b)‖ for two images of the same size.
double descriptor_error(const DescriptorOptions& options, const View& a, const View& b);

}  // namespace preimage
