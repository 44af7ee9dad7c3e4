"""Exports a linear-probe or fine-tune run as a SavedModel in the TF Serving layout.

  python scripts/export.py --workdir=runs/linprobe --export_dir=exported/hacm --version=1
  python scripts/export.py --checkpoint=runs/linprobe/checkpoints/ckpt-600 --export_dir=exported/hacm --version=2

Signatures: serving_default (skeleton [batch, frames, persons, joints, 3], num_frames [batch]) -> logits,
probabilities, top_k_classes, embedding; embed -> embedding. ``--format=onnx`` also writes model.onnx
(needs tf2onnx and onnxruntime). ``--precision=mixed_bfloat16`` exports bfloat16 transformer blocks (faster
on CPUs with bfloat16 instructions; float32 inputs and outputs).
"""

import json
import os


from absl import flags

from hacm_tf import cli
from hacm_tf.config import PRECISIONS

flags.DEFINE_string("workdir", None, "A linear-probe or fine-tune run directory (latest checkpoint).")
flags.DEFINE_string("checkpoint", None, "Or: a checkpoint prefix inside such a run.")
flags.DEFINE_string("export_dir", None, "Model base path; the SavedModel goes to <export_dir>/<version>/.",
                    required=True)
flags.DEFINE_integer("version", 1, "Model version (TF Serving serves the highest).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "onnx"], "onnx: also convert to <version>/model.onnx.")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                  "Compute precision of the exported transformer blocks (the weights stay float32; "
                  "mixed_bfloat16 is SavedModel only).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the serving functions (preprocessing and model; the input "
                  "checks stay outside): faster at small batches where XLA helps, see docs/serving.md.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    source = FLAGS.checkpoint or FLAGS.workdir
    if not source:
        raise ValueError("give --workdir or --checkpoint")
    from hacm_tf.export import export_saved_model
    from hacm_tf.skeleton import get_layout
    from hacm_tf.rundir import load_classifier

    if FLAGS.format == "onnx" and FLAGS.precision != "float32":
        raise ValueError("--format=onnx needs --precision=float32 (ONNX Runtime's CPU kernels have no bfloat16 "
                         "matmul)")
    clf, cfg = load_classifier(source, FLAGS.precision)
    layout = get_layout(clf.cfg.layout)
    path = export_saved_model(clf, cfg["class_names"], FLAGS.export_dir, FLAGS.version, clf.cfg.num_persons,
                              layout.num_joints, cfg["data"]["eval_crop"], cfg["data"]["velocity"], FLAGS.overwrite,
                              jit_compile=FLAGS.jit_compile, dataset=cfg.get("dataset", ""))
    result = {"saved_model": path, "classes": len(cfg["class_names"])}
    if FLAGS.format == "onnx":
        from hacm_tf.export import to_onnx

        result["onnx"] = to_onnx(path, os.path.join(path, "model.onnx"))
    print(json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
