#!/usr/bin/env bash
# The whole test suite, as CI runs it (README's second command, .ci/run), on 2 cores:
#   1. Release build (CUDA backend compiled by nvcc when present, kernels also executed on the
#      host simulator) and its ctest suite;
#   2. the same ctest suite, CLI script tests included, under AddressSanitizer + UBSan (.ci/asan.sh);
#   3. the threaded parts under ThreadSanitizer on small shapes (.ci/tsan.sh);
#   4. every libFuzzer target for a short fixed time on generated seeds (.ci/fuzz-short.sh).
# Each phase's wall time is printed at the end (docs/reliability.md has the budget).
set -euo pipefail
cd "$(dirname "$0")/.."
export PREIMAGE_JOBS=${PREIMAGE_JOBS:-2}
jobs=$PREIMAGE_JOBS
# Two test processes at a time, each with two OpenMP threads, on two cores: libgomp's default
# spin-waiting at barriers would burn the core the other process needs (docs/benchmarks.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
times=()
phase() {  # phase NAME COMMAND...: run, time, remember
  local name=$1 t0=$SECONDS
  shift
  echo "==== $name"
  "$@"
  times+=("$(printf '%-26s %5d s' "$name" $((SECONDS - t0)))")
}

phase "release build" bash -c "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && \
  cmake --build build -j$jobs"
phase "release ctest" ctest --test-dir build --output-on-failure -j"$jobs"
phase "asan+ubsan build, ctest" ./.ci/asan.sh build-asan
phase "tsan build, run" ./.ci/tsan.sh build-tsan
phase "fuzz build, short runs" ./.ci/fuzz-short.sh

echo "==== all passed; wall time per phase:"
printf '  %s\n' "${times[@]}"
