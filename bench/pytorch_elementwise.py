"""PyTorch's CPU exp, log, sigmoid, tanh, GELU (erf and tanh forms), softmax, log-softmax and
layer norm over rows, GELU and layer norm forward + backward, and dropout, on
bench_elementwise's shapes with 2 threads: the figures bench/RESULTS.md sets beside
`OMP_NUM_THREADS=2 build/bench_elementwise --benchmark_filter='Unary|Rows|Train'`.
Run with bench/.venv/bin/python (bench/compare_fashion_mnist.sh creates it)."""
import torch
import torch.nn.functional as F

from torch_timing import median_ms  # bench/torch_timing.py

torch.set_num_threads(2)
x = torch.randn(1 << 20)
positive = x.abs()
rows = torch.randn(4096, 256)
xg = torch.randn(1 << 20, requires_grad=True)
g = torch.randn(1 << 20)


lx = torch.randn(4096, 256, requires_grad=True)
lw = torch.randn(256, requires_grad=True)
lb = torch.randn(256, requires_grad=True)
lg = torch.randn(4096, 256)


def gelu_train():
    xg.grad = None
    F.gelu(xg).backward(g)


def layer_norm_train():
    lx.grad = lw.grad = lb.grad = None
    F.layer_norm(lx, (256,), lw, lb).backward(lg)


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
    ("layer_norm 4096x256", lambda: F.layer_norm(rows, (256,))),
    ("layer_norm 4096x256 forward + backward", layer_norm_train),
    ("dropout p=0.1", lambda: F.dropout(x, 0.1, True)),
]
for name, run in cases:
    print(f"{name}: median {median_ms(run, 201, 20):.3f} ms")
