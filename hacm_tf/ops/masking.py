"""Token masking as pure functions of scores and explicit uniform noise.

Conventions: ``mask`` is 1 for masked (hidden) tokens and 0 for visible ones;
``ids_restore[j]`` is the rank of token j in the shuffled order, so the first
``keep`` ranks are the visible tokens; ``ids_keep`` lists the visible tokens in
rank order. ``noise`` is uniform in [0, 1) with the scores' shape ``[B, L]``.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

GUMBEL_EPS = 1e-10


class MaskResult(NamedTuple):
    """ids_keep [B, k] int32, mask [B, L] float32, ids_restore [B, L] int32, z [B, L] perturbed scores."""

    ids_keep: tf.Tensor
    mask: tf.Tensor
    ids_restore: tf.Tensor
    z: tf.Tensor


def gumbel(noise: tf.Tensor) -> tf.Tensor:
    """Gumbel draws from uniform noise: -log(-log(U + 1e-10) + 1e-10)."""
    return -tf.math.log(-tf.math.log(noise + GUMBEL_EPS) + GUMBEL_EPS)


def shuffle_and_keep(z: tf.Tensor, keep: int, keep_high: bool) -> MaskResult:
    """Keeps the ``keep`` tokens with the largest (keep_high) or smallest z. z: [B, L]."""
    ids_shuffle = tf.argsort(z, axis=-1, direction="DESCENDING" if keep_high else "ASCENDING", stable=True)
    ids_restore = tf.argsort(ids_shuffle, axis=-1, stable=True)
    ids_keep = ids_shuffle[:, :keep]
    mask = tf.cast(ids_restore >= keep, tf.float32)
    return MaskResult(ids_keep, mask, ids_restore, z)


def normalized_scores(scores: tf.Tensor, tau: float) -> tf.Tensor:
    """s / (tau * max_L s + 1e-10) per row. [B, L] -> [B, L]."""
    return scores / (tau * tf.reduce_max(scores, axis=-1, keepdims=True) + GUMBEL_EPS)


def gumbel_topk(scores: tf.Tensor, noise: tf.Tensor, keep: int, tau: float, keep_high: bool = True) -> MaskResult:
    """Gumbel-top-k sampling without replacement with logits s / (tau max s).

    z = log softmax-probabilities + Gumbel(noise), computed as log(softmax(.)) as the reference.
    keep_high=True keeps high-score tokens visible (HA-CM); False masks them (MAMP).
    scores, noise: [B, L].
    """
    p = tf.nn.softmax(normalized_scores(scores, tau), axis=-1)
    z = tf.math.log(p) + gumbel(noise)
    return shuffle_and_keep(z, keep, keep_high)


def random_masking(noise: tf.Tensor, keep: int) -> MaskResult:
    """MAE: keep the ``keep`` tokens with the smallest noise. noise: [B, L]."""
    return shuffle_and_keep(noise, keep, keep_high=False)


def motion_scores(patches: tf.Tensor) -> tf.Tensor:
    """MAMP motion score per token: mean |x[t] - x[t-1]| over the patch values; patch 0 copies patch 1.

    patches: [B, T', V, P] (P = t_patch * 3) -> [B, T' * V] (time-major).
    """
    d = tf.reduce_mean(tf.abs(patches[:, 1:] - patches[:, :-1]), axis=-1)   # [B, T'-1, V]
    d = tf.concat([d[:, :1], d], axis=1)                                   # [B, T', V]
    return tf.reshape(d, [tf.shape(d)[0], -1])


def permute_tokens(x: tf.Tensor, perm) -> tf.Tensor:
    """x [B, L, D] with each row's tokens reordered: out[b, j] = x[b, perm[b, j]]; perm [B, L] int (a
    permutation of 0..L-1 per row) or [L] (the same for every row).

    The gradient is the inverse permutation's gather (TensorFlow's gather gradient is a segment sum
    over every token, several times slower at the decoder's [64, 432, 256]).
    """
    perm = tf.cast(perm, tf.int32)
    batched = perm.shape.rank == 2

    @tf.custom_gradient
    def permute(x):
        def grad(dy):
            inverse = tf.argsort(perm, axis=-1, stable=True)
            return tf.gather(dy, inverse, batch_dims=1) if batched else tf.gather(dy, inverse, axis=1)

        return (tf.gather(x, perm, batch_dims=1) if batched else tf.gather(x, perm, axis=1)), grad

    return permute(x)


def tokens_from_table(visible: tf.Tensor, mask_token: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """A decoder's input in one gather: out[b, j] = row rows[b, j] of the table [visible as B * k rows;
    the mask token]. visible [B, k, D], mask_token [1, 1, D], rows [B, L] int (each visible token's row
    used exactly once, every other entry B * k) -> [B, L, D].

    The gradient gathers each visible token's row of dy back (inverse positions, B * k rows) and sums
    dy over the mask token's cells as the sum of all rows less the visible ones; TensorFlow's tile,
    concat and gather gradients take several passes over [B, L, D] for the same.
    """
    rows = tf.cast(rows, tf.int32)
    b, k, d = tf.shape(visible)[0], visible.shape[1], visible.shape[-1]

    @tf.custom_gradient
    def assemble(visible, mask_token):
        table = tf.concat([tf.reshape(visible, [-1, d]), tf.reshape(mask_token, [1, d])], axis=0)

        def grad(dy):
            flat = tf.reshape(dy, [-1, d])                                        # [B * L, D]
            length = tf.shape(rows)[1]
            cells = tf.reshape(tf.range(b * length), [b, length])                # [B, L]
            shown = rows < b * k
            positions = tf.scatter_nd(tf.expand_dims(tf.boolean_mask(rows, shown), -1),
                                      tf.boolean_mask(cells, shown), [b * k])     # row -> its cell
            d_visible = tf.gather(flat, positions)                                # [B * k, D]
            column_sum = lambda m: tf.matmul(tf.ones([1, tf.shape(m)[0]], m.dtype), m)[0]   # noqa: E731
            d_mask = column_sum(flat) - column_sum(d_visible)       # (a [1, n] product: one streaming pass)
            return tf.reshape(d_visible, tf.shape(visible)), tf.reshape(d_mask, tf.shape(mask_token))

        return tf.gather(table, rows), grad

    return assemble(visible, tf.cast(mask_token, visible.dtype))


def gather_tokens(x: tf.Tensor, ids: tf.Tensor, ranks=None) -> tf.Tensor:
    """x: [B, L, D], ids: [B, k] -> [B, k, D]. ``ranks`` [B, L] (each token's rank in the order ids
    starts, as MaskResult.ids_restore: ids[b, r] = j where ranks[b, j] = r < k): the gradient is then
    one gather of dy's rows (zero for ranks >= k) instead of TensorFlow's segment sum."""
    if ranks is None:
        return tf.gather(x, ids, batch_dims=1)
    keep = ids.shape[1]

    @tf.custom_gradient
    def gather(x):
        def grad(dy):
            padded = tf.concat([dy, tf.zeros_like(dy[:, :1])], axis=1)              # [B, k + 1, D]
            return tf.gather(padded, tf.minimum(tf.cast(ranks, tf.int32), keep), batch_dims=1)

        return tf.gather(x, ids, batch_dims=1), grad

    return gather(x)


def keep_count(length: int, mask_ratio: float) -> int:
    """int(L * (1 - mask_ratio)) as the reference (750 * 0.1 -> 74 in float arithmetic), at least 1."""
    return max(1, int(length * (1 - mask_ratio)))
