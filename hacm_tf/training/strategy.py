"""Distribution strategies by name, and CPU logical devices for testing the mirrored path."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def configure_cpu_devices(count: int):
    """Splits the CPU into ``count`` logical devices (before TF initialises its runtime)."""
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def get_strategy(name: str, devices: int = 0) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs, or ``devices`` logical CPUs),
    ``multi_worker`` (MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; use one of {STRATEGIES}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs TF_CONFIG (cluster and task) in the environment")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        configure_cpu_devices(devices)
    if name == "default":
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus)


def task_info() -> dict:
    """{"type", "index", "workers"} from TF_CONFIG ({"worker", 0, 1} when absent)."""
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = cfg.get("task", {})
    return {"type": task.get("type", "worker"), "index": int(task.get("index", 0)),
            "workers": len(cfg.get("cluster", {}).get("worker", [])) or 1}


def is_chief() -> bool:
    t = task_info()
    return t["type"] == "chief" or (t["type"] == "worker" and t["index"] == 0)
