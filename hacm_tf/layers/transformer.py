"""Pre-norm ViT blocks as in the reference (LayerNorm eps 1e-5, exact GELU, xavier-uniform dense kernels)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from hacm_tf.config import PRECISIONS, REMAT_MODES
from hacm_tf.layers.random import replica_seed
from hacm_tf.ops import fused as fused_ops

LN_EPS = 1e-5


@tf.custom_gradient
def gelu_erf(x: tf.Tensor):
    """Exact GELU x Phi(x) written with erf (Keras' exact gelu to float32 rounding, but convertible to ONNX).

    Its gradient Phi(x) + x phi(x) is computed from x alone, so the backward pass keeps one tensor
    per call instead of the forward's intermediates (less memory and element-wise work).
    """
    y = 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))

    def grad(dy):
        cdf = 0.5 * (1.0 + tf.math.erf(x / math.sqrt(2.0)))
        pdf = tf.exp(-0.5 * tf.square(x)) / math.sqrt(2.0 * math.pi)
        return dy * (cdf + x * pdf)

    return y, grad


def track_layers(owner, prefix: str, layers):
    """Also sets each layer of a list as an attribute ``<prefix><i>``: Keras 3 wraps lists in a container
    that tf.train.Checkpoint does not traverse, so without this the layers' weights are missing from
    object-based checkpoints."""
    for i, layer in enumerate(layers):
        setattr(owner, f"{prefix}{i}", layer)


def dense(units: int, name: str, use_bias: bool = True, dtype=None) -> keras.layers.Dense:
    """Dense layer with the reference's init: xavier-uniform kernel, zero bias (``dtype``: a Keras dtype policy)."""
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer="glorot_uniform",
                              bias_initializer="zeros", name=name, dtype=dtype)


@keras.saving.register_keras_serializable("hacm_tf")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a residual branch per sample with probability ``rate``; survivors x / (1 - rate)."""

    def __init__(self, rate: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator(seed=None) if self.rate > 0 else None

    def call(self, x, training=False, seed=None):
        """``seed``: int32 [2] for the draw (default: the layer's next seed)."""
        factors = self.factors(x, training, seed)
        return x if factors is None else fused_ops.scale_samples(x, factors)

    def factors(self, x, training=False, seed=None):
        """Each sample's factor, 0 (dropped) or 1 / (1 - rate): float32 [B] for x [B, ...]; None when
        nothing is dropped (inference, rate 0). Draws the layer's next seed unless ``seed`` is given."""
        if not training or self.rate == 0.0:
            return None
        keep = 1.0 - self.rate
        seed = replica_seed(self.seed_generator) if seed is None else seed
        u = tf.random.stateless_uniform(tf.shape(x)[:1], seed=seed, dtype=tf.float32)
        return tf.floor(keep + u) / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable("hacm_tf")
class Attention(keras.layers.Layer):
    """Multi-head self-attention with one qkv projection. [B, N, D] -> [B, N, D].

    ``remat=True`` recomputes the [B, H, N, N] attention weights in the backward pass instead of
    keeping them (same results; less memory, a little more compute). ``fused=True``: in training,
    hacm_tf.ops.fused.packed_attention (the native op on the packed projection where built; else one
    sequence at a time in cache with an XLA-fused softmax gradient; weights recomputed rather than
    kept either way), with or without remat.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, remat: bool = False, fused: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.qkv_bias, self.remat = int(dim), int(heads), bool(qkv_bias), bool(remat)
        self.fused = bool(fused)
        self.scale = (dim // heads) ** -0.5
        self.qkv = dense(3 * dim, "qkv", use_bias=qkv_bias, dtype=self.dtype_policy)
        self.proj = dense(dim, "proj", dtype=self.dtype_policy)
        self._core = tf.recompute_grad(self._attend) if self.remat else self._attend

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(input_shape[:-1] + (self.dim,))

    def call(self, x, training=False, output_bias=True):
        """x [B, N, D] -> [B, N, D]; ``output_bias=False`` (training with fused kernels): (the output
        projection without its bias, that bias or None) for a residual addition that adds it."""
        b, n = tf.shape(x)[0], tf.shape(x)[1]
        fused = training and self.fused
        # fused: the projection's bias (where the layer has one) is added inside the attention op
        projected, qkv_bias = fused_ops.dense_unbiased(x, self.qkv) if fused else (self.qkv(x), None)
        qkv = tf.reshape(projected, [b, n, 3, self.heads, self.dim // self.heads])    # [B, N, 3, H, Dh]
        if fused:
            # keeps no [B, H, N, N] weights of its own: remat has nothing to add to it
            out = fused_ops.packed_attention(qkv, self.scale, qkv_bias)               # [B, N, H, Dh]
        else:
            # one transpose to heads-major [3, B, H, N, Dh], so both products are plain batched matmuls;
            # unstack's gradient is one stack, where slicing's is three zero-filled copies
            q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))
            out = tf.transpose(self._core(q, k, v), [0, 2, 1, 3])                    # [B, N, H, Dh]
        out = tf.reshape(out, [b, n, self.dim])
        if fused and not output_bias:
            return fused_ops.dense_unbiased(out, self.proj)
        return fused_ops.dense(out, self.proj) if fused else self.proj(out)

    def _attend(self, q, k, v):
        """softmax(q k^T / sqrt(Dh)) v per head: [B, H, N, Dh] x 3 -> [B, H, N, Dh]."""
        # the scale goes on q, not on the N/Dh times larger scores: one memory pass less each way
        attn = tf.nn.softmax(tf.matmul(q * self.scale, k, transpose_b=True), axis=-1)  # [B, H, N, N]
        return tf.matmul(attn, v)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "qkv_bias": self.qkv_bias,
                "remat": self.remat, "fused": self.fused}


@keras.saving.register_keras_serializable("hacm_tf")
class LayerNorm(keras.layers.LayerNormalization):
    """LayerNormalization over the last axis; ``fused=True``: in training, forward and gradient as
    XLA-fused kernels (hacm_tf.ops.fused.layer_norm). Same weights (gamma, beta) either way."""

    def __init__(self, epsilon: float = LN_EPS, fused: bool = True, **kwargs):
        super().__init__(epsilon=epsilon, **kwargs)
        self.fused = bool(fused)

    def call(self, x, training=False, out_dtype=None, residual=False):
        """x [..., D] -> [..., D]; ``out_dtype`` (training with fused kernels): the result's dtype, e.g.
        the bfloat16 of the branch that reads it (the cast is then part of the one pass). ``residual``:
        returns (x, result), x for the block's residual addition (with fused kernels in training, the
        gradient x receives there is summed in the LayerNorm's gradient pass)."""
        if training and self.fused:
            if residual:
                return fused_ops.layer_norm_residual(x, self.gamma, self.beta, self.epsilon, out_dtype)
            return fused_ops.layer_norm(x, self.gamma, self.beta, self.epsilon, out_dtype)
        return (x, super().call(x)) if residual else super().call(x)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}


@keras.saving.register_keras_serializable("hacm_tf")
class TransformerBlock(keras.layers.Layer):
    """x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))). [B, N, D] -> [B, N, D].

    ``remat``: "none"; "attention" recomputes the attention weights in the backward pass; "block"
    keeps only the block's input and recomputes the whole block, attention weights again in its
    backward pass (drop path draws its seeds before the block, so the recomputed pass drops the same
    samples). Results are the same; memory goes down and compute up.

    ``precision="mixed_bfloat16"``: attention and MLP (matmuls, softmax, GELU) compute in bfloat16 from
    float32 weights; LayerNorm, drop path and the residual stream stay float32. Input and output float32.

    ``fused=True``: the training pass's GELU, LayerNorm and softmax gradient run as XLA-fused kernels
    (hacm_tf.ops.fused; same results to float32 rounding, faster); inference uses the plain ops.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, remat: str = "none", precision: str = "float32", fused: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        if remat not in REMAT_MODES:
            raise ValueError(f"remat must be one of {REMAT_MODES}, got {remat!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.dim, self.heads, self.mlp_ratio = int(dim), int(heads), float(mlp_ratio)
        self.qkv_bias, self.drop_path, self.remat = bool(qkv_bias), float(drop_path), remat
        self.precision, self.fused = precision, bool(fused)
        hidden = int(dim * mlp_ratio)
        branch = precision if precision != "float32" else None     # dtype policy of the two branches
        self.norm1 = LayerNorm(LN_EPS, fused, name="norm1")
        self.attn = Attention(dim, heads, qkv_bias, remat in ("attention", "block"), fused, name="attn", dtype=branch)
        self.norm2 = LayerNorm(LN_EPS, fused, name="norm2")
        self.fc1 = dense(hidden, "fc1", dtype=branch)
        self.fc2 = dense(dim, "fc2", dtype=branch)
        self.drop = DropPath(drop_path, name="drop_path")
        self._block = tf.recompute_grad(self._training_residuals) if remat == "block" else None
        self._seeded_block = tf.recompute_grad(self._seeded_residuals) if remat == "block" else None

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.fc1):
            layer.build(input_shape)
        self.fc2.build(input_shape[:-1] + (int(self.dim * self.mlp_ratio),))

    def call(self, x, training=False):
        if self._block is None or not training:
            return self._residuals(x, training)
        if self.drop_path > 0:   # the seeds the non-remat path would draw, in the same order
            seeds = tf.stack([replica_seed(self.drop.seed_generator), replica_seed(self.drop.seed_generator)])
            return self._seeded_block(x, seeds)
        return self._block(x)

    def _residuals(self, x, training=False, seeds=None):
        attn_seed, mlp_seed = (None, None) if seeds is None else tf.unstack(seeds)
        fused = training and self.fused
        branch_dtype = self.attn.compute_dtype   # the branches' inputs normalised straight into it
        x, normed = self.norm1(x, training=training, out_dtype=branch_dtype, residual=True)
        if fused:   # the output projections' biases are added with the branches
            branch, bias = self.attn(normed, training=training, output_bias=False)
        else:
            branch, bias = self.attn(normed, training=training), None
        x = self._add(x, branch, bias, training, attn_seed)
        x, normed = self.norm2(x, training=training, out_dtype=branch_dtype, residual=True)
        if fused:
            branch, bias = fused_ops.dense_unbiased(fused_ops.dense_gelu(normed, self.fc1), self.fc2)
        else:
            branch = self.fc2(gelu_erf(self.fc1(normed)))
        return self._add(x, branch, bias, training, mlp_seed)

    def _add(self, x, branch, bias, training, seed):
        """x + DropPath(branch + bias) in x's dtype (bias None: none; with fused kernels in training: one
        pass each way)."""
        if training and self.fused:
            return fused_ops.residual_add(x, branch, self.drop.factors(x, training, seed), bias)
        return x + self.drop(tf.cast(branch, x.dtype), training=training, seed=seed)

    def _training_residuals(self, x):
        """Training pass without drop-path seeds (for remat='block')."""
        return self._residuals(x, True)

    def _seeded_residuals(self, x, seeds):
        """Training pass with drop path from int32 [2, 2] seeds (for remat='block')."""
        return self._residuals(x, True, seeds)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias, "drop_path": self.drop_path, "remat": self.remat,
                "precision": self.precision, "fused": self.fused}
