"""Frozen-feature protocols without gradient training of the encoder: kNN and a full-batch logistic
regression on a pretrained (or randomly initialised) encoder's pooled embeddings, and the same
read-outs on raw joint coordinates (the baseline every representation must beat)."""

from __future__ import annotations

import json
import os
import time
from typing import Optional

import keras
import numpy as np

from hacm_tf import readout
from hacm_tf.config import ModelConfig
from hacm_tf.data import tfrecord
from hacm_tf.models.encoder import SkeletonEncoder
from hacm_tf.rundir import load_classifier, load_pretrained_encoder
from hacm_tf.training.pretrain import check_data_for_model


def random_encoder(model_config: ModelConfig, seed: int = 0) -> SkeletonEncoder:
    """A freshly initialised encoder of ``model_config``'s architecture (weights from ``seed``)."""
    keras.utils.set_random_seed(seed)
    encoder = SkeletonEncoder(model_config.to_dict(), name="encoder")
    encoder.build(None)
    return encoder


def frozen_readout(data_dir: str, pretrained: Optional[str] = None, model_config: Optional[ModelConfig] = None,
                   seed: int = 0, logreg: bool = False, diagnostics: bool = False, batch_size: int = 64,
                   eval_crop: float = 0.95) -> dict:
    """kNN (k = 1, 20) top-1 of a frozen encoder on ``data_dir`` (train split: neighbours, test split:
    queries); with ``logreg`` also a logistic regression on the standardised embeddings (l2 chosen by
    3-fold validation on the train split); with ``diagnostics`` the embedding spectrum.

    The encoder is ``pretrained``'s (a pretraining run directory), or a random one of
    ``model_config`` (or of ``pretrained``'s architecture when both are given: random_init baseline).
    """
    if pretrained is None and model_config is None:
        raise ValueError("give a pretrained run or a model config")
    if model_config is None:
        encoder, model_config = load_pretrained_encoder(pretrained)
        source = os.path.abspath(pretrained)
    else:
        encoder, source = random_encoder(model_config, seed), f"random init (seed {seed})"
    info = tfrecord.load_info(data_dir)
    check_data_for_model(info, data_dir, model_config)
    tfrecord.check_info(info, data_dir, split="test")
    t0 = time.perf_counter()
    r = readout.encoder_knn(encoder, data_dir, model_config.window, batch_size=batch_size, eval_crop=eval_crop,
                            return_embeddings=True)
    train, train_labels, test, test_labels = r.pop("embeddings")
    out = {"encoder": source, "method": model_config.method, "data_dir": os.path.abspath(data_dir),
           "train_samples": len(train), "test_samples": len(test), **r,
           "embed_knn_seconds": round(time.perf_counter() - t0, 2)}
    if logreg:
        out.update(readout.linear_readout(train, train_labels, test, test_labels, info["num_classes"]))
    if diagnostics:
        s = readout.spectrum(train)
        out.update(effective_rank=s["effective_rank"], top_singular_share=s["top_singular_share"],
                   singular_values=s["singular_values"],
                   feature_norm=float(np.mean(np.linalg.norm(train, axis=1))))
    return out


def raw_coordinate_baseline(data_dir: str, window: int) -> dict:
    """Read-outs on raw joint coordinates: the evaluation crop resized to ``window`` frames, stored
    centring, positions + velocities, standardised with the train split's statistics; a logistic
    regression (l2 by 3-fold validation on train) and kNN (k = 1, 20)."""
    info = tfrecord.load_info(data_dir)
    tfrecord.check_info(info, data_dir, split="test")
    train, train_labels = readout.raw_split(data_dir, "train", window)
    test, test_labels = readout.raw_split(data_dir, "test", window)
    train, test = readout.standardise(train, test)
    out = {"window": window, "features": int(train.shape[1]),
           **readout.knn_accuracy(train, train_labels, test, test_labels, info["num_classes"])}
    out.update(readout.linear_readout(train, train_labels, test, test_labels, info["num_classes"]))
    return out


def write_json(path: str, result: dict):
    from hacm_tf.data.tfrecord import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=1) + "\n")


def linear_probe_check(linear_run: str, data_dir: str, batch_size: int = 64) -> dict:
    """Has a linear probe converged? Its top-1 on the train split (evaluation crops, as the test split is
    read) and on the test split, beside a logistic regression on the same frozen encoder's standardised
    embeddings (l2 by 3-fold validation on train): a probe whose train top-1 stays far below the
    regression's is under-trained, not limited by its features."""
    from hacm_tf.config import DataConfig
    from hacm_tf.training.downstream import evaluate_model

    clf, cfg = load_classifier(linear_run)
    if cfg["stage"] != "linear":
        raise ValueError(f"{linear_run} is a {cfg['stage']!r} run, not a linear probe")
    data = DataConfig.from_dict({**cfg["data"], "batch_size": batch_size, "semi_ratio": 1.0})
    probe = {f"probe_{split}_top1": evaluate_model(clf, data_dir, data, split=split)["top1"]
             for split in ("train", "test")}
    fn = readout.encoder_embed_fn(clf.encoder)
    train, train_labels = readout.embed_split(fn, data_dir, "train", data.window, batch_size, data.eval_crop)
    test, test_labels = readout.embed_split(fn, data_dir, "test", data.window, batch_size, data.eval_crop)
    regression = readout.linear_readout(train, train_labels, test, test_labels, cfg["num_classes"])
    return {**probe, **regression, "probe_epochs": cfg["train"]["epochs"]}
