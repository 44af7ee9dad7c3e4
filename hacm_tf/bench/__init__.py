"""Benchmarks: one timer and the matmul peak (timing), FLOP counts (flops), kernel-time profiles (profile),
measurements at given sizes (measure), the paper's sizes from the flagfile presets (presets) and the
suites of scripts/benchmark.py (suites)."""
