"""Benchmarks with JSON output (and a Markdown table).

  python scripts/benchmark.py --suite=data [--data_dir=DIR] [--batch_size=128]
  python scripts/benchmark.py --suite=pretrain [--methods=hacm,mamp,mae] [--batch_size=32] [--xla=both]
  python scripts/benchmark.py --suite=finetune [--methods=hacm,mamp] [--batch_size=32]
  python scripts/benchmark.py --suite=inference [--methods=hacm,mamp] [--batch_sizes=1,64]

``data``: tf.data training pipeline samples/s (a synthetic set is built when --data_dir is absent).
``pretrain`` / ``finetune`` / ``inference`` (Keras model, Keras + XLA, exported SavedModel): samples/s,
ms per step or batch, FLOPs per sample and achieved FLOP/s as a fraction of this machine's measured
matmul peak, at the paper's sizes; each configuration runs in its own process so its peak memory is
its own.
"""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from hacm_tf import cli  # noqa: E402

flags.DEFINE_enum("suite", "data", ["data", "pretrain", "finetune", "inference", "one"], "What to measure.")
flags.DEFINE_string("data_dir", None, "TFRecord directory (default: build a synthetic one).")
flags.DEFINE_integer("batch_size", None, "Batch size (default 128 for data, 32 for pretrain).")
flags.DEFINE_integer("window", 72, "data: frames per sample after resizing.")
flags.DEFINE_integer("steps", None, "Timed batches / steps (default 20 for data, 3 for pretrain).")
flags.DEFINE_integer("repeats", 3, "data: repeat the measurement; the median is reported.")
flags.DEFINE_list("methods", ["hacm", "mamp", "mae"], "pretrain: methods to measure.")
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "pretrain: with and/or without XLA.")
flags.DEFINE_string("method", "hacm", "one: the method (internal).")
flags.DEFINE_string("kind", "pretrain", "one: pretrain | finetune | inference (internal).")
flags.DEFINE_string("runtime", "keras", "one / inference: keras | keras+xla | saved_model.")
flags.DEFINE_list("batch_sizes", ["1", "64"], "inference: batch sizes.")
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


def one():
    """One measurement in this process (the suites run each in its own process)."""
    from hacm_tf import bench
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(**PAPER[FLAGS.method]).validate()
    if FLAGS.kind == "pretrain":
        return bench.pretrain_throughput(cfg, FLAGS.batch_size or 32, FLAGS.steps or 3, jit_compile=FLAGS.xla == "on")
    if FLAGS.kind == "finetune":
        return bench.finetune_throughput(cfg, FLAGS.batch_size or 32, FLAGS.steps or 3)
    return bench.inference_throughput(cfg, FLAGS.batch_size or 1, FLAGS.steps or 5,
                                      saved_model=FLAGS.runtime == "saved_model", xla=FLAGS.runtime == "keras+xla")


def measured_suite(kind):
    from hacm_tf import bench

    peak = bench.matmul_peak()
    jobs = []
    for method in FLAGS.methods:
        if kind == "pretrain":
            jobs += [(method, [f"--xla={x}", f"--batch_size={FLAGS.batch_size or 32}"])
                     for x in (["off", "on"] if FLAGS.xla == "both" else [FLAGS.xla])]
        elif kind == "finetune":
            jobs.append((method, [f"--batch_size={FLAGS.batch_size or 32}"]))
        else:
            jobs += [(method, [f"--runtime={rt}", f"--batch_size={b}"]) for b in FLAGS.batch_sizes
                     for rt in ("keras", "keras+xla", "saved_model")]
    rows = []
    for method, extra in jobs:
        args = [sys.executable, os.path.abspath(__file__), "--suite=one", f"--kind={kind}", f"--method={method}",
                *extra] + ([f"--steps={FLAGS.steps}"] if FLAGS.steps else [])
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{method} {extra} failed: {r.stderr[-2000:]}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        row["matmul_peak_gflops"] = round(peak, 1)
        row["share_of_peak"] = round(row["achieved_gflops"] / peak, 3)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"benchmark": kind, "matmul_peak_gflops": round(peak, 1), "rows": rows, "markdown": markdown(rows)}


def markdown(rows):
    keys = [k for k in ("method", "batch_size", "xla", "runtime", "ms_per_step", "ms_per_batch", "samples_per_second",
                        "gflops_per_sample", "achieved_gflops", "share_of_peak", "peak_rss_gib") if k in rows[0]]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{100 * r[k]:.0f} %" if k == "share_of_peak" else str(r[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.suite == "data":
        result = data_suite()
    elif FLAGS.suite == "one":
        result = one()
    else:
        result = measured_suite(FLAGS.suite)
    text = json.dumps(result, indent=None if FLAGS.suite == "one" else 1)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main)
