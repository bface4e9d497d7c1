#!/usr/bin/env bash
# Builds everything (library, tests, benchmarks, examples) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
