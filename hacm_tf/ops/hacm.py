"""HA-CM's masking maths as pure functions: the two criteria, the token groups and their restore.

HA-CM splits the T' x V' token grid of a clip by temporal patch: the even patches form the
temporal group (L_t tokens), the odd ones the spatial group (L_s tokens). Each group is masked by
Gumbel top-k on its own criterion (``ops.masking.gumbel_topk``):

- temporal: how much attention each token receives from the other even patches of its joint;
- spatial: how far (Poincare distance) each joint lies from the other joints of its patch and from
  the hub ("father") joints, so that joints low in the skeleton's hierarchy are kept.

Token order inside a group is time-major (t' * V' + v). The functions take explicit inputs only
(no variables, no random draws), so each can be checked against a numpy formula.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import tensorflow as tf

from hacm_tf.ops import masking


def group_cells(num_patches: int, num_joints: int, parity: int, joint_major: bool = False) -> np.ndarray:
    """Canonical cell index (t * V' + v) of each token of a group, in the group's token order.

    parity 0: even temporal patches (temporal group), 1: odd (spatial group); ``joint_major``
    orders the group's tokens v * T_g + t' instead of t' * V' + v.
    """
    times = np.arange(parity, num_patches, 2)
    t, v = np.meshgrid(times, np.arange(num_joints), indexing="ij")       # [T_g, V']
    cells = t * num_joints + v
    return (cells.T if joint_major else cells).reshape(-1)


@dataclasses.dataclass(frozen=True)
class TokenGroups:
    """Where the tokens of HA-CM's two groups sit on the T' x V' grid.

    Attributes:
      times_t, times_s: temporal patches of the temporal (even) and spatial (odd) group.
      len_t, len_s: tokens per group (L_t = |times_t| V', L_s = |times_s| V').
      slot_cells: [L_t + L_s] canonical cell of each slot (temporal group's tokens, then spatial's).
      cell_slots: [T' V'] slot of each canonical cell (the inverse permutation).
    """

    times_t: tuple
    times_s: tuple
    len_t: int
    len_s: int
    slot_cells: np.ndarray
    cell_slots: np.ndarray


def token_groups(num_patches: int, num_joints: int, temporal_joint_major: bool = False) -> TokenGroups:
    """The two groups of a T' x V' grid (``temporal_joint_major``: the temporal group's tokens ordered
    joint-major, as the official code does)."""
    times_t, times_s = tuple(range(0, num_patches, 2)), tuple(range(1, num_patches, 2))
    slots = np.concatenate([group_cells(num_patches, num_joints, 0, temporal_joint_major),
                            group_cells(num_patches, num_joints, 1)])
    return TokenGroups(times_t, times_s, len(times_t) * num_joints, len(times_s) * num_joints,
                       slots, np.argsort(slots))


def even_odd_patches(x: tf.Tensor):
    """The temporal and spatial groups' patches of a grid: x [B, T', ...] -> (x[:, 0::2], x[:, 1::2]),
    i.e. the gathers at ``TokenGroups.times_t`` and ``times_s``, as one reshape (whose gradient is one
    stack, where two gathers' is a segment sum each)."""
    t, rest = x.shape[1], x.shape[2:]
    if t % 2:
        x = tf.pad(x, [[0, 0], [0, 1]] + [[0, 0]] * len(rest))
    even, odd = tf.unstack(tf.reshape(x, [-1, (t + 1) // 2, 2, *rest]), axis=2)
    return even, odd[:, :t // 2] if t % 2 else odd     # (a no-op slice still copies in its gradient)


def temporal_attention(q: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """Attention between the even patches of each joint: q, k [B, T_t, V', D] -> [B, V', T_t(query), T_t(key)],
    softmax over key times of q.k / sqrt(D)."""
    logits = tf.einsum("btvd,buvd->bvtu", q, k)
    return tf.nn.softmax(logits / math.sqrt(q.shape[-1]), axis=-1)


def temporal_scores(attention: tf.Tensor) -> tf.Tensor:
    """Attention received by each key token: [B, V', T_t, T_t] -> [B, T_t, V'] (time-major grid)."""
    return tf.transpose(tf.reduce_sum(attention, axis=2), [0, 2, 1])


def spatial_scores(points: tf.Tensor, father: tf.Tensor, father_weight: float,
                   distance: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
                   pairwise: Callable[[tf.Tensor], tf.Tensor] = None) -> tf.Tensor:
    """Spatial-hierarchy score of each joint of each odd patch.

    Args:
      points: [B, T_s, V', D] joint embeddings on the manifold.
      father: [B, T_s, 1, D] mean of the hub joints' embeddings.
      distance: (u, v) -> distances over the last axis (Poincare or Euclidean).
      pairwise: points [..., V', D] -> [..., V', V'] distances between every two of them (the same
        values as ``distance`` over broadcast pairs, which it defaults to).
    Returns:
      [B, T_s, V'] = sum over joints v of d(p_v, p_u) + father_weight * d(father, p_u).
    """
    if pairwise is None:
        pairwise = lambda p: distance(p[:, :, :, None], p[:, :, None, :])   # noqa: E731
    return tf.reduce_sum(pairwise(points), axis=2) + father_weight * distance(father, points)


def mask_groups(score_t: tf.Tensor, score_s: tf.Tensor, noise_t: tf.Tensor, noise_s: tf.Tensor,
                keep_t: int, keep_s: int, tau: float, keep_high: bool = True):
    """Gumbel top-k of each group: scores and uniform noise [B, L_t], [B, L_s] -> (MaskResult t, s)."""
    return (masking.gumbel_topk(score_t, noise_t, keep_t, tau, keep_high),
            masking.gumbel_topk(score_s, noise_s, keep_s, tau, keep_high))


def restore_groups(visible: tf.Tensor, mask_token: tf.Tensor, res_t, res_s, keep_t: int,
                   cell_slots: tf.Tensor) -> tf.Tensor:
    """Decoder input on the canonical grid: each group's visible tokens back in their slots, the mask
    token elsewhere.

    Args:
      visible: [B, k_t + k_s, Dd] decoded-width visible tokens (temporal group's first).
      mask_token: [1, 1, Dd].
      res_t, res_s: the groups' MaskResults ([B, L_g] ids_restore).
      cell_slots: [L] slot of each canonical cell (``TokenGroups.cell_slots``).
    Returns:
      [B, L, Dd] in canonical (t * V' + v) order.
    """
    b, k = tf.shape(visible)[0], visible.shape[1]
    len_t = res_t.ids_restore.shape[1]
    keep_s = k - keep_t

    # each cell's source in [visible t, mask tokens t, visible s, mask tokens s] (slots: each group's
    # ranks), then as a row of the table [B * k visible tokens; the mask token]
    slot_sources = tf.concat([res_t.ids_restore, res_s.ids_restore + len_t], axis=1)     # [B, L]
    sources = tf.gather(slot_sources, cell_slots, axis=1)                              # [B, L]
    from_s = sources >= len_t
    rank = tf.where(from_s, sources - len_t, sources)                  # rank within the cell's group
    shown = rank < tf.where(from_s, keep_s, keep_t)
    column = tf.where(from_s, rank + keep_t, rank)                     # index into visible[b]
    rows = tf.where(shown, tf.range(b)[:, None] * k + column, b * k)   # [B, L] into the table
    return masking.tokens_from_table(visible, mask_token, rows)
