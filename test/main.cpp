// Catch2 main of preimage_tests. The CUDA backend in this binary is the host simulator running
// the unchanged kernels/*.cu sources.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
