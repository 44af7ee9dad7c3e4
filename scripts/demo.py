"""The whole path on synthetic NTU-format data, in a few minutes on 2 CPU cores.

  python scripts/demo.py                 # full demo into demo_output/
  python scripts/demo.py --quick         # a one-minute version
  python scripts/demo.py --workdir=out --overwrite

Generates raw .skeleton files, builds and verifies TFRecords, pretrains HA-CM, linear-probes it and a
randomly initialised encoder, exports a SavedModel, evaluates it through its serving signature and
prints a summary; plots, TensorBoard logs and reports go into the output folder. Rerunning reuses
what is complete and resumes what was interrupted.
"""



from absl import flags

from hacm_tf import cli

flags.DEFINE_string("workdir", "demo_output", "Output folder.")
flags.DEFINE_bool("quick", False, "Tiny sizes (about a minute).")
flags.DEFINE_bool("overwrite", False, "Start from scratch instead of reusing the folder.")
flags.DEFINE_integer("subjects", None, "Synthetic subjects (default 8; 4 with --quick).")
flags.DEFINE_integer("pretrain_epochs", None, "Pretraining epochs (default 30; 3 with --quick).")
flags.DEFINE_integer("probe_epochs", None, "Linear-probe epochs (default 30; 3 with --quick).")
flags.DEFINE_integer("seed", 0, "Seed.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import dataclasses

    from hacm_tf.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick() if FLAGS.quick else DemoConfig()
    changes = {k: getattr(FLAGS, k) for k in ("subjects", "pretrain_epochs", "probe_epochs") if getattr(FLAGS, k)}
    cfg = dataclasses.replace(cfg, seed=FLAGS.seed, **changes)
    run_demo(FLAGS.workdir, cfg, FLAGS.overwrite)


if __name__ == "__main__":
    cli.run(main)
