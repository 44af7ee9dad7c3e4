"""A study's configuration: variants, protocols, sizes and run lengths (presets), the configs of each
stage, and the data it runs on."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Sequence, Tuple

from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, ProtocolConfig, TrainConfig

# variant name -> ModelConfig changes (None: no pretraining, the encoder starts from random weights)
VARIANTS: Dict[str, Optional[dict]] = {
    "hacm_corrected": dict(method="hacm"),
    "hacm_reference": dict(method="hacm", hacm_mode="reference"),
    "mamp": dict(method="mamp"),
    "mae": dict(method="mae"),
    "none": None,
    "hacm_no_hyperbolic": dict(method="hacm", hyperbolic=False),
    "hacm_temporal_only": dict(method="hacm", spatial_criterion=False),
    "hacm_spatial_only": dict(method="hacm", temporal_criterion=False),
    "hacm_no_cross_contrast": dict(method="hacm", cc_weight=0.0),
}
# "knn": frozen read-outs of the pooled embeddings (kNN k = 1 / 20 and a logistic regression), no training
STUDY_PROTOCOLS = ("knn", "linear", "finetune", "semi10")
CONVERGED_VARIANTS = ("hacm_corrected", "mamp", "mae", "none")
RAW = "raw coordinates"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Sizes of a study.

    Attributes:
      layout, num_persons, window, dim, depth, heads, decoder_depth: model (HA-CM uses t_patch 3,
        MAMP / MAE t_patch 4 as in the paper).
      batch_size: every stage.
      pretrain_epochs, linear_epochs, finetune_epochs, semi_epochs: run lengths.
      seeds: seeds per variant.
      eval_every: epochs between test-split evaluations in the downstream runs (the last epoch is always
        evaluated; "best epoch" is the best of the evaluated ones).
      semi_eval_every: the same for the 10 %-label runs (0: eval_every).
      semi_steps_per_epoch: steps of a 10 %-label epoch (0: one pass over the labelled clips); a small
        labelled subset repeats within an epoch, which saves the per-epoch checkpoint and bookkeeping.
      precision: ComputeConfig.precision of every trained stage.
      pretrain_lr, pretrain_min_lr, pretrain_warmup_epochs: pretraining schedule (warm-up 0: a tenth
        of the epochs).
      monitor_every: pretraining epochs between kNN read-outs on the study's data (0: none).
      linear_lr: linear-probe SGD learning rate (cosine to 0).
      finetune_lr: fine-tune AdamW learning rate (cosine to 1 % of it).
      semi_warmup_epochs: warm-up of the 10 %-label runs (0: a tenth of the epochs).
    """

    layout: str = "kinect_v1_20"
    num_persons: int = 1
    window: int = 48
    dim: int = 64
    depth: int = 3
    heads: int = 4
    decoder_depth: int = 2
    batch_size: int = 32
    pretrain_epochs: int = 10
    linear_epochs: int = 10
    finetune_epochs: int = 10
    semi_epochs: int = 10
    seeds: int = 3
    eval_every: int = 1
    semi_eval_every: int = 2
    semi_steps_per_epoch: int = 10
    precision: str = "float32"
    pretrain_lr: float = 2e-3
    pretrain_min_lr: float = 2e-4
    pretrain_warmup_epochs: int = 0
    monitor_every: int = 0
    linear_lr: float = 0.1
    finetune_lr: float = 1e-3
    semi_warmup_epochs: int = 0

    @classmethod
    def synthetic(cls) -> "StudyConfig":
        """The synthetic study's CPU preset: NTU-25, two persons, 36-frame windows, shorter runs and
        evaluation every few epochs. The 10 %-label runs (60 clips) take 10 epochs of 10 steps = 100
        optimisation steps, evaluated after 50 and 100."""
        return cls(layout="ntu25", num_persons=2, window=36, pretrain_epochs=8, linear_epochs=6,
                   finetune_epochs=10, semi_epochs=10, eval_every=6, semi_eval_every=5)

    @classmethod
    def converged(cls) -> "StudyConfig":
        """NW-UCLA (or any one-person Kinect-v1 dataset) trained to convergence on 2 CPU cores: the CPU
        study's model (64 wide, 3 blocks, 48-frame windows) pretrained for 200 epochs with a kNN read-out
        every 25, linear probe 50 epochs, fine-tune 50 epochs (the supervised-from-scratch reference uses
        the same schedule), 10 %-label runs of 200 steps; 2 seeds."""
        return cls(pretrain_epochs=200, monitor_every=25, linear_epochs=50, finetune_epochs=50, semi_epochs=20,
                   semi_steps_per_epoch=10, semi_eval_every=5, eval_every=10, seeds=2)

    @classmethod
    def paper(cls, layout="ntu25", num_persons=2) -> "StudyConfig":
        """The paper's model size and run lengths (for accelerators)."""
        return cls(layout=layout, num_persons=num_persons, window=72, dim=256, depth=8, heads=8, decoder_depth=3,
                   batch_size=64, pretrain_epochs=400, linear_epochs=100, finetune_epochs=100, semi_epochs=100,
                   semi_eval_every=0, semi_steps_per_epoch=0)


def model_config(study: StudyConfig, changes: Optional[dict]) -> ModelConfig:
    changes = dict(changes or {"method": "hacm"})
    t_patch = 3 if changes["method"] == "hacm" else 4
    return ModelConfig(layout=study.layout, num_persons=study.num_persons, window=study.window, t_patch=t_patch,
                       dim=study.dim, depth=study.depth, heads=study.heads, decoder_dim=study.dim,
                       decoder_depth=study.decoder_depth, decoder_heads=study.heads,
                       **changes).validate()


def compute_config(study: StudyConfig) -> ComputeConfig:
    """How every trained stage of a study computes: the study's precision, no XLA (short runs)."""
    return ComputeConfig(precision=study.precision, jit_compile=False).validate()


def pretrain_config(study: StudyConfig) -> TrainConfig:
    """The pretraining schedule of a study (AdamW, warm-up then half-cosine)."""
    warmup = study.pretrain_warmup_epochs or max(1, study.pretrain_epochs // 10)
    return TrainConfig(epochs=study.pretrain_epochs, lr=study.pretrain_lr, min_lr=study.pretrain_min_lr,
                       warmup_epochs=warmup, log_every=20)


def protocol_configs(study: StudyConfig, protocol: str, cfg: ModelConfig, data: DataConfig):
    """(model, data, train, protocol) configs of one downstream run of the study."""
    if protocol == "linear":
        train = TrainConfig(epochs=study.linear_epochs, lr=study.linear_lr, min_lr=0.0, warmup_epochs=0,
                            weight_decay=0.0, log_every=20)
        return cfg, data, train, ProtocolConfig("linear", eval_every=study.eval_every)
    semi = protocol == "semi10"
    epochs = study.semi_epochs if semi else study.finetune_epochs
    warmup = (study.semi_warmup_epochs if semi else 0) or max(1, epochs // 10)
    train = TrainConfig(epochs=epochs, lr=study.finetune_lr, min_lr=study.finetune_lr / 100, warmup_epochs=warmup,
                        beta_2=0.999, log_every=20,
                        steps_per_epoch=study.semi_steps_per_epoch if semi else 0)
    every = study.semi_eval_every if semi and study.semi_eval_every else study.eval_every
    cfg = dataclasses.replace(cfg, drop_path=0.1)
    if semi:
        data = dataclasses.replace(data, semi_ratio=0.1, semi_stratified=True)
    return cfg, data, train, ProtocolConfig("finetune", eval_every=every)


# ---------------------------------------------------------------------------- data and presets

DATASETS = ("ucla", "synthetic")
PRESETS = ("cpu", "converged", "paper")
# the synthetic study's data: 20 classes (the 12 distinct actions and 8 that differ only in a limb's side,
# one limb, the head or the speed), 8 subjects (cross-subject: 5 train, 3 test), 3 views, 2 repetitions
SYNTHETIC_STUDY = dict(num_subjects=8, num_classes=20, replications=2, noise_body_rate=0.2)
SYNTHETIC_SEED = 7


def prepare_data(dataset: str, data_dir: str, data_root: Optional[str] = None) -> str:
    """The study's TFRecords in ``data_dir``, built when absent: NW-UCLA cross-view from its JSON release
    at ``data_root``, or the synthetic study's data. Returns ``data_dir``."""
    from hacm_tf.data import build, synthetic, tfrecord

    if os.path.exists(os.path.join(data_dir, tfrecord.INFO_FILE)):
        return data_dir
    if dataset == "ucla":
        if not data_root:
            raise ValueError("building the NW-UCLA study data needs the JSON release folder (--data_root), or "
                             "give an existing TFRecord directory (--data_dir)")
        build.build_ucla(data_root, data_dir, "xview")
    elif dataset == "synthetic":
        build.build_synthetic(data_dir, spec=synthetic.SyntheticSpec(**SYNTHETIC_STUDY), seed=SYNTHETIC_SEED)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {DATASETS}")
    return data_dir


def configure(preset: str, dataset: str, info: dict, seeds: Optional[int] = None,
              pretrain_epochs: Optional[int] = None, downstream_epochs: Optional[int] = None,
              precision: Optional[str] = None, variants: Optional[Sequence[str]] = None,
              protocols: Optional[Sequence[str]] = None) -> Tuple[StudyConfig, Tuple[str, ...], Tuple[str, ...]]:
    """(StudyConfig, variants, protocols) of a preset on a dataset whose dataset_info is ``info`` (joint
    layout and persons), with the given overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {PRESETS}")
    if preset == "paper":
        cfg = StudyConfig.paper()
    elif preset == "converged":
        cfg = StudyConfig.converged()
    else:
        cfg = StudyConfig() if dataset == "ucla" else StudyConfig.synthetic()
    changes = dict(layout=info["joint_layout"], num_persons=info["num_persons"])
    if seeds:
        changes["seeds"] = seeds
    if pretrain_epochs:
        changes["pretrain_epochs"] = pretrain_epochs
    if precision:
        changes["precision"] = precision
    if downstream_epochs:
        changes.update(linear_epochs=downstream_epochs, finetune_epochs=downstream_epochs,
                       semi_epochs=downstream_epochs)
    default_protocols = STUDY_PROTOCOLS if dataset == "ucla" else ("knn", "linear", "semi10")
    default_variants = CONVERGED_VARIANTS if preset == "converged" else tuple(VARIANTS)
    return (dataclasses.replace(cfg, **changes), tuple(variants or default_variants),
            tuple(protocols or default_protocols))
