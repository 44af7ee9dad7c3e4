"""Evaluation of a trained classifier on a TFRecord split, as it will be served.

``evaluate_model_path`` runs an exported SavedModel through its ``serving_default`` signature, or a
linear-probe / fine-tune run's checkpoint through the same serving function, on raw clips (the
evaluation crop and resize happen inside the graph), and returns the report of ``metrics.report``;
``write_report`` stores it as JSON with its confusion-matrix and per-class figures.
"""

from __future__ import annotations

import json
import os
from typing import Callable, List, Tuple

import numpy as np
import tensorflow as tf

from hacm_tf import metrics


def serving_function(model: str, num_joints: int) -> Tuple[Callable, List[str], str, str]:
    """(fn(skeleton [b, T, M, V, 3], num_frames [b]) -> logits [b, K], class names, kind, path) of an
    exported model (SavedModel version or base folder: its highest version; kind "saved_model", path the
    version folder) or of a classifier run (run directory or checkpoint; kind "checkpoint", path its prefix)."""
    from hacm_tf import export

    try:
        version = export.resolve_saved_model(model)
    except FileNotFoundError:
        version = None
    if version is not None:
        loaded, serve = export.load_serving(version)

        def fn(x, n):
            return serve(skeleton=x, num_frames=tf.cast(n, tf.int32))["logits"]

        return fn, [c.decode() for c in loaded.class_names.numpy()], "saved_model", version
    from hacm_tf.rundir import load_classifier, resolve_checkpoint

    checkpoint = resolve_checkpoint(model)[1]
    clf, cfg = load_classifier(checkpoint)
    module = export.ServingModule(clf, cfg["class_names"], clf.cfg.num_persons, num_joints, cfg["data"]["eval_crop"],
                                  cfg["data"]["velocity"])

    def fn(x, n):
        return module.serve(x, tf.cast(n, tf.int32))["logits"]

    return fn, list(cfg["class_names"]), "checkpoint", checkpoint


def evaluate_model_path(model: str, data_dir: str, split: str = "test", batch_size: int = 32) -> dict:
    """Top-1, top-5, per-class accuracy and counts, confusion matrix of ``model`` on a split, with the
    model's kind and path."""
    from hacm_tf.data import pipeline, tfrecord

    info = tfrecord.load_info(data_dir)
    fn, classes, kind, path = serving_function(model, info["num_joints"])
    if len(classes) != info["num_classes"]:
        raise ValueError(f"the model has {len(classes)} classes, {data_dir} has {info['num_classes']}")
    logits, labels = [], []
    for x, n, y, _ in pipeline.make_raw_dataset(data_dir, split, batch_size):
        logits.append(np.asarray(fn(x, n)))
        labels.append(y.numpy())
    rep = metrics.report(np.concatenate(logits), np.concatenate(labels), classes)
    rep.update({"model": model, "model_kind": kind, "model_path": path, "data_dir": data_dir, "split": split})
    return rep


def write_report(rep: dict, path: str, title: str = "") -> dict:
    """Writes ``rep`` as JSON at ``path`` and ``<stem>_confusion.png`` / ``<stem>_per_class.png`` beside it;
    returns the paths."""
    from hacm_tf import viz
    from hacm_tf.data.tfrecord import atomic_write_text

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(rep, indent=1) + "\n")
    stem = os.path.splitext(path)[0]
    paths = {"report": path, "confusion": stem + "_confusion.png", "per_class": stem + "_per_class.png"}
    classes = list(rep["per_class"])
    viz.plot_confusion(np.array(rep["confusion_matrix"]), classes, paths["confusion"],
                       f"{title or rep.get('split', '')}: top-1 {100 * rep['top1']:.1f} %")
    viz.plot_per_class(rep["per_class"], paths["per_class"])
    return paths
