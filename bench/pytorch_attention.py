"""PyTorch's CPU scaled_dot_product_attention on bench_attention's shapes with 2 threads,
forward and forward + backward (gradients of q, k and v): the figures bench/RESULTS.md sets
beside `OMP_NUM_THREADS=2 build/bench_attention`. Run with bench/.venv/bin/python."""
import torch
import torch.nn.functional as F

from torch_timing import median_ms  # bench/torch_timing.py

torch.set_num_threads(2)
SHAPES = [(8, 12, 256, 64), (1, 12, 1024, 64), (64, 8, 64, 32)]  # (b, h, l, e), as kShapes

for b, h, l, e in SHAPES:
    for causal in (False, True):
        q, k, v = (torch.randn(b, h, l, e, requires_grad=True) for _ in range(3))
        with torch.no_grad():
            fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), 21, 3)

        def step():
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            y.backward(torch.ones_like(y))
            q.grad = k.grad = v.grad = None

        train = median_ms(step, 11, 3)
        name = f"B{b} H{h} L{l} E{e}" + (" causal" if causal else "")
        print(f"{name}: forward {fwd:.2f} ms, forward + backward {train:.2f} ms")
