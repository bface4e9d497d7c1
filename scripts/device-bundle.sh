#!/usr/bin/env bash
# Packs what the GPU machine of the `device` tool needs into device-bundle/ (git-ignored; name
# it in the tool's `carry`, which takes 64 MiB): that machine has no compiler and no package
# registry. The build is a separate Release tree, build-device/, compiled for any x86-64-v3 CPU
# (the device's CPU is not this one, so no -march=native) and for sm_90 (H100, H200).
#   device-bundle/payload.tar.xz  bin/ (liblumen, lumen_tests, bench_*, the examples) and lib/
#                                 (shared libraries outside glibc, except cuBLAS, cuDNN and
#                                 NCCL: too big to carry, and the device has them in Python's
#                                 site-packages, which device-run.sh finds)
#   device-bundle/data/           the Fashion-MNIST IDX files
#   device-bundle/*.sh, *.py      device-run.sh and the GPU benchmark scripts
# Then, on the device, from the repo root:
#   device-bundle/device-run.sh lumen_tests --gtest_filter='*Cuda*'
#   device-bundle/device-run.sh gpu_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DLUMEN_NATIVE_GEMM=OFF \
  -DLUMEN_CPU_ARCH=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-device -j"$(nproc)"
stage=$(mktemp -d /tmp/device-bundle.XXXXXX)
mkdir -p "$stage/bin" "$stage/lib"
cp build-device/liblumen.so build-device/lumen_tests build-device/bench_* \
  build-device/fashion_mnist_* "$stage/bin/"
ldd "$stage"/bin/* | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64)\.so' |
  grep -vE '/lib(lumen|cublas|cublasLt|cudnn[a-z_]*|nccl)\.so' |
  xargs -r cp -L -t "$stage/lib/"
rm -rf device-bundle
mkdir -p device-bundle
tar -C "$stage" -cf - bin lib | xz -T"$(nproc)" -6 >device-bundle/payload.tar.xz
rm -rf "$stage"
data=/usr/share/datasets/fashion-mnist
if [ -d "$data" ]; then
  mkdir -p device-bundle/data && cp "$data"/*.gz device-bundle/data/
fi
cp scripts/device-run.sh bench/gpu_compare.sh bench/measure.sh bench/lightning_fashion_mnist.py \
  device-bundle/
du -sh device-bundle
