"""Evaluates an exported SavedModel (through its serving signature) or a run's checkpoint on a split.

  python scripts/evaluate.py --model=exported/hacm/1 --data_dir=DIR --split=test --report=reports/hacm.json

Writes the JSON report (top-1, top-5, per-class accuracy, confusion matrix, sample count) and, beside it,
<report>_confusion.png and <report>_per_class.png.
"""

import json
import os


from absl import flags

from hacm_tf import cli

flags.DEFINE_string("model", None, "SavedModel version folder, or a run directory / checkpoint prefix.",
                    required=True)
flags.DEFINE_string("data_dir", None, "TFRecord directory.", required=True)
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_string("report", "report.json", "JSON report path (plots are written beside it).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf

    from hacm_tf import evaluate
    from hacm_tf.data import pipeline, tfrecord
    from hacm_tf.data.tfrecord import atomic_write_text

    info = tfrecord.load_info(FLAGS.data_dir)
    ds = pipeline.make_raw_dataset(FLAGS.data_dir, FLAGS.split, FLAGS.batch_size)
    if os.path.exists(os.path.join(FLAGS.model, "saved_model.pb")):
        from hacm_tf.export import load_serving

        loaded, serve = load_serving(FLAGS.model)
        kind = "saved_model"
        classes = [c.decode() for c in loaded.class_names.numpy()]

        def fn(x, n):
            return serve(skeleton=x, num_frames=tf.cast(n, tf.int32))["logits"]
    else:
        from hacm_tf.export import ServingModule
        from hacm_tf.training.downstream import load_classifier

        clf, cfg = load_classifier(FLAGS.model)
        kind, classes = "checkpoint", cfg["class_names"]
        module = ServingModule(clf, classes, clf.cfg.num_persons, info["num_joints"], cfg["data"]["eval_crop"],
                               cfg["data"]["velocity"])

        def fn(x, n):
            return module.serve(x, tf.cast(n, tf.int32))["logits"]

    if len(classes) != info["num_classes"]:
        raise ValueError(f"the model has {len(classes)} classes, {FLAGS.data_dir} has {info['num_classes']}")
    logits, labels = [], []
    for x, n, y, _ in ds:
        logits.append(np.asarray(fn(x, n)))
        labels.append(y.numpy())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    rep = evaluate.report(logits, labels, classes)
    rep.update({"model": FLAGS.model, "model_kind": kind, "data_dir": FLAGS.data_dir, "split": FLAGS.split})
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.report)), exist_ok=True)
    atomic_write_text(FLAGS.report, json.dumps(rep, indent=1) + "\n")
    stem = os.path.splitext(FLAGS.report)[0]
    evaluate.plot_confusion(np.array(rep["confusion_matrix"]), classes, stem + "_confusion.png",
                            f"{FLAGS.split}: top-1 {100 * rep['top1']:.1f} %")
    evaluate.plot_per_class(rep["per_class"], stem + "_per_class.png")
    print(json.dumps({"top1": rep["top1"], "top5": rep["top5"], "samples": rep["samples"], "report": FLAGS.report}))


if __name__ == "__main__":
    cli.run(main)
