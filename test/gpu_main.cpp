// Main of preimage_gpu_tests: the kernel cases on a real GPU. Exits 77 (ctest SKIP_RETURN_CODE)
// with the reason where no device exists, as on every development and CI machine.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "kernels/kernels.h"

int main(int argc, char** argv) {
  std::string reason;
  if (preimage::kernels::device_count(&reason) == 0) {
    std::printf("no CUDA device: %s - skipping the GPU tests\n", reason.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
