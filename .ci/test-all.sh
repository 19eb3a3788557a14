#!/usr/bin/env bash
# The whole test suite: Release build (CUDA backend compiled by nvcc when present, kernels also
# executed on the host simulator), ctest; then every Catch2 case under AddressSanitizer + UBSan in
# its own build directory. ThreadSanitizer and the libFuzzer targets are in .ci/hardening.sh:
# with them this run takes ~37 min on 2 cores, over the 30-minute CI budget (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${PREIMAGE_JOBS:-2}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# Every Catch2 case (kernels on the simulator, engine, loaders, fuzz regressions) again under
# AddressSanitizer + UBSan: CPU only (the CUDA kernels still run, instrumented, on the host
# simulator). The script-driven CLI tests run instrumented in .ci/hardening.sh.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPREIMAGE_CUDA=OFF \
  -DPREIMAGE_SANITIZE=ON -DPREIMAGE_BUILD_APPS=OFF -DPREIMAGE_BUILD_BENCH=OFF
cmake --build build-asan -j"$jobs" --target preimage_tests
LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build-asan/test/preimage_tests
