#!/usr/bin/env bash
# Packs what the GPU machine of the `device` tool needs into device-bundle/ (git-ignored; name
# it in the tool's `carry`): that machine has no compiler and no package registry. The build
# is a separate Release tree, build-device/, compiled for any x86-64-v3 CPU (the device's CPU
# is not this one, so no -march=native) and for sm_90 (H100, H200). Shared libraries outside
# glibc go along in device-bundle/lib, except cuBLAS, cuDNN and NCCL (too big to carry; the
# device has them in Python's site-packages, which device-bundle/device-run.sh finds).
#   scripts/device-bundle.sh      then, on the device, from the repo root:
#   device-bundle/device-run.sh device-bundle/lumen_tests --gtest_filter='*Cuda*'
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DLUMEN_NATIVE_GEMM=OFF \
  -DLUMEN_CPU_ARCH=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-device -j"$(nproc)"
rm -rf device-bundle
mkdir -p device-bundle/lib
cp build-device/liblumen.so build-device/lumen_tests build-device/bench_* scripts/device-run.sh \
  device-bundle/
ldd device-bundle/liblumen.so device-bundle/lumen_tests device-bundle/bench_* |
  awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64)\.so' |
  grep -vE '/lib(cublas|cublasLt|cudnn[a-z_]*|nccl)\.so' |
  xargs -r cp -L -t device-bundle/lib/
du -sh device-bundle
