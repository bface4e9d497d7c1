#!/usr/bin/env bash
# Configures and builds Lumen in ./build (Release, both cores, ccache when present).
# Usage: scripts/build.sh [cmake targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
jobs="$(nproc)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if (($#)); then
  for target in "$@"; do cmake --build build -j"$jobs" --target "$target"; done
else
  cmake --build build -j"$jobs"
fi
