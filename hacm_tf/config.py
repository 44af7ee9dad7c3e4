"""Typed, frozen run configuration with readable validation errors."""

from __future__ import annotations

import dataclasses
from typing import Tuple


class ConfigError(ValueError):
    """An invalid configuration value (the message names the field)."""


def _check(cond: bool, field: str, message: str):
    if not cond:
        raise ConfigError(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Input pipeline settings (REFERENCE.md 2).

    Attributes:
      window: frames after crop-and-resize (72 for HA-CM, 120 for MAMP).
      train_crop: (p_min, p_max) of the random training crop.
      eval_crop: kept fraction of the central evaluation crop.
      min_crop_frames: lower bound of the training crop length.
      rotation_range: training rotation angle range (radians, per axis); 0 disables.
      velocity: feed frame differences instead of positions.
      batch_size: global batch size (split over replicas).
      shuffle_buffer: training shuffle buffer (records).
      semi_ratio: fraction of labelled training samples kept (1.0 = all).
      semi_stratified: choose the semi-supervised subset per class.
      cache: keep parsed records in memory after the first epoch.
    """

    window: int = 72
    train_crop: Tuple[float, float] = (0.5, 1.0)
    eval_crop: float = 0.95
    min_crop_frames: int = 64
    rotation_range: float = 0.3
    velocity: bool = False
    batch_size: int = 32
    shuffle_buffer: int = 4096
    semi_ratio: float = 1.0
    semi_stratified: bool = False
    cache: bool = False

    def validate(self) -> "DataConfig":
        _check(self.window >= 1, "window", f"must be positive, got {self.window}")
        lo, hi = self.train_crop
        _check(0 < lo <= hi <= 1, "train_crop", f"need 0 < p_min <= p_max <= 1, got {self.train_crop}")
        _check(0 < self.eval_crop <= 1, "eval_crop", f"must be in (0, 1], got {self.eval_crop}")
        _check(self.min_crop_frames >= 1, "min_crop_frames", f"must be positive, got {self.min_crop_frames}")
        _check(self.rotation_range >= 0, "rotation_range", f"must be >= 0, got {self.rotation_range}")
        _check(self.batch_size >= 1, "batch_size", f"must be positive, got {self.batch_size}")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", f"must be positive, got {self.shuffle_buffer}")
        _check(0 < self.semi_ratio <= 1, "semi_ratio", f"must be in (0, 1], got {self.semi_ratio}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        d = dict(d)
        if "train_crop" in d:
            d["train_crop"] = tuple(d["train_crop"])
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown DataConfig fields {sorted(unknown)}")
        return cls(**d).validate()


def replace(config, **changes):
    """``dataclasses.replace`` followed by ``validate()``."""
    return dataclasses.replace(config, **changes).validate()

