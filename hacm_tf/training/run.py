"""Resumable training loop shared by pretraining and the downstream protocols.

Everything a run writes lives in its workdir::

    config.json          model / data / train configs (a rerun must match them)
    checkpoints/         tf.train checkpoints: weights, optimizer, step, seed-generator states
    tensorboard/         scalars (losses, lr, throughput) and images
    metrics.json         per-epoch history and the final figures (written atomically)

The data position is a pure function of the step (``make_dataset(start_epoch,
skip_batches)``), the seed generators are in the checkpoint, so a run killed at
any moment and restarted with the same command continues exactly where the last
checkpoint left it. Under MultiWorkerMirroredStrategy only the chief writes the
workdir; other workers checkpoint into private scratch folders (the collectives
need every worker to save).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from hacm_tf import console
from hacm_tf.data.tfrecord import atomic_write_text
from hacm_tf.errors import TrainingError
from hacm_tf.training.engine import NONFINITE_MESSAGE
from hacm_tf.training.strategy import is_chief, task_info
from hacm_tf.utils import progress_bar


def seed_generators(model) -> List:
    """Every keras SeedGenerator owned by the model or its layers, in a stable order."""
    found = []
    for layer in [model] + list(model._flatten_layers(include_self=False)):
        for sg in getattr(layer, "_seed_generators", []):
            if all(sg is not f for f in found):
                found.append(sg)
    return found


class Run:
    """Checkpointing, logging and the step loop for one model under one strategy.

    Args:
      workdir: run folder.
      strategy: tf.distribute strategy the model was built under.
      model: a compiled keras.Model whose ``train_step`` applies the optimizer.
      make_dataset: ``(input_context, start_epoch, skip_batches, batches_per_epoch) -> tf.data.Dataset``.
      epochs, steps_per_epoch: run length (global steps per epoch).
      checkpoint_every, keep_checkpoints, log_every: bookkeeping cadence (steps).
      images: optional ``(writer, epoch) -> None`` called on the chief after each epoch.
      global_batch: samples per step (for throughput).
      name: the stage's name on the progress bar and the console lines.
    """

    def __init__(self, workdir: str, strategy, model, make_dataset: Callable, epochs: int, steps_per_epoch: int,
                 global_batch: int, checkpoint_every: int = 0, keep_checkpoints: int = 3, log_every: int = 10,
                 images: Optional[Callable] = None, evaluate: Optional[Callable] = None, name: str = "train"):
        self.workdir, self.strategy, self.model, self.name = workdir, strategy, model, name
        self.make_dataset, self.epochs, self.steps_per_epoch = make_dataset, epochs, steps_per_epoch
        self.global_batch = global_batch
        self.checkpoint_every = checkpoint_every or steps_per_epoch
        self.log_every, self.images, self.evaluate = log_every, images, evaluate
        self.chief = is_chief()
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        seeds = {f"seed_{i}": sg.state for i, sg in enumerate(seed_generators(model))}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, step=self.step, **seeds)
        self.chief_dir = os.path.join(workdir, "checkpoints")
        ckpt_dir = self.chief_dir
        if not self.chief:   # MWMS: every worker saves, only the chief's copy is kept
            ckpt_dir = os.path.join(workdir, ".scratch", f"worker{task_info()['index']}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=keep_checkpoints)
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) if self.chief else None
        self.history: List[Dict] = self._load_history()

    # ------------------------------------------------------------------ persistence

    def _load_history(self) -> List[Dict]:
        path = os.path.join(self.workdir, "metrics.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f).get("history", [])
        return []

    def restore(self) -> int:
        """Restores the chief's latest checkpoint (if any); returns the global step.

        Every worker restores the chief's copy, so all resume from the same step even when a kill
        fell between the chief's save and another worker's."""
        latest = tf.train.latest_checkpoint(self.chief_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            if self.chief:
                console.say(f"{self.name}: resumed from {latest} (step {int(self.step.numpy())})")
        self.history = [h for h in self.history if h["epoch"] < int(self.step.numpy()) // self.steps_per_epoch]
        return int(self.step.numpy())

    def save(self):
        try:
            path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        except (OSError, tf.errors.OpError) as e:
            raise TrainingError(f"cannot write a checkpoint in {self.manager.directory}: {e}; "
                                f"earlier checkpoints are intact") from None
        logging.debug("checkpoint %s", path)

    def write_metrics(self, final: Optional[dict] = None):
        if not self.chief:
            return
        doc = {"history": self.history}
        if final:
            doc["final"] = final
        atomic_write_text(os.path.join(self.workdir, "metrics.json"), json.dumps(doc, indent=1) + "\n")

    # ------------------------------------------------------------------ loop

    def _distributed_dataset(self, start_epoch: int, skip_steps: int):
        spe = self.steps_per_epoch

        def fn(ctx: tf.distribute.InputContext):
            local = ctx.num_replicas_in_sync // ctx.num_input_pipelines   # batches per step of this pipeline
            return self.make_dataset(ctx, start_epoch, skip_steps * local, spe * local)

        return self.strategy.distribute_datasets_from_function(fn)

    def train(self) -> dict:
        """Runs (or resumes) the loop to the last epoch; returns the final metrics."""
        step = self.restore()
        total = self.epochs * self.steps_per_epoch
        if step >= total:
            if self.chief:
                console.say(f"{self.name}: already complete ({step} steps) in {self.workdir}")
            final = self._final()
            self.write_metrics(final)
            return final
        start_epoch, skip = divmod(step, self.steps_per_epoch)
        iterator = iter(self._distributed_dataset(start_epoch, skip))
        model, strategy = self.model, self.strategy

        @tf.function
        def train_step(it):
            strategy.run(model.train_step, args=(next(it),))

        bar = progress_bar(desc=self.name, total=total, unit="step", disable=not self.chief)
        bar.update(step)
        last_loss = {}

        def show(epoch):
            bar.set_postfix(epoch=f"{epoch + 1}/{self.epochs}", **last_loss, **self._shown(), refresh=False)

        for epoch in range(start_epoch, self.epochs):
            for m in model.metrics:
                m.reset_state()
            first = skip if epoch == start_epoch else 0
            show(epoch)
            t0, n0 = time.perf_counter(), 0
            for _ in range(first, self.steps_per_epoch):
                try:
                    train_step(iterator)
                except tf.errors.InvalidArgumentError as e:
                    if NONFINITE_MESSAGE in str(e):
                        bar.close()
                        raise TrainingError(
                            f"non-finite loss or gradient at step {int(self.step.numpy()) + 1}; the last "
                            f"checkpoint is {self.manager.latest_checkpoint} (rerun with --nonfinite=skip "
                            "to zero such steps, or lower the learning rate)") from None
                    raise
                self.step.assign_add(1)
                bar.update(1)
                n0 += 1
                s = int(self.step.numpy())
                if s % self.log_every == 0 or s == total:
                    logs = self._logs()
                    rate = n0 * self.global_batch / max(time.perf_counter() - t0, 1e-9)
                    last_loss["loss"] = f"{logs['loss']:.4f}"
                    show(epoch)
                    self._scalars(s, {**logs, "samples_per_second": rate,
                                      "learning_rate": float(model.optimizer.learning_rate)})
                if s % self.checkpoint_every == 0 and s % self.steps_per_epoch:
                    self.save()
            entry = {"epoch": epoch, "step": int(self.step.numpy()), **self._logs(),
                     "seconds": round(time.perf_counter() - t0, 2)}
            if self.evaluate is not None:
                entry.update(self.evaluate(epoch))
                self._scalars(int(self.step.numpy()), {k: v for k, v in entry.items() if k.startswith("eval_")})
            self.history.append(entry)
            if self.chief:
                shown = {k: v for k, v in entry.items() if k not in ("epoch", "step", "seconds")}
                console.say(f"{self.name} epoch {epoch + 1}/{self.epochs}  {console.figures(shown)}  "
                            f"({entry['seconds']:.1f} s)")
            if self.images is not None and self.writer is not None:
                with self.writer.as_default(step=int(self.step.numpy())):
                    self.images(epoch)
            self.write_metrics()   # before the checkpoint: a resume drops entries past the checkpoint
            self.save()
        bar.close()
        if self.chief:
            console.say(f"{self.name}: done; checkpoints in {self.chief_dir} (latest {self.manager.latest_checkpoint})")
        final = self._final()
        self.write_metrics(final)
        if not self.chief:
            shutil.rmtree(os.path.join(self.workdir, ".scratch", f"worker{task_info()['index']}"), ignore_errors=True)
        return final

    def _shown(self) -> Dict[str, str]:
        """The latest evaluation figures (top-1 read-outs) for the progress bar."""
        for h in reversed(self.history):
            shown = {k[len("eval_"):]: f"{v:.3f}" for k, v in h.items() if k.startswith("eval_") and "top1" in k}
            if shown:
                return shown
        return {}

    def _logs(self) -> Dict[str, float]:
        return {m.name: float(np.asarray(m.result()).reshape(-1)[0]) for m in self.model.metrics}

    def _scalars(self, step: int, values: Dict[str, float]):
        if self.writer is None:
            return
        with self.writer.as_default(step=step):
            for k, v in values.items():
                tf.summary.scalar(k, v)
        self.writer.flush()

    def _final(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {"steps": int(self.step.numpy()), "epochs": self.epochs, "last_epoch": last,
                "weights_sha256": weights_digest(self.model)}


def weights_digest(model) -> str:
    """sha256 of all trainable weights (float32 bytes): equal digests mean identical weights."""
    import hashlib

    h = hashlib.sha256()
    for v in model.trainable_variables:
        h.update(np.ascontiguousarray(np.asarray(v.numpy(), np.float32)).tobytes())
    return h.hexdigest()

