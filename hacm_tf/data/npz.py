"""Import of the widely used NTU-style ``.npz`` arrays (docs/official_code.md §1).

Keys ``x_train`` (N, T, persons * joints * 3) float32, one-hot ``y_train`` (N, K),
``x_test``, ``y_test``; each frame's values are person-major, then joint, then xyz.
Padding frames are zero: a sample keeps its frames up to the last non-zero one, so
the pipeline's valid-frame count (frames with a non-zero sum) equals the reference's.

Samples are centred as the NTU reader centres (person 0's centre joint of the first frame at the
origin; arrays written by the reference's preparation already are, and stay unchanged) unless
``centring="none"``.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import numpy as np

from hacm_tf.data.sample import CENTRINGS, Sample, centre_on_first_frame
from hacm_tf.errors import DataError


def iterate(path: str, num_persons: int = 2, num_joints: int = 25, centre_joint: int = 1,
            centring: str = "first_frame") -> Iterator[Tuple[str, Sample]]:
    """Yields ``(split, Sample)``; names are ``<split>_<index:06d>``; a bad sample yields ``("", DataError)``.

    centring: "first_frame" (subtract person 0's ``centre_joint`` of the first non-zero frame) or "none"."""
    if centring not in CENTRINGS:
        raise ValueError(f"centring must be one of {CENTRINGS}, got {centring!r}")
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot load .npz: {e}") from None
    width = num_persons * num_joints * 3
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        if xk not in arrays or yk not in arrays:
            raise DataError(path, f"missing arrays {xk!r} / {yk!r} (has {sorted(arrays.files)})")
        x, y = arrays[xk], arrays[yk]
        if x.ndim != 3 or x.shape[2] != width:
            raise DataError(path, f"{xk}: expected (N, frames, {width}) for {num_persons} persons x "
                            f"{num_joints} joints x 3, got {x.shape}")
        if y.ndim == 2:
            if y.shape[0] != x.shape[0]:
                raise DataError(path, f"{yk}: {y.shape[0]} labels for {x.shape[0]} samples")
            labels = np.argmax(y, axis=1)
        elif y.ndim == 1 and y.shape[0] == x.shape[0]:
            labels = y.astype(np.int64)
        else:
            raise DataError(path, f"{yk}: expected one-hot (N, K) or (N,) labels, got {y.shape}")
        for i in range(x.shape[0]):
            nonzero = np.nonzero(x[i].sum(axis=1) != 0)[0]
            if len(nonzero) == 0:
                yield "", DataError(path, f"{xk}[{i}]: all frames are zero")
                continue
            frames = x[i, : nonzero[-1] + 1].reshape(-1, num_persons, num_joints, 3)
            if centring == "first_frame":
                frames = centre_on_first_frame(frames, centre_joint)
            try:
                yield split, Sample(f"{split}_{i:06d}", frames, int(labels[i])).check(path)
            except DataError as e:
                yield "", e


def num_classes(path: str) -> int:
    """K from the one-hot label arrays (or max label + 1)."""
    arrays = np.load(path, allow_pickle=False)
    y = arrays["y_train"]
    return int(y.shape[1]) if y.ndim == 2 else int(max(y.max(), arrays["y_test"].max()) + 1)
