"""What a study's runs have written so far: per-epoch histories, the time-left estimate and the kNN
learning curves of the pretraining monitors."""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


class Progress:
    """Counts finished runs and estimates the time left from the seconds per epoch measured so far for
    each stage (finished runs, and the epochs of running ones read from their metrics.json); until a
    stage has been measured, from pretraining's rate."""

    def __init__(self, plan: List[dict], workers: int, log: Callable):
        self.plan, self.workers, self.log = plan, workers, log
        self.t0 = time.time()
        self.rates: Dict[str, List[float]] = {}

    def finished(self, variant: str, seed: int, stage: str, seconds: float):
        for run in self.plan:
            if (run["variant"], run["seed"], run["stage"]) == (variant, seed, stage):
                run["done"] = True
                history = _history(run.get("workdir", ""))
                rate = _epoch_seconds(history) if history else seconds / max(run["epochs"], 1e-9)
                self.rates.setdefault(stage, []).append(rate)
        done = sum(r["done"] for r in self.plan)
        self.log(f"[{time.time() - self.t0:6.0f} s] done {stage} {variant} seed {seed} in {seconds:.0f} s "
                 f"({done}/{len(self.plan)} runs{self._eta()})")

    def heartbeat(self):
        """One line on the runs in progress (epochs done, from their metrics.json) and the time left."""
        running = []
        for run in self.plan:
            epochs = len(_history(run["workdir"])) if not run["done"] else 0
            if epochs:
                running.append(f"{run['stage']} {run['variant']} seed {run['seed']} {epochs}/{run['epochs']:g}")
        done = sum(r["done"] for r in self.plan)
        self.log(f"[{time.time() - self.t0:6.0f} s] {done}/{len(self.plan)} runs done; "
                 f"in progress: {', '.join(running) or '-'}{self._eta()}")

    def _eta(self) -> str:
        left = self.seconds_left()
        return f", about {left / 60:.0f} min left" if left is not None else ""

    def seconds_left(self) -> Optional[float]:
        partial: Dict[str, List[float]] = {}
        progress = {}
        for run in self.plan:
            if run["done"] or "workdir" not in run:
                continue
            history = _history(run["workdir"])
            if history:
                progress[id(run)] = len(history)
                partial.setdefault(run["stage"], []).append(_epoch_seconds(history))
        rates = {k: float(np.mean(self.rates.get(k, []) + partial.get(k, []))) for k in set(partial) | set(self.rates)}
        if not rates:
            return None
        fallback = rates.get("pretrain", float(np.mean(list(rates.values()))))
        todo = sum(max(r["epochs"] - progress.get(id(r), 0), 0) * rates.get(r["stage"], fallback)
                   for r in self.plan if not r["done"])
        return todo / self.workers


def _epoch_seconds(history: List[dict]) -> float:
    """Typical seconds per epoch of a history: the median, so a paused or resumed epoch does not count."""
    return float(np.median([h["seconds"] for h in history]))


def _history(workdir: str) -> List[dict]:
    """The per-epoch history a (possibly running) run has written so far."""
    p = os.path.join(workdir, "metrics.json")
    try:
        with open(p) as f:
            return [h for h in json.load(f).get("history", []) if "seconds" in h]
    except (OSError, ValueError):
        return []


def learning_curves(out: str, variants: Sequence[str], seeds: int, key: str = "eval_knn20_top1") -> dict:
    """{variant: {"epochs": [E], "values": [S, E]}} from the pretraining monitors' histories (epochs
    1-based; only epochs every seed has read out; variants without pretraining have none)."""
    curves = {}
    for variant in variants:
        per_seed = []
        for seed in range(seeds):
            p = os.path.join(out, variant, f"seed{seed}", "pretrain", "metrics.json")
            if os.path.exists(p):
                per_seed.append({h["epoch"] + 1: h[key] for h in json.load(open(p))["history"] if key in h})
        if not per_seed:
            continue
        epochs = sorted(set.intersection(*(set(s) for s in per_seed)))
        if epochs:
            curves[variant] = {"epochs": epochs, "values": [[s[e] for e in epochs] for s in per_seed]}
    return curves


def write_learning_curve_figure(out: str, rows: Sequence[dict], variants: Sequence[str], seeds: int, path: str,
                                levels_from: Sequence[Tuple[str, str]] = (), title: str = "") -> Optional[str]:
    """kNN-20 against pretraining epoch per variant, with the kNN-20 of the (variant, label) pairs of
    ``levels_from`` (from ``rows``) as horizontal lines; returns ``path`` (None without monitor data)."""
    from hacm_tf import viz

    curves = learning_curves(out, variants, seeds)
    if not curves:
        return None
    levels = {}
    for variant, label in levels_from:
        values = [r["last_top1"] for r in rows if r["variant"] == variant and r["protocol"] == "knn20"]
        if values:
            levels[f"{label} (kNN-20)"] = float(np.mean(values))
    viz.plot_learning_curves(curves, levels, path, title=title)
    return path
