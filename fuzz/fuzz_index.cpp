// libFuzzer target: the texture search index loader (preimage::TextureIndex::open) on arbitrary
// bytes as an .h5 file, then verify() (checksums, unit vectors) and check_layers(), which every
// command that opens an index runs next. Seeds: indexes written by `preimage index build/add`
// (fuzz/make_corpus.py). preimage::Error is expected for bad input; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "preimage/error.h"
#include "preimage/texture_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static preimage::fuzz::InputFile file(".index.h5");
  const std::string& path = file.write(data, size);
  try {
    const preimage::TextureIndex idx = preimage::TextureIndex::open(path);
    const auto problems = idx.verify();
    (void)problems;
    idx.check_layers({"pool1"});
  } catch (const preimage::Error&) {
  }
  return 0;
}
