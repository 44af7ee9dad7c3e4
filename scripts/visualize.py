"""Figures.

  python scripts/visualize.py --what=skeletons  --data_dir=DIR [--split=train] --output=skeletons.png
  python scripts/visualize.py --what=synthetic  --output=docs/synthetic_sequences.png
  python scripts/visualize.py --what=masks      --workdir=runs/pretrain --data_dir=DIR --output=masks.png
  python scripts/visualize.py --what=embeddings --workdir=runs/pretrain_or_classifier --data_dir=DIR --output=emb.png
  python scripts/visualize.py --what=curves     --workdir=runs/any --output=curves.png

skeletons: one sample per class as stick figures over time; synthetic: one generated performance per
synthetic class; masks: the visible / masked token maps (joints x time) a pretrainer chooses for test
sequences; embeddings: 2-D PCA of the encoder's clip embeddings of a split, coloured by class;
curves: training curves from a run's metrics.json.
"""

import os


from absl import flags

from hacm_tf import cli

flags.DEFINE_enum("what", "skeletons", ["skeletons", "synthetic", "masks", "embeddings", "curves"], "Figure.")
flags.DEFINE_string("data_dir", None, "TFRecord directory.")
flags.DEFINE_string("workdir", None, "A run directory (masks, embeddings, curves).")
flags.DEFINE_string("split", "test", "Split to draw from.")
flags.DEFINE_integer("max_rows", 12, "skeletons: at most this many sequences; masks: sequences.")
flags.DEFINE_integer("seed", 0, "Synthetic seed / masking noise seed.")
flags.DEFINE_string("output", "figure.png", "PNG path.")
FLAGS = flags.FLAGS


def need(*names):
    for n in names:
        if not getattr(FLAGS, n):
            raise ValueError(f"--{n} is required for --what={FLAGS.what}")


def main(argv):
    del argv
    import json


    from hacm_tf import skeleton, viz

    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    if FLAGS.what == "synthetic":
        import tempfile

        from hacm_tf.data import ntu, synthetic

        with tempfile.TemporaryDirectory() as tmp:
            spec = synthetic.SyntheticSpec(num_subjects=1, cameras=(2,), noise_body_rate=0, dropped_frame_rate=0)
            paths = sorted(synthetic.generate_files(tmp, spec, FLAGS.seed))[: FLAGS.max_rows]
            seqs = [ntu.read_ntu_sample(p).skeleton for p in paths]
        viz.plot_sequences(seqs, skeleton.NTU25, FLAGS.output, titles=synthetic.CLASS_NAMES[: len(seqs)])
    elif FLAGS.what == "skeletons":
        need("data_dir")
        from hacm_tf.data import tfrecord

        info = tfrecord.load_info(FLAGS.data_dir)
        per_class = {}
        for s in tfrecord.iterate_split(FLAGS.data_dir, FLAGS.split, info):
            per_class.setdefault(s.label, s)
            if len(per_class) >= min(FLAGS.max_rows, info["num_classes"]):
                break
        labels = sorted(per_class)
        viz.plot_sequences([per_class[k].skeleton for k in labels], skeleton.get_layout(info["joint_layout"]),
                           FLAGS.output, titles=[info["class_names"][k] for k in labels])
    elif FLAGS.what == "masks":
        need("workdir", "data_dir")
        from hacm_tf import rundir
        from hacm_tf.config import DataConfig

        model, _ = rundir.load_pretrainer(FLAGS.workdir)
        data = DataConfig.from_dict(rundir.read_run_config(FLAGS.workdir)["data"])
        viz.masks_figure(model, FLAGS.data_dir, data, FLAGS.output, sequences=FLAGS.max_rows, seed=FLAGS.seed)
    elif FLAGS.what == "embeddings":
        need("workdir", "data_dir")
        from hacm_tf.data import tfrecord
        from hacm_tf.readout import run_embeddings

        feats, labels, cfg = run_embeddings(FLAGS.workdir, FLAGS.data_dir, FLAGS.split)
        viz.plot_embeddings(feats, labels, tfrecord.load_info(FLAGS.data_dir)["class_names"], FLAGS.output,
                            f"{cfg['stage']} encoder, {FLAGS.split} split (PCA)")
    else:
        need("workdir")
        hist = json.load(open(os.path.join(FLAGS.workdir, "metrics.json")))["history"]
        keys = [k for k in ("loss", "loss_rec", "loss_cc", "top1", "eval_top1", "eval_loss") if k in hist[0]]
        viz.plot_curves(hist, keys, FLAGS.output, os.path.basename(os.path.normpath(FLAGS.workdir)))
    print(FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
