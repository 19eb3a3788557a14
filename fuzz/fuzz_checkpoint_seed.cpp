// Writes L-BFGS checkpoints with the real solver for fuzz_checkpoint's seed corpus: n = 12,
// history 3, box-constrained and not, before the first iteration, after 1, 2 and 6 iterations
// (history partly and completely filled, pairs recycled).
//   usage: fuzz_checkpoint_seed OUT_DIR
#include <cstdio>
#include <string>

#include "preimage/error.h"
#include "preimage/lbfgs.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_checkpoint_seed OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const size_t n = 12;
  auto quad = [&](const preimage::View& v, const preimage::View& g) {
    double f = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = double(v.data[i]) - 0.3 * double(i % 5);
      f += (1 + double(i)) * d * d;
      g.data[i] = float(2 * (1 + double(i)) * d);
    }
    return f;
  };
  try {
    for (int bounded = 0; bounded < 2; ++bounded)
      for (int iters : {0, 1, 2, 6}) {
        preimage::LbfgsOptions o;
        o.history = 3;
        o.max_iterations = iters > 0 ? iters : 1;
        o.bounded = bounded != 0;
        o.lower = 0.f;
        o.upper = 0.9f;
        preimage::Lbfgs solver(preimage::Device::CPU, n, o);
        preimage::Tensor x(preimage::Shape{1, 3, 2, 2});
        for (size_t i = 0; i < n; ++i) x.data()[i] = 0.05f * float(i);
        solver.set_user_blob("seed" + std::to_string(iters));
        if (iters > 0) solver.minimize(x, quad);
        solver.save_checkpoint(
            dir + "/ckpt_b" + std::to_string(bounded) + "_i" + std::to_string(iters) + ".h5", x);
      }
  } catch (const preimage::Error& e) {
    std::fprintf(stderr, "fuzz_checkpoint_seed: %s\n", e.what());
    return 1;
  }
  return 0;
}
