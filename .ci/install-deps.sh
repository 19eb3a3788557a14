#!/usr/bin/env bash
# Installs everything preimage needs from Debian's packages. Idempotent: apt-get skips what is present.
# The CUDA toolkit is expected at /usr/local/cuda (optional: without nvcc the build is CPU only).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config git
      libhdf5-dev libeigen3-dev libstb-dev catch2 libopenblas-openmp-dev libfaiss-dev
      python3 python3-numpy python3-h5py python3-scipy python3-torch python3-torchvision python3-skimage
      clang-14 libclang-rt-14-dev libomp-14-dev clang-format
      python3-dev pybind11-dev python3-pytest)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
