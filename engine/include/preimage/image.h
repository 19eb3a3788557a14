// Images: decode PNG/JPEG/BMP (stb_image) into float RGB [0,1] tensors (1,3,H,W); grey and
// grey+alpha become RGB, alpha is dropped. Encode PNG atomically (temporary name, then rename).
#pragma once
#include <string>

#include "preimage/tensor.h"

namespace preimage {

struct ImageLimits {
  int max_side = 16384;  // checked from the header before decoding
  size_t max_pixels = 64u << 20;
};

// Throws Error naming the file when it is missing, unreadable, not an image, corrupt, or larger
// than the limits.
Tensor load_image(const std::string& path, const ImageLimits& limits = {});

// Writes x (1,3,H,W) (or (1,1,H,W) grey) clamped to [0,1] as 8-bit PNG, atomically.
void save_png(const View& x, const std::string& path);

// Bilinear resize (antialiased by area averaging when shrinking) of (N,C,H,W) on the host.
Tensor resize(const View& x, int height, int width);

// "512" → long side 512 keeping the aspect of (h,w); "640x480" → W×H. Throws Error naming
// the flag for non-positive or malformed sizes.
void parse_size(const std::string& spec, int src_h, int src_w, int* out_h, int* out_w,
                const std::string& flag = "--size");

}  // namespace preimage
