"""AdamW with the reference's weight-decay exclusions, per-step warm-up + half-cosine schedules,
layer-wise learning-rate decay."""

from __future__ import annotations

import math
import weakref
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf

from hacm_tf.models.encoder import BLOCK_PREFIX, EMBEDDING_LAYERS


@keras.saving.register_keras_serializable("hacm_tf")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Per-step schedule with fractional epoch e = step / steps_per_epoch (docs/official_code.md §5):
    lr * e / W while e < W, then min_lr + (lr - min_lr) * (1 + cos(pi (e - W) / (E - W))) / 2."""

    def __init__(self, lr: float, min_lr: float, warmup_epochs: float, epochs: float, steps_per_epoch: int,
                 scale: float = 1.0):
        self.lr, self.min_lr = float(lr), float(min_lr)
        self.warmup_epochs, self.epochs = float(warmup_epochs), float(epochs)
        self.steps_per_epoch, self.scale = int(steps_per_epoch), float(scale)

    def value(self, step):
        e = tf.cast(step, tf.float64) / self.steps_per_epoch
        w, total = self.warmup_epochs, self.epochs
        warm = self.lr * e / max(w, 1e-12)
        progress = tf.clip_by_value((e - w) / max(total - w, 1e-12), 0.0, 1.0)
        cos = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(e < w, warm, cos) * self.scale

    def __call__(self, step):
        return tf.cast(self.value(step), tf.float32)

    def get_config(self):
        return {"lr": self.lr, "min_lr": self.min_lr, "warmup_epochs": self.warmup_epochs, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "scale": self.scale}


_compiled_updates = weakref.WeakKeyDictionary()   # optimizer -> {variable ids: XLA-compiled apply}


def apply_gradients(optimizer, grads: Sequence[tf.Tensor], variables: Sequence) -> None:
    """``optimizer.apply(grads, variables)``; XLA-compiled when it can be: no distribution strategy in
    scope (a strategy's cross-replica update is a merge call XLA cannot compile) and the optimizer
    built (its slots exist). AdamW is then one fused loop per variable instead of about fifteen
    TensorFlow ops each (151 variables in HA-CM pretraining); the same update to float32 rounding.
    """
    if tf.distribute.has_strategy() or not getattr(optimizer, "built", True):
        optimizer.apply(grads, variables)
        return
    variables = list(variables)
    per_optimizer = _compiled_updates.setdefault(optimizer, {})
    key = tuple(id(v) for v in variables)
    if key not in per_optimizer:
        per_optimizer[key] = tf.function(lambda gs: optimizer.apply(gs, variables), jit_compile=True,
                                         autograph=False)
    per_optimizer[key](list(grads))


@tf.function(jit_compile=True, autograph=False)
def _compiled_global_norm(grads):
    return tf.linalg.global_norm(grads)


def global_norm(grads: Sequence[tf.Tensor]) -> tf.Tensor:
    """sqrt of the sum of squares of every gradient (tf.linalg.global_norm): one XLA-compiled reduction
    without a distribution strategy in scope (one kernel instead of an L2Loss per variable), else
    TensorFlow's ops."""
    if tf.distribute.has_strategy():
        return tf.linalg.global_norm(grads)
    return _compiled_global_norm(list(grads))


def no_decay(variable) -> bool:
    """The reference's exclusion: no weight decay for 1-D parameters (biases, norms)."""
    return len(variable.shape) <= 1


def adamw(schedule, variables: Sequence, weight_decay: float = 0.05, beta_1: float = 0.9, beta_2: float = 0.95,
          epsilon: float = 1e-8, exclude: Callable = no_decay) -> keras.optimizers.AdamW:
    """AdamW (decoupled decay scaled by the learning rate, as PyTorch) with 1-D parameters excluded."""
    opt = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, beta_1=beta_1,
                                 beta_2=beta_2, epsilon=epsilon)
    opt.exclude_from_weight_decay(var_list=[v for v in variables if exclude(v)])
    return opt


def layer_decay_scales(variable_paths: Sequence[str], depth: int, decay: float,
                       layer_of: Optional[Callable[[str], int]] = None) -> Dict[str, float]:
    """Layer-wise lr scales decay ** (depth + 1 - layer_id): 0 for the embeddings, i + 1 for block i,
    depth + 1 (scale 1) for the final norm and the head."""
    def default_layer(path: str) -> int:
        for part in path.replace("/", " ").split():
            if part.startswith(BLOCK_PREFIX):
                return int(part[len(BLOCK_PREFIX):]) + 1
        if any(name in path for name in EMBEDDING_LAYERS):
            return 0
        return depth + 1

    layer_of = layer_of or default_layer
    return {p: decay ** (depth + 1 - layer_of(p)) for p in variable_paths}


class GroupedOptimizer(tf.Module):
    """One optimizer per parameter group (layer-wise learning-rate decay).

    Each group has its own AdamW whose schedule is the base schedule times the group's scale, so the
    decoupled weight decay is scaled too, exactly as PyTorch's per-group lr. ``apply(grads, vars)``
    routes every variable to its group. Trackable, so checkpoints hold every group's slots.
    """

    def __init__(self, groups: Dict[float, list], make_optimizer: Callable[[float], keras.optimizers.Optimizer]):
        super().__init__(name="grouped_optimizer")
        self.scales = sorted(groups, reverse=True)
        self.optimizers = [make_optimizer(s) for s in self.scales]
        self._route = {}
        for i, s in enumerate(self.scales):
            for v in groups[s]:
                self._route[id(v)] = i
        for i, s in enumerate(self.scales):
            self.optimizers[i].build(groups[s])

    def apply(self, grads, variables):
        buckets = [([], []) for _ in self.optimizers]
        for g, v in zip(grads, variables):
            if g is None:
                continue
            key = id(v) if id(v) in self._route else id(getattr(v, "_variable", v))
            i = self._route[key]
            buckets[i][0].append(g)
            buckets[i][1].append(v)
        for opt, (gs, vs) in zip(self.optimizers, buckets):
            if gs:
                opt.apply(gs, vs)

    @property
    def learning_rate(self):
        """The scale-1 group's current learning rate."""
        return self.optimizers[0].learning_rate

    @property
    def iterations(self):
        return self.optimizers[0].iterations


def layerwise_adamw(model_variables: Sequence, paths: Sequence[str], depth: int, decay: float,
                    schedule_for_scale: Callable[[float], object], weight_decay: float = 0.05,
                    beta_1: float = 0.9, beta_2: float = 0.999, exclude: Callable = no_decay) -> GroupedOptimizer:
    """AdamW with layer-wise lr decay ``decay ** (depth + 1 - layer)`` (docs/official_code.md §5, fine-tuning)."""
    scales = layer_decay_scales(paths, depth, decay)
    groups: Dict[float, list] = {}
    for v, p in zip(model_variables, paths):
        groups.setdefault(round(scales[p], 12), []).append(v)

    def make(scale):
        return adamw(schedule_for_scale(scale), groups[scale], weight_decay, beta_1, beta_2, exclude=exclude)

    return GroupedOptimizer(groups, make)
