"""Seeds for stateless random ops that differ across tf.distribute replicas."""

from __future__ import annotations

import tensorflow as tf


def replica_seed(seed_generator) -> tf.Tensor:
    """Next seed of a ``keras.random.SeedGenerator`` with the replica id folded in -> int32 [2].

    Under MirroredStrategy every replica runs the same SeedGenerator, so without
    the fold-in all replicas would draw identical masks.
    """
    seed = tf.cast(seed_generator.next(), tf.int32)
    ctx = tf.distribute.get_replica_context()
    replica = 0 if ctx is None else ctx.replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(replica, tf.int32))
