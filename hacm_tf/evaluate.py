"""Evaluation of a trained classifier on a TFRecord split, as it will be served.

``evaluate_model_path`` runs an exported SavedModel through its ``serving_default`` signature, or a
linear-probe / fine-tune run's checkpoint through the same serving function, on raw clips (the
evaluation crop and resize happen inside the graph), and returns the report of ``metrics.report``;
``write_report`` stores it as JSON with its confusion-matrix and per-class figures.
"""

from __future__ import annotations

import json
import os

import numpy as np

from hacm_tf import metrics


def evaluate_model_path(model: str, data_dir: str, split: str = "test", batch_size: int = 32) -> dict:
    """Top-1, top-5, per-class accuracy and counts, confusion matrix of ``model`` on a split, with the
    model's kind and path."""
    from hacm_tf.data import pipeline, tfrecord
    from hacm_tf.export import open_model

    info = tfrecord.load_info(data_dir)
    served = open_model(model)
    if len(served.class_names) != info["num_classes"]:
        raise ValueError(f"the model has {len(served.class_names)} classes, {data_dir} has {info['num_classes']}")
    if (served.num_persons, served.num_joints) != (info["num_persons"], info["num_joints"]):
        raise ValueError(f"the model takes {served.num_persons} persons x {served.num_joints} joints, {data_dir} "
                         f"holds {info['num_persons']} x {info['num_joints']}")
    logits, labels = [], []
    for x, n, y, _ in pipeline.make_raw_dataset(data_dir, split, batch_size):
        logits.append(served.predict(x, n)["logits"])
        labels.append(y.numpy())
    rep = metrics.report(np.concatenate(logits), np.concatenate(labels), served.class_names)
    rep.update({"model": model, "model_kind": served.kind, "model_path": served.path, "data_dir": data_dir,
                "split": split})
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
