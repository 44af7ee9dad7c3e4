"""The official HA-CM code's behaviours, as adapters that ``hacm_mode="reference"`` plugs in.

Each function reproduces one behaviour of the official implementation that differs from the method
as published; ``ModelConfig``'s ``ref_*`` switches choose them one by one. docs/reference_mode.md
describes each behaviour, its effect and why it is kept (number-for-number parity with the official
code's recorded outputs). The corrected path (``ops.hacm``) does not use this module.
"""

from __future__ import annotations

import math

import tensorflow as tf

from hacm_tf.ops import hyperbolic

KEEP_FRACTION = 0.1   # ref_keep_fraction: visible tokens per group, whatever mask_ratio says
TAU = 0.9             # ref_tau: Gumbel temperature, whatever tau says
CONTRAST_TEMPERATURE = 1.0   # ref_cross_contrast: raw pooled features at temperature 1


def keep_count(length: int) -> int:
    """ref_keep_fraction: visible tokens of a group of ``length`` tokens."""
    return int(KEEP_FRACTION * length)


def temporal_attention(q: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """ref_attention: q, k [B, T_t, V', D] -> [B, V', T_t, T_t] with the softmax taken over joints and the
    logits multiplied (not divided) by sqrt(D)."""
    logits = tf.einsum("btvd,buvd->bvtu", q, k)
    return tf.nn.softmax(logits * math.sqrt(q.shape[-1]), axis=1)


def distance(u: tf.Tensor, v: tf.Tensor, c: float = 1.0) -> tf.Tensor:
    """ref_distance: Poincare distance with a 4|u - v|^2 numerator and no 1/sqrt(c) factor."""
    return hyperbolic.distance(u, v, c, reference=True)


def joint_major(grid: tf.Tensor) -> tf.Tensor:
    """ref_token_order: a group's grid [B, T_g, V', ...] flattened joint-major -> [B, V' T_g, ...]."""
    s = grid.shape
    perm = [0, 2, 1] + list(range(3, len(s)))
    return tf.reshape(tf.transpose(grid, perm), [-1, s[1] * s[2], *s[3:]])


def restore_relabelled(visible: tf.Tensor, mask_token: tf.Tensor, res_t, res_s) -> tf.Tensor:
    """ref_unshuffle: [visible_t, visible_s, mask tokens] gathered with [restore_t, restore_s + L_t].

    The spatial group's ranks are offset by L_t although its visible tokens sit right after the
    temporal group's k_t, so spatial tokens land in temporal slots and vice versa. Returns
    [B, L_t + L_s, Dd] in slot order, which the official decoder reads as the canonical grid.
    """
    b = tf.shape(visible)[0]
    len_t, len_s = res_t.ids_restore.shape[1], res_s.ids_restore.shape[1]
    masked = len_t + len_s - visible.shape[1]
    seq = tf.concat([visible, tf.tile(mask_token, [b, masked, 1])], axis=1)
    ids = tf.concat([res_t.ids_restore, res_s.ids_restore + len_t], axis=1)
    return tf.gather(seq, ids, batch_dims=1)


def target_by_group(target_grid: tf.Tensor, times_t, times_s) -> tf.Tensor:
    """ref_target_order: target grid [B, T', V', P] -> [B, L, P] as [even patches, odd patches], each
    time-major, compared slot by slot with the (relabelled) prediction."""
    def part(times):
        g = tf.gather(target_grid, list(times), axis=1)
        return tf.reshape(g, [-1, g.shape[1] * g.shape[2], g.shape[3]])

    return tf.concat([part(times_t), part(times_s)], axis=1)
