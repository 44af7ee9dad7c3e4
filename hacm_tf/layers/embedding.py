"""Skeleton patch embedding, learned joint / temporal position embeddings, hyperbolic mapping."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from hacm_tf.ops import hyperbolic, patching


@keras.saving.register_keras_serializable("hacm_tf")
class SkeletonEmbedding(keras.layers.Layer):
    """Linear embedding of each joint's temporal patch (the reference's Conv2d with kernel (t_patch, 1)).

    [B, T, V, C] -> [B, T / t_patch, V, dim]. Patch values are ordered (frame, coordinate);
    init as PyTorch's default conv init: U(+-1 / sqrt(C * t_patch)) for kernel and bias.
    """

    def __init__(self, dim: int, t_patch: int, in_channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.t_patch, self.in_channels = int(dim), int(t_patch), int(in_channels)
        bound = 1.0 / math.sqrt(in_channels * t_patch)
        init = keras.initializers.RandomUniform(-bound, bound)
        self.proj = keras.layers.Dense(dim, kernel_initializer=init, bias_initializer=init, name="proj")

    def build(self, input_shape):
        self.proj.build((None, self.t_patch * self.in_channels))

    def call(self, x):
        return self.proj(patching.patchify(x, self.t_patch))        # [B, T', V, D]

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "t_patch": self.t_patch, "in_channels": self.in_channels}


@tf.custom_gradient
def _add_position(x, joint, temporal):
    """x [B, T', V, D] + joint [1, 1, V, D] + temporal [1, T', 1, D]. The embeddings' gradients come from
    one sum over the batch as a [1, B] x [B, T' V D] product (one streaming pass, about 2 ms at the
    decoder's [64, 24, 18, 256], where TensorFlow's broadcast gradients, strided reductions over the
    batch and joint axes, took 19 ms), then small sums over [T', V, D]."""
    def grad(dy):
        b = tf.shape(dy)[0]
        flat = tf.reshape(dy, [b, -1])
        summed = tf.reshape(tf.matmul(tf.ones([1, b], dy.dtype), flat), tf.shape(dy)[1:])   # [T', V, D]
        return (dy, tf.reduce_sum(summed, 0, keepdims=True)[None],
                tf.reduce_sum(summed, 1, keepdims=True)[None])

    return x + joint + temporal, grad


@keras.saving.register_keras_serializable("hacm_tf")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned per-joint ``[1, 1, V, D]`` and per-temporal-patch ``[1, T', 1, D]`` embedding (N(0, 0.02^2))."""

    def __init__(self, num_patches: int, num_joints: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_patches, self.num_joints, self.dim = int(num_patches), int(num_joints), int(dim)
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.joint = self.add_weight(name="joint", shape=(1, 1, num_joints, dim), initializer=init)
        self.temporal = self.add_weight(name="temporal", shape=(1, num_patches, 1, dim), initializer=init)

    def call(self, x, training=False):
        if not training:
            return x + self.joint + self.temporal                      # [B, T', V, D]
        return _add_position(x, tf.convert_to_tensor(self.joint), tf.convert_to_tensor(self.temporal))

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches, "num_joints": self.num_joints,
                "dim": self.dim}


@keras.saving.register_keras_serializable("hacm_tf")
class HyperbolicMapping(keras.layers.Layer):
    """Maps Euclidean features into the Poincare ball: project(expmap0(clip(x))). [..., D] -> [..., D].

    clip_radius > 0 first clips the Euclidean norm (feature clipping), which keeps
    embeddings away from the ball's boundary where float32 distances break down. ``fused``: in
    training, the native op where it is built (hacm_tf.ops.hyperbolic.expmap_project); inference and
    export keep the plain ops.
    """

    def __init__(self, curvature: float = 1.0, clip_radius: float = 0.0, fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.curvature, self.clip_radius, self.fused = float(curvature), float(clip_radius), bool(fused)

    def call(self, x, training=False):
        return hyperbolic.expmap_project(x, self.curvature, self.clip_radius, fused=bool(training) and self.fused)

    def get_config(self):
        return {**super().get_config(), "curvature": self.curvature, "clip_radius": self.clip_radius,
                "fused": self.fused}
