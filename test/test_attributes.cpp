// B-CNN attribute classifiers (preimage/attributes.h): the training loss and its gradient
// against a double reference and central differences on the CPU and the CUDA backend (the
// simulator in tests), training on CUDA vs CPU, the attribute term's image gradient through
// VGG-19 on both devices, B-CNN feature extraction (batched, unreadable files skipped), the HDF5
// round trip, the checks against the run's network and the dataset errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "preimage/attributes.h"
#include "preimage/error.h"
#include "preimage/image.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"
#include "test/h5_util.h"
#include "test/term_harness.h"
#include "test/test_util.h"

using namespace preimage;
using preimage::test::central_differences;
using preimage::test::max_rel_error;
using preimage::test::random_vector;
using preimage::test::TempDir;
using preimage::test::to_double;

namespace {

const Device kDevices[] = {Device::CPU, Device::CUDA};

// Double reference of the training objective: mean cross-entropy + λ/2‖W‖².
double ref_loss(const std::vector<double>& th, const std::vector<float>& x,
                const std::vector<int>& y, int k, int d, double l2) {
  const int n = int(y.size());
  double loss = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<double> s(static_cast<size_t>(k));
    double mx = -1e300;
    for (int c = 0; c < k; ++c) {
      s[size_t(c)] = th[size_t(k) * d + c];
      for (int j = 0; j < d; ++j) s[size_t(c)] += th[size_t(c) * d + j] * x[size_t(i) * d + j];
      mx = std::max(mx, s[size_t(c)]);
    }
    double se = 0;
    for (double v : s) se += std::exp(v - mx);
    loss += (mx + std::log(se) - s[size_t(y[size_t(i)])]) / n;
  }
  for (size_t j = 0; j < size_t(k) * d; ++j) loss += 0.5 * l2 * th[j] * th[j];
  return loss;
}

// Three separable clusters in odd dimensions.
void clusters(int per_class, int d, std::vector<float>* x, std::vector<int>* y) {
  const auto centers = random_vector(size_t(3) * d, 5, -1.f, 1.f);
  const auto noise = random_vector(size_t(3) * per_class * d, 6, -0.3f, 0.3f);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < per_class; ++i) {
      for (int j = 0; j < d; ++j)
        x->push_back(centers[size_t(c) * d + j] + noise[(size_t(c) * per_class + i) * d + j]);
      y->push_back(c);
    }
}

void write_image(const std::string& path, int h, int w, uint64_t seed) {
  const Tensor t = Tensor::from_vector({1, 3, h, w}, random_vector(size_t(3) * h * w, seed, 0, 1));
  save_png(t.view(), path);
}

void touch(const std::string& path) {
  std::ofstream(path) << "x";
}

// A small trained classifier on relu1_1 of random:0 VGG-19 (features of random images).
AttributeClassifier small_classifier(Network& net) {
  BcnnFeatureSettings s;
  s.layers = {"relu1_1"};
  s.size = 16;
  std::vector<float> x;
  std::vector<int> y;
  for (int i = 0; i < 6; ++i) {
    std::vector<float> v = random_vector(size_t(3) * 16 * 16, 100 + i, 0, 1);
    if (i % 2)  // class 1: brighter images
      for (auto& e : v) e = 0.5f + 0.5f * e;
    const Tensor im = Tensor::from_vector({1, 3, 16, 16}, v, net.device());
    const auto z = bcnn_features(net, im.view(), s.layers);
    x.insert(x.end(), z.begin(), z.end());
    y.push_back(i % 2);
  }
  AttributeTrainOptions o;
  o.iterations = 30;
  AttributeClassifier c =
      train_attribute_classifier(x, 64 * 64, y, {"dark", "bright"}, Device::CPU, o);
  c.features = s;
  c.channels = {64};
  c.arch = arch_name(net.arch());
  c.weights = net.weights().identity;
  c.fingerprint = weights_fingerprint(net, s.layers);
  c.test_class_accuracy = {1.0, 0.5};
  c.test_accuracy = 0.75;
  return c;
}

}  // namespace

TEST_CASE("attributes training loss and gradient vs reference on cpu and cuda",
          "[attributes][grad]") {
  const int n = 7, d = 13, k = 3;
  const float l2 = 0.3f;
  const auto x = random_vector(size_t(n) * d, 11);
  const std::vector<int> y = {0, 2, 1, 1, 0, 2, 2};
  const auto th = random_vector(size_t(k) * d + k, 12);
  const auto thd = to_double(th);
  const double e = ref_loss(thd, x, y, k, d, l2);
  const auto g = central_differences(
      thd, 1e-6, [&](const std::vector<double>& t) { return ref_loss(t, x, y, k, d, l2); });
  for (Device dev : kDevices) {
    INFO(device_name(dev));
    const Tensor xt = Tensor::from_vector({1, 1, n, d}, x, dev);
    const Tensor tt = Tensor::from_vector({1, 1, 1, k * d + k}, th, dev);
    Tensor grad = Tensor::from_vector(tt.shape(), test::nan_vector(tt.numel()), dev);
    const double v = attribute_training_loss(xt.view(), y, k, l2, tt.view(), grad);
    CHECK(v == Approx(e).epsilon(1e-5));
    CHECK(max_rel_error(grad.to_vector(), g) <= 1e-4);
  }
  const Tensor xt = Tensor::from_vector({1, 1, n, d}, x);
  const Tensor tt = Tensor::from_vector({1, 1, 1, k * d + k}, th);
  Tensor grad;
  CHECK_THROWS_WITH(
      attribute_training_loss(xt.view(), {0, 1, 5, 0, 0, 0, 0}, k, l2, tt.view(), grad),
      Catch::Contains("label 5"));
}

TEST_CASE("attributes classifier trained on cuda matches cpu", "[attributes]") {
  std::vector<float> x;
  std::vector<int> y;
  clusters(5, 11, &x, &y);
  AttributeTrainOptions o;
  o.iterations = 40;
  const std::vector<std::string> names = {"a", "b", "c"};
  const AttributeClassifier cpu = train_attribute_classifier(x, 11, y, names, Device::CPU, o);
  const AttributeClassifier gpu = train_attribute_classifier(x, 11, y, names, Device::CUDA, o);
  CHECK(cpu.train_accuracy == 1.0);
  CHECK(gpu.train_accuracy == 1.0);
  const auto pc = attribute_probabilities(cpu, x), pg = attribute_probabilities(gpu, x);
  REQUIRE(pc.size() == pg.size());
  double worst = 0;
  for (size_t i = 0; i < pc.size(); ++i) worst = std::max(worst, std::fabs(pc[i] - pg[i]));
  CHECK(worst <= 1e-3);
  const auto acc = attribute_class_accuracy(cpu, x, y);
  CHECK(acc == std::vector<double>{1.0, 1.0, 1.0});
  CHECK_THROWS_WITH(train_attribute_classifier(x, 11, y, {"only"}, Device::CPU, o),
                    Catch::Contains("at least 2 classes"));
  std::vector<int> missing = y;
  for (auto& v : missing) v = v == 2 ? 0 : v;
  CHECK_THROWS_WITH(train_attribute_classifier(x, 11, missing, names, Device::CPU, o),
                    Catch::Contains("class 'c' has no training images"));
}

TEST_CASE("attributes term image gradient through vgg19 on cpu and cuda", "[attributes]") {
  const Shape img{1, 3, 13, 11};
  const auto xv = random_vector(img.numel(), 21, 0.f, 1.f);
  const auto w = random_vector(size_t(3) * 64 * 64, 22, -2.f, 2.f);
  const auto b = random_vector(3, 23);
  std::vector<double> values;
  std::vector<std::vector<float>> grads, feats;
  for (Device d : kDevices) {
    Network net(load_weights("random:0"), d);
    const Tensor x = Tensor::from_vector(img, xv, d);
    feats.push_back(bcnn_features(net, x.view(), {"relu1_1"}));
    const Tensor wt = Tensor::from_vector({1, 1, 3, 64 * 64}, w, d);
    const Tensor bt = Tensor::from_vector({1, 1, 1, 3}, b, d);
    Objective obj;
    obj.add(make_attribute_term({"relu1_1"}, wt.view(), bt.view(), 1));
    Tensor g;
    values.push_back(obj.evaluate(net, x.view(), g));
    grads.push_back(g.to_vector());
  }
  CHECK(values[1] == Approx(values[0]).epsilon(1e-4));
  CHECK(max_rel_error(grads[1], grads[0]) <= 1e-3);
  CHECK(max_rel_error(feats[1], feats[0]) <= 1e-4);
  // Each layer's descriptor is unit-norm.
  double ss = 0;
  for (float v : feats[0]) ss += double(v) * v;
  CHECK(ss == Approx(1.0).epsilon(1e-4));
}

TEST_CASE("attributes features: batches, unreadable files skipped and counted", "[attributes]") {
  TempDir dir;
  Network net(load_weights("random:0"), Device::CPU);
  std::vector<std::string> files;
  for (int i = 0; i < 5; ++i) {
    files.push_back(dir.file("im" + std::to_string(i) + ".png"));
    write_image(files.back(), 19 + i, 23, 30 + i);
  }
  touch(dir.file("broken.png"));
  files.insert(files.begin() + 2, dir.file("broken.png"));
  BcnnFeatureSettings s;
  s.layers = {"relu1_2", "pool1"};
  s.size = 17;
  int calls = 0, last = 0;
  const BcnnFeatures f = extract_bcnn_features(net, files, s, 2, [&](int done, int total) {
    ++calls;
    last = done;
    CHECK(total == 6);
  });
  CHECK(f.count() == 5);
  CHECK(f.skipped.size() == 1);
  CHECK(f.skipped[0].find("broken.png") != std::string::npos);
  CHECK(f.dim == 2 * 64 * 64);
  CHECK(calls >= 3);
  CHECK(last == 6);
  // Row 3 (the fourth readable file) equals its features computed alone.
  const Tensor im = resize(load_image(files[4]).view(), 17, 17);
  const auto one = bcnn_features(net, im.view(), s.layers);
  const std::vector<float> row(f.features.begin() + 3 * f.dim, f.features.begin() + 4 * f.dim);
  CHECK(max_rel_error(row, one) <= 1e-5);
  CHECK_THROWS_WITH(bcnn_layer_channels(net, {"fc7"}), Catch::Contains("fc7"));
  CHECK_THROWS_WITH(bcnn_layer_channels(net, {"relu1_1", "relu1_1"}),
                    Catch::Contains("given twice"));
  CHECK(default_attribute_layers(Arch::VGG19) ==
        std::vector<std::string>{"relu2_2", "relu3_4", "relu4_4", "relu5_4"});
  CHECK(default_attribute_layers(Arch::VGG16) ==
        std::vector<std::string>{"relu2_2", "relu3_3", "relu4_3", "relu5_3"});
}

TEST_CASE("attributes classifier file: round trip, checks against the network, errors",
          "[attributes]") {
  TempDir dir;
  Network net(load_weights("random:0"), Device::CPU);
  const AttributeClassifier c = small_classifier(net);
  const std::string path = dir.file("c.h5");
  save_attribute_classifier(c, path);
  CHECK(dir.entries() == std::vector<std::string>{"c.h5"});
  const AttributeClassifier r = load_attribute_classifier(path);
  CHECK(r.classes == c.classes);
  CHECK(r.features.layers == c.features.layers);
  CHECK(r.features.size == 16);
  CHECK(r.w == c.w);
  CHECK(r.b == c.b);
  CHECK(r.weights == "random:0");
  CHECK(r.fingerprint == c.fingerprint);
  CHECK(r.test_class_accuracy == c.test_class_accuracy);
  CHECK_NOTHROW(check_attribute_classifier(r, net, "c.h5"));
  CHECK(attribute_index(r, "bright") == 1);
  CHECK_THROWS_WITH(attribute_index(r, "zigzag"), Catch::Contains("unknown attribute 'zigzag'") &&
                                                      Catch::Contains("dark, bright"));

  SECTION("other weights") {
    Network other(load_weights("random:1"), Device::CPU);
    CHECK_THROWS_WITH(check_attribute_classifier(r, other, "c.h5"),
                      Catch::Contains("random:0") && Catch::Contains("random:1") &&
                          Catch::Contains("fingerprint"));
  }
  SECTION("other architecture") {
    Network other(load_weights("random:0", Arch::VGG16), Device::CPU);
    CHECK_THROWS_WITH(check_attribute_classifier(r, other, "c.h5"),
                      Catch::Contains("trained on vgg19") && Catch::Contains("vgg16"));
  }
  SECTION("other layers") {
    AttributeClassifier bad = r;
    bad.features.layers = {"relu2_1"};
    CHECK_THROWS_WITH(check_attribute_classifier(bad, net, "c.h5"),
                      Catch::Contains("relu2_1 has 128 channels") && Catch::Contains("expects 64"));
    bad.features.layers = {"relu9_9"};
    CHECK_THROWS_WITH(check_attribute_classifier(bad, net, "c.h5"), Catch::Contains("relu9_9"));
  }
  SECTION("damaged files") {
    // A hand-written file: every attribute but a /bias of the wrong length, then without format.
    auto write = [&](bool with_format, int bias_len) {
      h5::Quiet quiet;
      h5::File f = h5::File::create(dir.file("d.h5"), "test");
      const std::vector<float> w(size_t(2) * 64 * 64, 0.f), b(size_t(bias_len), 0.f);
      f.write("/weight", w.data(), {2, 64 * 64});
      f.write("/bias", b.data(), {bias_len});
      f.write_strings("/classes", {"x", "y"});
      f.write_strings("/layers", {"relu1_1"});
      const int64_t ch = 64;
      f.write("/channels", &ch, {1});
      if (with_format) f.write_attr_string("/", "format", "preimage-attribute-classifier 1");
      for (const char* a : {"arch", "weights", "weights_fingerprint", "pool"})
        f.write_attr_string("/", a,
                            a == std::string("arch")   ? "vgg19"
                            : a == std::string("pool") ? "max"
                                                       : "x");
      f.write_attr_int64s("/", "size", {16});
      f.write_attr_int64s("/", "signed_sqrt", {1});
      f.write_attr_int64s("/", "l2_normalize", {1});
      f.write_attr_doubles("/", "eps", {1e-8});
      f.close();
    };
    write(true, 2);
    CHECK_NOTHROW(load_attribute_classifier(dir.file("d.h5")));
    write(true, 3);
    CHECK_THROWS_WITH(load_attribute_classifier(dir.file("d.h5")),
                      Catch::Contains("d.h5") && Catch::Contains("'/bias'"));
    write(false, 2);
    CHECK_THROWS_WITH(load_attribute_classifier(dir.file("d.h5")),
                      Catch::Contains("d.h5") && Catch::Contains("'format' missing"));
    std::ofstream(dir.file("junk.h5")) << "junk";
    CHECK_THROWS_WITH(load_attribute_classifier(dir.file("junk.h5")), Catch::Contains("junk.h5"));
    CHECK_THROWS(save_attribute_classifier(c, dir.file("missing/c.h5")));
  }
}

TEST_CASE("attributes datasets: folder split, list file, bad input", "[attributes]") {
  TempDir dir;
  namespace fs = std::filesystem;
  for (const char* cls : {"b", "a"}) {
    fs::create_directories(dir.path() / "data" / cls);
    for (int i = 0; i < 9; ++i)
      touch((dir.path() / "data" / cls / (std::to_string(i) + ".png")).string());
  }
  touch((dir.path() / "data" / "a" / ".hidden").string());
  const std::string data = dir.file("data");
  const AttributeDataset ds = attribute_dataset_from_dir(data, 0.25, 3);
  CHECK(ds.classes == std::vector<std::string>{"a", "b"});
  CHECK(ds.test[0].size() == 2);
  CHECK(ds.train[0].size() == 7);
  CHECK(attribute_dataset_from_dir(data, 0.25, 3).test == ds.test);  // deterministic
  std::ofstream(dir.file("list.txt")) << "# comment\n\ntrain a data/a/0.png\ntest a data/a/1.png\n"
                                         "train b data/b/0.png\ntest b /abs/b.png\n";
  const AttributeDataset l = attribute_dataset_from_list(dir.file("list.txt"));
  CHECK(l.classes == std::vector<std::string>{"a", "b"});
  CHECK(l.train[0] == std::vector<std::string>{(dir.path() / "data/a/0.png").string()});
  CHECK(l.test[1] == std::vector<std::string>{"/abs/b.png"});

  std::ofstream(dir.file("bad.txt")) << "train a x.png\nvalid b y.png\n";
  CHECK_THROWS_WITH(attribute_dataset_from_list(dir.file("bad.txt")),
                    Catch::Contains("bad.txt' line 2"));
  std::ofstream(dir.file("one.txt")) << "train a x.png\ntest a y.png\n";
  CHECK_THROWS_WITH(attribute_dataset_from_list(dir.file("one.txt")),
                    Catch::Contains("at least 2"));
  std::ofstream(dir.file("notest.txt")) << "train a x.png\ntest a y.png\ntrain b z.png\n";
  CHECK_THROWS_WITH(attribute_dataset_from_list(dir.file("notest.txt")),
                    Catch::Contains("class 'b' has no test images"));
  fs::create_directories(dir.path() / "data" / "c");
  CHECK_THROWS_WITH(attribute_dataset_from_dir(data), Catch::Contains("is empty"));
  touch((dir.path() / "data" / "c" / "only.png").string());
  CHECK_THROWS_WITH(attribute_dataset_from_dir(data), Catch::Contains("single image"));
  fs::remove_all(dir.path() / "data" / "b");
  fs::remove_all(dir.path() / "data" / "c");
  CHECK_THROWS_WITH(attribute_dataset_from_dir(data), Catch::Contains("at least 2 classes"));
  CHECK_THROWS_WITH(attribute_dataset_from_dir(dir.file("nope")),
                    Catch::Contains("does not exist"));
}
