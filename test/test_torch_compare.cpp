// The engine's VGG-19 on the CPU against PyTorch (float64) on the same weights and images:
// activations at relu1_1 … relu5_1 and the input gradient of a fixed loss, plus the Keras-layout
// copy of the weights under its own preprocessing. Data from test/torch_reference.py
// ($PREIMAGE_TEST_DATA; run by test/run_torch_reference.sh).
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "preimage/device.h"
#include "preimage/network.h"
#include "preimage/objective.h"
#include "preimage/weights.h"
#include "test/h5_util.h"
#include "test/test_util.h"

using namespace preimage;

namespace {

const std::vector<std::string> kTaps = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
const char* kImages[] = {"img64", "img67x93"};
constexpr double kTol = 1e-4;

std::string data_dir_or_warn() {
  const std::string d = preimage::test::test_data_dir();
  if (d.empty()) WARN("PREIMAGE_TEST_DATA unset: run test/run_torch_reference.sh (ctest does)");
  return d;
}

}  // namespace

TEST_CASE("vgg19 vs torch activations and input gradient", "[torch]") {
  const std::string data = data_dir_or_warn();
  if (data.empty()) return;
  const h5::File ref = h5::File::open(data + "/reference.h5", "reference file");
  Network net(load_weights(data + "/vgg19.h5"), Device::CPU);

  for (const char* name : kImages) {
    const std::string g = std::string("/") + name;
    const Tensor image = preimage::test::read_tensor(ref, g + "/image");
    net.forward(image.view(), kTaps);

    std::map<std::string, Tensor> grads;
    double loss = 0;
    for (const auto& tap : kTaps) {
      const std::vector<float> a = net.tap(tap).to_vector();
      const std::vector<double> b = preimage::test::read_doubles(ref, g + "/" + tap);
      const double err = preimage::test::max_rel_error(a, b);
      INFO(name << " " << tap << " " << net.tap(tap).shape().str() << ": max rel error " << err);
      CHECK(err <= kTol);
      // L = sum 0.5 |A|^2 / numel(A)  →  dL/dA = A / numel(A)
      std::vector<float> d(a.size());
      for (size_t i = 0; i < a.size(); ++i) {
        d[i] = a[i] / float(a.size());
        loss += 0.5 * double(a[i]) * a[i] / double(a.size());
      }
      grads.emplace(tap, Tensor::from_vector(net.tap(tap).shape(), d));
    }
    CHECK(loss == Approx(preimage::test::read_doubles(ref, g + "/loss")[0]).epsilon(kTol));

    std::map<std::string, View> views;
    for (const auto& [tap, t] : grads) views.emplace(tap, t.view());
    Tensor image_grad;
    net.backward(views, image_grad);
    REQUIRE(image_grad.shape() == image.shape());
    const double err = preimage::test::max_rel_error(
        image_grad.to_vector(), preimage::test::read_doubles(ref, g + "/grad"));
    INFO(name << " input gradient: max rel error " << err);
    CHECK(err <= kTol);
  }
}

TEST_CASE("keras layout activations match canonical", "[torch]") {
  const std::string data = data_dir_or_warn();
  if (data.empty()) return;
  const h5::File ref = h5::File::open(data + "/reference.h5", "reference file");
  Network keras(load_weights(data + "/keras_vgg19.h5"), Device::CPU);
  REQUIRE(keras.weights().format == "keras");

  for (const char* name : kImages) {
    const std::string g = std::string("/") + name;
    const Tensor image = preimage::test::read_tensor(ref, g + "/image");
    keras.forward(image.view(), kTaps);
    // Everywhere: torch's activations of the same Keras file under Caffe preprocessing.
    for (const auto& tap : kTaps) {
      const double err = preimage::test::max_rel_error(
          keras.tap(tap).to_vector(), preimage::test::read_doubles(ref, "/keras" + g + "/" + tap));
      INFO(name << " " << tap << ": max rel error vs torch (keras file) " << err);
      CHECK(err <= kTol);
    }
    // Away from the zero-padded border the Keras copy equals the canonical weights (the
    // preprocessing difference is folded into conv1_1; see torch_reference.py).
    const Tensor& a = keras.tap("relu1_1");
    const std::vector<double> b = preimage::test::read_doubles(ref, g + "/relu1_1");
    const Shape s = a.shape();
    std::vector<float> ai;
    std::vector<double> bi;
    for (int c = 0; c < s.c; ++c)
      for (int y = 1; y + 1 < s.h; ++y)
        for (int x = 1; x + 1 < s.w; ++x) {
          const size_t i = (size_t(c) * s.h + y) * s.w + x;
          ai.push_back(a.data()[i]);
          bi.push_back(b[i]);
        }
    const double err = preimage::test::max_rel_error(ai, bi);
    INFO(name << " relu1_1 interior: max rel error vs canonical " << err);
    CHECK(err <= kTol);
  }
}

TEST_CASE("vgg19 gatys gram loss and image gradient vs torch (avg-pool)", "[torch][gram]") {
  const std::string data = data_dir_or_warn();
  if (data.empty()) return;
  const h5::File ref = h5::File::open(data + "/reference.h5", "reference file");
  for (const Device dev : {Device::CPU, Device::CUDA}) {
    DYNAMIC_SECTION(device_name(dev)) {
      NetworkOptions no;
      no.avg_pool = true;
      Network net(load_weights(data + "/vgg19.h5"), dev, no);
      const Tensor src = preimage::test::read_tensor(ref, "/gatys/source").to(dev);
      const Tensor image = preimage::test::read_tensor(ref, "/gatys/image").to(dev);
      net.forward(src.view(), kTaps);
      Objective obj;
      for (const auto& tap : kTaps) obj.add(make_gram_term(tap, net.tap(tap).view(), 1.f));
      Tensor grad;
      const double loss = obj.evaluate(net, image.view(), grad);
      CHECK(loss == Approx(preimage::test::read_doubles(ref, "/gatys/loss")[0]).epsilon(kTol));
      const double err = preimage::test::max_rel_error(
          grad.to_vector(), preimage::test::read_doubles(ref, "/gatys/grad"));
      INFO("gatys image gradient: max rel error " << err);
      CHECK(err <= kTol);
    }
  }
}
