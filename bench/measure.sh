# Sourced by the Fashion-MNIST comparisons (compare_fashion_mnist.sh on the CPU, gpu_compare.sh
# on the GPU machine). measure CMD... runs a program that prints the lines of the examples'
# --bench mode (or of lightning_fashion_mnist.py) and echoes
#   "<start to first step s> <median epoch s> <test acc> <peak memory bytes or ->"
# Its stderr goes to $errlog.
measure() {
  local start out first median acc peak
  start=$(date +%s.%N)
  out=$("$@" 2>>"$errlog") || { echo "- - - -"; return; }
  first=$(grep -o 'first_step_unix=[0-9.]*' <<<"$out" | cut -d= -f2)
  median=$(grep -o 'train_seconds=[0-9.]*' <<<"$out" | cut -d= -f2 | sort -g |
    awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  acc=$(grep -o 'test_acc=[0-9.]*' <<<"$out" | cut -d= -f2)
  peak=$(grep -o 'peak_mem_bytes=[0-9]*' <<<"$out" | cut -d= -f2 || true)
  echo "$(awk -v a="$first" -v b="$start" 'BEGIN {print a - b}') $median $acc ${peak:--}"
}
