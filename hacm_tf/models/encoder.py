"""SkeletonEncoder: the transformer backbone shared by every pretrainer and the classifier."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from hacm_tf.config import ModelConfig
from hacm_tf.layers.embedding import HyperbolicMapping, PositionEmbedding, SkeletonEmbedding
from hacm_tf.layers.transformer import LN_EPS, LayerNorm, TransformerBlock, track_layers
from hacm_tf.skeleton import get_layout


def token_joints(config: ModelConfig):
    """Joint indices the tokens are made of: HA-CM's kept (non-hub) joints, or all joints."""
    layout = get_layout(config.layout)
    return layout.kept_joints if config.method == "hacm" else tuple(range(layout.num_joints))


def fold_persons(x: tf.Tensor) -> tf.Tensor:
    """[N, T, M, V, C] -> [N * M, T, V, C], person index fastest (row n * M + m)."""
    s = tf.shape(x)
    x = tf.transpose(x, [0, 2, 1, 3, 4])                                    # [N, M, T, V, C]
    return tf.reshape(x, tf.concat([[s[0] * s[2]], s[1:2], s[3:]], axis=0))


BLOCK_PREFIX = "blocks_"                         # transformer block i is the layer "blocks_<i>"
EMBEDDING_LAYERS = ("joints_embed", "pos_embed")   # the layers before the first block


@keras.saving.register_keras_serializable("hacm_tf")
class SkeletonEncoder(keras.layers.Layer):
    """Patch embedding + joint / temporal embeddings (+ hyperbolic map) + pre-norm transformer.

    Stages (usable separately by the pretrainers):
      ``embed(x)``: [B, T, V_all, 3] -> raw patch embeddings of the token joints [B, T', V', D]
      ``position(e)``: + joint and temporal embeddings ("mc" in the reference) [B, T', V', D]
      ``to_manifold(mc, training)``: hyperbolic map when enabled (HA-CM) [B, T', V', D]
      ``encode(tokens)``: transformer blocks + final LayerNorm [B, L, D] -> [B, L, D]
    ``call(x)`` runs all of them on every token: [B, T, V_all, 3] -> [B, T' * V', D].
    ``config``: a ModelConfig dict; ``remat`` / ``precision`` / ``fused``: ComputeConfig's, for the transformer
    blocks and LayerNorms.
    """

    def __init__(self, config: dict, remat: str = "none", precision: str = "float32", fused: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        self.remat, self.precision, self.fused = remat, precision, bool(fused)
        cfg = ModelConfig.from_dict(self.config)
        self.cfg = cfg
        self.joints = token_joints(cfg)
        self.use_hyperbolic = cfg.method == "hacm" and cfg.hyperbolic
        self.joints_embed = SkeletonEmbedding(cfg.dim, cfg.t_patch, name=EMBEDDING_LAYERS[0])
        self.pos_embed = PositionEmbedding(cfg.num_patches, len(self.joints), cfg.dim, name=EMBEDDING_LAYERS[1])
        self.hyperbolic = HyperbolicMapping(cfg.curvature, cfg.clip_radius, fused, name="hyperbolic")
        rates = np.linspace(0.0, cfg.drop_path, cfg.depth)
        self.blocks = [TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, True, float(r), remat, precision,
                                        fused, name=f"{BLOCK_PREFIX}{i}") for i, r in enumerate(rates)]
        track_layers(self, "block", self.blocks)
        self.norm = LayerNorm(LN_EPS, fused, name="norm")

    def build(self, input_shape=None):
        d = self.cfg.dim
        self.joints_embed.build(None)
        self.pos_embed.build(None)
        for b in self.blocks:
            b.build((None, None, d))
        self.norm.build((None, None, d))

    def select_joints(self, x: tf.Tensor, joints=None) -> tf.Tensor:
        """[B, T, V_all, C] -> [B, T, len(joints), C]."""
        return tf.gather(x, list(self.joints if joints is None else joints), axis=2)

    def embed(self, x: tf.Tensor, joints=None) -> tf.Tensor:
        return self.joints_embed(self.select_joints(x, joints))              # [B, T', V', D]

    def position(self, e: tf.Tensor, training=False) -> tf.Tensor:
        return self.pos_embed(e, training=training)

    def to_manifold(self, mc: tf.Tensor, training=False) -> tf.Tensor:
        return self.hyperbolic(mc, training=training) if self.use_hyperbolic else mc

    def encode(self, tokens: tf.Tensor, training=False) -> tf.Tensor:
        for block in self.blocks:
            tokens = block(tokens, training=training)
        return self.norm(tokens, training=training)

    def call(self, x, training=False):
        h = self.to_manifold(self.position(self.embed(x), training=training), training=training)   # [B, T', V', D]
        s = tf.shape(h)
        return self.encode(tf.reshape(h, [s[0], s[1] * s[2], s[3]]), training=training)

    def get_config(self):
        return {**super().get_config(), "config": self.config, "remat": self.remat, "precision": self.precision,
                "fused": self.fused}
