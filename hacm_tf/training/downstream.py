"""Downstream protocols: linear probe, fine-tune, semi-supervised, transfer, training from scratch.

The encoder comes from a pretraining workdir (or one written by the checkpoint converter); only
encoder weights transfer, the temporal embedding is resized when the number of temporal patches
differs, and incompatible encoders are rejected with the reason.
"""

from __future__ import annotations

import dataclasses
import os
import weakref
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, ProtocolConfig, TrainConfig
from hacm_tf.data import pipeline, tfrecord
from hacm_tf.errors import TrainingError
from hacm_tf.metrics import predict, topk_accuracy
from hacm_tf.models.classifier import build_classifier
from hacm_tf.models.encoder import SkeletonEncoder
from hacm_tf.rundir import check_workdir_config, load_pretrained_encoder
from hacm_tf.training import optim
from hacm_tf.training.pretrain import check_data_for_model, steps_per_epoch
from hacm_tf.training.run import Run
from hacm_tf.training.strategy import is_chief
from hacm_tf import console

ARCHITECTURE_FIELDS = ("method", "layout", "dim", "depth", "heads", "mlp_ratio", "t_patch", "hyperbolic",
                       "curvature", "clip_radius")


def resize_temporal(embedding: np.ndarray, patches: int) -> np.ndarray:
    """[1, T'_src, 1, D] -> [1, patches, 1, D] by bicubic interpolation along time."""
    if embedding.shape[1] == patches:
        return embedding
    img = tf.constant(embedding, tf.float32)                                  # treated as [1, H=T', W=1, C=D]
    return tf.image.resize(img, [patches, 1], method="bicubic").numpy()


def transfer_encoder(src: SkeletonEncoder, dst: SkeletonEncoder):
    """Copies encoder weights; the temporal embedding is resized if the patch count differs."""
    a, b = src.cfg, dst.cfg
    diff = [f"{k}: {getattr(a, k)} vs {getattr(b, k)}" for k in ARCHITECTURE_FIELDS if getattr(a, k) != getattr(b, k)]
    if diff or src.joints != dst.joints:
        raise ValueError("the pretrained encoder does not match the classifier: " + "; ".join(diff or ["joints"]))
    for s, d in zip(src.weights, dst.weights):
        value = s.numpy()
        if d is dst.pos_embed.temporal:
            value = resize_temporal(value, d.shape[1])
        if tuple(value.shape) != tuple(d.shape):
            raise ValueError(f"encoder weight {d.path}: pretrained shape {value.shape}, classifier {tuple(d.shape)}")
        d.assign(value)


_INFERENCE_FNS = weakref.WeakKeyDictionary()


def evaluate_model(model, data_dir: str, data_config: DataConfig, split: str = "test") -> dict:
    """Top-1 / top-5 / loss of a classifier on a split (every sample once, inference mode)."""
    ds = pipeline.make_dataset(data_dir, split, data_config, training=False)
    fn = _INFERENCE_FNS.get(model)
    if fn is None:                       # traced once per model, reused every epoch
        fn = _INFERENCE_FNS[model] = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    out = predict(fn, ds)
    loss = float(np.mean(model.loss_fn(tf.constant(out["labels"]), tf.constant(out["logits"])).numpy()))
    return {"top1": topk_accuracy(out["logits"], out["labels"], 1),
            "top5": topk_accuracy(out["logits"], out["labels"], 5), "loss": loss, "samples": len(out["labels"])}


def train_classifier(workdir: str, data_dir: str, model_config: ModelConfig, data_config: DataConfig,
                     train_config: TrainConfig, protocol: ProtocolConfig, pretrained: Optional[str] = None,
                     strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0,
                     compute: Optional[ComputeConfig] = None) -> dict:
    """Linear probe or fine-tune (semi-supervised when ``data_config.semi_ratio < 1``; from scratch
    when ``pretrained`` is None). Returns final metrics with the last- and best-epoch test accuracy.
    ``compute``: remat and precision of the classifier (ComputeConfig(), default)."""
    protocol.validate(), model_config.validate(), data_config.validate(), train_config.validate()
    compute = (compute or ComputeConfig()).validate()
    if data_config.window != model_config.window:
        raise ValueError(f"data window {data_config.window} differs from the model window {model_config.window}")
    strategy = strategy or tf.distribute.get_strategy()
    info = tfrecord.load_info(data_dir)
    check_data_for_model(info, data_dir, model_config)
    tfrecord.check_info(info, data_dir, split="test")
    train_n = info["splits"]["train"]
    if data_config.semi_ratio < 1:
        names, labels = pipeline.read_labels(data_dir, "train", info)
        train_n = len(pipeline.semi_supervised_subset(names, labels, data_config.semi_ratio, seed,
                                                      data_config.semi_stratified))
    spe = steps_per_epoch(train_n, data_config.batch_size, train_config.steps_per_epoch)
    num_classes = info["num_classes"]
    check_workdir_config(workdir, {"stage": protocol.protocol, "model": model_config.to_dict(),
                                   "data": data_config.to_dict(), "train": train_config.to_dict(),
                                   "protocol": dataclasses.asdict(protocol), "seed": seed,
                                   "pretrained": os.path.abspath(pretrained) if pretrained else None,
                                   "num_classes": num_classes, "class_names": info["class_names"],
                                   "dataset": info["dataset"], "compute": compute.to_dict()})
    source = load_pretrained_encoder(pretrained)[0] if pretrained else None
    if protocol.protocol == "linear" and source is None:
        console.say("note: linear probe of a randomly initialised encoder (no --pretrained)")
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        clf = build_classifier(model_config, num_classes, protocol, compute)
        if source is not None:
            transfer_encoder(source, clf.encoder)
        if protocol.protocol == "linear":
            schedule = optim.WarmupCosine(train_config.lr, train_config.min_lr, train_config.warmup_epochs,
                                          train_config.epochs, spe)
            opt = keras.optimizers.SGD(schedule, momentum=protocol.momentum)
            opt.build(clf.trainable_variables)
        else:
            paths = [v.path for v in clf.trainable_variables]
            opt = optim.layerwise_adamw(
                clf.trainable_variables, paths, model_config.depth, protocol.layer_decay,
                lambda s: optim.WarmupCosine(train_config.lr, train_config.min_lr, train_config.warmup_epochs,
                                             train_config.epochs, spe, scale=s),
                train_config.weight_decay, train_config.beta_1, train_config.beta_2)
        clf.optimizer = opt
    if is_chief():
        trainable = sum(int(np.prod(v.shape)) for v in clf.trainable_variables)
        console.say(f"{protocol.protocol}: {trainable:,} trainable / {clf.count_params():,} parameters, {num_classes} "
                    f"classes, global batch {data_config.batch_size}, {train_config.epochs} epochs x {spe} steps, "
                    f"lr {train_config.lr:.2e} -> {workdir}")

    def make(ctx, start_epoch, skip, per_epoch):
        return pipeline.make_dataset(data_dir, "train", data_config, training=True, seed=seed, input_context=ctx,
                                     start_epoch=start_epoch, skip_batches=skip, batches_per_epoch=per_epoch,
                                     num_classes=num_classes)

    def evaluate(epoch):
        if (epoch + 1) % protocol.eval_every and epoch + 1 != train_config.epochs:
            return {}
        r = evaluate_model(clf, data_dir, data_config)
        return {"eval_top1": r["top1"], "eval_top5": r["top5"], "eval_loss": r["loss"]}

    run = Run(workdir, strategy, clf, make, train_config.epochs, spe, data_config.batch_size,
              train_config.checkpoint_every, train_config.keep_checkpoints, train_config.log_every,
              evaluate=evaluate, name=protocol.protocol)
    try:
        final = run.train()
    except tf.errors.DataLossError:
        tfrecord.verify(data_dir, progress=False)   # names the corrupt shard
        raise
    evals = [h for h in run.history if "eval_top1" in h]
    if not evals:
        raise TrainingError("no evaluation was recorded")
    best = max(evals, key=lambda h: h["eval_top1"])
    final.update({"last_epoch_top1": evals[-1]["eval_top1"], "last_epoch_top5": evals[-1]["eval_top5"],
                  "best_epoch_top1": best["eval_top1"], "best_epoch_top5": best["eval_top5"],
                  "best_epoch": best["epoch"] + 1, "protocol": protocol.protocol,
                  "pretrained": pretrained, "train_samples": train_n})
    run.write_metrics(final)
    return final
