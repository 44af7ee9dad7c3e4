"""Frozen-feature read-outs: kNN top-1 (cosine, k = 1 and k = 20 weighted) of a pretrained encoder's
pooled embeddings, optionally a logistic regression on them, or the raw-coordinate baseline.

  python scripts/knn.py --pretrained=runs/pretrain --data_dir=DIR                 # kNN
  python scripts/knn.py --pretrained=runs/pretrain --data_dir=DIR --logreg --diagnostics
  python scripts/knn.py --pretrained=runs/pretrain --random_init --data_dir=DIR    # same architecture, random
  python scripts/knn.py --raw --window=48 --data_dir=DIR                          # raw coordinates
  python scripts/knn.py --check_probe=runs/linprobe --data_dir=DIR                # has the probe converged?

The train split gives the neighbours (and fits the regression), the test split is scored.
"""

import json


from absl import flags

from hacm_tf import cli

flags.DEFINE_string("data_dir", None, "Labelled TFRecord directory (train and test splits).", required=True)
flags.DEFINE_string("pretrained", None, "Pretraining run directory or checkpoint prefix.")
flags.DEFINE_bool("random_init", False, "Score a randomly initialised encoder of --pretrained's architecture.")
flags.DEFINE_integer("seed", 0, "Seed of the random initialisation (--random_init).")
flags.DEFINE_bool("raw", False, "Raw-coordinate baseline instead of an encoder (needs --window).")
flags.DEFINE_integer("window", None, "Frames of the evaluation crop for --raw.")
flags.DEFINE_string("check_probe", None, "A linear-probe run: its train / test top-1 beside a logistic regression "
                    "on the same frozen features (is the probe's schedule long enough?).")
flags.DEFINE_bool("logreg", False, "Also a logistic regression on the standardised embeddings.")
flags.DEFINE_bool("diagnostics", False, "Also the embedding spectrum (effective rank, singular values).")
flags.DEFINE_string("output", None, "Write the result as JSON here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import rundir
    from hacm_tf.training import frozen

    if FLAGS.check_probe:
        result = frozen.linear_probe_check(FLAGS.check_probe, FLAGS.data_dir)
    elif FLAGS.raw:
        if not FLAGS.window:
            raise ValueError("--raw needs --window")
        result = frozen.raw_coordinate_baseline(FLAGS.data_dir, FLAGS.window)
    else:
        if not FLAGS.pretrained:
            raise ValueError("give --pretrained=RUN (or --raw --window=N)")
        config = rundir.model_config(FLAGS.pretrained) if FLAGS.random_init else None
        result = frozen.frozen_readout(FLAGS.data_dir, FLAGS.pretrained if not FLAGS.random_init else None,
                                       config, FLAGS.seed, FLAGS.logreg, FLAGS.diagnostics)
    if FLAGS.output:
        frozen.write_json(FLAGS.output, result)
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items() if k != "singular_values"}
    print(json.dumps(shown))


if __name__ == "__main__":
    cli.run(main)
