"""Synthetic NTU-format action data: real ``.skeleton`` text files from a kinematic NTU-25 body.

Each performance (subject, action, replication) is generated once by forward
kinematics of the NTU-25 bone tree and recorded by three cameras (NTU's views
at -45, 0 and +45 degrees), so the cross-subject and cross-view splits of the
NTU reader are meaningful. Variation: per-subject bone lengths and height, per
performance speed, amplitude, phase, duration and stance; per camera sensor
noise and distance. Some files contain the noise the NTU denoiser removes: a
short-lived extra body, a wide "furniture" body, and frames without bodies.

The files go through the same parser, denoiser and TFRecord builder as real
NTU data. Deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from hacm_tf.skeleton import NTU25

# Rest pose: offset of each joint from its parent, metres, body frame
# (x: the subject's left, y: up, z: forward).
_REST_OFFSETS = {
    1: (0, 0.25, 0), 20: (0, 0.24, 0), 2: (0, 0.08, 0), 3: (0, 0.14, 0.01),
    4: (0.17, -0.04, 0), 5: (0, -0.28, 0), 6: (0, -0.25, 0), 7: (0, -0.07, 0.01),
    21: (0, -0.07, 0.01), 22: (0.02, -0.03, 0.03),
    8: (-0.17, -0.04, 0), 9: (0, -0.28, 0), 10: (0, -0.25, 0), 11: (0, -0.07, 0.01),
    23: (0, -0.07, 0.01), 24: (-0.02, -0.03, 0.03),
    12: (0.09, -0.06, 0), 13: (0, -0.42, 0.01), 14: (0, -0.40, -0.01), 15: (0, -0.05, 0.11),
    16: (-0.09, -0.06, 0), 17: (0, -0.42, 0.01), 18: (0, -0.40, -0.01), 19: (0, -0.05, 0.11),
}
_HIP_HEIGHT = 0.93
_RIGHT_TO_LEFT = {8: 4, 9: 5, 10: 6, 11: 7, 23: 21, 24: 22, 16: 12, 17: 13, 18: 14, 19: 15}
CAMERA_YAWS = {1: 45.0, 2: 0.0, 3: -45.0}   # degrees, rotation of the subject seen by each camera


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


@dataclasses.dataclass
class Motion:
    """Joint-angle trajectories of one performance, each ``[T]`` radians (metres for lift)."""

    t: np.ndarray
    angles: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def get(self, key: str) -> np.ndarray:
        return self.angles.get(key, np.zeros_like(self.t))

    def add(self, key: str, value):
        self.angles[key] = self.get(key) + value


# Local rotation of each joint (rotating its subtree) from named angles:
#   flex: forward flexion (negative rotation about x for arms and hips, positive for knees/elbows),
#   abd: sideways raise (about z), twist: about y.
def _local_rotations(m: Motion) -> Dict[int, np.ndarray]:
    g = m.get
    rot = {
        0: _ry(g("yaw")) @ _rx(-g("lean")),
        1: _rx(-g("bow")) @ _rz(g("side_bend")),
        4: _rz(g("l_abd")) @ _ry(g("l_horiz")) @ _rx(-g("l_flex")),
        5: _rx(-g("l_elbow")),
        8: _rz(-g("r_abd")) @ _ry(-g("r_horiz")) @ _rx(-g("r_flex")),
        9: _rx(-g("r_elbow")) @ _rz(-g("r_wave")),
        12: _rz(g("l_hip_abd")) @ _rx(-g("l_hip")),
        13: _rx(g("l_knee")),
        16: _rz(-g("r_hip_abd")) @ _rx(-g("r_hip")),
        17: _rx(g("r_knee")),
        2: _ry(g("head_yaw")) @ _rx(-g("nod")),
    }
    return rot


def forward_kinematics(m: Motion, offsets: np.ndarray) -> np.ndarray:
    """Joint positions ``[T, 25, 3]`` in the body frame from a Motion and bone offsets ``[25, 3]``."""
    T = len(m.t)
    local = _local_rotations(m)
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    glob = [None] * 25
    pos = np.zeros((T, 25, 3))
    order = sorted(range(25), key=lambda j: len(NTU25.path_to_root(j)))
    for j in order:
        p = NTU25.parents[j]
        r = local.get(j, eye)
        if p < 0:
            glob[j] = r
            pos[:, j] = np.stack([np.zeros(T), _HIP_HEIGHT + m.get("lift"), np.zeros(T)], -1)
        else:
            glob[j] = glob[p] @ r
            pos[:, j] = pos[:, p] + np.einsum("tij,j->ti", glob[p], offsets[j])
    return pos


def _cycle(m: Motion, speed: float, phase: float) -> np.ndarray:
    return 2 * np.pi * speed * m.t + phase


# --------------------------------------------------------------------------- actions
# Each action fills a Motion given (m, amplitude a, speed s, phase p, rng).

def _wave(m, a, s, p, r):
    m.add("r_abd", np.deg2rad(150) * a); m.add("r_elbow", np.deg2rad(30))
    m.add("r_wave", np.deg2rad(35) * a * np.sin(_cycle(m, 1.4 * s, p)))


def _punch(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.9 * s, p)))
    m.add("r_flex", np.deg2rad(40) + np.deg2rad(50) * w * a)
    m.add("r_elbow", np.deg2rad(120) * (1 - w)); m.add("l_flex", np.deg2rad(40)); m.add("l_elbow", np.deg2rad(110))
    m.add("yaw", np.deg2rad(15) * w)


def _kick(m, a, s, p, r):
    w = np.clip(np.sin(_cycle(m, 0.7 * s, p)), 0, None)
    m.add("r_hip", np.deg2rad(75) * w * a); m.add("r_knee", np.deg2rad(60) * (1 - w) * w)
    m.add("l_abd", np.deg2rad(25)); m.add("r_abd", np.deg2rad(25))


def _squat(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.5 * s, p))) * a
    m.add("l_hip", np.deg2rad(85) * w); m.add("r_hip", np.deg2rad(85) * w)
    m.add("l_knee", np.deg2rad(140) * w); m.add("r_knee", np.deg2rad(140) * w)
    m.add("lean", np.deg2rad(-35) * w); m.add("lift", -0.45 * w)
    m.add("l_flex", np.deg2rad(80) * w); m.add("r_flex", np.deg2rad(80) * w)


def _jump(m, a, s, p, r):
    c = _cycle(m, 0.8 * s, p)
    air = np.clip(np.sin(c), 0, None)
    crouch = np.clip(-np.sin(c), 0, None)
    m.add("lift", 0.25 * a * air - 0.15 * crouch)
    m.add("l_knee", np.deg2rad(70) * crouch); m.add("r_knee", np.deg2rad(70) * crouch)
    m.add("l_hip", np.deg2rad(35) * crouch); m.add("r_hip", np.deg2rad(35) * crouch)
    m.add("l_abd", np.deg2rad(50) * air); m.add("r_abd", np.deg2rad(50) * air)


def _bow(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.45 * s, p)))
    m.add("bow", np.deg2rad(60) * w * a); m.add("nod", np.deg2rad(20) * w)


def _clap(m, a, s, p, r):
    m.add("l_flex", np.deg2rad(75)); m.add("r_flex", np.deg2rad(75))
    m.add("l_elbow", np.deg2rad(40)); m.add("r_elbow", np.deg2rad(40))
    w = np.deg2rad(35) * a * (0.5 + 0.5 * np.sin(_cycle(m, 1.6 * s, p)))
    m.add("l_horiz", -w); m.add("r_horiz", -w)


def _turn(m, a, s, p, r):
    m.add("yaw", np.deg2rad(300) * a * (m.t / m.t[-1]) * np.sign(r.uniform(-1, 1)))
    m.add("l_hip", np.deg2rad(20) * np.clip(np.sin(_cycle(m, 1.0 * s, p)), 0, None))
    m.add("r_hip", np.deg2rad(20) * np.clip(-np.sin(_cycle(m, 1.0 * s, p)), 0, None))


def _march(m, a, s, p, r):
    c = _cycle(m, 0.9 * s, p)
    left, right = np.clip(np.sin(c), 0, None), np.clip(-np.sin(c), 0, None)
    m.add("l_hip", np.deg2rad(60) * left * a); m.add("l_knee", np.deg2rad(80) * left * a)
    m.add("r_hip", np.deg2rad(60) * right * a); m.add("r_knee", np.deg2rad(80) * right * a)
    m.add("l_flex", np.deg2rad(30) * np.sin(c + np.pi)); m.add("r_flex", np.deg2rad(30) * np.sin(c))


def _raise_arms(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.5 * s, p)))
    m.add("l_flex", np.deg2rad(170) * w * a); m.add("r_flex", np.deg2rad(170) * w * a)


def _touch_head(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.5 * s, p)))
    m.add("l_flex", np.deg2rad(120) * w); m.add("l_abd", np.deg2rad(40) * w)
    m.add("l_elbow", np.deg2rad(140) * w * a); m.add("nod", np.deg2rad(10) * w)


def _side_bend(m, a, s, p, r):
    m.add("side_bend", np.deg2rad(30) * a * np.sin(_cycle(m, 0.5 * s, p)))
    m.add("l_abd", np.deg2rad(20)); m.add("r_abd", np.deg2rad(20))


def _mirror(fn):
    """The same action with the other side's limbs (left <-> right angle names)."""
    def mirrored(m, a, s, p, r):
        tmp = Motion(m.t)
        fn(tmp, a, s, p, r)
        for k, v in tmp.angles.items():
            if k.startswith("l_"):
                k = "r_" + k[2:]
            elif k.startswith("r_"):
                k = "l_" + k[2:]
            m.add(k, v)
    return mirrored


def _raise_one_arm(m, a, s, p, r):
    w = 0.5 * (1 - np.cos(_cycle(m, 0.5 * s, p)))
    m.add("r_flex", np.deg2rad(170) * w * a)


def _nod(m, a, s, p, r):
    m.add("nod", np.deg2rad(25) * a * np.sin(_cycle(m, 1.2 * s, p)))


def _shake_head(m, a, s, p, r):
    m.add("head_yaw", np.deg2rad(35) * a * np.sin(_cycle(m, 1.2 * s, p)))


def _slow_clap(m, a, s, p, r):
    _clap(m, a, 0.45 * s, p, r)


ACTIONS: Tuple[Tuple[str, Callable], ...] = (
    ("wave right hand", _wave), ("punch", _punch), ("kick", _kick), ("squat", _squat),
    ("jump", _jump), ("bow", _bow), ("clap", _clap), ("turn around", _turn),
    ("walk in place", _march), ("raise both arms", _raise_arms), ("touch head", _touch_head),
    ("side bend", _side_bend),
    # harder classes: the same motion with the other limb, one limb only, or the head alone
    ("wave left hand", _mirror(_wave)), ("punch with the left hand", _mirror(_punch)),
    ("kick with the left leg", _mirror(_kick)), ("raise right arm", _raise_one_arm),
    ("raise left arm", _mirror(_raise_one_arm)), ("nod", _nod), ("shake head", _shake_head),
    ("slow clap", _slow_clap),
)
CLASS_NAMES = tuple(name for name, _ in ACTIONS)


def subject_offsets(rng: np.random.RandomState) -> np.ndarray:
    """Bone offsets ``[25, 3]`` of one subject: a global scale and per-bone jitter, left/right symmetric."""
    scale = rng.uniform(0.88, 1.12)
    jitter = rng.uniform(0.94, 1.06, size=25)
    off = np.zeros((25, 3))
    for j, v in _REST_OFFSETS.items():
        off[j] = np.asarray(v) * scale * jitter[_RIGHT_TO_LEFT.get(j, j)]
    return off


def perform(action: int, offsets: np.ndarray, frames: int, rng: np.random.RandomState) -> np.ndarray:
    """Body-frame joint positions ``[frames, 25, 3]`` of one performance of ``action``."""
    m = Motion(np.arange(frames) / 30.0)
    ACTIONS[action][1](m, rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25), rng.uniform(0, 2 * np.pi), rng)
    m.add("yaw", rng.uniform(-0.25, 0.25))                  # stance: facing direction
    m.add("nod", 0.04 * np.sin(2 * np.pi * 0.3 * m.t + rng.uniform(0, 6)))  # idle motion
    return forward_kinematics(m, offsets)


def to_camera(body: np.ndarray, camera: int, rng: np.random.RandomState, noise: float = 0.006) -> np.ndarray:
    """Body frame -> Kinect camera space (x right of the camera, y up, z away), with sensor noise."""
    yaw = np.deg2rad(CAMERA_YAWS[camera])
    r = _ry(np.array(yaw)) @ np.diag([1.0, 1.0, -1.0])     # the subject faces the camera
    shift = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-1.0, -0.8), rng.uniform(2.6, 3.4)])
    x = body @ r.T + shift
    return (x + rng.normal(0.0, noise, size=x.shape)).astype(np.float32)


def _joint_line(p: np.ndarray, rng) -> str:
    x, y, z = p
    dx, dy = 256 + 365 * x / z, 212 - 365 * y / z          # depth image projection
    cx, cy = 960 + 1060 * x / z, 540 - 1060 * y / z         # colour image projection
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return (f"{x:.7g} {y:.7g} {z:.7g} {dx:.7g} {dy:.7g} {cx:.7g} {cy:.7g} "
            f"{q[0]:.7g} {q[1]:.7g} {q[2]:.7g} {q[3]:.7g} 2")


def format_skeleton(frames: List[List[Tuple[str, np.ndarray]]], rng: np.random.RandomState) -> str:
    """NTU ``.skeleton`` text: frames of [(body_id, joints [25, 3]), ...]."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for body_id, joints in bodies:
            lean = rng.uniform(-0.2, 0.2, 2)
            out.append(f"{body_id} 0 1 1 1 1 0 {lean[0]:.7g} {lean[1]:.7g} 2")
            out.append("25")
            out.extend(_joint_line(p, rng) for p in joints)
    return "\n".join(out) + "\n"


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Size of a synthetic dataset.

    Attributes:
      num_subjects: performers P001..; cross-subject training subjects follow NTU-60's list.
      num_classes: first N actions of ``ACTIONS``: 12 distinct actions, then 8 harder ones that
        differ from them only in the side of the moving limb, in one limb, in the head, or in speed.
      replications: performances per subject and action.
      cameras: camera ids (views) recording every performance.
      frames: (min, max) frames per performance.
      noise_body_rate, dropped_frame_rate: fraction of files with an extra noisy
        body / with frames without bodies.
    """

    num_subjects: int = 8
    num_classes: int = 12
    replications: int = 1
    cameras: Tuple[int, ...] = (1, 2, 3)
    frames: Tuple[int, int] = (60, 110)
    noise_body_rate: float = 0.1
    dropped_frame_rate: float = 0.1

    def validate(self):
        if not 1 <= self.num_classes <= len(ACTIONS):
            raise ValueError(f"num_classes must be in [1, {len(ACTIONS)}], got {self.num_classes}")
        if self.num_subjects < 1 or self.replications < 1 or not self.cameras:
            raise ValueError("need at least one subject, replication and camera")
        if any(c not in CAMERA_YAWS for c in self.cameras):
            raise ValueError(f"cameras must be among {sorted(CAMERA_YAWS)}")
        if not 12 <= self.frames[0] <= self.frames[1]:
            raise ValueError(f"frames must satisfy 12 <= min <= max, got {self.frames}")
        return self


def generate_files(out_dir: str, spec: SyntheticSpec = SyntheticSpec(), seed: int = 0,
                   progress: bool = False) -> List[str]:
    """Writes ``S001CcccPpppRrrrAaaa.skeleton`` files into ``out_dir``; returns their paths.

    Existing identical files are kept; each file is written atomically.
    """
    from hacm_tf.data.tfrecord import atomic_write_text
    from hacm_tf.utils import progress_bar

    spec.validate()
    os.makedirs(out_dir, exist_ok=True)
    subjects = [subject_offsets(np.random.RandomState([seed, 1, s])) for s in range(spec.num_subjects)]
    jobs = [(s, a, rep) for s in range(spec.num_subjects) for a in range(spec.num_classes)
            for rep in range(spec.replications)]
    paths = []
    for s, a, rep in progress_bar(jobs, desc="synthetic", unit="performance", disable=not progress):
        rng = np.random.RandomState([seed, 2, s, a, rep])
        frames = rng.randint(spec.frames[0], spec.frames[1] + 1)
        body = perform(a, subjects[s], frames, rng)
        for cam in spec.cameras:
            crng = np.random.RandomState([seed, 3, s, a, rep, cam])
            joints = to_camera(body, cam, crng)
            body_id = str(72057594037920000 + crng.randint(0, 10 ** 6))
            per_frame = [[(body_id, joints[t])] for t in range(frames)]
            if crng.uniform() < spec.noise_body_rate:
                _add_noise_body(per_frame, crng)
            if crng.uniform() < spec.dropped_frame_rate:
                for t in crng.choice(frames, size=crng.randint(1, 4), replace=False):
                    per_frame[t] = []
            name = f"S001C{cam:03d}P{s + 1:03d}R{rep + 1:03d}A{a + 1:03d}"
            path = os.path.join(out_dir, name + ".skeleton")
            atomic_write_text(path, format_skeleton(per_frame, crng))
            paths.append(path)
    return paths


def _add_noise_body(per_frame, rng):
    """A second body the NTU denoiser removes: short-lived (<= 11 frames) or wide (furniture)."""
    frames = len(per_frame)
    noise_id = str(72057594037930000 + rng.randint(0, 10 ** 6))
    if rng.uniform() < 0.5:
        n = rng.randint(3, 11)
        start = rng.randint(0, frames - n)
        span = range(start, start + n)
        centre = np.array([rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), rng.uniform(2, 4)])
        make = lambda: centre + rng.normal(0, 0.3, size=(25, 3))
    else:
        span = range(frames)
        centre = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-0.8, -0.4), rng.uniform(3, 4.5)])
        shape = np.stack([np.linspace(-0.6, 0.6, 25), rng.uniform(-0.05, 0.05, 25), rng.uniform(-0.1, 0.1, 25)], -1)
        make = lambda: centre + shape + rng.normal(0, 0.01, size=(25, 3))
    for t in span:
        per_frame[t].append((noise_id, make().astype(np.float32)))


def class_names(num_classes: int) -> Sequence[str]:
    return CLASS_NAMES[:num_classes]
