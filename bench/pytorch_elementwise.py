"""PyTorch's CPU exp, log, sigmoid, tanh, GELU (erf and tanh forms), softmax and log-softmax over
rows, and GELU forward + backward, on bench_elementwise's shapes with 2 threads: the figures
bench/RESULTS.md sets beside
`OMP_NUM_THREADS=2 build/bench_elementwise --benchmark_filter='Unary|Rows|Gelu'`.
Run with bench/.venv/bin/python (bench/compare_fashion_mnist.sh creates it)."""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
x = torch.randn(1 << 20)
positive = x.abs()
rows = torch.randn(4096, 256)
xg = torch.randn(1 << 20, requires_grad=True)
g = torch.randn(1 << 20)


def gelu_train():
    xg.grad = None
    F.gelu(xg).backward(g)


cases = [
    ("exp", lambda: torch.exp(x)),
    ("log", lambda: torch.log(positive)),
    ("sigmoid", lambda: torch.sigmoid(x)),
    ("tanh", lambda: torch.tanh(x)),
    ("gelu", lambda: F.gelu(x)),
    ("gelu_tanh", lambda: F.gelu(x, approximate="tanh")),
    ("softmax 4096x256", lambda: torch.softmax(rows, 1)),
    ("log_softmax 4096x256", lambda: torch.log_softmax(rows, 1)),
    ("gelu forward + backward", gelu_train),
]
for name, run in cases:
    for _ in range(20):
        run()
    times = []
    for _ in range(201):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"{name}: median {times[100] * 1e3:.3f} ms")
