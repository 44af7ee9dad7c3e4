"""Joint layouts: the only place where joint indices live.

A :class:`JointLayout` describes a skeleton as data: joint names, the parent of
each joint (a tree rooted at joint ``root``), and the joints where the four
limbs attach to the torso (``limb_roots``: shoulders and hips).

HA-CM's spatial criterion splits the joints into *hub* ("father") joints and
*kept* joints. The hub joints are derived, never listed by hand:

    hubs = the smallest connected set of joints of the bone tree that contains
           the root and every limb root, i.e. the torso (root, spine, and the
           shoulder / hip joints where the limbs attach);
    kept = all other joints (head, arms below the shoulder, legs below the hip,
           hands), in ascending index order.

For NTU-25 this rule gives exactly the reference's 7 hub joints
``[0, 1, 4, 8, 12, 16, 20]`` and 18 kept joints
``[2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22, 23, 24]``
(docs/official_code.md §3); for Kinect-v1-20 it gives 7 hubs and 13 kept joints.
All indices are 0-based.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class JointLayout:
    """A skeleton topology.

    Attributes:
      name: layout identifier stored in dataset_info.json (e.g. ``"ntu25"``).
      joint_names: one name per joint, in the data's joint order.
      parents: parent index of every joint (``-1`` for the root).
      limb_roots: joints where the limbs attach to the torso (shoulders, hips).
      centre_joint: joint used as origin when centring a sequence.
    """

    name: str
    joint_names: Tuple[str, ...]
    parents: Tuple[int, ...]
    limb_roots: Tuple[int, ...]
    centre_joint: int

    def __post_init__(self):
        n = len(self.joint_names)
        if len(self.parents) != n:
            raise ValueError(f"layout {self.name}: {len(self.parents)} parents for {n} joints")
        roots = [j for j, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            raise ValueError(f"layout {self.name}: expected exactly one root, found {roots}")
        for j in range(n):  # every joint must reach the root without a cycle
            seen, k = set(), j
            while self.parents[k] >= 0:
                if k in seen or not 0 <= self.parents[k] < n:
                    raise ValueError(f"layout {self.name}: joint {j} does not reach the root")
                seen.add(k)
                k = self.parents[k]
        for j in tuple(self.limb_roots) + (self.centre_joint,):
            if not 0 <= j < n:
                raise ValueError(f"layout {self.name}: joint index {j} out of range")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def root(self) -> int:
        return self.parents.index(-1)

    @property
    def bones(self) -> Tuple[Tuple[int, int], ...]:
        """(child, parent) pairs, one per non-root joint."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

    def path_to_root(self, joint: int) -> Tuple[int, ...]:
        """Joints from ``joint`` up to and including the root."""
        path = [joint]
        while self.parents[path[-1]] >= 0:
            path.append(self.parents[path[-1]])
        return tuple(path)

    @property
    def hub_joints(self) -> Tuple[int, ...]:
        """Torso joints (sorted): union of the root paths of all limb roots."""
        hubs = {self.root}
        for j in self.limb_roots:
            hubs.update(self.path_to_root(j))
        return tuple(sorted(hubs))

    @property
    def kept_joints(self) -> Tuple[int, ...]:
        """Non-hub joints (sorted): the tokens HA-CM models."""
        hubs = set(self.hub_joints)
        return tuple(j for j in range(self.num_joints) if j not in hubs)


def _parents_from_one_based(pairs, n):
    parents = [-1] * n
    for child, parent in pairs:
        parents[child - 1] = parent - 1
    return tuple(parents)


# Kinect v2 (NTU RGB+D 60/120, PKU-MMD). 1-based (child, parent) pairs of the
# Kinect SDK joint hierarchy; joint 1 (spine base) is the root.
NTU25 = JointLayout(
    name="ntu25",
    joint_names=(
        "spine_base", "spine_mid", "neck", "head",
        "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot",
        "right_hip", "right_knee", "right_ankle", "right_foot",
        "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
    ),
    parents=_parents_from_one_based(
        [(2, 1), (21, 2), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
         (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15),
         (17, 1), (18, 17), (19, 18), (20, 19), (22, 8), (23, 8), (24, 12), (25, 12)],
        25),
    limb_roots=(4, 8, 12, 16),   # left/right shoulder, left/right hip
    centre_joint=1,              # spine middle (docs/official_code.md §1)
)

# Kinect v1 (NW-UCLA, UTD-MHAD, MSR Action3D); joint 0 (hip centre) is the root.
KINECT_V1_20 = JointLayout(
    name="kinect_v1_20",
    joint_names=(
        "hip_centre", "spine", "shoulder_centre", "head",
        "left_shoulder", "left_elbow", "left_wrist", "left_hand",
        "right_shoulder", "right_elbow", "right_wrist", "right_hand",
        "left_hip", "left_knee", "left_ankle", "left_foot",
        "right_hip", "right_knee", "right_ankle", "right_foot",
    ),
    parents=(-1, 0, 1, 2, 2, 4, 5, 6, 2, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18),
    limb_roots=(4, 8, 12, 16),
    centre_joint=1,              # spine
)

LAYOUTS: Dict[str, JointLayout] = {NTU25.name: NTU25, KINECT_V1_20.name: KINECT_V1_20}


def get_layout(name: str) -> JointLayout:
    """Returns the layout called ``name``; raises a ValueError listing the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown joint layout {name!r}; known layouts: {sorted(LAYOUTS)}") from None
