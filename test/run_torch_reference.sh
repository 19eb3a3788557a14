#!/usr/bin/env bash
# Runs test/torch_reference.py (Debian's /usr/bin/python3 with torch) into a temporary directory,
# then the given test binary's [torch] cases with PREIMAGE_TEST_DATA pointing there. The test
# binary's exit code is the script's. Usage: run_torch_reference.sh PATH/TO/preimage_tests
# [Catch2 test spec and arguments, instead of the default "[torch]"]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/preimage_tests [extra Catch2 arguments]" >&2
  exit 2
fi
tests=$1
shift
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data=$(mktemp -d "${TMPDIR:-/tmp}/preimage_torch_ref.XXXXXX")
trap 'rm -rf "$data"' EXIT
/usr/bin/python3 "$here/torch_reference.py" --out "$data"
status=0
spec=("[torch]")
[ $# -gt 0 ] && spec=("$@")
PREIMAGE_TEST_DATA="$data" "$tests" "${spec[@]}" || status=$?
exit $status
