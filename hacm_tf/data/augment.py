"""Per-sample crop, resize, rotation and velocity as TF ops (docs/official_code.md §2).

Every random function takes its draws explicitly (uniform numbers in [0, 1) or
angles), so the reference feeder's recorded draws reproduce its outputs; the
pipeline draws them with stateless random ops from a per-sample seed.

A sample is ``x: [T, M, V, C]`` float32 (frames, persons, joints, xyz).
"""

from __future__ import annotations

import tensorflow as tf

from hacm_tf.config import DataConfig

# the defaults of DataConfig (docs/official_code.md §2)
EVAL_CROP = DataConfig.eval_crop
TRAIN_CROP = DataConfig.train_crop
MIN_CROP_FRAMES = DataConfig.min_crop_frames
ROTATION_RANGE = DataConfig.rotation_range


def valid_frame_count(x: tf.Tensor) -> tf.Tensor:
    """Number of frames whose plain sum over (M, V, C) is non-zero, at least 1.

    As the reference feeder (it assumes the valid frames are a prefix).
    x: [T, M, V, C] -> int32 scalar.
    """
    n = tf.reduce_sum(tf.cast(tf.reduce_sum(x, axis=[1, 2, 3]) != 0, tf.int32))
    return tf.maximum(n, 1)


def eval_crop(valid: tf.Tensor, p: float = EVAL_CROP):
    """Central crop keeping fraction ``p``: bias = int((1 - p) * valid / 2).

    Returns (start, length) int32 scalars.
    """
    valid = tf.cast(valid, tf.int32)
    bias = tf.cast(tf.floor((1.0 - tf.constant(p, tf.float64)) * tf.cast(valid, tf.float64) / 2.0), tf.int32)
    return bias, valid - 2 * bias


def train_crop(valid: tf.Tensor, u_scale: tf.Tensor, u_offset: tf.Tensor,
               p_range=TRAIN_CROP, min_frames: int = MIN_CROP_FRAMES):
    """Random crop: p = p_min + u_scale * (p_max - p_min); length = clip(floor(valid * p), min_frames, valid);
    start = floor(u_offset * (valid - length + 1)).

    u_scale, u_offset: uniform draws in [0, 1). Returns (start, length) int32 scalars.
    """
    valid = tf.cast(valid, tf.int32)
    p = p_range[0] + tf.cast(u_scale, tf.float64) * (p_range[1] - p_range[0])
    length = tf.cast(tf.floor(tf.cast(valid, tf.float64) * p), tf.int32)
    length = tf.minimum(tf.maximum(length, min_frames), valid)
    span = valid - length + 1
    start = tf.cast(tf.floor(tf.cast(u_offset, tf.float64) * tf.cast(span, tf.float64)), tf.int32)
    return tf.minimum(start, span - 1), length


def resize_frames(x: tf.Tensor, start: tf.Tensor, length: tf.Tensor, window: int) -> tf.Tensor:
    """Linear resize of frames [start, start + length) to ``window`` frames.

    PyTorch bilinear / align_corners=False in float32: for output frame j,
    s = max((j + 0.5) * length / window - 0.5, 0); i0 = floor(s);
    i1 = min(i0 + 1, length - 1); out = (1 - (s - i0)) * x[i0] + (s - i0) * x[i1].
    x: [T, ...] -> [window, ...].
    """
    scale = tf.cast(length, tf.float32) / tf.constant(window, tf.float32)
    s = scale * (tf.range(window, dtype=tf.float32) + 0.5) - 0.5        # [window]
    s = tf.maximum(s, 0.0)
    i0 = tf.cast(tf.floor(s), tf.int32)
    i1 = tf.minimum(i0 + 1, length - 1)
    lam = s - tf.cast(i0, tf.float32)
    lam = tf.reshape(lam, [window] + [1] * (x.shape.rank - 1))
    x0 = tf.gather(x, start + i0)
    x1 = tf.gather(x, start + i1)
    return (1.0 - lam) * x0 + lam * x1


def rotation_matrix(angles: tf.Tensor) -> tf.Tensor:
    """R = Rz @ Ry @ Rx for angles (ax, ay, az) in radians (the reference's row convention).

    angles: [3] -> [3, 3]; a joint's column vector v becomes R @ v.
    """
    angles = tf.cast(angles, tf.float32)
    c, s = tf.cos(angles), tf.sin(angles)
    one, zero = tf.ones([], tf.float32), tf.zeros([], tf.float32)
    rx = tf.stack([[one, zero, zero], [zero, c[0], s[0]], [zero, -s[0], c[0]]])
    ry = tf.stack([[c[1], zero, -s[1]], [zero, one, zero], [s[1], zero, c[1]]])
    rz = tf.stack([[c[2], s[2], zero], [-s[2], c[2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def rotate(x: tf.Tensor, rotation: tf.Tensor) -> tf.Tensor:
    """Applies a 3x3 rotation to every joint. x: [..., 3] -> [..., 3]."""
    return tf.einsum("...c,dc->...d", x, rotation)


def velocity(x: tf.Tensor) -> tf.Tensor:
    """x[t] <- x[t + 1] - x[t], last frame 0. x: [T, ...] -> [T, ...]."""
    diff = x[1:] - x[:-1]
    return tf.concat([diff, tf.zeros_like(x[:1])], axis=0)


def train_transform(x: tf.Tensor, seed: tf.Tensor, window: int, p_range=TRAIN_CROP,
                    min_frames: int = MIN_CROP_FRAMES, rotation_range: float = ROTATION_RANGE,
                    use_velocity: bool = False) -> tf.Tensor:
    """Training augmentation of one sample with stateless draws from ``seed`` (int32 [2]).

    x: [T, M, V, C] -> [window, M, V, C].
    """
    draws = tf.random.stateless_uniform([5], seed=seed, dtype=tf.float32)
    start, length = train_crop(valid_frame_count(x), draws[0], draws[1], p_range, min_frames)
    y = resize_frames(x, start, length, window)
    if rotation_range > 0:
        angles = (draws[2:5] * 2.0 - 1.0) * rotation_range
        y = rotate(y, rotation_matrix(angles))
    return velocity(y) if use_velocity else y


def eval_transform(x: tf.Tensor, window: int, p: float = EVAL_CROP, use_velocity: bool = False) -> tf.Tensor:
    """Evaluation preprocessing: central crop and resize. x: [T, M, V, C] -> [window, M, V, C]."""
    start, length = eval_crop(valid_frame_count(x), p)
    y = resize_frames(x, start, length, window)
    return velocity(y) if use_velocity else y


def eval_transform_batch(x: tf.Tensor, num_frames: tf.Tensor, window: int, p: float = EVAL_CROP,
                         use_velocity: bool = False) -> tf.Tensor:
    """Vectorised eval_transform of zero-padded samples: x [B, T, M, V, C], num_frames [B] -> [B, window, M, V, C].

    Each sample's valid frames are counted (non-zero sum) within its first ``num_frames`` frames,
    then centrally cropped and resized exactly as ``eval_transform``.
    """
    t = tf.shape(x)[1]
    present = tf.range(t)[None, :] < tf.cast(num_frames, tf.int32)[:, None]              # [B, T]
    nonzero = tf.reduce_sum(x, axis=[2, 3, 4]) != 0
    valid = tf.maximum(tf.reduce_sum(tf.cast(present & nonzero, tf.int32), axis=1), 1)  # [B]
    bias = tf.cast(tf.floor((1.0 - tf.constant(p, tf.float64)) * tf.cast(valid, tf.float64) / 2.0), tf.int32)
    length = valid - 2 * bias
    scale = tf.cast(length, tf.float32)[:, None] / tf.constant(window, tf.float32)       # [B, 1]
    s = tf.maximum(scale * (tf.range(window, dtype=tf.float32)[None, :] + 0.5) - 0.5, 0.0)   # [B, window]
    i0 = tf.cast(tf.floor(s), tf.int32)
    i1 = tf.minimum(i0 + 1, length[:, None] - 1)
    lam = (s - tf.cast(i0, tf.float32))[:, :, None, None, None]
    x0 = tf.gather(x, bias[:, None] + i0, batch_dims=1)
    x1 = tf.gather(x, bias[:, None] + i1, batch_dims=1)
    y = (1.0 - lam) * x0 + lam * x1
    if use_velocity:
        y = tf.concat([y[:, 1:] - y[:, :-1], tf.zeros_like(y[:, :1])], axis=1)
    return y
