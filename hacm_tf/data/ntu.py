"""NTU RGB+D 60/120 ``.skeleton`` files -> denoised, centred two-actor sequences.

Follows the official preparation scripts exactly (docs/official_code.md §1):

1. :func:`parse_skeleton_file` reads every field of the text format, drops
   frames with zero bodies and groups the joints by body ID (``read_bodies``).
2. :func:`denoise_bodies` removes short bodies (<= 11 frames) and wide bodies
   (spread ratio >= 0.69754), then ranks the rest by motion.
3. :func:`assemble_actors` builds the one- or two-actor ``[frames, 75|150]``
   array; multi-body samples lose their all-zero frames.
4. :func:`centre_sequence` subtracts actor 1's spine-middle joint of its first
   valid frame (one translation for the whole sequence).
5. :func:`to_persons` gives ``[frames, 2, 25, 3]``: NTU-60 pads a lone actor
   with zeros, NTU-120 copies it into the second slot.

The five steps and the splits stay in one file (over 400 lines) so that they read in the order the
official preparation runs them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from hacm_tf.data.sample import Sample
from hacm_tf.errors import DataError

NUM_JOINTS = 25
LENGTH_THRESHOLD = 11          # bodies with <= 11 frames are noise
SPREAD_THRESHOLD = 0.8         # a frame is valid if x-spread <= 0.8 * y-spread
SPREAD_RATIO_THRESHOLD = 0.69754

NAME_PATTERN = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")

# Cross-subject training subjects (docs/official_code.md §1).
NTU60_XSUB_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85,
    86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103)


@dataclasses.dataclass(frozen=True)
class NtuName:
    """Fields of an ``SsssCcccPpppRrrrAaaa`` sample name (all 1-based)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int


def parse_name(name: str, path: Optional[str] = None) -> NtuName:
    """Parses ``S001C002P003R002A013``; raises DataError for any other form."""
    m = NAME_PATTERN.match(name)
    if not m:
        raise DataError(path or name, f"file name {name!r} does not follow the NTU pattern SsssCcccPpppRrrrAaaa")
    return NtuName(*(int(g) for g in m.groups()))


# --------------------------------------------------------------------------- parsing


@dataclasses.dataclass
class Body:
    """One tracked body of a sample.

    Attributes:
      joints: float32 ``[n, 25, 3]`` camera-space positions, in order of appearance.
      colors: float32 ``[n, 25, 2]`` colour-image coordinates.
      interval: kept-frame index of each appearance (the reference assumes a
        contiguous run: first appearance, then previous + 1).
      info: float64 ``[n, 9]`` the body line after the ID (clippedEdges ... trackingState).
      motion: sum over x, y, z of the variance of all its joint positions.
    """

    body_id: str
    joints: np.ndarray
    colors: np.ndarray
    interval: List[int]
    info: np.ndarray
    motion: float = 0.0


@dataclasses.dataclass
class RawSkeleton:
    """A parsed ``.skeleton`` file: bodies by ID (in order of first appearance)."""

    name: str
    bodies: Dict[str, Body]
    num_frames: int          # frames that have at least one body
    dropped_frames: List[int]  # 0-based indices of frames without bodies


class _Lines:
    """Line cursor over a text file that reports 1-based line numbers in errors."""

    def __init__(self, path: str, lines: List[str]):
        self.path, self.lines, self.pos = path, lines, 0

    def next_tokens(self, what: str) -> List[str]:
        if self.pos >= len(self.lines):
            raise DataError(self.path, f"unexpected end of file: expected {what}", line=self.pos + 1)
        tokens = self.lines[self.pos].split()
        self.pos += 1
        return tokens

    def count(self, what: str, maximum: int) -> int:
        tokens = self.next_tokens(what)
        if len(tokens) != 1:
            raise DataError(self.path, f"expected a single integer ({what}), found {len(tokens)} tokens", line=self.pos)
        try:
            n = int(tokens[0])
        except ValueError:
            raise DataError(self.path, f"expected an integer ({what}), found {tokens[0]!r}", line=self.pos) from None
        if not 0 <= n <= maximum:
            raise DataError(self.path, f"{what} {n} outside [0, {maximum}]", line=self.pos)
        return n

    def floats(self, num_lines: int, width: int, what: str) -> np.ndarray:
        """Reads ``num_lines`` lines of exactly ``width`` finite numbers -> float32 [num_lines, width]."""
        start = self.pos
        if start + num_lines > len(self.lines):
            raise DataError(self.path, f"unexpected end of file inside {what} "
                            f"(needs {num_lines} lines, {len(self.lines) - start} left)", line=len(self.lines) + 1)
        rows = [self.lines[i].split() for i in range(start, start + num_lines)]
        self.pos += num_lines
        for i, r in enumerate(rows):
            if len(r) != width:
                raise DataError(self.path, f"expected {width} values in {what}, found {len(r)}", line=start + i + 1)
        try:
            values = np.array(rows, dtype=np.float32)
        except ValueError:
            for i, r in enumerate(rows):
                for tok in r:
                    try:
                        float(tok)
                    except ValueError:
                        raise DataError(self.path, f"non-numeric value {tok!r} in {what}", line=start + i + 1) from None
            raise
        if not np.all(np.isfinite(values)):
            i = int(np.argwhere(~np.isfinite(values))[0][0])
            raise DataError(self.path, f"non-finite value in {what}", line=start + i + 1)
        return values


def read_text(path: str) -> List[str]:
    """Reads a text file as lines; binary or undecodable content is a DataError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(path, f"cannot read file: {e.strerror}") from None
    if b"\x00" in raw:
        raise DataError(path, "binary content (NUL byte): not a text skeleton file")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"non-ASCII byte 0x{raw[e.start]:02x}: not a text skeleton file", line=line) from None
    return text.splitlines()


def parse_skeleton_file(path: str, num_joints: int = NUM_JOINTS, max_bodies: int = 64) -> RawSkeleton:
    """Parses an NTU ``.skeleton`` file (docs/official_code.md §1).

    Frames with zero bodies are dropped; each body's joints are stacked in order
    of appearance with the reference's contiguous ``interval`` convention.
    Raises DataError (file, line, problem) on malformed content.
    """
    name = os.path.basename(path)
    if name.endswith(".skeleton"):
        name = name[: -len(".skeleton")]
    cur = _Lines(path, read_text(path))
    num_frames = cur.count("frame count", maximum=100000)
    if num_frames == 0:
        raise DataError(path, "zero frames", line=1)
    per_body: Dict[str, dict] = {}
    dropped: List[int] = []
    valid = -1
    for f in range(num_frames):
        num_bodies = cur.count(f"body count of frame {f}", maximum=max_bodies)
        if num_bodies == 0:
            dropped.append(f)
            continue
        valid += 1
        for _ in range(num_bodies):
            body_line = cur.next_tokens("a body info line")
            if len(body_line) != 10:
                raise DataError(path, f"expected 10 values in the body info line, found {len(body_line)}", line=cur.pos)
            body_id = body_line[0]
            try:
                info = np.array(body_line[1:], dtype=np.float64)
            except ValueError:
                raise DataError(path, f"non-numeric value in the body info line {' '.join(body_line)!r}",
                                line=cur.pos) from None
            n_joints = cur.count("joint count", maximum=10000)
            if n_joints != num_joints:
                raise DataError(path, f"expected {num_joints} joints, found {n_joints}", line=cur.pos)
            values = cur.floats(n_joints, 12, "a joint line")
            rec = per_body.get(body_id)
            if rec is None:
                per_body[body_id] = {"joints": [values[:, 0:3]], "colors": [values[:, 5:7]],
                                     "interval": [valid], "info": [info]}
            else:
                rec["joints"].append(values[:, 0:3])
                rec["colors"].append(values[:, 5:7])
                rec["interval"].append(rec["interval"][-1] + 1)
                rec["info"].append(info)
    while cur.pos < len(cur.lines):
        if cur.lines[cur.pos].strip():
            raise DataError(path, f"unexpected content after the last of {num_frames} frames", line=cur.pos + 1)
        cur.pos += 1
    if not per_body:
        raise DataError(path, f"no body in any of the {num_frames} frames")
    bodies = {}
    for body_id, rec in per_body.items():
        joints = np.stack(rec["joints"])  # [n, 25, 3] float32
        bodies[body_id] = Body(body_id, joints, np.stack(rec["colors"]), rec["interval"], np.stack(rec["info"]))
    if len(bodies) > 1:
        for body in bodies.values():
            body.motion = _motion(body.joints)
    return RawSkeleton(name, bodies, num_frames - len(dropped), dropped)


def _motion(joints: np.ndarray) -> float:
    """Sum over xyz of the variance of all joint positions (float32, as the reference)."""
    return float(np.sum(np.var(joints.reshape(-1, 3), axis=0)))


# --------------------------------------------------------------------------- denoising


def _valid_frames_by_spread(joints: np.ndarray) -> np.ndarray:
    """Frames whose x-spread <= 0.8 * y-spread. joints: [n, 25, 3] -> indices."""
    x, y = joints[..., 0], joints[..., 1]
    ok = (x.max(axis=1) - x.min(axis=1)) <= SPREAD_THRESHOLD * (y.max(axis=1) - y.min(axis=1))
    return np.nonzero(ok)[0]


def denoise_bodies(bodies: Dict[str, Body]) -> List[Body]:
    """Length and spread denoising, then motion ranking (docs/official_code.md §1).

    Returns the remaining bodies, most moving first (a single body is returned
    as is). May return an empty list when every body is noise.
    """
    bodies = dict(bodies)
    for body_id, body in list(bodies.items()):           # 1. length
        if len(body.interval) <= LENGTH_THRESHOLD:
            del bodies[body_id]
    if len(bodies) == 1:
        return list(bodies.values())
    for body_id, body in list(bodies.items()):           # 2. spread
        if len(bodies) == 1:
            break
        valid = _valid_frames_by_spread(body.joints)
        n = len(body.interval)
        noise = n - len(valid)
        if noise == 0:
            continue
        if noise / float(n) >= SPREAD_RATIO_THRESHOLD:
            del bodies[body_id]
        else:
            body.motion = min(body.motion, _motion(body.joints[valid]))
    if len(bodies) == 1:
        return list(bodies.values())
    return sorted(bodies.values(), key=lambda b: b.motion, reverse=True)  # 3. stable, descending


def _write(dst: np.ndarray, body: Body, columns: slice):
    start, end = body.interval[0], body.interval[-1]
    dst[start:end + 1, columns] = body.joints.reshape(-1, 75)


def assemble_actors(raw: RawSkeleton, path: Optional[str] = None) -> np.ndarray:
    """One- or two-actor array ``[frames, 75 | 150]`` float32 (docs/official_code.md §1)."""
    num_frames = raw.num_frames
    if len(raw.bodies) == 1:
        joints = np.zeros((num_frames, 75), np.float32)
        _write(joints, next(iter(raw.bodies.values())), slice(0, 75))
        return joints
    ranked = denoise_bodies(raw.bodies)
    if not ranked:
        raise DataError(path or raw.name,
                        f"all {len(raw.bodies)} bodies were removed as noise (length <= {LENGTH_THRESHOLD})")
    if len(ranked) == 1:
        joints = np.zeros((num_frames, 75), np.float32)
        _write(joints, ranked[0], slice(0, 75))
    else:
        joints = np.zeros((num_frames, 150), np.float32)
        actor1 = ranked[0]
        start1, end1 = actor1.interval[0], actor1.interval[-1]
        _write(joints, actor1, slice(0, 75))
        start2, end2 = 0, 0
        for body in ranked[1:]:
            start, end = body.interval[0], body.interval[-1]
            if min(end1, end) - max(start1, start) <= 0:      # no overlap with actor 1
                _write(joints, body, slice(0, 75))
                start1, end1 = min(start, start1), max(end, end1)
            elif min(end2, end) - max(start2, start) <= 0:    # no overlap with actor 2
                _write(joints, body, slice(75, 150))
                start2, end2 = min(start, start2), max(end, end2)
    joints = joints[joints.sum(axis=1) != 0]                  # 5. drop missing frames
    if joints.shape[0] == 0:
        raise DataError(path or raw.name, "no frame left after removing missing frames")
    return joints


def centre_sequence(joints: np.ndarray) -> np.ndarray:
    """Subtracts actor 1's spine-middle joint of its first non-zero frame (docs/official_code.md §1).

    joints: ``[frames, 75 | 150]`` -> same shape (a new array).
    """
    joints = joints.copy()
    two = joints.shape[1] == 150
    if two:
        missing1 = joints[:, :75].sum(axis=1) == 0
        missing2 = joints[:, 75:].sum(axis=1) == 0
    nonzero = np.nonzero(np.any(joints[:, :75] != 0, axis=1))[0]
    i = nonzero[0] if len(nonzero) else joints.shape[0] - 1
    origin = joints[i, 3:6].copy()
    joints -= np.tile(origin, joints.shape[1] // 3)
    if two:
        joints[missing1, :75] = 0
        joints[missing2, 75:] = 0
    return joints


def to_persons(joints: np.ndarray, copy_single_actor: bool) -> np.ndarray:
    """``[frames, 75 | 150]`` -> ``[frames, 2, 25, 3]``.

    A lone actor gets zeros in the second slot (NTU-60) or a copy of itself
    (NTU-120, ``copy_single_actor=True``), as the reference's ``align_frames``.
    """
    if joints.shape[1] == 75:
        second = joints if copy_single_actor else np.zeros_like(joints)
        joints = np.concatenate([joints, second], axis=1)
    return joints.reshape(joints.shape[0], 2, NUM_JOINTS, 3)


def read_ntu_sample(path: str, copy_single_actor: bool = False, require_name: bool = True) -> Sample:
    """Full NTU preparation of one file -> Sample with ``[frames, 2, 25, 3]`` skeleton.

    Labels are ``action - 1``; metadata comes from the file name. ``require_name=False`` (prediction) also
    reads files named otherwise: their label and metadata are -1.
    """
    raw = parse_skeleton_file(path)
    if require_name or NAME_PATTERN.match(raw.name):
        fields = parse_name(raw.name, path)
    else:
        fields = NtuName(-1, -1, -1, -1, 0)
    joints = centre_sequence(assemble_actors(raw, path))
    skeleton = to_persons(joints, copy_single_actor)
    return Sample(raw.name, skeleton, fields.action - 1, fields.subject, fields.camera,
                  fields.setup, fields.replication).check(path)


# --------------------------------------------------------------------------- splits

SPLITS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}


def train_groups(dataset: str, protocol: str) -> Tuple[str, Tuple[int, ...]]:
    """(name field, training ids in the reference's concatenation order)."""
    if protocol == "xsub":
        return "subject", NTU60_XSUB_TRAIN if dataset == "ntu60" else NTU120_XSUB_TRAIN
    if protocol == "xview":
        return "camera", (2, 3)
    if protocol == "xset":
        return "setup", tuple(range(2, 33, 2))
    raise ValueError(f"unknown NTU protocol {protocol!r}; use xsub, xview or xset")


def split_names(names: Sequence[str], dataset: str, protocol: str) -> Dict[str, List[str]]:
    """Splits NTU sample names into ``{"train": [...], "test": [...]}``.

    Order as the reference's ``seq_transformation``: group by group in the
    order of the id list, name order within a group (the test ids ascending).
    """
    if dataset not in SPLITS or protocol not in SPLITS[dataset]:
        raise ValueError(f"unknown protocol {protocol!r} for {dataset!r}; "
                         f"known: {', '.join(f'{d}: {p}' for d, p in SPLITS.items())}")
    field, train_ids = train_groups(dataset, protocol)
    names = sorted(names)
    values = [getattr(parse_name(n), field) for n in names]
    train_set = set(train_ids)
    test_ids = sorted(set(values) - train_set)
    by_id: Dict[int, List[str]] = {}
    for n, v in zip(names, values):
        by_id.setdefault(v, []).append(n)
    return {"train": [n for i in train_ids for n in by_id.get(i, [])],
            "test": [n for i in test_ids for n in by_id.get(i, [])]}


def read_name_list(path: str) -> List[str]:
    """One sample name per line (blank lines ignored)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def find_skeleton_files(input_dirs: Iterable[str]) -> Dict[str, str]:
    """Maps sample name -> path for every ``*.skeleton`` in the given directories.

    NTU-120 ships setups 18-32 in a second folder: pass both.
    """
    found: Dict[str, str] = {}
    for d in input_dirs:
        if not os.path.isdir(d):
            raise FileNotFoundError(f"input directory {d} does not exist")
        for entry in sorted(os.listdir(d)):
            if entry.endswith(".skeleton"):
                name = entry[: -len(".skeleton")]
                if name in found:
                    raise DataError(os.path.join(d, entry), f"sample {name} also found at {found[name]}")
                found[name] = os.path.join(d, entry)
    return found


def num_classes(dataset: str) -> int:
    return {"ntu60": 60, "ntu120": 120}[dataset]

