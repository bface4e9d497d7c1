"""PyTorch's CPU max_pool2d (with indices, as autograd keeps them) on bench_pool's shapes, with
2 threads: the figures bench/RESULTS.md sets beside `OMP_NUM_THREADS=2 build/bench_pool`.
Run with bench/.venv/bin/python (bench/compare_fashion_mnist.sh creates it)."""
import torch

from torch_timing import median_ms  # bench/torch_timing.py

torch.set_num_threads(2)
for shape, k, s, p in [((128, 32, 28, 28), 2, 2, 0), ((128, 64, 14, 14), 2, 2, 0),
                       ((8, 64, 112, 112), 3, 2, 1)]:
    x = torch.randn(*shape)
    run = lambda: torch.nn.functional.max_pool2d(x, k, s, p, return_indices=True)
    ms = median_ms(run, 101, 20)
    print(f"N{shape[0]} C{shape[1]} {shape[2]}x{shape[3]} k{k} s{s}: median {ms:.2f} ms")
