# Sourced by the Fashion-MNIST comparisons (compare_fashion_mnist.sh on the CPU, gpu_compare.sh
# on the GPU machine). measure CMD... runs a program that prints the lines of the examples'
# --bench mode (or of lightning_fashion_mnist.py) and echoes
#   "<start to first step s> <median epoch s> <test acc (or val loss)> <peak memory bytes or ->"
# with "-" for whatever the program did not print, and "- - - -" when it failed (then the end
# of its stderr goes to this script's stderr). Its stderr goes to $errlog. With
# MEASURE_TIMEOUT=S set, a run longer than S seconds is stopped and counts as failed.
# Every step tolerates a missing line: under `set -eo pipefail` a grep that finds nothing
# must not end the (sub)shell that runs this, or the caller's `read` gets nothing.
measure() {
  local start out first median acc peak mark rc=0
  start=$(date +%s.%N)
  mark=$(wc -l <"$errlog" 2>/dev/null || echo 0)
  if [ -n "${MEASURE_TIMEOUT:-}" ]; then
    out=$(timeout -k 10 "$MEASURE_TIMEOUT" "$@" 2>>"$errlog") || rc=$?
  else
    out=$("$@" 2>>"$errlog") || rc=$?
  fi
  if [ "$rc" -ne 0 ]; then
    {
      echo "measure: exit status $rc$([ "$rc" -eq 124 ] && echo " (over ${MEASURE_TIMEOUT}s)"): $*"
      tail -n +"$((mark + 1))" "$errlog" | tail -15 | sed 's/^/  | /'
    } >&2
    echo "- - - -"
    return 0
  fi
  first=$(grep -o 'first_step_unix=[0-9.]*' <<<"$out" | head -1 | cut -d= -f2 || true)
  median=$(grep -o 'train_seconds=[0-9.]*' <<<"$out" | cut -d= -f2 | sort -g |
    awk '{a[NR]=$1} END {print (NR == 0 ? "-" : NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}' ||
    true)
  acc=$(grep -o -e 'test_acc=[0-9.]*' -e 'val_loss=[0-9.]*' <<<"$out" | tail -1 | cut -d= -f2 || true)
  peak=$(grep -o 'peak_mem_bytes=[0-9]*' <<<"$out" | tail -1 | cut -d= -f2 || true)
  if [ -n "$first" ]; then
    first=$(awk -v a="$first" -v b="$start" 'BEGIN {print a - b}')
  fi
  echo "${first:--} ${median:--} ${acc:--} ${peak:--}"
}
