"""Temporal patches and motion targets."""

from __future__ import annotations

import tensorflow as tf


def patchify(x: tf.Tensor, t_patch: int) -> tf.Tensor:
    """[B, T, V, C] -> [B, T', V, t_patch * C], values ordered (frame within patch, coordinate)."""
    b, t, v, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    x = tf.reshape(x, [b, t // t_patch, t_patch, v, c])        # [B, T', p, V, C]
    x = tf.transpose(x, [0, 1, 3, 2, 4])                        # [B, T', V, p, C]
    return tf.reshape(x, [b, t // t_patch, v, t_patch * c])


def motion(x: tf.Tensor, stride: int = 1) -> tf.Tensor:
    """x[t + stride] - x[t], zero for the last ``stride`` frames. [B, T, V, C] -> same."""
    d = x[:, stride:] - x[:, :-stride]
    return tf.concat([d, tf.zeros_like(x[:, :stride])], axis=1)


def normalize_patches(target: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
    """(t - mean) / sqrt(var_unbiased + eps) over the last axis."""
    n = target.shape[-1]
    mean = tf.reduce_mean(target, axis=-1, keepdims=True)
    var = tf.reduce_sum(tf.square(target - mean), axis=-1, keepdims=True) / (n - 1)
    return (target - mean) / tf.sqrt(var + eps)
