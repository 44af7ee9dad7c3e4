"""Generic import: a directory of ``<name>.npy`` samples plus a labels CSV.

Each ``.npy`` is ``[frames, joints, 3]`` (one person) or ``[frames, persons, joints, 3]``.
The CSV has a header with at least ``name,label`` and optionally ``subject,view``
(more columns are allowed). The split rule is either a column and the values
that mean "train" (``split_column="view", train_values=("1", "2")``) or a file
listing the training sample names, one per line.

By default every sample is centred as the NTU and NW-UCLA readers centre theirs (person 0's centre
joint of the first frame at the origin), so a model does not learn where the subject stood;
``centring="none"`` keeps the coordinates as given.
"""

from __future__ import annotations

import csv
import os
from typing import Iterator, Optional, Sequence, Set, Tuple

import numpy as np

from hacm_tf.data.sample import CENTRINGS, Sample, centre_on_first_frame
from hacm_tf.errors import DataError
from hacm_tf.skeleton import JointLayout


def read_csv(path: str):
    """Rows of the labels CSV as dicts; checks the header."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else []
    except OSError as e:
        raise DataError(path, f"cannot read labels CSV: {e.strerror}") from None
    if not rows:
        raise DataError(path, "labels CSV has no rows")
    for col in ("name", "label"):
        if col not in header:
            raise DataError(path, f"labels CSV lacks the column {col!r} (header: {list(header)})", line=1)
    return rows


def _int(row, key, path, line, default=-1):
    v = row.get(key)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise DataError(path, f"column {key!r}: {v!r} is not an integer", line=line) from None


def load_sample(path: str, name: str, layout: JointLayout, num_persons: Optional[int]) -> np.ndarray:
    """One ``.npy`` -> float32 ``[frames, persons, joints, 3]`` (persons zero-padded to ``num_persons``;
    None keeps the persons as stored)."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot load .npy: {e}") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[2] != layout.num_joints or x.shape[3] != 3:
        raise DataError(path, f"sample {name}: expected [frames, ({layout.num_joints} joints), 3] or "
                        f"[frames, persons, {layout.num_joints}, 3] for layout {layout.name}, got {list(x.shape)}")
    if num_persons is None:
        return x.astype(np.float32)
    if x.shape[1] > num_persons:
        raise DataError(path, f"sample {name}: {x.shape[1]} persons, the dataset keeps {num_persons}")
    if x.shape[1] < num_persons:
        x = np.concatenate([x, np.zeros((x.shape[0], num_persons - x.shape[1]) + x.shape[2:], x.dtype)], axis=1)
    return x.astype(np.float32)


def iterate(input_dir: str, csv_path: str, layout: JointLayout, num_persons: int = 1,
            split_column: Optional[str] = None, train_values: Sequence[str] = (),
            train_list: Optional[str] = None, centring: str = "first_frame") -> Iterator[Tuple[str, Sample]]:
    """Yields ``(split, Sample)`` in CSV order; a bad sample yields ``("", DataError)``.

    centring: "first_frame" (person 0's ``layout.centre_joint`` of the first frame at the origin) or
    "none" (coordinates as stored)."""
    if centring not in CENTRINGS:
        raise ValueError(f"centring must be one of {CENTRINGS}, got {centring!r}")
    rows = read_csv(csv_path)
    if (split_column is None) == (train_list is None):
        raise ValueError("give exactly one split rule: split_column + train_values, or train_list")
    train_names: Set[str] = set()
    if train_list is not None:
        with open(train_list) as f:
            train_names = {line.strip() for line in f if line.strip()}
    elif split_column not in rows[0]:
        raise DataError(csv_path, f"split column {split_column!r} not in the header {list(rows[0])}", line=1)
    train_values = {str(v) for v in train_values}
    for i, row in enumerate(rows):
        line = i + 2
        name = row["name"]
        try:
            label = _int(row, "label", csv_path, line)
            x = load_sample(os.path.join(input_dir, name + ".npy"), name, layout, num_persons)
            if centring == "first_frame":
                x = centre_on_first_frame(x, layout.centre_joint)
            sample = Sample(name, x, label, subject=_int(row, "subject", csv_path, line),
                            camera=_int(row, "view", csv_path, line)).check(os.path.join(input_dir, name + ".npy"))
        except DataError as e:
            yield "", e
            continue
        train = name in train_names if train_list is not None else row[split_column] in train_values
        yield ("train" if train else "test"), sample
