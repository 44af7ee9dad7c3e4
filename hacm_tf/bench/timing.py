"""The one timer of the benchmarks, this machine's matmul peak and the process's peak memory."""

from __future__ import annotations

import resource
import time
from typing import Callable, List, Tuple

import numpy as np


def time_calls(fn: Callable, steps: int, warmup: int) -> Tuple[List[float], float]:
    """(seconds of each of ``steps`` calls after ``warmup`` untimed ones, seconds of the warm-up)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, first


def time_call(fn: Callable, steps: int, warmup: int) -> Tuple[float, float]:
    """(median seconds of ``steps`` calls after ``warmup`` untimed ones, seconds of the warm-up)."""
    times, first = time_calls(fn, steps, warmup)
    return float(np.median(times)), first


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (GiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Measured matmul GFLOP/s of this machine (best of ``repeats``; float32: the MFU denominator)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f().numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9
