"""Plots: skeleton sequences as stick figures over time."""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from hacm_tf.skeleton import JointLayout


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sequences(sequences: Sequence[np.ndarray], layout: JointLayout, path: str,
                   titles: Optional[Sequence[str]] = None, frames_per_row: int = 6, dpi: int = 80):
    """Saves a PNG grid: one row per sequence, ``frames_per_row`` evenly spaced frames.

    sequences: each ``[T, M, V, 3]`` (camera space, y up); persons drawn in two colours;
    all-zero persons are skipped. Projection: x horizontal, y vertical.
    """
    plt = _pyplot()
    rows = len(sequences)
    fig, axes = plt.subplots(rows, frames_per_row, figsize=(1.6 * frames_per_row, 2.2 * rows), squeeze=False)
    for r, seq in enumerate(sequences):
        seq = np.asarray(seq)
        pts = seq[np.any(seq != 0, axis=-1)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre, half = (lo + hi) / 2, max(hi[0] - lo[0], hi[1] - lo[1]) / 2 + 0.05
        idx = np.linspace(0, len(seq) - 1, frames_per_row).round().astype(int)
        for c, t in enumerate(idx):
            ax = axes[r, c]
            for m, colour in zip(range(seq.shape[1]), ("tab:blue", "tab:red")):
                joints = seq[t, m]
                if not np.any(joints):
                    continue
                for child, parent in layout.bones:
                    ax.plot(joints[[child, parent], 0], joints[[child, parent], 1], "-", color=colour, lw=1.5)
                ax.plot(joints[:, 0], joints[:, 1], ".", color="k", ms=2)
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_aspect("equal")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0 and titles is not None:
                ax.set_ylabel(titles[r], fontsize=8)
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_masks(mask_grid: np.ndarray, layout: JointLayout, path: str, title: str = "", dpi: int = 100):
    """HA-CM's token grid for one sequence: rows = token joints, columns = temporal patches.

    mask_grid: [T', V'] (1 = masked). Even patches form the temporal group (visible: blue), odd
    patches the spatial group (visible: orange); masked tokens are grey.
    """
    plt = _pyplot()
    t, v = mask_grid.shape
    img = np.ones((v, t, 3)) * 0.85
    for ti in range(t):
        colour = (0.12, 0.47, 0.71) if ti % 2 == 0 else (1.0, 0.5, 0.05)
        for vi in range(v):
            if mask_grid[ti, vi] == 0:
                img[vi, ti] = colour
    names = [layout.joint_names[j] for j in layout.kept_joints] if v == len(layout.kept_joints) else list(range(v))
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * t + 2), max(3, 0.2 * v + 1)))
    ax.imshow(img, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(v))
    ax.set_yticklabels(names, fontsize=6)
    ax.set_xlabel("temporal patch: blue = visible, temporal group (even); orange = visible, spatial group (odd); "
                  "grey = masked", fontsize=6)
    ax.set_title(title or f"visible tokens: {int((mask_grid == 0).sum())} of {mask_grid.size}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def masks_figure(model, data_dir: str, data_config, path: str, sequences: int = 3, seed: int = 0):
    """Masks a pretrainer chooses for the first test sequences (fixed noise), one panel each."""
    import dataclasses

    from hacm_tf.data import pipeline

    n = max(1, sequences // model.cfg.num_persons + (sequences % model.cfg.num_persons > 0))
    x, _ = next(iter(pipeline.make_dataset(data_dir, "test", dataclasses.replace(data_config, batch_size=n),
                                           training=False)))
    rng = np.random.RandomState(seed)
    noise = [rng.uniform(size=s).astype(np.float32) for s in model.noise_shapes(int(x.shape[0] * x.shape[2]))]
    grids = model.compute_losses(x, noise)["mask_grid"].numpy()
    stem, ext = os.path.splitext(path)
    for i in range(min(sequences, len(grids))):
        target = path if sequences == 1 else f"{stem}_{i}{ext}"
        plot_masks(grids[i], model.layout, target, title=f"{model.cfg.method} masks, test sequence {i}")


def plot_embeddings(features: np.ndarray, labels: np.ndarray, class_names, path: str, title: str = ""):
    """2-D PCA of clip embeddings ``[n, D]`` coloured by class."""
    plt = _pyplot()
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab20")
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=10, color=cmap(int(c) % 20),
                   label=class_names[c] if c < len(class_names) else str(c))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "embeddings (PCA)")
    if len(np.unique(labels)) <= 20:
        ax.legend(fontsize=6, markerscale=1.5, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scale(rows: Sequence[dict], path: str):
    """Pretraining step time against batch size (at the most common window) and against the number of
    tokens (at batch 8), from benchmark rows with batch_size, window, tokens, ms_per_step, share_of_peak."""
    plt = _pyplot()
    windows = [r["window"] for r in rows]
    base_window = max(set(windows), key=windows.count)
    by_batch = sorted((r for r in rows if r["window"] == base_window), key=lambda r: r["batch_size"])
    by_tokens = sorted((r for r in rows if r["batch_size"] == 8), key=lambda r: r["tokens"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, sel, key, label in ((axes[0], by_batch, "batch_size", f"batch size (window {base_window})"),
                                (axes[1], by_tokens, "tokens", "tokens per sequence (batch 8)")):
        xs = [r[key] for r in sel]
        ax.plot(xs, [r["ms_per_step"] / 1000 for r in sel], "o-", color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("s / step", color="tab:blue")
        share = ax.twinx()
        share.plot(xs, [100 * r.get("share_of_peak", 0) for r in sel], "s--", color="tab:orange")
        share.set_ylabel("% of matmul peak", color="tab:orange")
        share.set_ylim(0, 100)
    fig.suptitle(f"{rows[0]['method']} pretraining step (fwd + bwd + AdamW)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(curves: dict, levels: dict, path: str, ylabel: str = "kNN-20 top-1 (%)",
                         title: str = "", dpi: int = 100):
    """Read-out accuracy against pretraining epoch, one line per method (mean over seeds, band = min..max
    of the seeds), with reference levels as horizontal lines.

    curves: {method: {"epochs": [E], "values": [S, E]}} (accuracies in [0, 1]); levels: {label: value}.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, curve in curves.items():
        epochs, values = np.asarray(curve["epochs"]), np.asarray(curve["values"], np.float64) * 100
        line, = ax.plot(epochs, values.mean(0), "-o", ms=3, label=name)
        if len(values) > 1:
            ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, lw=0)
    for (label, value), style in zip(levels.items(), ("--", ":", "-.", (0, (5, 1)))):
        ax.axhline(value * 100, color="0.35", ls=style, lw=1.2, label=label)
    ax.set_xlabel("pretraining epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


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
