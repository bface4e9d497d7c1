#!/usr/bin/env bash
# Runs a command of the bundle scripts/device-bundle.sh makes, on the GPU machine: the bundle's
# own libraries first, then the NVIDIA libraries (cuBLAS, cuDNN, NCCL) that Python's
# site-packages hold there (nvidia/*/lib), then whatever LD_LIBRARY_PATH had.
#   device-bundle/device-run.sh device-bundle/lumen_tests --gtest_filter='*Cuda*'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nvidia_libs="$(python3 -c '
import glob, os, site
paths = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(d for p in paths for d in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")))))
' 2>/dev/null || true)"
export LD_LIBRARY_PATH="$here:$here/lib${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$@"
