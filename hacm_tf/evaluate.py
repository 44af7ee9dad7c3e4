"""Classification metrics, JSON reports and plots (confusion matrix, per-class accuracy)."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np


def predict(fn: Callable, dataset) -> Dict[str, np.ndarray]:
    """Runs ``fn(skeleton) -> logits`` over a dataset of (skeleton, label[, name]) batches.

    Returns {"logits" [n, K], "labels" [n], "names" [n] (when the dataset has them)}.
    """
    logits, labels, names = [], [], []
    for batch in dataset:
        logits.append(np.asarray(fn(batch[0])))
        labels.append(np.asarray(batch[1]))
        if len(batch) > 2:
            names.extend(n.decode() for n in np.asarray(batch[2]))
    out = {"logits": np.concatenate(logits) if logits else np.zeros([0, 0]),
           "labels": np.concatenate(labels) if labels else np.zeros([0], np.int64)}
    if names:
        out["names"] = np.array(names)
    return out


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """[K, K] counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def report(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Top-1 / top-5 (fractions), per-class accuracy and counts, confusion matrix, sample count."""
    k = len(class_names)
    pred = np.argmax(logits, axis=1)
    cm = confusion_matrix(labels, pred, k)
    support = cm.sum(axis=1)
    per_class = {class_names[c]: {"accuracy": (float(cm[c, c] / support[c]) if support[c] else None),
                                  "samples": int(support[c])} for c in range(k)}
    return {"samples": int(len(labels)), "top1": topk_accuracy(logits, labels, 1),
            "top5": topk_accuracy(logits, labels, 5), "per_class": per_class, "confusion_matrix": cm.tolist()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str, title: Optional[str] = None):
    """Row-normalised confusion matrix as a PNG."""
    plt = _pyplot()
    cm = np.asarray(cm, np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(4.0, 0.28 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = range(k) if k <= 60 else range(0, k, max(1, k // 30))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.set_xticklabels([class_names[i] for i in ticks], rotation=90, fontsize=6)
    ax.set_yticklabels([class_names[i] for i in ticks], fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class(per_class: dict, path: str, title: Optional[str] = None):
    """Horizontal bar chart of per-class accuracy."""
    plt = _pyplot()
    names = list(per_class)
    acc = [per_class[n]["accuracy"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.22 * len(names) + 1)))
    ax.barh(range(len(names)), acc, color="tab:blue")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy")
    ax.set_title(title or "per-class accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: Sequence[dict], keys: Sequence[str], path: str, title: str = ""):
    """Training curves (one line per key present in the history entries) against the epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        pts = [(h["epoch"] + 1, h[k]) for h in history if k in h and h[k] is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=k)
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
