#!/usr/bin/env bash
# Installs the built tree into a fresh prefix, then builds test/consumer against it twice:
# 1. find_package(preimage): consumer (network + version header) and texture_consumer (the
#    recipe API: a 64x64 texture from examples/brick.png in 15 lines), both run;
# 2. pkg-config: consumer compiled with `c++ -std=c++20 main.cpp $(pkg-config --cflags --libs
#    preimage)` and run.
# Also checks that the exported CMake package names imported targets, not this machine's library
# paths. Usage: run.sh BUILD_DIR WORK_DIR
set -euo pipefail
build=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
rm -rf "$work" && mkdir -p "$work"
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/cmake/preimage | head -1)
libdir=${libdir%/cmake/preimage}

# The exported targets: imported dependency targets only (hdf5::hdf5, preimage::openblas, ...).
if grep -nE '"?/(usr|opt)/[^;"]*\.(so|a)' "$libdir"/cmake/preimage/preimageTargets*.cmake; then
  echo "install_consumer: the exported package names absolute library paths (above)" >&2
  exit 1
fi
test -f "$prefix/include/preimage/version.h" || { echo "version.h not installed" >&2; exit 1; }
test -f "$prefix/share/doc/preimage/LICENSE" || { echo "LICENSE not installed" >&2; exit 1; }

cmake -S "$here" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j2 >/dev/null
"$work/build/consumer"
rm -f "$work/texture.png"
"$work/build/texture_consumer" "$src/examples/brick.png" "$work/texture.png"
test -s "$work/texture.png" || { echo "texture_consumer wrote no texture.png" >&2; exit 1; }
echo "texture_consumer ok: $work/texture.png"

flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs preimage)
echo "pkg-config --cflags --libs preimage: $flags"
# shellcheck disable=SC2086  # the flags are words
c++ -std=c++20 -O1 "$here/main.cpp" -o "$work/pc_consumer" $flags
"$work/pc_consumer"
