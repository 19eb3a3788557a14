// libFuzzer target: the image loading path (preimage::load_image: header check against the limits,
// then stb_image decoding of PNG/JPEG/BMP) on arbitrary bytes, with a small cap so that no input
// can make the harness allocate more than a few MiB; accepted images are also resized (the next
// step of every command). preimage::Error is expected for bad input; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "preimage/error.h"
#include "preimage/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static preimage::fuzz::InputFile file(".img");
  const std::string& path = file.write(data, size);
  preimage::ImageLimits limits;
  limits.max_side = 2048;
  limits.max_pixels = 1u << 20;
  try {
    const preimage::Tensor x = preimage::load_image(path, limits);
    const preimage::Tensor y = preimage::resize(x.view(), 5, 7);
    (void)y;
  } catch (const preimage::Error&) {
  }
  return 0;
}
