"""PyTorch's CPU matrix products (MKL / oneDNN) on bench_matmul's shapes, in GFLOP/s: the figures
bench/RESULTS.md sets beside `OMP_NUM_THREADS=T build/bench_matmul`. The thread count is the
first argument (default 1). Run with bench/.venv/bin/python (bench/compare_fashion_mnist.sh
creates it)."""
import sys

import torch

from torch_timing import median_ms  # bench/torch_timing.py

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)


def report(name, flops, run, reps=51):
    ms = median_ms(run, reps, 5)
    print(f"{name}: median {ms:.3f} ms, {flops / ms * 1e-6:.1f} GFLOP/s")


for n in (64, 128, 256, 512, 1024):
    a, b = torch.randn(n, n), torch.randn(n, n)
    report(f"square {n}", 2.0 * n**3, lambda: a @ b, 11 if n == 1024 else 51)

# Batch x in -> out: forward x W^T, backward dX = dY W and dW = dY^T X.
for batch, fan_in, fan_out in ((128, 784, 256), (128, 256, 10), (512, 1024, 1024),
                               (64, 4096, 4096)):
    x, w, gy = torch.randn(batch, fan_in), torch.randn(fan_out, fan_in), torch.randn(batch, fan_out)
    shape = f"batch {batch} in {fan_in} out {fan_out}"
    report(f"linear forward {shape}", 2.0 * batch * fan_in * fan_out, lambda: x @ w.t(), 21)
    report(f"linear backward {shape}", 4.0 * batch * fan_in * fan_out,
           lambda: (gy @ w, gy.t() @ x), 21)

for batch, n in ((256, 16), (64, 64)):
    a, b = torch.randn(batch, n, n), torch.randn(batch, n, n)
    report(f"batched {batch} x {n}^3", 2.0 * batch * n**3, lambda: a @ b)
