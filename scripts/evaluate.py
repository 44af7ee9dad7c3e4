"""Evaluates an exported SavedModel (through its serving signature) or a run's checkpoint on a split.

  python scripts/evaluate.py --model=exported/hacm/1 --data_dir=DIR --split=test --report=reports/hacm.json

Writes the JSON report (top-1, top-5, per-class accuracy, confusion matrix, sample count) and, beside it,
<report>_confusion.png and <report>_per_class.png.
"""

import json

from absl import flags

from hacm_tf import cli

flags.DEFINE_string("model", None, "SavedModel (version folder, or base folder: its highest version), or a "
                    "linear-probe / fine-tune run directory or checkpoint prefix.",
                    required=True)
flags.DEFINE_string("data_dir", None, "TFRecord directory.", required=True)
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_string("report", "report.json", "JSON report path (plots are written beside it).")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf.evaluate import evaluate_model_path, write_report

    rep = evaluate_model_path(FLAGS.model, FLAGS.data_dir, FLAGS.split, FLAGS.batch_size)
    write_report(rep, FLAGS.report, FLAGS.split)
    print(json.dumps({"evaluated": f"{rep['model_kind']} {rep['model_path']}", "top1": rep["top1"], "top5": rep["top5"],
                      "samples": rep["samples"], "report": FLAGS.report}))


if __name__ == "__main__":
    cli.run(main)
