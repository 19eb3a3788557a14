// HOG / dense-SIFT descriptors (preimage/descriptors.h): the op sequence per kind, through
// backend(device) only, so the same code runs on the CPU ops (engine/cpu/hog.cpp) and the CUDA
// kernels (kernels/hog.cu):
//   Hog        hog_cells (unsigned bins) → hog_block (block×block, L2-Hys)
//   HogUoctti  hog_cells (18 signed bins) → hog_uoctti (31 dims per interior cell)
//   Dsift      hog_cells (signed bins, cell = spatial bin) → hog_block (4×4 bins, L2/clamp/L2)
// Definitions: docs/descriptors.md.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/core/backend.h"
#include "engine/core/ensure.h"
#include "preimage/descriptors.h"
#include "preimage/error.h"

namespace preimage {
namespace {

HogCellShape cell_shape(const DescriptorOptions& o, const Shape& image) {
  HogCellShape s;
  s.n = image.n;
  s.c = image.c;
  s.h = image.h;
  s.w = image.w;
  s.cell = o.cell;
  s.bins = o.bins;
  s.signed_bins = o.kind != DescriptorKind::Hog;
  s.soft_bins = o.soft_bins;
  s.bilinear_cells = o.bilinear_cells;
  return s;
}

HogBlockShape block_shape(const DescriptorOptions& o, const HogCellShape& c) {
  HogBlockShape s;
  s.n = c.n;
  s.bins = c.bins;
  s.hc = c.hc();
  s.wc = c.wc();
  s.block = o.block;
  s.stride = o.step;
  s.clip = o.clip;
  s.eps = o.eps;
  return s;
}

HogUocttiShape uoctti_shape(const DescriptorOptions& o, const HogCellShape& c) {
  HogUocttiShape s;
  s.n = c.n;
  s.hc = c.hc();
  s.wc = c.wc();
  s.clip = o.clip;
  return s;
}

}  // namespace

DescriptorOptions DescriptorOptions::defaults(DescriptorKind kind) {
  DescriptorOptions o;
  o.kind = kind;
  if (kind == DescriptorKind::HogUoctti) o.bins = kUocttiBins;
  if (kind == DescriptorKind::Dsift) {
    o.cell = 4;
    o.bins = 8;
    o.block = 4;
  }
  return o;
}

const char* descriptor_name(DescriptorKind kind) {
  switch (kind) {
    case DescriptorKind::Hog:
      return "hog";
    case DescriptorKind::HogUoctti:
      return "hog-uoctti";
    case DescriptorKind::Dsift:
      return "dsift";
  }
  return "?";
}

Descriptor::Descriptor(DescriptorOptions options) : opt_(options) {
  const std::string name = descriptor_name(opt_.kind);
  require(opt_.cell >= 1 && opt_.cell <= 256,
          name + ": cell size must be in [1, 256] pixels, got " + std::to_string(opt_.cell));
  require(opt_.bins >= 2 && opt_.bins <= 64,
          name + ": orientation bins must be in [2, 64], got " + std::to_string(opt_.bins));
  require(opt_.step >= 1, name + ": step must be >= 1 cell, got " + std::to_string(opt_.step));
  require(opt_.clip > 0 && std::isfinite(opt_.clip), name + ": clip must be > 0");
  require(opt_.eps > 0 && std::isfinite(opt_.eps), name + ": eps must be > 0");
  if (opt_.kind == DescriptorKind::Hog)
    require(opt_.block >= 1 && opt_.block <= 16,
            name + ": block must be in [1, 16] cells, got " + std::to_string(opt_.block));
  if (opt_.kind == DescriptorKind::HogUoctti)
    require(opt_.bins == kUocttiBins, name +
                                          ": the UoCTTI variant has 18 signed bins (and 9 "
                                          "unsigned derived from them), got bins " +
                                          std::to_string(opt_.bins));
  if (opt_.kind == DescriptorKind::Dsift)
    require(opt_.block == 4,
            name + ": dense SIFT has 4x4 spatial bins, got block " + std::to_string(opt_.block));
}

std::string Descriptor::describe() const {
  const std::string c = std::to_string(opt_.cell);
  const std::string mode = std::string(opt_.soft_bins ? "soft" : "hard") + " orientation bins, " +
                           (opt_.bilinear_cells ? "bilinear" : "box") + " cells";
  switch (opt_.kind) {
    case DescriptorKind::Hog:
      return "HOG Dalal-Triggs, " + c + " px cells, " + std::to_string(opt_.bins) +
             " unsigned bins, " + std::to_string(opt_.block) + "x" + std::to_string(opt_.block) +
             " blocks (stride " + std::to_string(opt_.step) + "), L2-Hys, " + mode;
    case DescriptorKind::HogUoctti:
      return "HOG UoCTTI, " + c + " px cells, 18 signed + 9 unsigned bins + 4 texture, " + mode;
    case DescriptorKind::Dsift:
      return "dense SIFT, 4x4 spatial bins of " + c + " px, " + std::to_string(opt_.bins) +
             " orientations, step " + std::to_string(opt_.step * opt_.cell) + " px, " + mode;
  }
  return "";
}

Shape Descriptor::output_shape(const Shape& image) const {
  const std::string name = descriptor_name(opt_.kind);
  require(image.n >= 1 && (image.c == 1 || image.c == 3) && image.h >= 1 && image.w >= 1,
          name + ": expected a grey or RGB image (N,1|3,H,W), got " + image.str());
  const HogCellShape cs = cell_shape(opt_, image);
  const int need_cells = opt_.kind == DescriptorKind::HogUoctti ? 3 : opt_.block;
  const int px = need_cells * opt_.cell;
  require(cs.hc() >= need_cells && cs.wc() >= need_cells,
          name + ": image " + std::to_string(image.w) + "x" + std::to_string(image.h) +
              " is smaller than one " +
              (opt_.kind == DescriptorKind::HogUoctti ? std::string("UoCTTI neighbourhood")
               : opt_.kind == DescriptorKind::Dsift   ? std::string("descriptor")
                                                      : std::string("block")) +
              " (" + std::to_string(need_cells) + "x" + std::to_string(need_cells) + " cells of " +
              std::to_string(opt_.cell) + " px: at least " + std::to_string(px) + "x" +
              std::to_string(px) + " pixels); use a larger image or a smaller cell");
  if (opt_.kind == DescriptorKind::HogUoctti)
    return {image.n, kUocttiDims, cs.hc() - 2, cs.wc() - 2};
  const HogBlockShape bs = block_shape(opt_, cs);
  return {image.n, bs.channels(), bs.hb(), bs.wb()};
}

const Tensor& Descriptor::forward(const View& image) {
  const Shape out = output_shape(image.shape);
  const Device d = image.device;
  Backend& be = backend(d);
  ensure(image_, image.shape, d);
  be.copy(image_.data(), image.data, image.numel());
  const HogCellShape cs = cell_shape(opt_, image.shape);
  ensure(hist_, {cs.n, cs.bins, cs.hc(), cs.wc()}, d);
  be.hog_cells_fwd(image_.data(), hist_.data(), cs);
  ensure(out_, out, d);
  if (opt_.kind == DescriptorKind::HogUoctti)
    be.hog_uoctti_fwd(hist_.data(), out_.data(), uoctti_shape(opt_, cs));
  else
    be.hog_block_fwd(hist_.data(), out_.data(), block_shape(opt_, cs));
  return out_;
}

void Descriptor::backward(const View& ddescriptor, Tensor& dimage) {
  require(!image_.empty(),
          std::string(descriptor_name(opt_.kind)) + ": backward() needs a forward() first");
  check_shape(ddescriptor.shape, out_.shape(), "descriptor gradient");
  require(ddescriptor.device == image_.device(),
          "descriptor gradient: on another device than the image");
  const Device d = image_.device();
  Backend& be = backend(d);
  const HogCellShape cs = cell_shape(opt_, image_.shape());
  ensure(dhist_, hist_.shape(), d);
  if (opt_.kind == DescriptorKind::HogUoctti)
    be.hog_uoctti_bwd(hist_.data(), ddescriptor.data, dhist_.data(), uoctti_shape(opt_, cs));
  else
    be.hog_block_bwd(hist_.data(), ddescriptor.data, dhist_.data(), block_shape(opt_, cs));
  ensure(dimage, image_.shape(), d);
  be.hog_cells_bwd(image_.data(), dhist_.data(), dimage.data(), cs);
}

namespace {

class DescriptorTerm final : public Term {
 public:
  DescriptorTerm(const DescriptorOptions& o, const View& target, float w)
      : desc_(o), image_shape_(target.shape) {
    weight = w;
    label = descriptor_name(o.kind);
    target_ = desc_.forward(target).clone();
    target_ss_ = backend(target.device).sum_squares(target_.data(), target_.numel());
    require(target_ss_ > 0, label + " term: the target image's descriptor is zero (a flat image?)");
  }
  std::string kind() const override { return descriptor_name(desc_.options().kind); }
  std::vector<std::string> taps() const override { return {}; }
  double evaluate(const TapViews&, const TapViews&, const View& image,
                  const View& image_grad) override {
    require(image.data && image_grad.data && image.shape == image_grad.shape,
            "term '" + label + "' needs the image and an image gradient of the same shape");
    require(image.shape == image_shape_, "term '" + label + "': the image is " + image.shape.str() +
                                             " but the target was " + image_shape_.str());
    const Device d = image.device;
    Backend& be = backend(d);
    if (target_.device() != d) target_ = target_.to(d);
    const Tensor& f = desc_.forward(image);
    ensure(diff_, f.shape(), d);
    be.copy(diff_.data(), f.data(), f.numel());
    be.axpby(-1.f, target_.data(), 1.f, diff_.data(), diff_.numel());
    const double ss = be.sum_squares(diff_.data(), diff_.numel());
    be.axpby(0.f, diff_.data(), float(2.0 * weight / target_ss_), diff_.data(), diff_.numel());
    desc_.backward(diff_.view(), dimage_);
    be.axpby(1.f, dimage_.data(), 1.f, image_grad.data, image_grad.numel());
    return weight * ss / target_ss_;
  }

 private:
  Descriptor desc_;
  Shape image_shape_;
  Tensor target_, diff_, dimage_;
  double target_ss_ = 0;
};

}  // namespace

std::unique_ptr<Term> make_descriptor_term(const DescriptorOptions& options, const View& target,
                                           float weight) {
  return std::make_unique<DescriptorTerm>(options, target, weight);
}

double descriptor_error(const DescriptorOptions& options, const View& a, const View& b) {
  require(a.shape == b.shape, "descriptor_error: images of different shapes (" + a.shape.str() +
                                  " and " + b.shape.str() + ")");
  Descriptor d(options);
  const std::vector<float> fa = d.forward(a).to_vector();
  const std::vector<float> fb = d.forward(b).to_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < fa.size(); ++i) {
    num += (double(fa[i]) - fb[i]) * (double(fa[i]) - fb[i]);
    den += double(fb[i]) * fb[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace preimage
