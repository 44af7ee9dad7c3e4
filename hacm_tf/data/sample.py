"""The in-memory sample record shared by every reader and the TFRecord writer."""

from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np


@dataclasses.dataclass
class Sample:
    """One skeleton sequence.

    Attributes:
      name: unique sample name (e.g. ``S001C001P001R001A001``).
      skeleton: float32 array ``[frames, persons, joints, 3]`` of valid frames only.
      label: 0-based class index, -1 when unlabelled.
      subject, camera, setup, replication: metadata, -1 when unknown.
    """

    name: str
    skeleton: np.ndarray
    label: int = -1
    subject: int = -1
    camera: int = -1
    setup: int = -1
    replication: int = -1

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.skeleton.shape)

    def check(self, path: str = None) -> "Sample":
        """Validates rank, dtype and finiteness; raises DataError naming the sample."""
        from hacm_tf.errors import DataError

        where = path or self.name
        x = self.skeleton
        if x.ndim != 4 or x.shape[-1] != 3:
            raise DataError(where, f"sample {self.name}: expected [frames, persons, joints, 3], got shape {x.shape}")
        if x.shape[0] == 0:
            raise DataError(where, f"sample {self.name}: zero frames")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise DataError(where, f"sample {self.name}: non-finite value at frame {bad[0]}, person {bad[1]}, "
                                   f"joint {bad[2]}")
        if x.dtype != np.float32:
            self.skeleton = x.astype(np.float32)
        return self


CENTRINGS = ("first_frame", "none")


def centre_on_first_frame(skeleton: np.ndarray, centre_joint: int) -> np.ndarray:
    """Subtracts person 0's ``centre_joint`` in its first non-zero frame from every joint of every
    person (as the NTU and NW-UCLA readers centre); all-zero (missing) person-frames stay zero.

    skeleton: ``[frames, persons, joints, 3]`` -> same shape (a new float32 array).
    """
    x = np.asarray(skeleton, np.float32)
    present = np.any(x != 0, axis=(2, 3))                                   # [frames, persons]
    frames = np.nonzero(present[:, 0])[0]
    if len(frames) == 0:
        return x.copy()
    out = x - x[frames[0], 0, centre_joint]
    out[~present] = 0.0
    return out

