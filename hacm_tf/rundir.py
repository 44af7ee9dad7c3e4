"""Run directories: what every stage reads and writes besides its training loop.

A run directory holds ``config.json`` (stage, model, data, schedule, compute, seed, dataset),
``checkpoints/``, ``tensorboard/``, ``metrics.json`` and ``flags.txt``. This module checks and writes
the config, finds checkpoints, and restores the models of pretraining, linear-probe, fine-tune and
converted runs, for export, evaluation, figures, transfer and read-outs alike.
"""

from __future__ import annotations

import json
import os
from typing import Tuple

import tensorflow as tf

from hacm_tf.config import CLASSIFIER_PROTOCOLS, ComputeConfig, ModelConfig, ProtocolConfig, migrate_run_config
from hacm_tf.data.tfrecord import atomic_write_text
from hacm_tf.errors import TrainingError
from hacm_tf.training.strategy import is_chief

CONFIG_FILE = "config.json"


def check_workdir_config(workdir: str, config: dict):
    """Writes config.json, or checks that an existing run in ``workdir`` used the same config (its
    "compute" settings may differ: they change how, not what, the run computes).

    Only the chief writes; other workers check an existing file."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create the workdir {workdir}: {e.strerror}") from None
    if not os.access(workdir, os.W_OK):
        raise TrainingError(f"the workdir {workdir} is not writable")
    config = json.loads(json.dumps(config))        # tuples -> lists, as read back
    path = os.path.join(workdir, CONFIG_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = migrate_run_config(json.load(f))
        diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k) and k != "compute")
        if diff:
            details = "; ".join(f"{k}: {old.get(k)} -> {config.get(k)}" for k in diff)[:600]
            raise TrainingError(f"{workdir} holds a run with a different configuration ({details}); "
                                "use a new --workdir or the same settings")
        return
    if is_chief():
        atomic_write_text(path, json.dumps(config, indent=1, sort_keys=True) + "\n")


def read_run_config(workdir: str) -> dict:
    """A run directory's config.json (older layouts migrated)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir}: no {CONFIG_FILE} (not a hacm_tf run directory)")
    with open(path) as f:
        return migrate_run_config(json.load(f))


def resolve_checkpoint(path: str) -> Tuple[str, str]:
    """(run directory, checkpoint prefix) from a run directory (its latest checkpoint) or a checkpoint
    prefix inside one."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        if latest is None:
            raise FileNotFoundError(f"{path}: no checkpoint in {os.path.join(path, 'checkpoints')}")
        return path, latest
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if not tf.io.gfile.exists(path + ".index"):
        raise FileNotFoundError(f"{path}: no such checkpoint (expected {path}.index)")
    return run_dir, path


def model_config(path: str) -> ModelConfig:
    """The ModelConfig (architecture and method) of the run at ``path`` (run directory or checkpoint)."""
    return ModelConfig.from_dict(read_run_config(resolve_checkpoint(path)[0])["model"])


def load_pretrainer(path: str):
    """Restores a pretraining (or converted) run's MaskedPretrainer; returns (model, ModelConfig)."""
    from absl import logging

    from hacm_tf.models.pretrainer import MaskedPretrainer

    run_dir, ckpt = resolve_checkpoint(path)
    cfg = read_run_config(run_dir)
    if cfg.get("stage") != "pretrain":
        raise ValueError(f"{run_dir} is a {cfg.get('stage')!r} run, not a pretraining run")
    model_cfg = ModelConfig.from_dict(cfg["model"])
    model = MaskedPretrainer(model_cfg.to_dict())
    model.build()
    tf.train.Checkpoint(model=model).restore(ckpt).expect_partial().assert_existing_objects_matched()
    logging.info("loaded %s (%s)", ckpt, model_cfg.method)
    return model, model_cfg


def load_pretrained_encoder(path: str):
    """The SkeletonEncoder of a pretraining (or converted) run, with its ModelConfig."""
    model, model_cfg = load_pretrainer(path)
    return model.encoder, model_cfg


def load_classifier(path: str, precision: str = "float32"):
    """Restores a linear-probe / fine-tune run's ActionClassifier; returns it with the run's config dict.

    ``precision``: the compute precision of the restored model (ComputeConfig.precision), float32 by
    default whatever the run trained with (the weights are float32 either way)."""
    from hacm_tf.models.classifier import build_classifier

    run_dir, ckpt = resolve_checkpoint(path)
    cfg = read_run_config(run_dir)
    if cfg.get("stage") not in CLASSIFIER_PROTOCOLS:
        raise ValueError(f"{run_dir} is a {cfg.get('stage')!r} run; export and evaluate need a linear-probe or "
                         "fine-tune run")
    clf = build_classifier(ModelConfig.from_dict(cfg["model"]), cfg["num_classes"], ProtocolConfig(**cfg["protocol"]),
                           ComputeConfig(precision=precision).validate())
    tf.train.Checkpoint(model=clf).restore(ckpt).expect_partial().assert_existing_objects_matched()
    return clf, cfg


def write_converted_run(output: str, run_config: dict, model) -> str:
    """A new run directory holding ``model``'s weights as checkpoint 0 (the checkpoint converter's output);
    refuses a directory that already holds a run. Returns the checkpoint prefix."""
    if os.path.exists(os.path.join(output, CONFIG_FILE)):
        raise ValueError(f"{output} already holds a run; choose a new --output")
    check_workdir_config(output, run_config)
    return tf.train.CheckpointManager(tf.train.Checkpoint(model=model), os.path.join(output, "checkpoints"),
                                      max_to_keep=1).save(checkpoint_number=0)
