"""Input checks that name the expected and the received skeleton shape."""

from __future__ import annotations

import tensorflow as tf


def skeleton_layout_text(num_persons: int, num_joints: int) -> str:
    """``"[batch, frames, 2 persons, 25 joints, 3 coordinates]"``."""
    persons = f"{num_persons} person" + ("s" if num_persons != 1 else "")
    return f"[batch, frames, {persons}, {num_joints} joints, 3 coordinates]"


def check_skeleton_batch(x: tf.Tensor, num_persons: int, num_joints: int, in_graph: bool = False) -> tf.Tensor:
    """Checks that ``x`` is ``[batch, frames, num_persons, num_joints, 3]``; returns ``x``.

    A mismatch in the static shape raises ValueError when the function is traced. ``in_graph=True`` also
    adds a run-time assertion (for graphs whose callers bypass the declared shape, as a loaded SavedModel
    signature, ``saved_model_cli run`` or TF Serving do), failing with InvalidArgumentError whose message
    names the expected layout and the received shape.
    """
    expected = skeleton_layout_text(num_persons, num_joints)
    static = x.shape
    if static.rank is not None:
        dims = static.as_list()
        if static.rank != 5 or any(d is not None and d != e for d, e in zip(dims[2:], (num_persons, num_joints, 3))):
            raise ValueError(f"skeleton must be {expected}; received shape {dims}")
    if not in_graph:
        return x
    shape = tf.shape(x, out_type=tf.int32)
    tail = tf.concat([shape, tf.zeros([5], tf.int32)], axis=0)[2:5]       # rank < 5 still compares safely
    ok = tf.logical_and(tf.equal(tf.size(shape), 5),
                        tf.reduce_all(tf.equal(tail, tf.constant([num_persons, num_joints, 3], tf.int32))))
    check = tf.debugging.Assert(ok, [f"skeleton must be {expected}; received shape", shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(x)
