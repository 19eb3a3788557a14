#!/usr/bin/env bash
# The whole ctest suite under AddressSanitizer + UBSan (docs/reliability.md), in its own build
# directory (default build-asan): CPU only (the CUDA kernels still run, instrumented, on the host
# simulator), the command line built too so the script-driven tests drive an instrumented binary;
# no benchmarks. .ci/asan-exclude.txt lists what cannot run instrumented, and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bd=${1:-build-asan}
jobs=${PREIMAGE_JOBS:-2}
# -g1 (line tables only) is all the sanitizer reports need and compiles faster than -g.
cmake -S . -B "$bd" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DPREIMAGE_CUDA=OFF -DPREIMAGE_SANITIZE=ON -DPREIMAGE_BUILD_APPS=ON -DPREIMAGE_BUILD_BENCH=OFF \
  -DPREIMAGE_BUILD_PYTHON=OFF
cmake --build "$bd" -j"$jobs"
export LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# lbfgs_vs_scipy: one Gatys instance instead of six under the sanitizers (test/scipy_compare.py).
export PREIMAGE_SANITIZER_RUN=1
ctest --test-dir "$bd" --output-on-failure -j"$jobs" -E "$(grep -v '^#' .ci/asan-exclude.txt)"
