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

    import numpy as np

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
        from hacm_tf.config import DataConfig
        from hacm_tf.training.downstream import load_pretrainer, read_run_config

        model, _ = load_pretrainer(FLAGS.workdir)
        data = DataConfig.from_dict(read_run_config(FLAGS.workdir)["data"])
        viz.masks_figure(model, FLAGS.data_dir, data, FLAGS.output, sequences=FLAGS.max_rows, seed=FLAGS.seed)
    elif FLAGS.what == "embeddings":
        need("workdir", "data_dir")
        import tensorflow as tf

        from hacm_tf.config import DataConfig
        from hacm_tf.data import pipeline, tfrecord
        from hacm_tf.models.encoder import fold_persons
        from hacm_tf.training import downstream

        cfg = downstream.read_run_config(FLAGS.workdir)
        if cfg["stage"] == "pretrain":
            model, _ = downstream.load_pretrainer(FLAGS.workdir)

            def embed(x):
                h = model.encoder(fold_persons(x))                                  # [N*M, L, D]
                return tf.reduce_mean(tf.reshape(h, [tf.shape(x)[0], -1, h.shape[-1]]), axis=1)
        else:
            model, _ = downstream.load_classifier(FLAGS.workdir)
            embed = model.embed
        info = tfrecord.load_info(FLAGS.data_dir)
        ds = pipeline.make_dataset(FLAGS.data_dir, FLAGS.split, DataConfig.from_dict(cfg["data"]), training=False)
        feats, labels = [], []
        for x, y in ds:
            feats.append(embed(x).numpy())
            labels.append(y.numpy())
        viz.plot_embeddings(np.concatenate(feats), np.concatenate(labels), info["class_names"], FLAGS.output,
                            f"{cfg['stage']} encoder, {FLAGS.split} split (PCA)")
    else:
        need("workdir")
        from hacm_tf.evaluate import plot_curves

        hist = json.load(open(os.path.join(FLAGS.workdir, "metrics.json")))["history"]
        keys = [k for k in ("loss", "loss_rec", "loss_cc", "top1", "eval_top1", "eval_loss") if k in hist[0]]
        plot_curves(hist, keys, FLAGS.output, os.path.basename(os.path.normpath(FLAGS.workdir)))
    print(FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
