"""PyTorch's CPU conv2d (oneDNN) on bench_conv2d's shapes with 2 threads, forward and forward +
backward (gradients of input, weight and bias): the figures bench/RESULTS.md sets beside
`OMP_NUM_THREADS=2 build/bench_conv2d`. Run with bench/.venv/bin/python."""
import torch

from torch_timing import median_ms  # bench/torch_timing.py

torch.set_num_threads(2)
# (n, c, h, w, o, k, stride, pad), as kLayers in bench_conv2d.cpp.
LAYERS = [(64, 1, 28, 28, 32, 3, 1, 1), (64, 32, 14, 14, 64, 3, 1, 1), (8, 3, 224, 224, 64, 7, 2, 3),
          (8, 64, 56, 56, 64, 3, 1, 1), (8, 64, 56, 56, 256, 1, 1, 0)]


for n, c, h, w, o, k, s, p in LAYERS:
    x = torch.randn(n, c, h, w, requires_grad=True)
    conv = torch.nn.Conv2d(c, o, k, s, p)
    with torch.no_grad():
        fwd = median_ms(lambda: conv(x), 31, 5)

    def step():
        y = conv(x)
        y.backward(torch.ones_like(y))
        x.grad = conv.weight.grad = conv.bias.grad = None

    train = median_ms(step, 21, 5)
    print(f"N{n} C{c} {h}x{w} -> {o} k{k} s{s}: forward {fwd:.2f} ms, train step {train:.2f} ms")
