"""NW-UCLA Multiview Action 3D, JSON release (20 Kinect-v1 joints, one person).

Each ``all_sqe/aAA_sSS_eEE_vVV.json`` holds ``{"file_name", "skeletons": [T][20][3],
"label": 1..10}``. Samples are centred on the spine joint of their first frame
(as NTU samples are on the spine-middle joint) and stored as ``[T, 1, 20, 3]``.

Protocols: ``xview`` (standard): train views 1 and 2 (1,020 samples), test view 3
(464). ``xview_val``: validation inside the standard training views, for choosing
recipes without looking at view 3: train view 1, test view 2 (view 3 left out).
``xsub`` (not standard for this dataset; offered for completeness): odd
subjects train, even subjects test.
"""

from __future__ import annotations

import json
import os
import re
from typing import Iterator, Optional, Tuple

import numpy as np

from hacm_tf.data.sample import Sample
from hacm_tf.errors import DataError
from hacm_tf.skeleton import KINECT_V1_20

NAME_PATTERN = re.compile(r"^a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})$")
CLASS_NAMES = ("pick up with one hand", "pick up with two hands", "drop trash", "walk around",
               "sit down", "stand up", "donning", "doffing", "throw", "carry")
SPLITS = ("xview", "xview_val", "xsub")


def read_sample(path: str, require_label: bool = True) -> Sample:
    """One JSON file -> Sample ``[T, 1, 20, 3]`` (label 0-based, subject, camera = view).

    ``require_label=False`` (prediction) also reads files without a label or with a name outside the
    release's pattern: their label, subject and view are -1."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"cannot read JSON: {e}") from None
    if not isinstance(d, dict):
        raise DataError(path, "expected a JSON object with file_name, skeletons and label")
    for key in ("file_name", "skeletons", "label") if require_label else ("skeletons",):
        if key not in d:
            raise DataError(path, f"missing key {key!r}")
    name = str(d.get("file_name", os.path.splitext(os.path.basename(path))[0]))
    m = NAME_PATTERN.match(name)
    if not m and require_label:
        raise DataError(path, f"file_name {name!r} does not follow aAA_sSS_eEE_vVV")
    try:
        x = np.asarray(d["skeletons"], dtype=np.float32)
    except (ValueError, TypeError):
        raise DataError(path, "skeletons is not a numeric [frames][20][3] array") from None
    if x.ndim != 3 or x.shape[1:] != (KINECT_V1_20.num_joints, 3):
        raise DataError(path, f"expected skeletons of shape [frames, 20, 3], got {list(x.shape)}")
    label = int(d.get("label", 0))
    if (require_label or label) and not 1 <= label <= len(CLASS_NAMES):
        raise DataError(path, f"label {label} outside [1, {len(CLASS_NAMES)}]")
    if x.shape[0] == 0:
        raise DataError(path, "zero frames")
    if not np.all(np.isfinite(x)):
        raise DataError(path, "non-finite coordinate")
    x = x - x[0, KINECT_V1_20.centre_joint]
    _, subject, _, view = (int(g) for g in m.groups()) if m else (-1, -1, -1, -1)
    return Sample(name, x[:, None], label - 1, subject=subject, camera=view).check(path)


def split_of(sample: Sample, protocol: str) -> Optional[str]:
    """"train", "test" or None (the protocol leaves the sample out)."""
    if protocol == "xview":
        return "train" if sample.camera in (1, 2) else "test"
    if protocol == "xview_val":
        return {1: "train", 2: "test"}.get(sample.camera)
    if protocol == "xsub":
        return "train" if sample.subject % 2 == 1 else "test"
    raise ValueError(f"unknown NW-UCLA protocol {protocol!r}; use one of {SPLITS}")


def list_files(input_dir: str):
    """JSON files of the release, sorted; accepts the folder itself or its parent."""
    d = os.path.join(input_dir, "all_sqe") if os.path.isdir(os.path.join(input_dir, "all_sqe")) else input_dir
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json"))
    if not files:
        raise FileNotFoundError(f"{input_dir}: no NW-UCLA .json files")
    return files


def iterate(input_dir: str, protocol: str = "xview") -> Iterator[Tuple[str, Sample]]:
    for path in list_files(input_dir):
        s = read_sample(path)
        split = split_of(s, protocol)
        if split is not None:
            yield split, s
