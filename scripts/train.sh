#!/usr/bin/env bash
# The main job: builds Lumen and trains the default example, the Fashion-MNIST MLP
# (examples/fashion_mnist_mlp.cpp), printing progress and the final test accuracy and saving
# checkpoints and logs under runs/fashion_mnist_mlp/. Arguments go to the example
# (--epochs N, --threads N).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh fashion_mnist_mlp
exec ./build/fashion_mnist_mlp "$@"
