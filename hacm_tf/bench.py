"""Throughput measurements used by scripts/benchmark.py (JSON-friendly results)."""

from __future__ import annotations

import os
import time

from hacm_tf.config import DataConfig


def data_throughput(data_dir: str, batch_size: int = 128, window: int = 72, steps: int = 20,
                    warmup: int = 3, velocity: bool = False, seed: int = 0) -> dict:
    """tf.data samples/s of the training pipeline (crop, resize, rotation) at ``batch_size``.

    Iterates ``warmup`` batches first (pipeline start-up, autotuning), then times ``steps`` batches.
    """
    from hacm_tf.data import pipeline, tfrecord

    info = tfrecord.load_info(data_dir)
    cfg = DataConfig(window=window, batch_size=batch_size, velocity=velocity)
    it = iter(pipeline.make_dataset(data_dir, "train", cfg, training=True, seed=seed))
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, _ = next(it)
        x.numpy()
    elapsed = time.perf_counter() - t0
    return {"benchmark": "data", "data_dir": data_dir, "dataset": info["dataset"],
            "train_samples": info["splits"]["train"], "batch_size": batch_size, "window": window,
            "augmentation": "crop+resize+rotation" + ("+velocity" if velocity else ""),
            "steps": steps, "seconds": round(elapsed, 3),
            "samples_per_second": round(steps * batch_size / elapsed, 1),
            "ms_per_batch": round(1000 * elapsed / steps, 2), "cpu_count": os.cpu_count()}
