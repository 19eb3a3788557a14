#!/usr/bin/env bash
# ThreadSanitizer run of the threaded parts (docs/reliability.md), in a build directory made with
# -DPREIMAGE_TSAN=ON by clang-14 (default build-tsan):
# - the OpenMP CPU backend ([cpu]) on two OpenMP threads, with libomp's TSan tool (archer) so
#   that OpenMP's barriers and reductions are known to TSan; libomp itself is not instrumented
#   (ignore_noninstrumented_modules=1), OpenBLAS (libgomp) runs on one thread;
# - the simulator's two worker threads ([simulator]), one test case per process: the simulator's
#   fibers switch stacks, which Debian's TSan runtime cannot be told about (its __tsan_create_fiber
#   crashes, clang-14), so frames that never return pile up in TSan's shadow stack of a worker
#   thread and a long process overflows it; a fresh process per case keeps it short.
# Configures and builds that directory first (only the small preimage_tsan_tests executable).
set -euo pipefail
cd "$(dirname "$0")/.."
bd=${1:-build-tsan}
CC=clang-14 CXX=clang++-14 cmake -S . -B "$bd" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DPREIMAGE_CUDA=OFF -DPREIMAGE_TSAN=ON -DPREIMAGE_BUILD_APPS=OFF -DPREIMAGE_BUILD_BENCH=OFF \
  -DPREIMAGE_BUILD_PYTHON=OFF
cmake --build "$bd" -j"${PREIMAGE_JOBS:-2}" --target preimage_tsan_tests
bin=$bd/test/preimage_tsan_tests
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1 PREIMAGE_SIM_THREADS=2
export OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so
export TSAN_OPTIONS="ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/.ci/tsan.supp"
"$bin" "[cpu]"
n=0
while IFS= read -r t; do
  [ -n "$t" ] || continue
  # Catch2 test specs: ',' and '[' ']' are syntax, escaped with '\'.
  "$bin" "$(printf '%s' "$t" | sed 's/[],[]/\\&/g')" | tail -1
  n=$((n + 1))
done < <("$bin" --list-test-names-only "[simulator]" | grep -v '^$')
echo "tsan: [cpu] in one process, $n [simulator] cases one per process, no report"
