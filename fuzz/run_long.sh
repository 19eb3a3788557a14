#!/usr/bin/env bash
# The recorded longer fuzzing runs (docs/reliability.md): one target at a time on one core, in
# fork mode (one child at a time; continues past findings inside HDF5), until RUNS executions or
# SECONDS, whichever comes first; then fuzz/triage.py on whatever was found.
#   usage: fuzz/run_long.sh BUILD_DIR CORPUS_DIR OUT_DIR TARGET RUNS SECONDS
# e.g.  fuzz/run_long.sh build-fuzz build-fuzz/corpus /tmp/fuzz-long fuzz_weights 1000000 36000
set -uo pipefail
bd=$1 corpus=$2 out=$3 t=$4 runs=$5 secs=$6
here=$(cd "$(dirname "$0")" && pwd)
name=${t#fuzz_}
mkdir -p "$out/$name" "$out/findings"
cp -rn "$corpus/$name/." "$out/$name/" 2>/dev/null || true
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS=suppressions=$here/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
start=$(date +%s)
"$bd/fuzz/$t" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -runs="$runs" \
  -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -artifact_prefix="$out/findings/$t-" \
  "$out/$name" >"$out/$t.log" 2>&1
rc=$?
end=$(date +%s)
last=$(grep -E '^#[0-9]+: cov' "$out/$t.log" | tail -1)
echo "$t: exit $rc, $((end - start)) s, last status: $last"
found=$(ls "$out/findings/$t-"* 2>/dev/null || true)
# shellcheck disable=SC2086
[ -z "$found" ] || /usr/bin/python3 "$here/triage.py" "$bd/fuzz/$t" $found
