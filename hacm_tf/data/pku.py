"""PKU-MMD phase I / II: long-video skeleton and label files -> action clips (docs/official_code.md §1).

* Skeleton file: one line per frame, 150 values (2 bodies x 25 Kinect-v2 joints x xyz,
  NTU joint order; an absent second body is zeros).
* Label file (same base name): one line per action, ``label,start,end,confidence``
  (label 1-based).
* Split file: the second line is a ", "-separated list of training video names;
  every other video is test.

A clip is rows ``start`` (inclusive) to ``end`` (exclusive) as written (no -1),
truncated to 300 frames; all-zero clips are dropped. No centring, no denoising.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Set, Tuple

import numpy as np

from hacm_tf.data.ntu import read_text
from hacm_tf.data.sample import Sample
from hacm_tf.errors import DataError

NUM_CLASSES = 51
MAX_FRAMES = 300
SPLIT_FILES = {("pku1", "xsub"): "cross-subject.txt", ("pku1", "xview"): "cross-view.txt",
               ("pku2", "xsub"): "cross_subject_v2.txt", ("pku2", "xview"): "cross_view_v2.txt"}
DIR_NAMES = {
    "skeleton": ("skeleton", "skeletons", "Skeleton", "PKU_Skeleton_Renew", "skeleton_v2"),
    "label": ("label", "labels", "Label", "Train_Label_PKU_final", "Label_PKUMMD", "label_v2"),
    "split": ("split", "Split", "splits", "."),
}


def read_skeleton(path: str) -> np.ndarray:
    """A video's skeleton file -> float32 ``[frames, 150]``; DataError names the bad line."""
    lines = read_text(path)
    rows = []
    for i, line in enumerate(lines):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 150:
            raise DataError(path, f"expected 150 values (2 bodies x 25 joints x 3), found {len(tokens)}", line=i + 1)
        try:
            row = np.array(tokens, dtype=np.float32)
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            raise DataError(path, f"non-numeric value {bad!r}", line=i + 1) from None
        if not np.all(np.isfinite(row)):
            raise DataError(path, "non-finite value", line=i + 1)
        rows.append(row)
    if not rows:
        raise DataError(path, "zero frames")
    return np.stack(rows)


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def read_labels(path: str, num_frames: int, num_classes: int = NUM_CLASSES) -> List[Tuple[int, int, int, float]]:
    """Label file -> [(label (1-based), start, end, confidence)], checked against the video length."""
    if not os.path.exists(path):
        raise DataError(path, "label file missing")
    out = []
    for i, line in enumerate(read_text(path)):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.replace(",", " ").split()]
        if len(parts) != 4:
            raise DataError(path, f"expected 'label,start,end,confidence', found {line.strip()!r}", line=i + 1)
        try:
            label, start, end = int(parts[0]), int(parts[1]), int(parts[2])
            conf = float(parts[3])
        except ValueError:
            raise DataError(path, f"non-numeric field in {line.strip()!r}", line=i + 1) from None
        if not 1 <= label <= num_classes:
            raise DataError(path, f"label {label} outside [1, {num_classes}]", line=i + 1)
        if not 0 <= start < end <= num_frames:
            raise DataError(path, f"clip [{start}, {end}) outside the sequence of {num_frames} frames", line=i + 1)
        out.append((label, start, end, conf))
    return out


def read_train_videos(split_file: str) -> Set[str]:
    """Training video names: the second line of a PKU-MMD split file, ", "-separated."""
    lines = read_text(split_file)
    if len(lines) < 2:
        raise DataError(split_file, "expected the training video list on line 2", line=len(lines) + 1)
    return {n.strip() for n in lines[1].split(",") if n.strip()}


def find_layout(input_dir: str) -> Dict[str, str]:
    """Locates the skeleton and label folders and the split folder under ``input_dir``."""
    found = {}
    for kind, candidates in DIR_NAMES.items():
        for c in candidates:
            p = os.path.normpath(os.path.join(input_dir, c))
            if os.path.isdir(p):
                found[kind] = p
                break
        else:
            raise FileNotFoundError(f"{input_dir}: no {kind} folder (looked for {', '.join(candidates)})")
    return found


def iterate_clips(skeleton_dir: str, label_dir: str, train_videos: Set[str],
                  max_frames: int = MAX_FRAMES, num_classes: int = NUM_CLASSES) -> Iterator[Tuple[str, object]]:
    """Yields ``(split, Sample)`` for every clip, videos in sorted file order.

    Sample names are ``<video>_<row>`` (row: 0-based line of the label file).
    Skeletons are ``[frames, 2, 25, 3]``. A bad video yields ``("", DataError)``;
    a dropped all-zero clip yields ``("", {"name", "reason"})``.
    """
    videos = sorted(f[:-4] for f in os.listdir(skeleton_dir) if f.endswith(".txt"))
    if not videos:
        raise FileNotFoundError(f"{skeleton_dir}: no skeleton .txt files")
    for video in videos:
        try:
            skel = read_skeleton(os.path.join(skeleton_dir, video + ".txt"))
            labels = read_labels(os.path.join(label_dir, video + ".txt"), len(skel), num_classes)
        except DataError as e:
            yield "", e
            continue
        split = "train" if video in train_videos else "test"
        for row, (label, start, end, _) in enumerate(labels):
            clip = skel[start:end]
            if clip.sum() == 0:
                yield "", {"name": f"{video}_{row:03d}", "reason": "all-zero clip (dropped as the reference)"}
                continue
            clip = clip[:max_frames].reshape(-1, 2, 25, 3)
            yield split, Sample(f"{video}_{row:03d}", clip, label - 1).check(video)
