#!/usr/bin/env bash
# On the GPU machine: the Fashion-MNIST MLP, CNN, wide MLP (4 x 4096) and vision transformer
# (examples/fashion_mnist_vit.cpp) in Lumen and in PyTorch + Lightning, in f32, 16-mixed and
# bf16-mixed, side by side in one run: median epoch time, step time (epoch / 430 steps of 128),
# peak GPU memory, test accuracy and the ratios. The model "gpt" (not in the default list) is
# the character-level GPT (examples/char_gpt.cpp, bench/lightning_char_gpt.py; 103 steps of 64
# windows an epoch, its last validation loss in the accuracy column). The model "fabric" (not in
# the default list either) is the MLP trained by a hand-written loop on Fabric against Lightning
# Fabric (examples/fabric_fashion_mnist.cpp, lightning_fashion_mnist.py --fabric). The model "gan"
# (not in the default list) is the GAN of examples/fashion_mnist_gan.cpp (manual optimization,
# two optimizers; no accuracy).
# The epoch leaves out its validation pass on both sides (the EpochTimer callbacks); with 3
# epochs the median leaves out the slowest, the first (CUDA and cuDNN/cuBLAS start-up, loader
# start).
# Both sides compute f32 in strict f32 (no TF32), use batch 128 everywhere, AdamW lr 1e-3, the
# same host thread count and 2 data-loading workers (Lumen's FashionMNIST loads with 2
# threads; PyTorch gets 2 loader processes, pinned memory). The PyTorch epoch timer
# synchronizes the device. First, PyTorch's (cuBLAS's) references for bench_cuda_kernels, timed
# as that benchmark times (launch, then wait for the device, each iteration): device-to-device
# copy GB/s and GEMM TFLOP/s. Run from the bundle of scripts/device-bundle.sh, which sets the
# library path and carries the data:
#   device-bundle/device-run.sh gpu_compare.sh [epochs (3)] [models (all)] [precisions (all)]
# It stops starting runs near GPU_COMPARE_DEADLINE seconds (570: the device tool's commands
# end at 600) and prints "skipped" rows for the rest; each run is stopped after
# GPU_COMPARE_RUN_TIMEOUT seconds (180). The frameworks' stderr goes to $OUT (when set) or /tmp;
# a failed run prints the end of its stderr. GPU_COMPARE_WORKERS (2), GPU_COMPARE_THREADS
# (nproc), GPU_COMPARE_REFERENCE=0 (no reference lines).
# GPU_COMPARE_LOCAL=1 runs the same on the CPU with build/ and bench/.venv's Python, to check
# the script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
epochs="${1:-3}"
models="${2:-mlp cnn wide_mlp vit}"
precisions="${3:-32 16-mixed bf16-mixed}"
deadline="${GPU_COMPARE_DEADLINE:-570}"
run_timeout="${GPU_COMPARE_RUN_TIMEOUT:-180}"
workers="${GPU_COMPARE_WORKERS:-2}"
threads="${GPU_COMPARE_THREADS:-$(nproc)}"
if [ -z "${FASHION_MNIST_DIR:-}" ]; then
  FASHION_MNIST_DIR="$here/data"
  [ -d "$FASHION_MNIST_DIR" ] || FASHION_MNIST_DIR=/usr/share/datasets/fashion-mnist
fi
export FASHION_MNIST_DIR
if [ -z "${CHAR_GPT_TEXT:-}" ]; then
  CHAR_GPT_TEXT="$here/data/songs-poems"
  [ -f "$CHAR_GPT_TEXT" ] || CHAR_GPT_TEXT=/usr/share/games/fortunes/songs-poems
fi
export CHAR_GPT_TEXT
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
  t10k-labels-idx1-ubyte; do
  [ -f "$FASHION_MNIST_DIR/$f.gz" ] || { echo "gpu_compare: no $FASHION_MNIST_DIR/$f.gz" >&2; exit 1; }
done
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  errlog="$OUT/gpu_compare.stderr.log"
  : >"$errlog"
else
  errlog=$(mktemp /tmp/gpu_compare.XXXXXX.log)
fi
source "$here/measure.sh"
lumen_acc=cuda torch_acc=gpu python=python3 bin="${LUMEN_BUNDLE:+$LUMEN_BUNDLE/bin}"
if [ -n "${GPU_COMPARE_LOCAL:-}" ]; then
  lumen_acc=cpu torch_acc=cpu python="$here/../bench/.venv/bin/python"
  bin="${bin:-$here/../build}"
fi
[ -n "$bin" ] || { echo "gpu_compare: run it through device-run.sh (LUMEN_BUNDLE unset)" >&2; exit 1; }
# Python gets the library path without the bundle's bin/ and lib/: those hold Debian 12's
# libstdc++, OpenSSL, libffi, zlib and a CUDA runtime, which would shadow the ones the device's
# Python and PyTorch were built with. The NVIDIA site-packages folders stay (PyTorch's own).
py_ld=$(tr ':' '\n' <<<"${LD_LIBRARY_PATH:-}" |
  grep -vxF -e "${LUMEN_BUNDLE:-/nonexistent}/bin" -e "${LUMEN_BUNDLE:-/nonexistent}/lib" |
  grep . | paste -sd: - || true)
py=(env LD_LIBRARY_PATH="$py_ld" "$python")  # a command, not a function: measure may wrap it in timeout

torch_ok=1
"${py[@]}" -c 'import torch, lightning
print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
      "| torch", torch.__version__, "| lightning", lightning.__version__,
      "| cuDNN", torch.backends.cudnn.version())' || {
  torch_ok=0
  echo "gpu_compare: PyTorch + Lightning do not import; Lumen rows only" >&2
}
echo "epochs $epochs, host threads $threads, loader workers $workers, data $FASHION_MNIST_DIR"

if [ "$torch_ok" = 1 ] && [ -z "${GPU_COMPARE_LOCAL:-}" ] && [ "${GPU_COMPARE_REFERENCE:-1}" != 0 ]; then
  timeout -k 10 120 "${py[@]}" - <<'EOF' || echo "gpu_compare: reference failed" >&2
# Timed as bench_cuda_kernels times Lumen: launch, wait for the device, every iteration, wall
# clock; median of 5 blocks of iterations after a warm-up. Random data (never zeros).
import statistics, time
import torch
torch.backends.cuda.matmul.allow_tf32 = False  # Lumen's f32 GEMM is strict f32
def bench(fn, seconds=0.3):
    for _ in range(3):
        fn(); torch.cuda.synchronize()
    t = time.perf_counter(); n = 0
    while time.perf_counter() - t < 0.05:
        fn(); torch.cuda.synchronize(); n += 1
    per = []
    iters = max(1, int(n * seconds / 0.05 / 5))
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(iters):
            fn(); torch.cuda.synchronize()
        per.append((time.perf_counter() - t) / iters)
    return statistics.median(per)
print("| PyTorch reference (cuBLAS, cudaMemcpy) | size | per call ms | rate |")
print("|---|---|---|---|")
for n in (1 << 24, 1 << 26):
    a = torch.randn(n, device="cuda"); b = torch.empty_like(a)
    s = bench(lambda: b.copy_(a))
    print(f"| device-to-device copy f32 | {n} | {s * 1e3:.4f} | {2 * 4 * n / s / 1e9:.0f} GB/s |")
    del a, b
for n, dt in ((4096, torch.float32), (4096, torch.float16), (4096, torch.bfloat16),
              (8192, torch.float16), (8192, torch.bfloat16)):
    a = torch.randn(n, n, device="cuda", dtype=dt); b = torch.randn(n, n, device="cuda", dtype=dt)
    s = bench(lambda: torch.matmul(a, b))
    print(f"| GEMM {str(dt)[6:]} | {n}^3 | {s * 1e3:.4f} | {2 * n ** 3 / s / 1e12:.1f} TFLOP/s |")
    del a, b
# The same work as bench_cuda_kernels' batch norm, embedding, softmax, sum and clipping rows.
F = torch.nn.functional
x = torch.randn(256, 64, 32, 32, device="cuda", requires_grad=True)
dy = torch.randn_like(x)
w = torch.randn(64, device="cuda", requires_grad=True); b = torch.randn(64, device="cuda", requires_grad=True)
rm = torch.zeros(64, device="cuda"); rv = torch.ones(64, device="cuda")
s = bench(lambda: (F.batch_norm(x, rm, rv, w, b, True) * dy).sum().backward())
print(f"| batch norm train fwd+bwd f32 | [256, 64, 32, 32] | {s * 1e3:.4f} | |")
del x, dy
ids = torch.randint(0, 32000, (16384,), device="cuda"); g = torch.randn(16384, 768, device="cuda")
s = bench(lambda: torch.ops.aten.embedding_dense_backward(g, ids, 32000, -1, False))
print(f"| embedding backward | 16384 x 768, V 32000 | {s * 1e3:.4f} | {2 * 4 * g.numel() / s / 1e9:.0f} GB/s |")
del g
x = torch.randn(32, 21, 128, 128, device="cuda")
s = bench(lambda: torch.softmax(x, 1))
print(f"| softmax dim 1 | [32, 21, 128, 128] | {s * 1e3:.4f} | {2 * 4 * x.numel() / s / 1e9:.0f} GB/s |")
x = torch.randn(1 << 26, device="cuda")
s = bench(lambda: x.sum())
print(f"| full sum f32 | {1 << 26} | {s * 1e3:.4f} | {4 * x.numel() / s / 1e9:.0f} GB/s |")
del x
ps = [torch.zeros(1 << 20, device="cuda", requires_grad=True) for _ in range(64)]
for p in ps: p.grad = torch.randn(1 << 20, device="cuda")
s = bench(lambda: torch.nn.utils.clip_grad_norm_(ps, 1e9))
print(f"| clip_grad_norm_ | 64 x 2^20 | {s * 1e3:.4f} | {3 * 4 * 64 * (1 << 20) / s / 1e9:.0f} GB/s |")
EOF
fi

printf '| model | precision | framework | epoch s (median of %s) | step ms | peak GPU MiB | test acc (gpt: val loss) |\n' "$epochs"
printf '|---|---|---|---|---|---|---|\n'
row() {  # model precision framework epoch peak acc
  awk -v m="$1" -v p="$2" -v f="$3" -v e="$4" -v pk="$5" -v a="$6" -v s="$steps" 'BEGIN {
    ok = e ~ /^[0-9.]+$/
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", m, p, f,
      (ok ? sprintf("%.2f", e) : "-"), (ok ? sprintf("%.2f", 1000 * e / s) : "-"),
      (pk ~ /^[0-9]+$/ ? sprintf("%.0f", pk / 1048576) : "-"), a }'
}
# Runs measure with the time left before the deadline as its limit, or prints "- - - -".
timed() {
  local left=$((deadline - SECONDS))
  if ((left < 30)); then
    echo "gpu_compare: skipped (deadline of ${deadline}s): $*" >&2
    echo "- - - -"
    return 0
  fi
  MEASURE_TIMEOUT=$((left < run_timeout ? left : run_timeout)) measure "$@"
}
for model in $models; do
  if [ "$model" = gpt ]; then
    lumen=("$bin/char_gpt" --data "$CHAR_GPT_TEXT") twin=("$here/lightning_char_gpt.py")
    steps=103  # ceil(6579 windows / 64)
  elif [ "$model" = fabric ]; then
    lumen=("$bin/fabric_fashion_mnist" --data "$FASHION_MNIST_DIR")
    twin=("$here/lightning_fashion_mnist.py" mlp --fabric)
    steps=430
  else
    lumen=("$bin/fashion_mnist_$model" --data "$FASHION_MNIST_DIR")
    twin=("$here/lightning_fashion_mnist.py" "$model")
    steps=430  # ceil(55000 / 128)
  fi
  for precision in $precisions; do
    l_epoch=- l_acc=- l_peak=- p_epoch=- p_acc=- p_peak=-
    read -r _ l_epoch l_acc l_peak < <(timed "${lumen[@]}" --bench \
      --epochs "$epochs" --accelerator "$lumen_acc" --precision "$precision" \
      --threads "$threads") || true
    framework="PyTorch + Lightning"
    if [ "$torch_ok" = 1 ]; then
      read -r _ p_epoch p_acc p_peak < <(timed "${py[@]}" "${twin[@]}" \
        --epochs "$epochs" --accelerator "$torch_acc" --precision "$precision" \
        --threads "$threads" --workers "$workers") || true
      if [ "$p_epoch" = - ] && [ "$workers" != 0 ] && ((deadline - SECONDS > 60)); then
        # Loader processes need shared memory; if they failed, go on without them.
        echo "gpu_compare: retrying PyTorch with --workers 0" >&2
        workers=0
        read -r _ p_epoch p_acc p_peak < <(timed "${py[@]}" "${twin[@]}" \
          --epochs "$epochs" --accelerator "$torch_acc" --precision "$precision" \
          --threads "$threads" --workers 0) || true
      fi
      [ "$workers" = 0 ] && framework="PyTorch + Lightning (0 workers)"
    fi
    row "$model" "$precision" Lumen "$l_epoch" "$l_peak" "$l_acc"
    row "$model" "$precision" "$framework" "$p_epoch" "$p_peak" "$p_acc"
    awk -v m="$model" -v p="$precision" -v a="$l_epoch" -v b="$p_epoch" -v c="$l_peak" \
      -v d="$p_peak" 'BEGIN { r = (a + 0 && b + 0 ? sprintf("%.2f", a / b) : "-")
      printf "| %s | %s | ratio Lumen / PyTorch | %s | %s | %s | |\n", m, p, r, r,
      (c + 0 && d + 0 ? sprintf("%.2f", c / d) : "-") }'
  done
done
echo "(stderr of the runs: $errlog; ${SECONDS}s in all)" >&2
