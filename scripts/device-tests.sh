#!/usr/bin/env bash
# Runs the GPU tests of lumen_tests on the device machine, each test in its own process, JOBS at
# a time. One process for all of them would lose every test after the first kernel that faults:
# an illegal address is a sticky error that poisons the whole CUDA context. Tests that fail or
# crash are run again under compute-sanitizer (memcheck), which names the kernel and the bad
# access. Run through device-run.sh (it sets the library path):
#   device-bundle/device-run.sh device-tests.sh ['gtest filter']
# Writes $OUT/device-tests/summary.txt (verdict per test) and $OUT/device-tests/logs.tar.gz
# (each test's output, the sanitizer's reports); prints the summary and the failures' output.
# Starts no sanitizer run after DEVICE_TESTS_DEADLINE seconds (480) and stops each by 90 s
# later: the device tool's commands end at 600.
set -uo pipefail
filter=${1:-'*Cuda*:*cuda*:*Gpu*:*Nccl*'}
jobs=${JOBS:-8}
per_test=${PER_TEST_TIMEOUT:-180}
sanitize_max=${SANITIZE_MAX:-8}
deadline=${DEVICE_TESTS_DEADLINE:-480}
out=${OUT:-/tmp}/device-tests
rm -rf "$out" && mkdir -p "$out/logs" "$out/sanitizer"
[ -d /usr/local/cuda/bin ] && PATH="$PATH:/usr/local/cuda/bin"  # compute-sanitizer

lumen_tests --gtest_list_tests --gtest_filter="$filter" |
  awk '/^[^ ]/ {suite = $1} /^  / {print suite $1}' >"$out/tests.txt"
if [ "${PIPESTATUS[0]}" -ne 0 ] || ! [ -s "$out/tests.txt" ]; then
  echo "device-tests: lumen_tests listed no test matching '$filter'" >&2
  exit 1
fi
echo "device-tests: $(wc -l <"$out/tests.txt") tests matching '$filter', $jobs at a time"

# One test: its verdict is passed, skipped, failed, timeout (rc 124) or crashed (a signal).
run_one() {
  local name=$1 log rc verdict
  log="$out/logs/${name//\//_}.log"
  timeout "$per_test" lumen_tests --gtest_filter="$name" >"$log" 2>&1
  rc=$?
  if ((rc == 0)) && grep -q '^\[  SKIPPED \]' "$log"; then verdict=skipped
  elif ((rc == 0)); then verdict=passed
  elif ((rc == 124)); then verdict=timeout
  elif ((rc > 128)); then verdict=crashed
  else verdict=failed
  fi
  printf '%-8s %s\n' "$verdict" "$name"
}
export -f run_one
export out per_test
start=$SECONDS
xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} <"$out/tests.txt" | sort -k2 >"$out/summary.txt"
echo "device-tests: ran in $((SECONDS - start)) s"

awk '{print $1}' "$out/summary.txt" | sort | uniq -c
grep -v -E '^(passed|skipped) ' "$out/summary.txt" | awk '{print $2}' >"$out/bad.txt"
while read -r name; do
  echo "=== $(grep -F " $name" "$out/summary.txt" | head -1)"
  # gtest's failure lines and what follows them, or the end of the output after a crash.
  log="$out/logs/${name//\//_}.log"
  { grep -A6 -E 'Failure|error|Error|what\(\)' "$log" || tail -20 "$log"; } | head -40
done <"$out/bad.txt"
grep '^skipped ' "$out/summary.txt" | while read -r _ name; do
  echo "skipped $name: $(grep -m1 -E 'Skipped|skipped' -A1 "$out/logs/${name//\//_}.log" | tail -1)"
done

if command -v compute-sanitizer >/dev/null; then
  # Not the tests that timed out: under the sanitizer they would run longer still.
  grep -v -E '^(passed|skipped|timeout) ' "$out/summary.txt" | awk '{print $2}' |
    head -n "$sanitize_max" | while read -r name; do
    if ((SECONDS > deadline)); then
      echo "device-tests: deadline (${deadline}s), no sanitizer run for $name"
      continue
    fi
    echo "=== compute-sanitizer: $name"
    # Each run ends by deadline + 90 s, so the whole command ends before the tool's 600 s.
    timeout $((deadline + 90 - SECONDS)) compute-sanitizer --tool memcheck --print-limit 5 \
      lumen_tests --gtest_filter="$name" >"$out/sanitizer/${name//\//_}.log" 2>&1
    grep -E '^=========' "$out/sanitizer/${name//\//_}.log" | head -25
  done
else
  echo "device-tests: no compute-sanitizer on the PATH"
fi

tar -C "$out" -czf "$out/logs.tar.gz" logs sanitizer
rm -rf "$out/logs" "$out/sanitizer"
# The exit status says whether every test passed or skipped.
! [ -s "$out/bad.txt" ]
