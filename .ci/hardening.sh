#!/usr/bin/env bash
# The hardening runs that do not fit the 30-minute CI budget of .ci/test-all.sh (run them nightly or
# before a release; docs/reliability.md): the whole ctest suite, CLI script tests included, under
# AddressSanitizer + UBSan; the threaded parts under ThreadSanitizer; a short run of every libFuzzer
# target. Needs the Release build of .ci/test-all.sh (build/apps/preimage) for the fuzz seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${PREIMAGE_JOBS:-2}

# The whole ctest suite under AddressSanitizer + UBSan: CPU only (the CUDA
# kernels still run, instrumented, on the host simulator), the command line built too so the
# script-driven tests drive an instrumented binary; no benchmarks.
cmake -S . -B build-asan-all -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPREIMAGE_CUDA=OFF \
  -DPREIMAGE_SANITIZE=ON -DPREIMAGE_BUILD_APPS=ON -DPREIMAGE_BUILD_BENCH=OFF
cmake --build build-asan-all -j"$jobs"
LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan-all --output-on-failure -j"$jobs" -E "$(cat .ci/asan-exclude.txt)"

# ThreadSanitizer (clang-14, libomp + its TSan tool archer): the OpenMP CPU backend ([cpu]) and
# the simulator's worker threads ([simulator]) on small shapes; .ci/tsan.sh explains the setup
# and docs/reliability.md its limits.
CC=clang-14 CXX=clang++-14 cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPREIMAGE_CUDA=OFF -DPREIMAGE_TSAN=ON -DPREIMAGE_BUILD_APPS=OFF -DPREIMAGE_BUILD_BENCH=OFF
cmake --build build-tsan -j"$jobs" --target preimage_tsan_tests
./.ci/tsan.sh build-tsan

# libFuzzer targets: 20 s each on the generated seed corpora.
./.ci/fuzz-short.sh
