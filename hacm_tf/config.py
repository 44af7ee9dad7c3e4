"""Typed, frozen run configuration with readable validation errors."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


class ConfigError(ValueError):
    """An invalid configuration value (the message names the field)."""


def _check(cond: bool, field: str, message: str):
    if not cond:
        raise ConfigError(f"{field}: {message}")


class _Serializable:
    """to_dict / from_dict (unknown fields rejected, JSON lists back to tuples, validated)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        import typing

        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names or k not in MOVED_TO_COMPUTE}   # older run directories
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        for k, v in d.items():
            if typing.get_origin(hints[k]) is tuple and isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d).validate()


@dataclasses.dataclass(frozen=True)
class DataConfig(_Serializable):
    """Input pipeline settings (docs/official_code.md §2).

    Attributes:
      window: frames after crop-and-resize (72 for HA-CM, 120 for MAMP).
      train_crop: (p_min, p_max) of the random training crop.
      eval_crop: kept fraction of the central evaluation crop.
      min_crop_frames: lower bound of the training crop length.
      rotation_range: training rotation angle range (radians, per axis); 0 disables.
      velocity: feed frame differences instead of positions.
      batch_size: global batch size (split over replicas).
      shuffle_buffer: training shuffle buffer (records).
      semi_ratio: fraction of labelled training samples kept (1.0 = all).
      semi_stratified: choose the semi-supervised subset per class.
    """

    window: int = 72
    train_crop: Tuple[float, float] = (0.5, 1.0)
    eval_crop: float = 0.95
    min_crop_frames: int = 64
    rotation_range: float = 0.3
    velocity: bool = False
    batch_size: int = 32
    shuffle_buffer: int = 4096
    semi_ratio: float = 1.0
    semi_stratified: bool = False

    def validate(self) -> "DataConfig":
        _check(self.window >= 1, "window", f"must be positive, got {self.window}")
        lo, hi = self.train_crop
        _check(0 < lo <= hi <= 1, "train_crop", f"need 0 < p_min <= p_max <= 1, got {self.train_crop}")
        _check(0 < self.eval_crop <= 1, "eval_crop", f"must be in (0, 1], got {self.eval_crop}")
        _check(self.min_crop_frames >= 1, "min_crop_frames", f"must be positive, got {self.min_crop_frames}")
        _check(self.rotation_range >= 0, "rotation_range", f"must be >= 0, got {self.rotation_range}")
        _check(self.batch_size >= 1, "batch_size", f"must be positive, got {self.batch_size}")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", f"must be positive, got {self.shuffle_buffer}")
        _check(0 < self.semi_ratio <= 1, "semi_ratio", f"must be in (0, 1], got {self.semi_ratio}")
        return self



METHODS = ("hacm", "mamp", "mae")
HACM_MODES = ("corrected", "reference")
# Behaviours of the official HA-CM code (docs/official_code.md §3.1), each a switch; None follows hacm_mode.
REFERENCE_SWITCHES = (
    "ref_keep_fraction",    # keep int(0.1 * L_group) tokens per group, ignoring mask_ratio
    "ref_tau",              # tau = 0.9, ignoring the configured tau
    "ref_distance",         # 4|u - v|^2 numerator in the Poincare distance
    "ref_attention",        # temporal criterion: softmax over joints, logits * sqrt(dim)
    "ref_token_order",      # temporal tokens joint-major; spatial scores joint-major vs time-major tokens
    "ref_unshuffle",        # [E_t, E_s, masks] gathered with restore_s + L_t; decoder grid relabelled
    "ref_target_order",     # target [even patches, odd patches] time-major, compared slot by slot
    "ref_cross_contrast",   # raw pooled features, temperature 1
)


# what the backward pass may recompute (ComputeConfig.remat, TransformerBlock)
REMAT_MODES = ("none", "attention", "block")
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Serializable):
    """Encoder, decoder and masking of a pretrainer (HA-CM, MAMP or MAE) and its downstream encoder.

    Sizes default to the paper's HA-CM NTU configuration. HA-CM fields are
    ignored by MAMP / MAE. ``hacm_mode="reference"`` turns every ``ref_*`` switch
    on (the official code's behaviour, docs/reference_mode.md); "corrected" turns them
    off; a switch set explicitly wins over the mode. How the model computes (recomputation,
    precision) is ComputeConfig's.
    """

    method: str = "hacm"
    layout: str = "ntu25"
    num_persons: int = 2
    window: int = 72
    t_patch: int = 3
    dim: int = 256
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    decoder_dim: int = 256
    decoder_depth: int = 3
    decoder_heads: int = 8
    drop_path: float = 0.0
    mask_ratio: float = 0.9
    tau: float = 0.8
    motion_stride: int = 1
    norm_target: bool = True
    # HA-CM components (ablation switches)
    hacm_mode: str = "corrected"
    hyperbolic: bool = True
    curvature: float = 1.0
    clip_radius: float = 0.0
    temporal_criterion: bool = True
    spatial_criterion: bool = True
    father_weight: float = 0.01
    cc_weight: float = 1.0
    cc_temperature: float = 0.1
    keep_high_scores: bool = True
    ref_keep_fraction: Optional[bool] = None
    ref_tau: Optional[bool] = None
    ref_distance: Optional[bool] = None
    ref_attention: Optional[bool] = None
    ref_token_order: Optional[bool] = None
    ref_unshuffle: Optional[bool] = None
    ref_target_order: Optional[bool] = None
    ref_cross_contrast: Optional[bool] = None

    def switch(self, name: str) -> bool:
        """Effective value of a ``ref_*`` switch."""
        if name not in REFERENCE_SWITCHES:
            raise KeyError(name)
        v = getattr(self, name)
        return (self.hacm_mode == "reference") if v is None else bool(v)

    @property
    def num_patches(self) -> int:
        return self.window // self.t_patch

    def validate(self) -> "ModelConfig":
        from hacm_tf.skeleton import LAYOUTS

        _check(self.method in METHODS, "method", f"must be one of {METHODS}, got {self.method!r}")
        _check(self.layout in LAYOUTS, "layout", f"must be one of {sorted(LAYOUTS)}, got {self.layout!r}")
        _check(self.hacm_mode in HACM_MODES, "hacm_mode", f"must be one of {HACM_MODES}, got {self.hacm_mode!r}")
        _check(self.num_persons >= 1, "num_persons", f"must be positive, got {self.num_persons}")
        _check(self.t_patch >= 1 and self.window % self.t_patch == 0, "window",
               f"{self.window} is not divisible by the temporal patch {self.t_patch}")
        _check(self.num_patches >= 2, "window", f"needs at least 2 temporal patches, got {self.num_patches}")
        _check(0.0 < self.mask_ratio < 1.0, "mask_ratio", f"must be in (0, 1), got {self.mask_ratio}")
        _check(self.tau > 0, "tau", f"must be positive, got {self.tau}")
        _check(self.dim % self.heads == 0, "dim", f"{self.dim} is not divisible by heads {self.heads}")
        _check(self.decoder_dim % self.decoder_heads == 0, "decoder_dim",
               f"{self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        _check(self.depth >= 1 and self.decoder_depth >= 1, "depth", "encoder and decoder need at least one block")
        _check(0 <= self.drop_path < 1, "drop_path", f"must be in [0, 1), got {self.drop_path}")
        _check(self.curvature > 0, "curvature", f"must be positive, got {self.curvature}")
        _check(self.clip_radius >= 0, "clip_radius", f"must be >= 0, got {self.clip_radius}")
        _check(self.cc_temperature > 0, "cc_temperature", f"must be positive, got {self.cc_temperature}")
        _check(1 <= self.motion_stride < self.window, "motion_stride",
               f"must be in [1, window), got {self.motion_stride}")
        if self.method == "hacm" and self.switch("ref_unshuffle"):
            _check(self.num_patches % 2 == 0, "window",
                   "ref_unshuffle needs an even number of temporal patches (equal groups)")
        return self



@dataclasses.dataclass(frozen=True)
class TrainConfig(_Serializable):
    """Optimisation and run bookkeeping (docs/official_code.md §5; pretraining defaults).

    Attributes:
      epochs, steps_per_epoch: run length (steps_per_epoch 0: one pass over the training split).
      lr, min_lr, warmup_epochs: per-step linear warm-up then half-cosine to min_lr.
      weight_decay, beta_1, beta_2: AdamW (no decay for 1-D parameters).
      checkpoint_every: steps between checkpoints (0: at the end of every epoch only).
      keep_checkpoints: checkpoints kept in ``workdir/checkpoints``.
      log_every: steps between TensorBoard scalar writes.
    """

    epochs: int = 400
    steps_per_epoch: int = 0
    lr: float = 1e-3
    min_lr: float = 5e-4
    warmup_epochs: float = 20.0
    weight_decay: float = 0.05
    beta_1: float = 0.9
    beta_2: float = 0.95
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    log_every: int = 10

    def validate(self) -> "TrainConfig":
        _check(self.epochs >= 1, "epochs", f"must be positive, got {self.epochs}")
        _check(self.steps_per_epoch >= 0, "steps_per_epoch", f"must be >= 0, got {self.steps_per_epoch}")
        _check(self.lr > 0 and self.min_lr >= 0, "lr", f"need lr > 0 and min_lr >= 0, got {self.lr}, {self.min_lr}")
        _check(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs",
               f"must be in [0, epochs], got {self.warmup_epochs}")
        _check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _check(self.keep_checkpoints >= 1, "keep_checkpoints", "must be positive")
        _check(self.log_every >= 1, "log_every", "must be positive")
        _check(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")
        return self


@dataclasses.dataclass(frozen=True)
class ComputeConfig(_Serializable):
    """How a stage computes, apart from what it computes: the results are the same up to rounding, so
    a run may resume, and a downstream stage may start from a pretraining run, with other settings.

    Attributes:
      remat: what the backward pass recomputes instead of keeping: "none", "attention" (the attention
        weights of every block) or "block" (whole blocks from their input, drop path included). Same
        results, less activation memory, more compute.
      precision: "float32", or "mixed_bfloat16": the transformer blocks' matmuls, GELU and softmax in
        bfloat16 with float32 weights, LayerNorm statistics and residual stream; everything else
        (embeddings, hyperbolic map, masking criteria, losses, heads) stays float32. Faster on CPUs
        with bfloat16 instructions (AVX512_BF16, AMX) and on accelerators; weights and checkpoints are
        the same either way.
      jit_compile: pretraining: XLA-compile loss + gradients (on CPU at the paper's size: speed within
        noise for HA-CM, slower for MAMP / MAE, see docs/benchmarks.md; costs seconds of compilation, so
        smoke presets turn it off).
      micro_batches: pretraining: split each replica's batch into this many parts whose gradients are
        averaged (one after the other: the activation memory of one part; the same update, HA-CM's
        batch-wide cross-contrast included, for one more encoder forward pass; HA-CM then needs
        drop_path = 0).
      nonfinite: pretraining: "stop" (raise on a non-finite loss) or "skip" (zero that step's gradients).
      fused_kernels: the training pass's GELU, LayerNorm and softmax gradient as XLA-fused kernels with
        hand-written gradients (hacm_tf.ops.fused; same results to float32 rounding, faster, no
        effect on inference); off: TensorFlow's own ops and autodiff.
      deterministic: enable TF op determinism (process-wide; the scripts switch it on).
    """

    remat: str = "none"
    precision: str = "float32"
    jit_compile: bool = True
    micro_batches: int = 1
    nonfinite: str = "stop"
    fused_kernels: bool = True
    deterministic: bool = False

    @property
    def layer_kwargs(self) -> dict:
        """The settings a model's layers are built with: ``remat``, ``precision`` and ``fused``."""
        return {"remat": self.remat, "precision": self.precision, "fused": self.fused_kernels}

    def validate(self) -> "ComputeConfig":
        _check(self.remat in REMAT_MODES, "remat", f"must be one of {REMAT_MODES}, got {self.remat!r}")
        _check(self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        _check(self.micro_batches >= 1, "micro_batches", f"must be positive, got {self.micro_batches}")
        _check(self.nonfinite in ("stop", "skip"), "nonfinite", f"must be 'stop' or 'skip', got {self.nonfinite!r}")
        return self


# fields that ModelConfig / TrainConfig held before ComputeConfig: ignored when an older run directory is read
MOVED_TO_COMPUTE = ("remat", "precision", "jit_compile", "micro_batches", "nonfinite", "deterministic")


def migrate_run_config(config: dict) -> dict:
    """A run directory's config.json with compute settings inside "model" / "train" (older layout) ->
    the same settings under "compute"; other configs unchanged."""
    config = dict(config)
    moved = {}
    for section in ("model", "train"):
        if isinstance(config.get(section), dict):
            part = dict(config[section])
            moved.update({k: part.pop(k) for k in MOVED_TO_COMPUTE if k in part})
            config[section] = part
    if moved and "compute" not in config:
        config["compute"] = ComputeConfig.from_dict(moved).to_dict()
    return config


@dataclasses.dataclass(frozen=True)
class MonitorConfig(_Serializable):
    """kNN read-out of the frozen encoder during pretraining (labels only score, never train).

    Attributes:
      monitor_data_dir: labelled TFRecord directory (its train split gives the neighbours, its test
        split the queries; usually the pretraining --data_dir); empty: no monitor.
      monitor_every: epochs between read-outs (the last epoch is always read out).
      monitor_batch_size: batch of the embedding passes.
    """

    monitor_data_dir: str = ""
    monitor_every: int = 10
    monitor_batch_size: int = 64

    @property
    def enabled(self) -> bool:
        return bool(self.monitor_data_dir)

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether the read-out runs after 0-based ``epoch`` of ``epochs``."""
        return self.enabled and ((epoch + 1) % self.monitor_every == 0 or epoch + 1 == epochs)

    def validate(self) -> "MonitorConfig":
        _check(self.monitor_every >= 1, "monitor_every", f"must be positive, got {self.monitor_every}")
        _check(self.monitor_batch_size >= 1, "monitor_batch_size", f"must be positive, got {self.monitor_batch_size}")
        return self


# the downstream protocols of a classifier (ProtocolConfig.protocol, a run directory's stage)
CLASSIFIER_PROTOCOLS = ("linear", "finetune")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Downstream protocol settings (docs/official_code.md §5).

    Attributes:
      protocol: "linear" (frozen encoder, SGD) or "finetune" (AdamW, layer-wise decay).
      layer_decay: fine-tune: lr scale decay ** (depth + 1 - layer).
      label_smoothing: fine-tune cross-entropy smoothing.
      dropout: fine-tune head dropout.
      momentum: linear-probe SGD momentum.
      eval_every: epochs between evaluations on the test split.
    """

    protocol: str = "linear"
    layer_decay: float = 0.8
    label_smoothing: float = 0.1
    dropout: float = 0.3
    momentum: float = 0.9
    eval_every: int = 1

    def validate(self):
        if self.protocol not in CLASSIFIER_PROTOCOLS:
            raise ValueError(f"protocol must be one of {CLASSIFIER_PROTOCOLS}, got {self.protocol!r}")
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be positive, got {self.eval_every}")
        return self


def replace(config, **changes):
    """``dataclasses.replace`` followed by ``validate()``."""
    return dataclasses.replace(config, **changes).validate()

