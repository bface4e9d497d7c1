#!/usr/bin/env bash
# Runs the GPU tests of lumen_tests on the device machine, each test in its own process, JOBS at
# a time. One process for all of them would lose every test after the first kernel that faults:
# an illegal address is a sticky error that poisons the whole CUDA context. Tests that fail or
# crash are run again under compute-sanitizer (memcheck), which names the kernel and the bad
# access. Run through device-run.sh (it sets the library path):
#   device-bundle/device-run.sh device-tests.sh ['gtest filter']
# Writes $OUT/device-tests/summary.txt (verdict per test) and $OUT/device-tests/logs.tar.gz
# (each test's output, the sanitizer's reports); prints the summary and the failures' output.
# Starts no test and no sanitizer run after DEVICE_TESTS_DEADLINE seconds (480), cuts tests at
# that deadline and sanitizer runs 90 s later: the device tool's commands end at 600. Verdicts
# are printed as tests end, and the logs are packed on any exit, so a run cut short still
# tells what it saw.
set -uo pipefail
filter=${1:-'*Cuda*:*cuda*:*Gpu*:*Nccl*'}
jobs=${JOBS:-8}
per_test=${PER_TEST_TIMEOUT:-180}
sanitize_max=${SANITIZE_MAX:-8}
deadline=${DEVICE_TESTS_DEADLINE:-480}
out=${OUT:-/tmp}/device-tests
rm -rf "$out" && mkdir -p "$out/logs" "$out/sanitizer"
[ -d /usr/local/cuda/bin ] && PATH="$PATH:/usr/local/cuda/bin"  # compute-sanitizer
trap 'tar -C "$out" -czf "$out/logs.tar.gz" logs sanitizer && rm -rf "$out/logs" "$out/sanitizer"' EXIT
# The tests' CPU halves share the machine: split its cores between the jobs, and let idle
# OpenMP threads sleep instead of spinning (as CMake's ctest entries do).
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$(($(nproc) / jobs > 0 ? $(nproc) / jobs : 1))
# A test that skips for want of a device, on a machine that has one, is a failure: the
# library did not see the GPU (a driver older than the CUDA runtime, a missing library).
gpu_present=0
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU' && gpu_present=1

lumen_tests --gtest_list_tests --gtest_filter="$filter" |
  awk '/^[^ ]/ {suite = $1} /^  / {print suite $1}' >"$out/tests.txt"
if [ "${PIPESTATUS[0]}" -ne 0 ] || ! [ -s "$out/tests.txt" ]; then
  echo "device-tests: lumen_tests listed no test matching '$filter'" >&2
  exit 1
fi
echo "device-tests: $(wc -l <"$out/tests.txt") tests matching '$filter', $jobs at a time"

# One test: its verdict is passed, skipped, failed, timeout (rc 124), crashed (a signal), or
# notrun (the deadline had passed). Printed, and appended to verdicts.txt, as it ends.
run_one() {
  local name=$1 log rc verdict left
  log="$out/logs/${name//\//_}.log"
  left=$((deadline - ($(date +%s) - t0)))
  if ((left <= 0)); then
    verdict=notrun
  else
    timeout $((left < per_test ? left : per_test)) lumen_tests --gtest_filter="$name" >"$log" 2>&1
    rc=$?
    if ((rc == 0)) && grep -q '^\[  SKIPPED \]' "$log"; then
      verdict=skipped
      ((gpu_present)) && grep -q 'no CUDA device' "$log" && verdict=unseen_gpu
    elif ((rc == 0)); then verdict=passed
    elif ((rc == 124)); then verdict=timeout
    elif ((rc > 128)); then verdict=crashed
    else verdict=failed
    fi
  fi
  printf '%-10s %s\n' "$verdict" "$name" | tee -a "$out/verdicts.txt"
}
export -f run_one
export out per_test deadline gpu_present t0=$(date +%s)
start=$SECONDS
xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} <"$out/tests.txt"
sort -k2 "$out/verdicts.txt" >"$out/summary.txt"
echo "device-tests: ran in $((SECONDS - start)) s"

awk '{print $1}' "$out/summary.txt" | sort | uniq -c
grep -v -E '^(passed|skipped) ' "$out/summary.txt" | awk '{print $2}' >"$out/bad.txt"
while read -r name; do
  echo "=== $(grep -F " $name" "$out/summary.txt" | head -1)"
  # gtest's failure lines and what follows them, or the end of the output after a crash.
  log="$out/logs/${name//\//_}.log"
  [ -f "$log" ] || continue  # not run: the deadline had passed
  { grep -A6 -E 'Failure|error|Error|what\(\)' "$log" || tail -20 "$log"; } | head -40
done <"$out/bad.txt"
grep '^skipped ' "$out/summary.txt" | while read -r _ name; do
  echo "skipped $name: $(grep -m1 -E 'Skipped|skipped' -A1 "$out/logs/${name//\//_}.log" | tail -1)"
done

if command -v compute-sanitizer >/dev/null; then
  # Not the tests that timed out: under the sanitizer they would run longer still.
  grep -E '^(failed|crashed) ' "$out/summary.txt" | awk '{print $2}' |
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

# The exit status says whether every test passed or skipped.
! [ -s "$out/bad.txt" ]
