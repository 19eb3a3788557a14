// Uses the installed library: random-feature VGG-16 forward/backward on a small image. Built both
// with find_package(preimage) and with `pkg-config --cflags --libs preimage` (run.sh).
#include <preimage/network.h>
#include <preimage/version.h>
#include <preimage/weights.h>

#include <cstdio>
#include <vector>

int main() {
  using namespace preimage;
  Network net(load_weights("random:1", Arch::VGG16), Device::CPU);
  Tensor img = Tensor::full({1, 3, 20, 23}, 0.5f);
  net.forward(img.view(), {"relu2_1"});
  const Tensor& a = net.tap("relu2_1");
  Tensor g;
  net.backward({{"relu2_1", a.view()}}, g);
  static_assert(PREIMAGE_VERSION >= 100, "preimage/version.h: 0.1.0 or later");
  std::printf("consumer ok: preimage %s (%s), relu2_1 %s, grad %s\n", PREIMAGE_VERSION_STRING,
              PREIMAGE_GIT_COMMIT, a.shape().str().c_str(), g.shape().str().c_str());
  return a.shape() == Shape{1, 128, 10, 11} && g.shape() == img.shape() ? 0 : 1;
}
