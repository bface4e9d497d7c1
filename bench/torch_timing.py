"""The timing loop of the PyTorch comparison scripts (bench/pytorch_*.py): warm up, then the
median of `reps` timed calls, in milliseconds."""
import time


def median_ms(run, reps, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3
