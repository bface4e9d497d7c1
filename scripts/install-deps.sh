#!/usr/bin/env bash
# Installs the Debian packages Lumen builds with, and the data its examples train on, when any
# is missing. CUDA is optional: the build enables it when nvcc is found (here and in CI:
# /usr/local/cuda).
set -euo pipefail
packages=(cmake g++ make ccache libgtest-dev libbenchmark-dev libhdf5-dev zlib1g-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist fortunes)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
