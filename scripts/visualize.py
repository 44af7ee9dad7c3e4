"""Figures.

  python scripts/visualize.py --what=skeletons --data_dir=DIR --split=train --output=skeletons.png
  python scripts/visualize.py --what=synthetic --output=docs/synthetic_sequences.png

``skeletons`` draws one sample per class from a TFRecord split (stick figures over time);
``synthetic`` generates one performance per synthetic action class and draws it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hacm_tf import cli  # noqa: E402

flags.DEFINE_enum("what", "skeletons", ["skeletons", "synthetic"], "Figure to draw.")
flags.DEFINE_string("data_dir", None, "TFRecord directory (for --what=skeletons).")
flags.DEFINE_string("split", "train", "Split to draw from.")
flags.DEFINE_integer("max_rows", 12, "At most this many sequences.")
flags.DEFINE_integer("seed", 0, "Synthetic seed.")
flags.DEFINE_string("output", "skeletons.png", "PNG path.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import skeleton, viz

    if FLAGS.what == "synthetic":
        import tempfile

        from hacm_tf.data import ntu, synthetic

        with tempfile.TemporaryDirectory() as tmp:
            spec = synthetic.SyntheticSpec(num_subjects=1, cameras=(2,), noise_body_rate=0, dropped_frame_rate=0)
            paths = sorted(synthetic.generate_files(tmp, spec, FLAGS.seed))[: FLAGS.max_rows]
            seqs = [ntu.read_ntu_sample(p).skeleton for p in paths]
        titles = synthetic.CLASS_NAMES[: len(seqs)]
        layout = skeleton.NTU25
    else:
        if not FLAGS.data_dir:
            raise ValueError("--data_dir is required for --what=skeletons")
        from hacm_tf.data import tfrecord

        info = tfrecord.load_info(FLAGS.data_dir)
        layout = skeleton.get_layout(info["joint_layout"])
        per_class = {}
        for s in tfrecord.iterate_split(FLAGS.data_dir, FLAGS.split, info):
            per_class.setdefault(s.label, s)
            if len(per_class) >= min(FLAGS.max_rows, info["num_classes"]):
                break
        labels = sorted(per_class)
        seqs = [per_class[k].skeleton for k in labels]
        titles = [info["class_names"][k] if 0 <= k < len(info["class_names"]) else str(k) for k in labels]
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    viz.plot_sequences(seqs, layout, FLAGS.output, titles=titles)
    print(FLAGS.output)


if __name__ == "__main__":
    cli.run(main)
