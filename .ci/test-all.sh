#!/usr/bin/env bash
# The whole test suite: Release build (CUDA backend compiled by nvcc when present, kernels also
# executed on the host simulator), ctest, then the simulated kernel tests again under
# AddressSanitizer + UBSan in a separate build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${PREIMAGE_JOBS:-2}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPREIMAGE_CUDA=OFF \
  -DPREIMAGE_SANITIZE=ON -DPREIMAGE_BUILD_APPS=OFF -DPREIMAGE_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs" --target preimage_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ./build-asan/test/preimage_tests "[simulator],[kernels]"
