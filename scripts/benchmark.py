"""Benchmarks with JSON output.

  python scripts/benchmark.py --suite=data [--data_dir=DIR] [--batch_size=128] [--output=bench.json]

Without --data_dir a synthetic NTU-format dataset is built in a temporary folder first.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hacm_tf import cli  # noqa: E402

flags.DEFINE_enum("suite", "data", ["data"], "What to measure.")
flags.DEFINE_string("data_dir", None, "TFRecord directory (default: build a synthetic one).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("window", 72, "Frames per sample after resizing.")
flags.DEFINE_integer("steps", 20, "Timed batches.")
flags.DEFINE_integer("repeats", 3, "Repeat the measurement; the median is reported.")
flags.DEFINE_string("output", None, "Also write the JSON here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from hacm_tf import bench

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            from hacm_tf.data import build, synthetic

            data_dir = os.path.join(tmp, "synthetic")
            build.build_synthetic(data_dir, spec=synthetic.SyntheticSpec(replications=2), progress=False)
        runs = [bench.data_throughput(data_dir, FLAGS.batch_size, FLAGS.window, FLAGS.steps)
                for _ in range(FLAGS.repeats)]
    runs.sort(key=lambda r: r["samples_per_second"])
    result = dict(runs[len(runs) // 2])
    result["all_samples_per_second"] = [r["samples_per_second"] for r in runs]
    text = json.dumps(result, indent=1)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main)
