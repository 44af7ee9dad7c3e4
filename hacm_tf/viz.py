"""Plots: skeleton sequences as stick figures over time."""

from __future__ import annotations

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
    ax.set_xlabel("temporal patch: blue = visible, temporal group (even); orange = visible, spatial group (odd); grey = masked", fontsize=6)
    ax.set_title(title or f"visible tokens: {int((mask_grid == 0).sum())} of {mask_grid.size}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
