"""Accuracy study: pretraining methods and HA-CM ablations x seeds -> linear probe, fine-tune and
10 %-label semi-supervised accuracy (mean +- std).

  python scripts/study.py --dataset=ucla --data_root=../shared/data/nw_ucla --workdir=studies/ucla   # CPU preset
  python scripts/study.py --dataset=synthetic --workdir=studies/synthetic  # linear + semi10, CPU preset
  python scripts/study.py --dataset=ucla --data_root=DIR --preset=converged --workdir=studies/ucla_converged
  python scripts/study.py --dataset=ucla --data_root=DIR --preset=paper --workdir=...   # paper sizes

Rerunning continues an interrupted study. Results: <workdir>/results.md and results.json.
"""

import dataclasses
import json
import os

from absl import flags

from hacm_tf import cli
from hacm_tf.config import PRECISIONS

flags.DEFINE_enum("dataset", "ucla", ["ucla", "synthetic"],
                  "NW-UCLA (cross-view) or synthetic data with 20 classes, 8 of them hard (cross-subject).")
flags.DEFINE_string("data_root", None, "NW-UCLA JSON release folder (to build the study's data; not needed when "
                    "<workdir>/data or --data_dir holds it).")
flags.DEFINE_string("data_dir", None, "An existing TFRecord directory to study instead of building --dataset "
                    "(any labelled dataset with train and test splits).")
flags.DEFINE_string("workdir", None, "Study folder (TFRecords and every run go inside).", required=True)
flags.DEFINE_enum("preset", "cpu", ["cpu", "converged", "paper"],
                  "Model size and run lengths: cpu (minutes), converged (pretraining to a flat kNN curve, "
                  "hours on 2 cores; variants hacm_corrected, mamp, mae, none), paper (accelerators).")
flags.DEFINE_list("variants", None, "Subset of variants (default: all).")
flags.DEFINE_list("protocols", None, "Downstream protocols (default: linear,finetune,semi10 on NW-UCLA; "
                  "linear,semi10 on synthetic data).")
flags.DEFINE_integer("seeds", None, "Seeds per variant (default 3).")
flags.DEFINE_integer("pretrain_epochs", None, "Override the preset.")
flags.DEFINE_integer("workers", None, "(variant, seed) chains run at once, each in its own process with a share of "
                     "the CPU threads (default: 2 for the CPU preset on a machine with 2 or more cores, else 1).")
flags.DEFINE_integer("downstream_epochs", None, "Override linear / fine-tune / semi epochs of the preset.")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Compute precision of every stage's "
                  "transformer blocks (ComputeConfig.precision).")
flags.DEFINE_bool("report", False, "Write the tables and figure of the runs completed so far (a study still "
                  "running or stopped) and exit; runs nothing.")
flags.DEFINE_bool("dry_run", False, "Print the study's configuration and run plan (with what is already complete) "
                  "as JSON and exit.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import study
    from hacm_tf.data import tfrecord

    data_dir = FLAGS.data_dir or os.path.join(FLAGS.workdir, "data")
    if not FLAGS.dry_run:
        study.prepare_data(FLAGS.dataset, data_dir, FLAGS.data_root)
    if os.path.exists(os.path.join(data_dir, tfrecord.INFO_FILE)):
        info = tfrecord.load_info(data_dir)
    else:   # a dry run before the data exists: the dataset's layout
        info = {"joint_layout": "kinect_v1_20", "num_persons": 1} if FLAGS.dataset == "ucla" else \
            {"joint_layout": "ntu25", "num_persons": 2}
    cfg, variants, protocols = study.configure(
        FLAGS.preset, FLAGS.dataset, info, FLAGS.seeds, FLAGS.pretrain_epochs, FLAGS.downstream_epochs,
        FLAGS.precision if FLAGS.precision != "float32" else None, FLAGS.variants, FLAGS.protocols)
    workers = FLAGS.workers or (min(2, os.cpu_count() or 1) if FLAGS.preset != "paper" else 1)
    if FLAGS.dry_run:
        plan = study.run_plan(FLAGS.workdir, cfg, variants, protocols)
        print(json.dumps({"study": dataclasses.asdict(cfg), "variants": list(variants), "protocols": list(protocols),
                          "workers": workers, "runs": len(plan), "complete": sum(r["done"] for r in plan)}))
        return
    if FLAGS.report:
        result = study.report_study(FLAGS.workdir, data_dir, cfg, variants, protocols)
        print(result["table"])
        print(json.dumps({"complete": f"{result['complete']}/{result['runs']} runs", "figure": result["figure"]}))
        return
    result = study.run_study(FLAGS.workdir, data_dir, cfg, variants, protocols, workers=workers)
    print(result["table"])
    print(json.dumps({"seconds": result["seconds"], "results": os.path.join(FLAGS.workdir, "results.json"),
                      "figure": result["figure"]}))

if __name__ == "__main__":
    cli.run(main)
