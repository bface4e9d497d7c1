#!/usr/bin/env bash
# Packs what the GPU machine of the `device` tool needs into device-bundle/ (git-ignored; name
# it in the tool's `carry`, which takes 64 MiB): that machine has no compiler and no package
# registry. The build is a separate Release tree, build-device/, compiled for any x86-64-v3 CPU
# (the device's CPU is not this one, so no -march=native) and for sm_90 (H100, H200).
#   device-bundle/payload.tar.xz  bin/ (liblumen, lumen_tests, bench_*, the examples) and lib/
#                                 (shared libraries outside glibc, except cuBLAS, cuDNN and
#                                 NCCL: too big to carry, and the device has them in Python's
#                                 site-packages, which device-run.sh finds)
#   device-bundle/data/           the Fashion-MNIST IDX files and char_gpt's text
#   device-bundle/*.sh, *.py      device-run.sh and the GPU benchmark scripts
# Then, on the device, from the repo root (the tool's run with carry ["device-bundle"]):
#   device-bundle/device-run.sh device-tests.sh      # the GPU tests, a process each
#   device-bundle/device-run.sh bench_cuda_kernels --benchmark_min_warmup_time=0.2 \
#     --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#   device-bundle/device-run.sh gpu_compare.sh 3      # ends by itself before 600 s
# Rebuild the bundle after every change to the sources: it is a snapshot of build-device/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/.cache/ccache}"
cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DLUMEN_NATIVE_GEMM=OFF \
  -DLUMEN_CPU_ARCH=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-device -j"$(nproc)"
stage=$(mktemp -d /tmp/device-bundle.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp build-device/liblumen.so build-device/lumen_tests build-device/bench_* \
  build-device/fashion_mnist_* build-device/char_gpt build-device/fabric_fashion_mnist "$stage/bin/"
# Every library the programs need must resolve here: one ldd cannot find would be missing there.
if ldd "$stage"/bin/* | grep -F 'not found'; then
  echo "device-bundle: unresolved libraries (above)" >&2
  exit 1
fi
# cuBLAS, cuBLASLt, cuDNN and NCCL stay behind: the device's PyTorch wheels hold the same
# sonames (nvidia/*/lib in site-packages; cuDNN's libcudnn_ops/cnn/engines_* and NVRTC too,
# which libcudnn.so.9 loads at run time), and device-run.sh puts those folders on the path.
ldd "$stage"/bin/* | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64)\.so' |
  grep -vE '/lib(lumen|cublas|cublasLt|cudnn[a-z_]*|nccl)\.so' |
  xargs -r cp -L -t "$stage/lib/"
from_device=$(ldd "$stage"/bin/* | awk '$3 ~ /^\// {print $1}' |
  grep -E '^lib(cublas|cublasLt|cudnn[a-z_]*|nccl)\.so' | sort -u | paste -sd' ' - || true)
rm -rf device-bundle
mkdir -p device-bundle
tar -C "$stage" -cf - bin lib | xz -T"$(nproc)" -6 >device-bundle/payload.tar.xz
# The data travels with the bundle: the device machine reaches no network.
data=/usr/share/datasets/fashion-mnist
mkdir -p device-bundle/data
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
  t10k-labels-idx1-ubyte; do
  cp "$data/$f.gz" device-bundle/data/
done
cp /usr/share/games/fortunes/songs-poems device-bundle/data/  # char_gpt's text (fortunes)
cp scripts/device-run.sh scripts/device-tests.sh bench/gpu_compare.sh bench/measure.sh \
  bench/lightning_fashion_mnist.py bench/lightning_char_gpt.py device-bundle/
chmod +x device-bundle/device-run.sh device-bundle/device-tests.sh device-bundle/gpu_compare.sh
echo "from the device's site-packages: $from_device"
size=$(du -sm device-bundle | cut -f1)
echo "device-bundle: ${size} MiB (the tool carries 64 MiB, the working tree included)"
if ((size > 60)); then
  echo "device-bundle: too big to carry" >&2
  exit 1
fi
