// Regression cases for what the fuzz targets found (fuzz/, docs/reliability.md): every input
// under test/data/fuzz/<target>/ once crashed, hung, leaked or over-allocated in the loader it is
// named after; each must now fail with one preimage::Error and leave no HDF5 object open.
#include <hdf5.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/lbfgs.h"
#include "preimage/texture_index.h"
#include "preimage/weights.h"
#include "test/term_harness.h"

using namespace preimage;

namespace {

std::vector<std::string> fuzz_inputs(const std::string& target) {
  std::vector<std::string> v;
  const auto dir = preimage::test::source_dir() / "test" / "data" / "fuzz" / target;
  for (const auto& e : std::filesystem::directory_iterator(dir)) v.push_back(e.path().string());
  std::sort(v.begin(), v.end());
  return v;
}

// Runs load(path) on every stored input of `target`: each must throw preimage::Error (nothing
// else; with may_load, loading is fine too: the finding was undefined behaviour on the way), and
// afterwards no HDF5 file or object may still be open.
void replay(const std::string& target, const std::function<void(const std::string&)>& load,
            bool may_load = false) {
  const auto inputs = fuzz_inputs(target);
  REQUIRE(!inputs.empty());
  for (const auto& path : inputs) {
    INFO("input " << path);
    std::string message;
    try {
      load(path);
      if (!may_load) FAIL("accepted a corrupt input");
      CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0);
      continue;
    } catch (const Error& e) {
      message = e.what();
    }
    INFO("message: " << message);
    CHECK(message.find(path) != std::string::npos);  // names the file
    CHECK(message.find('\n') == std::string::npos);  // one line
    CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0);
  }
}

std::string stored(const std::string& name) {
  return (preimage::test::source_dir() / "test" / "data" / "fuzz" / name).string();
}

}  // namespace

TEST_CASE("fuzz regressions: image loader (stb_image JPEG tables, PNG chunk sizes, empty IDAT)",
          "[fuzz][image]") {
  replay(
      "image", [](const std::string& p) { load_image(p); }, true);
  CHECK_THROWS_WITH(load_image(stored("image/stb_dht_overflow.jpg")),
                    Catch::Contains("Huffman table"));
  // The same overflow behind 0xFF fill bytes before the SOI marker, which stb also accepts.
  CHECK_THROWS_WITH(load_image(stored("image/jpeg_fill_before_soi_dht.jpg")),
                    Catch::Contains("Huffman table"));
  // A scan naming Huffman tables no DHT defined: stb 2.27 decodes with uninitialized tables and
  // reads out of bounds in stbi__jpeg_huff_decode (fuzz_image, ~60,000 executions in).
  CHECK_THROWS_WITH(load_image(stored("image/jpeg_scan_undefined_table.jpg")),
                    Catch::Contains("no DHT segment defined"));
  // An 80-byte PNG whose IDAT header declares ~2 GiB: stb 2.27 reallocs that much before it
  // notices the file is short (out-of-memory in fuzz_image).
  CHECK_THROWS_WITH(load_image(stored("image/png_idat_length_2gib.png")),
                    Catch::Contains("chunk declares more bytes than the file holds"));
}

TEST_CASE("fuzz regressions: the JPEG table checks accept valid baseline and progressive files",
          "[fuzz][image]") {
  // Progressive files define their AC tables between scans, after the first DC scan: the check
  // must follow which tables each kind of scan uses (made by PIL/libjpeg, test/data/jpeg/).
  const auto dir = preimage::test::source_dir() / "test" / "data" / "jpeg";
  for (const auto& [name, h, w] : {std::tuple<const char*, int, int>{"baseline_13x9.jpg", 9, 13},
                                   {"progressive_16x11.jpg", 11, 16}}) {
    INFO(name);
    const Tensor x = load_image((dir / name).string());
    REQUIRE(x.shape() == Shape{1, 3, h, w});
    const std::vector<float> v = x.to_vector();
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    CHECK(*lo >= 0.f);
    CHECK(*hi <= 1.f);
    CHECK(*hi - *lo > 0.5f);  // random pixels, decoded rather than blank
  }
}

TEST_CASE("fuzz regressions: weights loader (HDF5 global heap, objects left open)",
          "[fuzz][weights]") {
  replay("weights", [](const std::string& p) { load_weights(p); });
  CHECK_THROWS_WITH(load_weights(stored("weights/gcol_zero_size_hang.h5")),
                    Catch::Contains("global heap"));
}

TEST_CASE("fuzz regressions: texture index loader (declared sizes, channels, global heap)",
          "[fuzz][search]") {
  replay("index", [](const std::string& p) { TextureIndex::open(p); });
  CHECK_THROWS_WITH(TextureIndex::open(stored("index/paths_declared_huge.h5")),
                    Catch::Contains("stores only"));
  CHECK_THROWS_WITH(TextureIndex::open(stored("index/channels_huge.h5")),
                    Catch::Contains("expected a count in 1..4096"));
}

TEST_CASE("fuzz regressions: L-BFGS checkpoint loader (objects left open)", "[fuzz][lbfgs]") {
  replay("checkpoint", [](const std::string& p) {
    LbfgsOptions o;
    o.history = 3;
    Lbfgs solver(Device::CPU, 12, o);
    Tensor x;
    solver.load_checkpoint(p, x);
  });
}
