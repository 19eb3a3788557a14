#!/usr/bin/env bash
# ctest lbfgs_vs_scipy: preimage's native L-BFGS vs SciPy's L-BFGS-B (Debian's /usr/bin/python3)
# on the same C++ objectives, through the driver test/lbfgs_scipy_driver.cpp. Rules and problems:
# test/scipy_compare.py and docs/lbfgs.md. Usage: run_scipy_compare.sh PATH/TO/lbfgs_scipy_driver
# [--only NAME,...] [--gatys-size S]
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/lbfgs_scipy_driver [--only NAME,...] [--gatys-size S]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# One OpenBLAS thread: its busy-waiting threads otherwise fight the OpenMP ones (see notes).
export OPENBLAS_NUM_THREADS=1
exec /usr/bin/python3 "$here/scipy_compare.py" "$@"
