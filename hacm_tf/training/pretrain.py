"""Pretraining (HA-CM, MAMP, MAE) from a TFRecord directory into a workdir."""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from hacm_tf.config import ComputeConfig, ConfigError, DataConfig, ModelConfig, MonitorConfig, TrainConfig
from hacm_tf.data import pipeline, tfrecord
from hacm_tf.models.pretrainer import MaskedPretrainer
from hacm_tf.training.engine import PretrainEngine, check_micro_batching
from hacm_tf.skeleton import get_layout
from hacm_tf.training import optim
from hacm_tf.rundir import check_workdir_config
from hacm_tf.training.run import Run
from hacm_tf.training.strategy import is_chief
from hacm_tf import console


def steps_per_epoch(train_samples: int, global_batch: int, configured: int = 0) -> int:
    if configured:
        return configured
    if train_samples < global_batch:
        raise ValueError(f"the training split has {train_samples} samples, fewer than one batch of {global_batch}")
    return train_samples // global_batch


def check_data_for_model(info: dict, data_dir: str, model: ModelConfig):
    """The dataset must have the model's joint layout and person count."""
    tfrecord.check_info(info, data_dir, joint_layout=model.layout, num_persons=model.num_persons, split="train")
    if info["num_joints"] != get_layout(model.layout).num_joints:
        raise ValueError(f"{data_dir}: {info['num_joints']} joints, layout {model.layout} has "
                         f"{get_layout(model.layout).num_joints}")


def check_determinism(compute: ComputeConfig):
    """``compute.deterministic`` needs TF op determinism, a process-wide switch the caller turns on
    (``tf.config.experimental.enable_op_determinism()``; the scripts do it for --deterministic)."""
    if compute.deterministic and not tf.config.experimental.is_op_determinism_enabled():
        raise ConfigError("deterministic: call tf.config.experimental.enable_op_determinism() first (a "
                          "process-wide switch)")


def mask_image(mask_grid: np.ndarray) -> np.ndarray:
    """[B, T', V'] masks -> one [1, V' * rows, T', 1] image: white = visible, black = masked."""
    rows = [1.0 - mask_grid[i].T for i in range(min(4, mask_grid.shape[0]))]   # [V', T'] each
    sep = [np.full((1, mask_grid.shape[1]), 0.5)]
    img = np.concatenate(sum(([r] + sep for r in rows), [])[:-1], axis=0)
    return img[None, :, :, None].astype(np.float32)


def pretrain(workdir: str, data_dir: str, model_config: ModelConfig, data_config: DataConfig,
             train_config: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0,
             extra_config: Optional[dict] = None, monitor: Optional[MonitorConfig] = None,
             compute: Optional[ComputeConfig] = None) -> dict:
    """Pretrains a MaskedPretrainer; resumes from ``workdir`` when it holds a run of the same config.

    The training pipeline yields skeletons only: labels never reach the model. ``monitor`` (optional)
    scores the frozen encoder with a kNN read-out on a labelled dataset every few epochs
    (``eval_knn1_top1`` / ``eval_knn20_top1`` in metrics.json and TensorBoard); it does not change the
    training (not part of the run's config). ``compute`` (ComputeConfig(), default) chooses how the
    steps are computed; a run resumes under other compute settings.

    Returns the final metrics (also in ``workdir/metrics.json``).
    """
    model_config.validate(), data_config.validate(), train_config.validate()
    if data_config.window != model_config.window:
        raise ValueError(f"data window {data_config.window} differs from the model window {model_config.window}")
    compute = (compute or ComputeConfig()).validate()
    check_determinism(compute)
    strategy = strategy or tf.distribute.get_strategy()
    parts = compute.micro_batches * strategy.num_replicas_in_sync
    if data_config.batch_size % parts:
        raise ConfigError(f"batch_size {data_config.batch_size} is not divisible by micro_batches x replicas = "
                          f"{compute.micro_batches} x {strategy.num_replicas_in_sync}")
    check_micro_batching(model_config, compute.micro_batches)
    info = tfrecord.load_info(data_dir)
    check_data_for_model(info, data_dir, model_config)
    spe = steps_per_epoch(info["splits"]["train"], data_config.batch_size, train_config.steps_per_epoch)
    check_workdir_config(workdir, {"stage": "pretrain", "model": model_config.to_dict(),
                                   "data": data_config.to_dict(), "train": train_config.to_dict(),
                                   "seed": seed, "data_dir_dataset": info["dataset"], "compute": compute.to_dict(),
                                   **(extra_config or {})})
    keras.utils.set_random_seed(seed)                 # initial weights depend on the seed only
    with strategy.scope():
        model = MaskedPretrainer(model_config.to_dict(), seed=seed, **compute.layer_kwargs)
        model.build()
        schedule = optim.WarmupCosine(train_config.lr, train_config.min_lr, train_config.warmup_epochs,
                                      train_config.epochs, spe)
        opt = optim.adamw(schedule, model.trainable_variables, train_config.weight_decay,
                          train_config.beta_1, train_config.beta_2)
        model.compile(optimizer=opt, engine=PretrainEngine.from_config(compute))
        opt.build(model.trainable_variables)
        if (compute.jit_compile and compute.precision == "mixed_bfloat16"
                and not tf.config.list_physical_devices("GPU")):
            logging.warning("XLA on CPU runs bfloat16 matmuls without oneDNN: measured 1.9x slower than without "
                            "XLA at the paper's HA-CM size; pass --nojit_compile with --precision=mixed_bfloat16")
    mode = f" ({model_config.hacm_mode})" if model_config.method == "hacm" else ""
    if is_chief():
        console.say(f"pretraining {model_config.method}{mode}: {model.count_params():,} parameters, global batch "
                    f"{data_config.batch_size} ({strategy.num_replicas_in_sync} replicas), "
                    f"{train_config.epochs} epochs x {spe} steps, lr {train_config.lr:.2e} -> {workdir}")

    def make(ctx, start_epoch, skip, per_epoch):
        ds = pipeline.make_dataset(data_dir, "train", data_config, training=True, seed=seed, input_context=ctx,
                                   start_epoch=start_epoch, skip_batches=skip, batches_per_epoch=per_epoch)
        return ds.map(lambda x, label: x)            # self-supervised: the labels stop here

    fixed = _fixed_batch(data_dir, data_config, model)

    def images(epoch):
        out = model.compute_losses(fixed[0], fixed[1])
        tf.summary.image("masks (white = visible; rows = joints, columns = temporal patches)",
                         mask_image(out["mask_grid"].numpy()), max_outputs=1)

    run = Run(workdir, strategy, model, make, train_config.epochs, spe, data_config.batch_size,
              train_config.checkpoint_every, train_config.keep_checkpoints, train_config.log_every, images=images,
              evaluate=knn_monitor(model.encoder, model_config, data_config, train_config.epochs, monitor),
              name=f"pretrain {model_config.method}")
    try:
        final = run.train()
    except tf.errors.DataLossError:
        tfrecord.verify(data_dir, progress=False)   # names the corrupt shard
        raise
    return final


def knn_monitor(encoder, model_config: ModelConfig, data_config: DataConfig, epochs: int,
                monitor: Optional[MonitorConfig]):
    """``epoch -> {"eval_knn1_top1", "eval_knn20_top1", "monitor_seconds"}`` on the epochs the monitor is
    due (``{}`` otherwise), or None without a monitor."""
    if monitor is None or not monitor.enabled:
        return None
    from hacm_tf import readout

    monitor.validate()
    info = tfrecord.load_info(monitor.monitor_data_dir)
    check_data_for_model(info, monitor.monitor_data_dir, model_config)
    tfrecord.check_info(info, monitor.monitor_data_dir, split="test")
    if is_chief():
        console.say(f"kNN monitor every {monitor.monitor_every} epochs on {monitor.monitor_data_dir} "
                    f"({info['splits']['train']} train / {info['splits']['test']} test clips): its labels are read "
                    "only to score the frozen encoder; pretraining never sees them")

    def evaluate(epoch):
        if not monitor.due(epoch, epochs):
            return {}
        t0 = time.perf_counter()
        r = readout.encoder_knn(encoder, monitor.monitor_data_dir, data_config.window,
                                batch_size=monitor.monitor_batch_size, eval_crop=data_config.eval_crop)
        return {**{f"eval_{k}": v for k, v in r.items()}, "monitor_seconds": round(time.perf_counter() - t0, 2)}

    return evaluate


def _fixed_batch(data_dir, data_config, model):
    """A fixed evaluation batch and noise for the mask images."""
    split = "test" if tfrecord.load_info(data_dir)["splits"].get("test") else "train"
    cfg = dataclasses.replace(data_config, batch_size=2)
    x, _ = next(iter(pipeline.make_dataset(data_dir, split, cfg, training=False)))
    rng = np.random.RandomState(0)
    noise = [rng.uniform(size=s).astype(np.float32) for s in model.noise_shapes(int(x.shape[0] * x.shape[2]))]
    return x, noise
