"""Classification metrics: predictions over a dataset, top-k accuracy, confusion matrix, reports."""

from __future__ import annotations

from typing import Callable, Dict, Sequence

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
    """Fraction of samples whose label is among the k largest logits [n, K] (nan for no sample)."""
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
