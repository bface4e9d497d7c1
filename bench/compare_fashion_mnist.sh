#!/usr/bin/env bash
# Times the Fashion-MNIST MLP, CNN and vision transformer in Lumen and in PyTorch + Lightning, side by side in one
# run on the CPU with the same data, model, optimizer, batch size and thread count (2), and
# prints per-epoch training time, time from process start to the first training step, and
# the ratios. PyTorch and Lightning are installed from PyPI into bench/.venv when missing.
# The model "gpt" is the character-level GPT (examples/char_gpt.cpp, bench/lightning_char_gpt.py),
# whose last validation loss stands where the others have a test accuracy. The model "fabric" is
# the MLP trained by a hand-written loop on Fabric (examples/fabric_fashion_mnist.cpp) against the
# same loop on Lightning Fabric. The model "gan" is the GAN of examples/fashion_mnist_gan.cpp
# (manual optimization with two optimizers; no accuracy).
#   bench/compare_fashion_mnist.sh [epochs (default 2)] [models (default "mlp cnn vit")]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-2}"
models="${2:-mlp cnn vit}"
threads=2
venv=bench/.venv
if ! "$venv/bin/python" -c "import torch, lightning" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch lightning numpy
fi
scripts/build.sh >/dev/null
# The frameworks' own chatter (Lightning's banners, warnings) goes here, not into the table.
errlog=$(mktemp /tmp/compare_fashion_mnist.XXXXXX.log)

source bench/measure.sh

printf '| model | framework | epoch (s, median of %s) | start to first step (s) | test acc (gpt: val loss) |\n' "$epochs"
printf '|---|---|---|---|---|\n'
# A failed run (measure prints "-" and the end of its stderr) leaves "-" in its cells.
f2() { awk -v x="$1" 'BEGIN { print (x ~ /^-?[0-9.]+$/ ? sprintf("%.2f", x) : "-") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 && b + 0 ? sprintf("%.2f", a / b) : "-") }'; }
for model in $models; do
  l_first=- l_epoch=- l_acc=- p_first=- p_epoch=- p_acc=-
  if [ "$model" = gpt ]; then
    lumen=(build/char_gpt) twin=(bench/lightning_char_gpt.py)
  elif [ "$model" = fabric ]; then
    lumen=(build/fabric_fashion_mnist) twin=(bench/lightning_fashion_mnist.py mlp --fabric)
  else
    lumen=("build/fashion_mnist_$model") twin=(bench/lightning_fashion_mnist.py "$model")
  fi
  read -r l_first l_epoch l_acc _ < <(OMP_NUM_THREADS=$threads measure \
    "${lumen[@]}" --bench --epochs "$epochs" --threads "$threads" --accelerator cpu) || true
  read -r p_first p_epoch p_acc _ < <(measure "$venv/bin/python" "${twin[@]}" \
    --epochs "$epochs" --threads "$threads") || true
  printf '| %s | Lumen | %s | %s | %s |\n' "$model" "$(f2 "$l_epoch")" "$(f2 "$l_first")" "$l_acc"
  printf '| %s | PyTorch + Lightning | %s | %s | %s |\n' "$model" "$(f2 "$p_epoch")" \
    "$(f2 "$p_first")" "$p_acc"
  printf '| %s | ratio Lumen / PyTorch | %s | %s | |\n' "$model" \
    "$(ratio "$l_epoch" "$p_epoch")" "$(ratio "$l_first" "$p_first")"
done
echo "(stderr of the runs: $errlog)" >&2
