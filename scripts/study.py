"""Accuracy study: pretraining methods and HA-CM ablations x seeds -> linear probe, fine-tune and
10 %-label semi-supervised accuracy (mean +- std).

  python scripts/study.py --dataset=ucla --workdir=studies/ucla          # NW-UCLA, CPU preset
  python scripts/study.py --dataset=synthetic --workdir=studies/synthetic  # linear + semi10, CPU preset
  python scripts/study.py --dataset=ucla --preset=converged --workdir=studies/ucla_converged   # ~2.5 h
  python scripts/study.py --dataset=ucla --preset=paper --workdir=...    # paper sizes (accelerators)

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
flags.DEFINE_string("data_root", os.path.join("..", "shared", "data", "nw_ucla"), "NW-UCLA JSON release folder.")
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
    from hacm_tf.data import build, synthetic, tfrecord

    data_dir = FLAGS.data_dir or os.path.join(FLAGS.workdir, "data")
    if not os.path.exists(os.path.join(data_dir, tfrecord.INFO_FILE)) and not FLAGS.dry_run:
        if FLAGS.dataset == "ucla":
            build.build_ucla(FLAGS.data_root, data_dir, "xview")
        else:
            # 20 classes: the 12 distinct actions and 8 that differ only in a limb's side, one limb,
            # the head or the speed; 8 subjects (cross-subject: 5 train, 3 test), 3 views, 2 repetitions
            build.build_synthetic(data_dir, spec=synthetic.SyntheticSpec(num_subjects=8, num_classes=20,
                                                                         replications=2, noise_body_rate=0.2), seed=7)
    have_data = os.path.exists(os.path.join(data_dir, tfrecord.INFO_FILE))
    info = tfrecord.load_info(data_dir) if have_data else {"joint_layout": "kinect_v1_20" if FLAGS.dataset == "ucla"
                                                            else "ntu25", "num_persons": 1 if FLAGS.dataset == "ucla"
                                                            else 2}
    if FLAGS.preset == "paper":
        cfg = study.StudyConfig.paper()
    elif FLAGS.preset == "converged":
        cfg = study.StudyConfig.converged()
    else:
        cfg = study.StudyConfig() if FLAGS.dataset == "ucla" else study.StudyConfig.synthetic()
    protocols = FLAGS.protocols or (["knn", "linear", "finetune", "semi10"] if FLAGS.dataset == "ucla"
                                    else ["knn", "linear", "semi10"])
    cfg = dataclasses.replace(cfg, layout=info["joint_layout"], num_persons=info["num_persons"])
    changes = {}
    if FLAGS.seeds:
        changes["seeds"] = FLAGS.seeds
    if FLAGS.pretrain_epochs:
        changes["pretrain_epochs"] = FLAGS.pretrain_epochs
    if FLAGS.precision != "float32":
        changes["precision"] = FLAGS.precision
    if FLAGS.downstream_epochs:
        changes.update(linear_epochs=FLAGS.downstream_epochs, finetune_epochs=FLAGS.downstream_epochs,
                       semi_epochs=FLAGS.downstream_epochs)
    cfg = dataclasses.replace(cfg, **changes)
    workers = FLAGS.workers or (min(2, os.cpu_count() or 1) if FLAGS.preset != "paper" else 1)
    variants = FLAGS.variants or (study.CONVERGED_VARIANTS if FLAGS.preset == "converged" else tuple(study.VARIANTS))
    if FLAGS.dry_run:
        plan = study.run_plan(FLAGS.workdir, cfg, variants, protocols)
        print(json.dumps({"study": dataclasses.asdict(cfg), "variants": list(variants), "protocols": protocols,
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
