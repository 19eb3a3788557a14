#!/usr/bin/env bash
# Short fuzzing run for CI (docs/reliability.md): builds the libFuzzer targets with clang-14
# (ASan + UBSan + coverage, CPU only) in build-fuzz (or $PREIMAGE_FUZZ_BUILD), generates the seed corpora
# (fuzz/make_corpus.py: valid files from the real code, then mutations) and runs each target for
# PREIMAGE_FUZZ_SECONDS (default 15) on them. Any crash, sanitizer report, leak, timeout or OOM
# fails the run; the reproducer is left in build-fuzz/findings/. The longer recorded runs
# (>= 10^6 executions per target) are described in docs/reliability.md.
# Needs build/apps/preimage (the Release build of .ci/test-all.sh) for the index seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${PREIMAGE_JOBS:-2}
secs=${PREIMAGE_FUZZ_SECONDS:-15}
cli=${PREIMAGE_CLI:-build/apps/preimage}
bd=${PREIMAGE_FUZZ_BUILD:-build-fuzz}
targets=(fuzz_weights fuzz_image fuzz_checkpoint fuzz_index fuzz_cli)

CC=clang-14 CXX=clang++-14 cmake -S . -B "$bd" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DPREIMAGE_FUZZ=ON -DPREIMAGE_CUDA=OFF -DPREIMAGE_BUILD_TESTS=OFF -DPREIMAGE_BUILD_BENCH=OFF \
  -DPREIMAGE_BUILD_APPS=OFF -DPREIMAGE_BUILD_PYTHON=OFF
cmake --build "$bd" -j"$jobs" --target "${targets[@]}" fuzz_checkpoint_seed

corpus="$bd"/corpus
rm -rf "$corpus" "$bd"/findings
mkdir -p "$bd"/findings
/usr/bin/python3 fuzz/make_corpus.py "$corpus" --cli "$cli" \
  --checkpoint-seed "$bd"/fuzz/fuzz_checkpoint_seed

# allocator_may_return_null: a huge request fails as malloc does in production (HDF5 then reports
# an error) instead of aborting; our own huge requests still fail (std::bad_alloc escapes the
# harness). Fork mode (-fork=1: one child at a time, one core) keeps fuzzing past a finding;
# fuzz/triage.py replays every artifact and fails the run when one is ours rather than inside
# the uninstrumented HDF5 library (docs/reliability.md lists those).
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:abort_on_error=1
export LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
# One target per core at a time (each fork-mode run is one child process): PREIMAGE_JOBS targets
# run side by side, each into its own log; the summaries are printed in order afterwards.
run_target() {  # run_target TARGET: fuzz, then judge; the verdict goes to $bd/TARGET.verdict
  local t=$1 name=${1#fuzz_} rc=0 found
  local work="$bd"/work_$name
  rm -rf "$work"
  mkdir -p "$work"
  cp -r "$corpus/$name/." "$work/"
  {
    echo "== $t: ${secs}s on $(ls "$work" | wc -l) seeds"
    ./"$bd"/fuzz/"$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
      -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
      -artifact_prefix="$bd"/findings/"$t"- "$work" >"$bd"/"$t".log 2>&1 || rc=$?
    grep -E '^#[0-9]+: cov' "$bd"/"$t".log | tail -1 || true
    found=$(ls "$bd"/findings/"$t"-* 2>/dev/null || true)
    if [ -n "$found" ]; then
      # The triage alone judges a run that left findings (see below).
      rc=0
      # shellcheck disable=SC2086
      /usr/bin/python3 fuzz/triage.py ./"$bd"/fuzz/"$t" $found || rc=1
    elif [ "$rc" -ne 0 ]; then
      # In fork mode libFuzzer exits with the last child's status, so a non-zero exit after a
      # finding is judged by the triage above; without any finding it is a failure of its own.
      tail -40 "$bd"/"$t".log
      echo "fuzz-short: $t exited with $rc and left no finding"
    fi
  } >"$bd"/"$t".summary 2>&1 || rc=1
  echo "$rc" >"$bd"/"$t".verdict
}
status=0
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch=("${targets[@]:i:jobs}")
  for t in "${batch[@]}"; do
    rm -f "$bd"/"$t".verdict
    run_target "$t" &
  done
  wait
  for t in "${batch[@]}"; do
    cat "$bd"/"$t".summary
    [ "$(cat "$bd"/"$t".verdict 2>/dev/null)" = 0 ] || status=1
  done
done
[ "$status" -eq 0 ] && echo "fuzz-short: ${#targets[@]} targets, ${secs}s each, no finding in our code"
exit "$status"
