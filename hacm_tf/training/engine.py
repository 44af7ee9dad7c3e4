"""How a pretraining step is computed, apart from what the model computes.

``PretrainEngine`` holds the training step's compute choices: micro-batching (with HA-CM's exact
batch-wide cross-contrast), XLA compilation of loss + gradients, and the policy for a non-finite
loss. A ``MaskedPretrainer`` receives one at ``compile(engine=...)``; the model keeps the maths
(``compute_losses``, ``contrast_features``, ``contrast``) and the engine only calls them.
"""

from __future__ import annotations

import weakref
from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

from hacm_tf.config import ComputeConfig, ConfigError
from hacm_tf.training.optim import apply_gradients, global_norm

NONFINITE_MESSAGE = "non-finite loss or gradient"


def contrast_spans_parts(cfg) -> bool:
    """Whether micro-batching must carry the cross-contrast across parts (HA-CM with cc_weight != 0)."""
    return cfg.method == "hacm" and cfg.cc_weight != 0.0


def check_micro_batching(cfg, micro_batches: int):
    """Raises ConfigError if ``micro_batches`` parts of a ModelConfig ``cfg`` cannot give the whole batch's
    update: HA-CM's batch-wide contrast recomputes the encoder, so both passes must drop the same paths."""
    if micro_batches > 1 and contrast_spans_parts(cfg) and cfg.drop_path > 0:
        raise ConfigError(f"HA-CM micro-batching recomputes the encoder for the batch-wide cross-contrast and "
                          f"needs drop_path = 0 in pretraining, got drop_path={cfg.drop_path}")


class PretrainEngine:
    """Loss, gradients and update of a pretraining step.

    Args:
      micro_batches: split each replica's batch into this many parts, run one after the other, whose
        gradients are averaged: the activation memory of one part, the same update.
      jit_compile: XLA-compile loss + gradients (works under MirroredStrategy).
      nonfinite: "stop" (raise on a non-finite loss or gradient) or "skip" (zero that step's gradients).
    """

    def __init__(self, micro_batches: int = 1, jit_compile: bool = False, nonfinite: str = "stop"):
        ComputeConfig(micro_batches=micro_batches, nonfinite=nonfinite).validate()
        self.micro_batches, self.jit_compile, self.nonfinite = int(micro_batches), bool(jit_compile), nonfinite
        self._compiled = weakref.WeakKeyDictionary()   # model -> its XLA-compiled loss_and_grads

    @classmethod
    def from_config(cls, compute: ComputeConfig) -> "PretrainEngine":
        """The engine of a ComputeConfig (micro_batches, jit_compile, nonfinite)."""
        return cls(compute.micro_batches, compute.jit_compile, compute.nonfinite)

    def __repr__(self):
        return (f"PretrainEngine(micro_batches={self.micro_batches}, jit_compile={self.jit_compile}, "
                f"nonfinite={self.nonfinite!r})")

    # ------------------------------------------------------------------ loss and gradients

    def loss_and_grads(self, model, x: tf.Tensor, noise: Sequence[tf.Tensor]) -> Tuple[Dict[str, tf.Tensor], List]:
        """Scalar losses (``loss``, ``loss_rec``, ``loss_cc``, ``mask`` = masked fraction) and gradients
        (None for variables without one) of a batch x [N, T, M, V, 3] with noise ``model.noise_shapes``.

        With ``micro_batches`` = k > 1 every part has the same number of clips and of masked tokens per
        clip, so the reconstruction term splits over parts. HA-CM's in-batch cross-contrast compares every
        clip with every clip of the batch: a first pass (part by part, no tape) computes the pooled group
        features of all clips, the contrast of the whole batch and its gradient G with respect to them;
        each part's backward pass then adds G . pooled, whose parameter gradient is that part's share of
        the contrast's. The result is the full batch's update for one more encoder forward pass.
        """
        k = self.micro_batches
        if k == 1:
            out, grads = self.part_loss_and_grads(model, x, noise)
            return _scalars(out), grads
        check_micro_batching(model.cfg, k)
        spans = contrast_spans_parts(model.cfg)
        n = tf.shape(x)[0]
        tf.debugging.assert_equal(n % k, 0, message=f"batch is not divisible by micro_batches={k}")
        xs = tf.reshape(x, tf.concat([[k, n // k], tf.shape(x)[1:]], axis=0))
        ns = [tf.reshape(z, [k, -1, z.shape[-1]]) for z in noise]     # rows n * M + m: clips stay whole
        cc = cc_grads = None
        if spans:
            cc, cc_grads = self.batch_contrast(model, xs, ns)
        variables = model.trainable_variables
        live = []   # which variables get gradients (the l1 / l2 projections get none), found when tracing

        def body(i, grads, stats):
            pooled_grads = None if cc_grads is None else cc_grads[i] * float(k)   # the loop divides by k
            out, g = self.part_loss_and_grads(model, xs[i], [z[i] for z in ns], pooled_grads)
            live[:] = [j for j, gj in enumerate(g) if gj is not None]
            part = _scalars(out)
            return i + 1, [a if gj is None else a + gj for a, gj in zip(grads, g)], \
                [a + part[key] for a, key in zip(stats, SCALARS)]

        # every part inside one loop, one iteration at a time (parallel_iterations=1: otherwise the next
        # part's forward pass, which needs only i, overlaps this part's backward pass and its memory)
        _, grads, stats = tf.while_loop(lambda i, *_: i < k, body,
                                        (tf.constant(0), [tf.zeros_like(v) for v in variables],
                                         [tf.zeros([], tf.float32)] * len(SCALARS)), parallel_iterations=1)
        full = [None] * len(variables)
        for j in live:
            full[j] = grads[j] / k
        out = {key: v / k for key, v in zip(SCALARS, stats)}
        if cc is not None:   # the whole batch's contrast, not the parts' mean
            out["loss_cc"] = cc
            out["loss"] = out["loss_rec"] + model.cfg.cc_weight * cc
        return out, full

    def batch_contrast(self, model, xs: tf.Tensor, ns: Sequence[tf.Tensor]):
        """Cross-contrast of a batch given as parts xs [K, N/K, T, M, V, 3] and noise [K, B/K, L_g]:
        (loss, gradient with respect to each part's pooled features [K, 3, B/K, D])."""
        def features(args):
            return model.contrast_features(args[0], list(args[1:]), training=True)

        pooled = tf.map_fn(features, (xs, *ns), fn_output_signature=tf.float32, parallel_iterations=1)
        parts = tf.shape(pooled)                                           # [K, 3, B/K, D]
        whole = tf.reshape(tf.transpose(pooled, [1, 0, 2, 3]), [3, -1, pooled.shape[-1]])   # clips in batch order
        with tf.GradientTape() as tape:
            tape.watch(whole)
            cc, _ = model.contrast(whole)
        grads = tape.gradient(cc, whole)
        grads = tf.transpose(tf.reshape(grads, [3, parts[0], parts[2], pooled.shape[-1]]), [1, 0, 2, 3])
        return cc, grads

    @staticmethod
    def part_loss_and_grads(model, x, noise, pooled_grads=None):
        """Loss dict and gradients of one part. With ``pooled_grads`` [3, B, D] (HA-CM micro-batching) the
        objective is loss_rec + cc_weight * sum(pooled_grads * pooled) instead of the part's own contrast."""
        n_rep = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = model.compute_losses(x, noise, training=True)
            objective = out["loss"]
            if pooled_grads is not None:
                objective = out["loss_rec"] + model.cfg.cc_weight * tf.reduce_sum(
                    tf.stop_gradient(pooled_grads) * out["pooled"])
            scaled = objective / tf.cast(n_rep, tf.float32)   # gradients are summed over replicas
        return out, tape.gradient(scaled, model.trainable_variables)

    # ------------------------------------------------------------------ the step

    def train_step(self, model, x: tf.Tensor, noise: Sequence[tf.Tensor]):
        """Loss, gradients and optimizer update of one batch: (scalar losses, global gradient norm)."""
        if self.jit_compile:
            if model not in self._compiled:
                self._compiled[model] = tf.function(lambda a, b: self.loss_and_grads(model, a, b), jit_compile=True)
            out, grads = self._compiled[model](x, noise)
        else:
            out, grads = self.loss_and_grads(model, x, noise)
        pairs = [(g, v) for g, v in zip(grads, model.trainable_variables) if g is not None]
        grad_norm = global_norm([g for g, _ in pairs])
        finite = tf.math.is_finite(out["loss"]) & tf.math.is_finite(grad_norm)
        grads = [g for g, _ in pairs]
        if self.nonfinite == "skip":   # zero gradients for a non-finite step (moments still decay)
            grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        else:
            tf.debugging.Assert(finite, [NONFINITE_MESSAGE, out["loss"], grad_norm])
        apply_gradients(model.optimizer, grads, [v for _, v in pairs])
        return out, grad_norm


SCALARS = ("loss", "loss_rec", "loss_cc", "mask")


def _scalars(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The step's scalar figures of a ``compute_losses`` dict (``mask``: the masked fraction)."""
    return {"loss": out["loss"], "loss_rec": out["loss_rec"], "loss_cc": out["loss_cc"],
            "mask": tf.reduce_mean(out["mask"])}
