"""Reconstruction and cross-contrast losses."""

from __future__ import annotations

import tensorflow as tf


def masked_mse(pred: tf.Tensor, target: tf.Tensor, mask: tf.Tensor):
    """Mean over masked tokens of the per-token MSE.

    pred, target: [B, L, P]; mask: [B, L] (1 = masked). Returns (loss scalar, per-token [B, L]).
    """
    per_token = tf.reduce_mean(tf.square(pred - target), axis=-1)
    loss = tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
    return loss, per_token


def identity_mse(logits: tf.Tensor) -> tf.Tensor:
    """MSE between row-softmax(logits) [B, B] and the identity (mean over B^2 entries)."""
    s = tf.nn.softmax(logits, axis=-1)
    return tf.reduce_mean(tf.square(s - tf.eye(tf.shape(s)[0], dtype=s.dtype)))


def pool_groups(first: tf.Tensor, second: tf.Tensor, normalize: bool = False) -> tf.Tensor:
    """Per-clip pooled features of the two groups: first [B, k1, D], second [B, k2, D] -> [3, B, D]
    holding a, b, g = the mean of first, of second, of both (L2-normalised when ``normalize``)."""
    a = tf.reduce_mean(first, axis=1)                                  # [B, D]
    b = tf.reduce_mean(second, axis=1)
    g = tf.reduce_mean(tf.concat([first, second], axis=1), axis=1)
    if normalize:
        a, b, g = (tf.math.l2_normalize(t, axis=-1) for t in (a, b, g))
    return tf.stack([a, b, g])


def pooled_contrast(pooled: tf.Tensor, temperature: float = 1.0):
    """Cross-contrast of pooled features [3, B, D] (a, b, g): the sum of identity_mse over
    (b g^T, a g^T, a b^T) / temperature, comparing every clip with every clip. Returns (loss, terms [3])."""
    a, b, g = pooled[0], pooled[1], pooled[2]
    terms = tf.stack([identity_mse(tf.matmul(b, g, transpose_b=True) / temperature),
                      identity_mse(tf.matmul(a, g, transpose_b=True) / temperature),
                      identity_mse(tf.matmul(a, b, transpose_b=True) / temperature)])
    return tf.reduce_sum(terms), terms
