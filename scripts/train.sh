#!/usr/bin/env bash
# The main job: builds and runs the default example (an MLP fitted with autograd, printing its
# loss falling).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh spiral_mlp
exec ./build/spiral_mlp "$@"
