// libFuzzer target: the L-BFGS checkpoint loader (preimage::Lbfgs::load_checkpoint) on arbitrary
// bytes as an .h5 file, for a solver of n = 12 (x: (1,3,2,2)) and history 3, the shape of the
// seeds that fuzz_checkpoint_seed writes with the real solver (fuzz/make_corpus.py). A checkpoint
// that loads is then continued for a few iterations on a quadratic, so restored state that passed
// the checks but is inconsistent shows up here too. preimage::Error is expected for bad input.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "preimage/error.h"
#include "preimage/lbfgs.h"

namespace {
constexpr size_t kN = 12;
constexpr int kHistory = 3;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static preimage::fuzz::InputFile file(".ckpt.h5");
  const std::string& path = file.write(data, size);
  preimage::LbfgsOptions o;
  o.history = kHistory;
  o.max_iterations = 3;
  try {
    preimage::Lbfgs solver(preimage::Device::CPU, kN, o);
    preimage::Tensor x;
    solver.load_checkpoint(path, x);
    // Keep the continuation short whatever limits the file restored.
    preimage::LbfgsOptions lim = solver.options();
    lim.max_iterations = std::min(lim.max_iterations, 3);
    lim.max_evaluations = std::min(lim.max_evaluations > 0 ? lim.max_evaluations : 20, 20);
    solver.set_options(lim);
    solver.minimize(x, [](const preimage::View& v, const preimage::View& g) {
      double f = 0;
      for (size_t i = 0; i < kN; ++i) {
        const double d = double(v.data[i]) - 0.25 * double(i % 4);
        f += (1 + double(i)) * d * d;
        g.data[i] = float(2 * (1 + double(i)) * d);
      }
      return f;
    });
  } catch (const preimage::Error&) {
  }
  return 0;
}
