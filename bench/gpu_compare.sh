#!/usr/bin/env bash
# On the GPU machine: the Fashion-MNIST MLP, CNN and wide MLP (4 x 4096) in Lumen and in
# PyTorch + Lightning, in f32, 16-mixed and bf16-mixed, side by side in one run: median epoch
# time, step time (epoch / 430 steps of 128), peak GPU memory, test accuracy and the ratios.
# Both sides compute f32 in strict f32 (no TF32). Run from the bundle of
# scripts/device-bundle.sh, which sets the library path and carries the data:
#   device-bundle/device-run.sh gpu_compare.sh [epochs (default 3)] [models (default all)]
# GPU_COMPARE_LOCAL=1 runs the same on the CPU with bench/.venv's Python, to check the script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
epochs="${1:-3}"
models="${2:-mlp cnn wide_mlp}"
export FASHION_MNIST_DIR="${FASHION_MNIST_DIR:-$here/data}"
errlog=$(mktemp /tmp/gpu_compare.XXXXXX.log)
source "$here/measure.sh"
steps=430
lumen_acc=cuda torch_acc=gpu python=python3
if [ -n "${GPU_COMPARE_LOCAL:-}" ]; then
  lumen_acc=cpu torch_acc=cpu python="$here/../bench/.venv/bin/python"
fi
"$python" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none", "| torch", torch.__version__)'
printf '| model | precision | framework | epoch s (median of %s) | step ms | peak GPU MiB | test acc |\n' "$epochs"
printf '|---|---|---|---|---|---|---|\n'
row() {  # model precision framework epoch peak acc
  awk -v m="$1" -v p="$2" -v f="$3" -v e="$4" -v pk="$5" -v a="$6" -v s="$steps" 'BEGIN {
    printf "| %s | %s | %s | %.2f | %.2f | %s | %s |\n", m, p, f, e, 1000 * e / s,
      (pk == "-" ? "-" : sprintf("%.0f", pk / 1048576)), a }'
}
for model in $models; do
  for precision in 32 16-mixed bf16-mixed; do
    read -r _ l_epoch l_acc l_peak < <(measure "$LUMEN_BUNDLE/bin/fashion_mnist_$model" --bench \
      --epochs "$epochs" --accelerator "$lumen_acc" --precision "$precision" --data "$FASHION_MNIST_DIR")
    read -r _ p_epoch p_acc p_peak < <(measure "$python" "$here/lightning_fashion_mnist.py" \
      "$model" --epochs "$epochs" --accelerator "$torch_acc" --precision "$precision")
    row "$model" "$precision" Lumen "$l_epoch" "$l_peak" "$l_acc"
    row "$model" "$precision" "PyTorch + Lightning" "$p_epoch" "$p_peak" "$p_acc"
    awk -v m="$model" -v p="$precision" -v a="$l_epoch" -v b="$p_epoch" -v c="$l_peak" \
      -v d="$p_peak" 'BEGIN { printf "| %s | %s | ratio Lumen / PyTorch | %s | %s | %s | |\n",
      m, p, (a + 0 && b + 0 ? sprintf("%.2f", a / b) : "-"), (a + 0 && b + 0 ? sprintf("%.2f", a / b) : "-"),
      (c + 0 && d + 0 ? sprintf("%.2f", c / d) : "-") }'
  done
done
echo "(stderr of the runs: $errlog)" >&2
