// Weights I/O: canonical save/load round trip, Keras layout against canonical (fixtures from
// test/torch_reference.py), one clear Error per kind of bad input, and SHA-256 known vectors.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <string>

#include "preimage/error.h"
#include "preimage/weights.h"
#include "test/h5_util.h"

using namespace preimage;
using preimage::test::TempDir;

namespace {

// Asserts that f() throws preimage::Error whose message contains every one of parts.
template <class F>
void require_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    return;
  }
  FAIL("expected preimage::Error containing '" << *parts.begin() << "'");
}

// Bitwise equality of two host tensors (no copies: fc6 holds 103 M values).
bool same_values(const Tensor& a, const Tensor& b) {
  REQUIRE(a.device() == Device::CPU);
  REQUIRE(b.device() == Device::CPU);
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

void require_same_weights(const Weights& a, const Weights& b) {
  CHECK(a.arch == b.arch);
  CHECK(a.preprocess.color_order == b.preprocess.color_order);
  CHECK(a.preprocess.value_range == b.preprocess.value_range);
  for (int c = 0; c < 3; ++c) {
    CHECK(a.preprocess.mean[c] == b.preprocess.mean[c]);
    CHECK(a.preprocess.std[c] == b.preprocess.std[c]);
  }
  REQUIRE(a.layers.size() == b.layers.size());
  for (const auto& [name, lw] : a.layers) {
    INFO("layer " << name);
    REQUIRE(b.layers.count(name) == 1);
    CHECK(same_values(lw.weight, b.layers.at(name).weight));
    CHECK(same_values(lw.bias, b.layers.at(name).bias));
  }
}

// One seeded VGG-19 shared by the cases (random_weights takes a second or two).
const Weights& random_vgg19() {
  static const Weights w = random_weights(Arch::VGG19, 5);
  return w;
}

// Writes a canonical file holding the conv layers of w in order up to (not including) `stop`,
// then calls broken(file, "/<stop>") to write that layer's datasets wrongly.
template <class Broken>
void write_broken_canonical(const Weights& w, const std::string& path, const std::string& stop,
                            Broken&& broken) {
  h5::File f = h5::File::create(path, "test file");
  f.write_attr_string("/", "format", "preimage-vgg-1");
  f.write_attr_string("/", "arch", arch_name(w.arch));
  f.write_attr_string("/", "color_order", "RGB");
  f.write_attr_floats("/", "value_range", {1.f});
  f.write_attr_floats("/", "mean", {0.5f, 0.5f, 0.5f});
  f.write_attr_floats("/", "std", {0.25f, 0.25f, 0.25f});
  for (const auto& name : {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"}) {
    if (name == stop) break;
    const auto& lw = w.layers.at(name);
    const Shape s = lw.weight.shape();
    f.write("/" + std::string(name) + "/weight", lw.weight.data(), {s.n, s.c, s.h, s.w});
    f.write("/" + std::string(name) + "/bias", lw.bias.data(), {s.n});
  }
  broken(f, "/" + stop);
  f.close();
}

}  // namespace

TEST_CASE("weights canonical round trip", "[weights]") {
  TempDir dir;

  SECTION("vgg19 random features, non-default preprocessing") {
    Weights w = random_weights(Arch::VGG19, 42);
    w.preprocess.color_order = "BGR";  // every preprocessing field must survive
    w.preprocess.value_range = 255.f;
    w.preprocess.mean[1] = 117.f;
    w.preprocess.std[2] = 0.5f;
    const std::string path = dir.file("vgg19.h5");
    save_weights(w, path);
    CHECK(dir.entries() == std::vector<std::string>{"vgg19.h5"});  // no stray temporary file

    const Weights back = load_weights(path);
    require_same_weights(w, back);
    CHECK(back.format == "canonical");
    CHECK(back.random);  // saved random features stay marked as such (random_init attribute)
    CHECK(back.identity == path + " (sha256 " + sha256_file(path) + ")");
    CHECK(back.layers.count("fc6") == 0);
  }

  SECTION("save_weights rejects incomplete weights and leaves nothing behind") {
    Weights w;
    w.arch = Arch::VGG19;
    const Weights& full = random_vgg19();
    for (const auto& [name, lw] : full.layers)
      if (name != "conv3_1") w.layers[name] = LayerWeights{lw.weight.clone(), lw.bias.clone()};
    const std::string path = dir.file("incomplete.h5");
    require_error([&] { save_weights(w, path); }, {path, "conv3_1", "missing"});
    w.layers["conv3_1"] =
        LayerWeights{Tensor::zeros(Shape{256, 128, 1, 1}), Tensor::zeros(Shape{256, 1, 1, 1})};
    require_error([&] { save_weights(w, path); }, {path, "conv3_1", "256x128x1x1", "256x128x3x3"});
    CHECK(dir.entries().empty());
  }
}

TEST_CASE("weights keras layout matches canonical", "[weights][torch]") {
  const std::string data = preimage::test::test_data_dir();
  if (data.empty()) {
    WARN("PREIMAGE_TEST_DATA unset: run test/run_torch_reference.sh (ctest does) for this test");
    return;
  }

  SECTION("vgg19 convolutions (keras_vgg19.h5 vs vgg19.h5)") {
    const Weights canon = load_weights(data + "/vgg19.h5");
    const Weights keras = load_weights(data + "/keras_vgg19.h5");
    CHECK(canon.format == "canonical");
    CHECK(keras.format == "keras");
    CHECK(keras.arch == Arch::VGG19);
    CHECK_FALSE(keras.random);
    CHECK(keras.identity.find("keras_vgg19.h5 (sha256 ") != std::string::npos);
    CHECK(keras.preprocess.color_order == "BGR");
    CHECK(keras.preprocess.value_range == 255.f);
    CHECK(keras.preprocess.mean[0] == Approx(103.939f));
    CHECK(keras.preprocess.mean[2] == Approx(123.68f));
    CHECK(keras.preprocess.std[1] == 1.f);
    REQUIRE(keras.layers.size() == canon.layers.size());
    REQUIRE(keras.layers.size() == 16);
    for (const auto& [name, lw] : canon.layers) {
      INFO("layer " << name);
      REQUIRE(keras.layers.count(name) == 1);
      if (name == "conv1_1") continue;
      CHECK(same_values(lw.weight, keras.layers.at(name).weight));
      CHECK(same_values(lw.bias, keras.layers.at(name).bias));
    }
    // conv1_1 was written BGR and divided by 255*std (see torch_reference.py).
    const auto wc = canon.layers.at("conv1_1").weight.to_vector();
    const auto wk = keras.layers.at("conv1_1").weight.to_vector();
    REQUIRE(keras.layers.at("conv1_1").weight.shape() == Shape{64, 3, 3, 3});
    double worst = 0, scale = 0;
    for (int o = 0; o < 64; ++o)
      for (int c = 0; c < 3; ++c)
        for (int k = 0; k < 9; ++k) {
          const double a = wc[size_t((o * 3 + c) * 9 + k)];
          const double b = wk[size_t((o * 3 + (2 - c)) * 9 + k)] * 255.0 * canon.preprocess.std[c];
          worst = std::max(worst, std::fabs(a - b));
          scale = std::max(scale, std::fabs(a));
        }
    CHECK(worst <= 1e-6 * scale);
  }

  SECTION("vgg16 with fc layers (keras_vgg16_fc.h5 vs canonical_vgg16_fc.h5)") {
    const Weights canon = load_weights(data + "/canonical_vgg16_fc.h5");
    const Weights keras = load_weights(data + "/keras_vgg16_fc.h5");
    CHECK(keras.arch == Arch::VGG16);
    CHECK(canon.arch == Arch::VGG16);
    CHECK(keras.layers.count("fc6") == 1);
    REQUIRE(keras.layers.count("fc8") == 1);
    CHECK(keras.layers.at("fc6").weight.shape() == Shape{4096, 25088, 1, 1});
    CHECK(keras.layers.at("fc8").weight.shape() == Shape{10, 4096, 1, 1});
    require_same_weights(canon, keras);
    // The comparison means something only if fc6 holds its sparse entries.
    const Tensor& fc6 = keras.layers.at("fc6").weight;
    size_t nonzero = 0;
    for (size_t i = 0; i < fc6.numel(); ++i) nonzero += fc6.data()[i] != 0.f;
    CHECK(nonzero > 250);

    // save_weights with fc layers (fc8: 10 classes) → load_weights gives them back unchanged.
    preimage::test::TempDir dir;
    const std::string path = dir.file("vgg16_fc.h5");
    save_weights(keras, path);
    const Weights back = load_weights(path);
    CHECK(back.format == "canonical");
    require_same_weights(keras, back);
  }
}

TEST_CASE("weights bad input", "[weights]") {
  TempDir dir;
  const Weights& w = random_vgg19();

  SECTION("missing file") {
    const std::string p = dir.file("nope.h5");
    require_error([&] { load_weights(p); }, {"weights file '" + p + "': no such file"});
  }
  SECTION("a directory") {
    require_error([&] { load_weights(dir.path().string()); }, {dir.path().string(), "directory"});
  }
  SECTION("truncated file: the first 1000 bytes of a valid one") {
    const std::string valid = dir.file("valid.h5"), cut = dir.file("cut.h5");
    save_weights(w, valid);
    preimage::test::write_bytes(cut, preimage::test::read_bytes(valid).substr(0, 1000));
    require_error([&] { load_weights(cut); },
                  {"weights file '" + cut + "': not an HDF5 file or truncated"});
  }
  SECTION("not an HDF5 file") {
    const std::string p = dir.file("text.h5");
    preimage::test::write_bytes(p, "these are not the weights you are looking for\n");
    require_error([&] { load_weights(p); },
                  {"weights file '" + p + "': not an HDF5 file or truncated"});
  }
  SECTION("HDF5 file in no known layout") {
    const std::string p = dir.file("other.h5");
    {
      h5::File f = h5::File::create(p, "test");
      f.create_group("/something");
      f.close();
    }
    require_error([&] { load_weights(p); }, {p, "unrecognized layout", "format", "layer_names"});
  }
  SECTION("wrong format attribute") {
    const std::string p = dir.file("format.h5");
    {
      h5::File f = h5::File::create(p, "test");
      f.write_attr_string("/", "format", "preimage-vgg-9");
      f.close();
    }
    require_error([&] { load_weights(p); }, {p, "'format'", "preimage-vgg-9", "preimage-vgg-1"});
  }
  SECTION("missing dataset") {
    const std::string p = dir.file("missing.h5");
    write_broken_canonical(w, p, "conv3_1", [](h5::File&, const std::string&) {});
    require_error([&] { load_weights(p); }, {"weights file '" + p +
                                             "': dataset '/conv3_1/weight' missing (expected "
                                             "(256,128,3,3) float32)"});
  }
  SECTION("wrong shape") {
    const std::string p = dir.file("shape.h5");
    write_broken_canonical(w, p, "conv2_1", [](h5::File& f, const std::string& g) {
      std::vector<float> v(128 * 64 * 9);
      f.write(g + "/weight", v.data(), {128, 64, 1, 9});
    });
    require_error([&] { load_weights(p); }, {"weights file '" + p +
                                             "': dataset '/conv2_1/weight' has shape (128,64,1,9), "
                                             "expected (128,64,3,3)"});
  }
  SECTION("wrong rank") {
    const std::string p = dir.file("rank.h5");
    write_broken_canonical(w, p, "conv1_2", [](h5::File& f, const std::string& g) {
      std::vector<float> v(64 * 64 * 9);
      f.write(g + "/weight", v.data(), {64, 576});
    });
    require_error([&] { load_weights(p); },
                  {p, "'/conv1_2/weight' has shape (64,576), expected (64,64,3,3)", "rank 2"});
  }
  SECTION("wrong dtype") {
    const std::string p = dir.file("dtype.h5");
    write_broken_canonical(w, p, "conv1_1", [](h5::File& f, const std::string& g) {
      std::vector<int64_t> v(64 * 3 * 9);
      f.write(g + "/weight", v.data(), {64, 3, 3, 3});
    });
    require_error([&] { load_weights(p); },
                  {p, "'/conv1_1/weight' has type int64, expected float32"});
  }
  SECTION("wrong bias shape") {
    const std::string p = dir.file("bias.h5");
    write_broken_canonical(w, p, "conv1_1", [&](h5::File& f, const std::string& g) {
      f.write(g + "/weight", w.layers.at("conv1_1").weight.data(), {64, 3, 3, 3});
      f.write(g + "/bias", w.layers.at("conv1_1").bias.data(), {63});
    });
    require_error([&] { load_weights(p); }, {p, "'/conv1_1/bias' has shape (63), expected (64)"});
  }
  SECTION("keras file missing a layer") {
    const std::string p = dir.file("keras.h5");
    {
      h5::File f = h5::File::create(p, "test");
      f.write_attr_strings("/", "layer_names", {"input_1", "block1_conv1", "block1_conv2"});
      f.create_group("/input_1");
      f.create_group("/block1_conv1");
      f.write_attr_strings("/block1_conv1", "weight_names",
                           {"block1_conv1/kernel:0", "block1_conv1/bias:0"});
      std::vector<float> k(3 * 3 * 3 * 64), b(64);
      f.write("/block1_conv1/block1_conv1/kernel:0", k.data(), {3, 3, 3, 64});
      f.write("/block1_conv1/block1_conv1/bias:0", b.data(), {64});
      f.close();
    }
    require_error([&] { load_weights(p); },
                  {p, "Keras layer 'block1_conv2' missing", "kernel (3,3,64,64) float32"});
  }
  SECTION("keras kernel in Theano ordering") {
    const std::string p = dir.file("theano.h5");
    {
      h5::File f = h5::File::create(p, "test");
      f.write_attr_strings("/", "layer_names", {"block1_conv1"});
      f.create_group("/block1_conv1");
      f.write_attr_strings("/block1_conv1", "weight_names",
                           {"block1_conv1_W_1:0", "block1_conv1_b_1:0"});
      std::vector<float> k(3 * 3 * 3 * 64), b(64);
      f.write("/block1_conv1/block1_conv1_W_1:0", k.data(), {64, 3, 3, 3});
      f.write("/block1_conv1/block1_conv1_b_1:0", b.data(), {64});
      f.close();
    }
    require_error(
        [&] { load_weights(p); },
        {p, "'/block1_conv1/block1_conv1_W_1:0' has shape (64,3,3,3), expected (3,3,3,64)",
         "Theano"});
  }
  SECTION("bad random spec") {
    for (const char* spec : {"random:", "random:abc", "random:-1", "random:1.5", "random:7x",
                             "random:99999999999999999999999"}) {
      INFO(spec);
      require_error([&] { load_weights(spec); },
                    {"--weights '" + std::string(spec) + "'", "non-negative integer"});
    }
    require_error([] { load_weights("random"); }, {"--weights 'random'", "random:SEED"});
    const Weights r = load_weights("random:18446744073709551615", Arch::VGG16);
    CHECK(r.random);
    CHECK(r.arch == Arch::VGG16);
    CHECK(r.identity == "random:18446744073709551615");
  }
  SECTION("save into a directory that does not exist") {
    const std::string p = dir.file("no_such_dir/w.h5");
    require_error([&] { save_weights(w, p); }, {"'" + p + "'", "No such file or directory"});
    CHECK(dir.entries().empty());
  }
  SECTION("architecture names") {
    CHECK(parse_arch("vgg16") == Arch::VGG16);
    CHECK(parse_arch("VGG19") == Arch::VGG19);
    CHECK(std::string(arch_name(Arch::VGG19)) == "vgg19");
    require_error([] { parse_arch("resnet50"); }, {"'resnet50'", "vgg16, vgg19"});
  }
}

TEST_CASE("sha256 known vectors", "[weights]") {
  TempDir dir;
  const std::pair<std::string, std::string> cases[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {std::string(1000000, 'a'),
       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
      // 55, 56 and 64 bytes: the padding boundaries.
      {std::string(55, 'a'), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {std::string(56, 'a'), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {std::string(64, 'a'), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
  };
  int i = 0;
  for (const auto& [text, hex] : cases) {
    const std::string p = dir.file("v" + std::to_string(i++));
    preimage::test::write_bytes(p, text);
    INFO("length " << text.size());
    CHECK(sha256_file(p) == hex);
  }
  const std::string missing = dir.file("missing");
  require_error([&] { sha256_file(missing); }, {missing});
}
