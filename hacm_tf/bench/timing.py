"""The one timer of the benchmarks, the matmul probe read between timed steps, the hypervisor's steal share
and the process's peak memory."""

from __future__ import annotations

import resource
import time
from typing import Callable, List, Optional, Tuple

import numpy as np


def time_calls(fn: Callable, steps: int, warmup: int,
               between: Optional[Callable[[], None]] = None) -> Tuple[List[float], float]:
    """(seconds of each of ``steps`` calls after ``warmup`` untimed ones, seconds of the warm-up);
    ``between`` (untimed) runs after each timed call."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if between is not None:
            between()
    return times, first


def time_call(fn: Callable, steps: int, warmup: int,
              between: Optional[Callable[[], None]] = None) -> Tuple[float, float]:
    """(median seconds of ``steps`` calls after ``warmup`` untimed ones, seconds of the warm-up)."""
    times, first = time_calls(fn, steps, warmup, between)
    return float(np.median(times)), first


class StealMeter:
    """The share of the CPUs' time a hypervisor gave to other guests (``steal`` in /proc/stat) between
    creation and ``share()``: on a shared virtual machine, how much of a measurement's wall time its
    cores were not running it. None where /proc/stat does not exist or has no steal column."""

    def __init__(self, path: str = "/proc/stat"):
        self.path = path
        self.start = self._read()

    def _read(self) -> Optional[Tuple[int, int]]:
        """(steal, all) jiffies of the aggregate cpu line, or None."""
        try:
            with open(self.path) as f:
                fields = f.readline().split()
        except OSError:
            return None
        if len(fields) < 9 or fields[0] != "cpu":
            return None
        counts = [int(v) for v in fields[1:]]
        return counts[7], sum(counts[:8])   # user nice system idle iowait irq softirq steal

    def share(self) -> Optional[float]:
        end = self._read()
        if self.start is None or end is None or end[1] <= self.start[1]:
            return None
        return round((end[0] - self.start[0]) / (end[1] - self.start[1]), 3)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (GiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)


class MatmulProbe:
    """The machine's matmul rate, an n x n x n product in ``dtype`` (traced and run once on creation).

    Calling it returns the best GFLOP/s of ``repeats`` products. ``sample()`` adds such a reading to
    ``readings``: taken between the timed steps of a measurement, their median is the rate the matmul
    reached while the steps ran (a shared machine's speed changes within minutes, so a share of a rate
    measured earlier can be off by a factor of two).
    """

    def __init__(self, dtype: str = "float32", n: int = 2048):
        import tensorflow as tf

        a = tf.cast(tf.random.normal([n, n]), dtype)
        b = tf.cast(tf.random.normal([n, n]), dtype)
        self._product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
        self._product().numpy()
        self.dtype, self.flops, self.readings = dtype, 2 * n ** 3, []

    def __call__(self, repeats: int = 3) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            self._product().numpy()
            best = min(best, time.perf_counter() - t0)
        return self.flops / best / 1e9

    def sample(self, repeats: int = 3) -> None:
        self.readings.append(self(repeats))

    def median(self) -> float:
        """Median of the readings taken by sample() (GFLOP/s)."""
        if not self.readings:
            raise ValueError("MatmulProbe.median: no readings; call sample() between the timed steps")
        return float(np.median(self.readings))


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Measured matmul GFLOP/s of this machine (best of ``repeats``; float32: the MFU denominator)."""
    return MatmulProbe(dtype, n)(repeats)


def probes_between_steps(precision: str) -> List[MatmulProbe]:
    """The probes a training measurement samples between its timed steps: float32, and bfloat16 under
    mixed bfloat16 (the blocks' matmuls' own ceiling)."""
    return [MatmulProbe(d) for d in ("float32",) + (("bfloat16",) if precision == "mixed_bfloat16" else ())]


def sample_all(probes: List[MatmulProbe]) -> Callable[[], None]:
    """A ``between`` callback for time_calls: one reading of each probe."""
    def sample():
        for probe in probes:
            probe.sample()
    return sample


def shares_of_probes(achieved_gflops: float, probes: List[MatmulProbe]) -> dict:
    """Row fields of the probes' medians and the achieved rate's share of each: matmul_peak_gflops /
    share_of_peak (float32), matmul_peak_bf16_gflops / share_of_bf16_peak (bfloat16), the readings'
    lowest and highest (matmul_peak[_bf16]_range), probe_readings (their count)."""
    row = {"probe_readings": len(probes[0].readings) if probes else 0}
    for p in probes:
        suffix = "_bf16" if p.dtype == "bfloat16" else ""
        peak = p.median()
        row[f"matmul_peak{suffix}_gflops"] = round(peak, 1)
        row[f"matmul_peak{suffix}_range"] = [round(min(p.readings), 1), round(max(p.readings), 1)]
        row[f"share_of{suffix}_peak"] = round(achieved_gflops / peak, 3)
    return row
