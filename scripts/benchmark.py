"""Benchmarks with JSON output (and a Markdown table).

  python scripts/benchmark.py --suite=data [--data_dir=DIR] [--batch_size=128]
  python scripts/benchmark.py --suite=pretrain [--methods=hacm,mamp,mae] [--batch_size=32] [--xla=both]

``data``: tf.data training pipeline samples/s (a synthetic set is built when --data_dir is absent).
``pretrain``: samples/s, ms/step, FLOPs per sample and achieved FLOP/s as a fraction of this machine's
measured matmul peak, at the paper's sizes; each configuration runs in its own process so its peak
memory is its own.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hacm_tf import cli  # noqa: E402

flags.DEFINE_enum("suite", "data", ["data", "pretrain", "pretrain_one"], "What to measure.")
flags.DEFINE_string("data_dir", None, "TFRecord directory (default: build a synthetic one).")
flags.DEFINE_integer("batch_size", None, "Batch size (default 128 for data, 32 for pretrain).")
flags.DEFINE_integer("window", 72, "data: frames per sample after resizing.")
flags.DEFINE_integer("steps", None, "Timed batches / steps (default 20 for data, 3 for pretrain).")
flags.DEFINE_integer("repeats", 3, "data: repeat the measurement; the median is reported.")
flags.DEFINE_list("methods", ["hacm", "mamp", "mae"], "pretrain: methods to measure.")
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "pretrain: with and/or without XLA.")
flags.DEFINE_string("method", "hacm", "pretrain_one: the method (internal).")
flags.DEFINE_string("output", None, "Also write the JSON here.")
FLAGS = flags.FLAGS

PAPER = {  # REFERENCE.md 3 / 4 sizes
    "hacm": dict(method="hacm", window=72, t_patch=3),
    "mamp": dict(method="mamp", window=120, t_patch=4),
    "mae": dict(method="mae", window=120, t_patch=4),
}


def data_suite():
    from hacm_tf import bench

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            from hacm_tf.data import build, synthetic

            data_dir = os.path.join(tmp, "synthetic")
            build.build_synthetic(data_dir, spec=synthetic.SyntheticSpec(replications=2), progress=False)
        runs = [bench.data_throughput(data_dir, FLAGS.batch_size or 128, FLAGS.window, FLAGS.steps or 20)
                for _ in range(FLAGS.repeats)]
    runs.sort(key=lambda r: r["samples_per_second"])
    result = dict(runs[len(runs) // 2])
    result["all_samples_per_second"] = [r["samples_per_second"] for r in runs]
    return result


def pretrain_one():
    from hacm_tf import bench
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(**PAPER[FLAGS.method]).validate()
    return bench.pretrain_throughput(cfg, FLAGS.batch_size or 32, FLAGS.steps or 3, jit_compile=FLAGS.xla == "on")


def pretrain_suite():
    from hacm_tf import bench

    peak = bench.matmul_peak()
    rows = []
    for method in FLAGS.methods:
        for xla in (["off", "on"] if FLAGS.xla == "both" else [FLAGS.xla]):
            args = [sys.executable, os.path.abspath(__file__), "--suite=pretrain_one", f"--method={method}",
                    f"--xla={xla}", f"--batch_size={FLAGS.batch_size or 32}", f"--steps={FLAGS.steps or 3}"]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{method} xla={xla} failed: {r.stderr[-2000:]}")
            row = json.loads(r.stdout.strip().splitlines()[-1])
            row["matmul_peak_gflops"] = round(peak, 1)
            row["share_of_peak"] = round(row["achieved_gflops"] / peak, 3)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return {"benchmark": "pretrain", "matmul_peak_gflops": round(peak, 1), "rows": rows,
            "markdown": markdown(rows)}


def markdown(rows):
    head = "| method | batch | XLA | ms/step | samples/s | GFLOPs/sample | GFLOP/s | share of peak | peak RSS GiB |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['method']} | {r['batch_size']} | {'yes' if r['xla'] else 'no'} | {r['ms_per_step']} | "
                     f"{r['samples_per_second']} | {r['gflops_per_sample']} | {r['achieved_gflops']} | "
                     f"{100 * r['share_of_peak']:.0f} % | {r['peak_rss_gib']} |")
    return "\n".join(lines)


def main(argv):
    del argv
    result = {"data": data_suite, "pretrain": pretrain_suite, "pretrain_one": pretrain_one}[FLAGS.suite]()
    text = json.dumps(result, indent=None if FLAGS.suite == "pretrain_one" else 1)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main)
