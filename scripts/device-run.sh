#!/usr/bin/env bash
# Runs a program of the bundle scripts/device-bundle.sh makes, on the GPU machine. Unpacks
# payload.tar.xz once under /tmp (not next to itself: the bundle must stay small enough to
# carry), then puts the
# bundle's bin/ and lib/ first on the library path, then the NVIDIA libraries (cuBLAS, cuDNN,
# NCCL) that Python's site-packages hold there (nvidia/*/lib), then whatever was there.
# Bundle programs and scripts are found by name; LUMEN_BUNDLE names the unpacked folder.
#   device-bundle/device-run.sh device-tests.sh
#   device-bundle/device-run.sh lumen_tests --gtest_filter='*Cuda*'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
unpacked=/tmp/lumen-device-bundle
mkdir -p "$unpacked"
if ! [ -e "$unpacked/bin/liblumen.so" ] || [ "$here/payload.tar.xz" -nt "$unpacked/bin/liblumen.so" ]; then
  tar -C "$unpacked" -xJf "$here/payload.tar.xz"
  touch "$unpacked/bin/liblumen.so"
fi
nvidia_libs="$(python3 -c '
import glob, os, site
paths = site.getsitepackages() + [site.getusersitepackages()]
print(":".join(d for p in paths for d in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib")))))
' 2>/dev/null || true)"
[ -n "$nvidia_libs" ] || echo "device-run.sh: no nvidia/*/lib under Python's site-packages;" \
  "cuBLAS, cuDNN and NCCL must then come from the system library path" >&2
export LUMEN_BUNDLE="$unpacked"
export PATH="$unpacked/bin:$here:$PATH"
export LD_LIBRARY_PATH="$unpacked/bin:$unpacked/lib${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
exec "$@"
