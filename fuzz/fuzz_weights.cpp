// libFuzzer target: the weights loader (preimage::load_weights) on arbitrary bytes as an .h5 file,
// canonical "preimage-vgg-1" and Keras layouts alike (the loader detects the layout). Seeds:
// fuzz/make_corpus.py. preimage::Error is the expected outcome for bad input; anything else
// (another exception, a sanitizer report, a crash) is a finding. HDF5 itself is not instrumented.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "preimage/error.h"
#include "preimage/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static preimage::fuzz::InputFile file(".h5");
  const std::string& path = file.write(data, size);
  try {
    const preimage::Weights w = preimage::load_weights(path);
    (void)w;
  } catch (const preimage::Error&) {
  }
  return 0;
}
