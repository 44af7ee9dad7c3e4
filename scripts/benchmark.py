"""Benchmarks with JSON output (and a Markdown table).

  python scripts/benchmark.py --suite=data [--data_dir=DIR] [--batch_size=128]
  python scripts/benchmark.py --suite=pretrain [--methods=hacm,mamp,mae] [--batch_size=32] [--xla=both]
  python scripts/benchmark.py --suite=finetune [--methods=hacm,mamp] [--batch_size=32]
  python scripts/benchmark.py --suite=inference [--methods=hacm,mamp] [--batch_sizes=1,64]
  python scripts/benchmark.py --suite=profile [--methods=hacm] [--batch_size=8]
  python scripts/benchmark.py --suite=scale [--scale_batches=8,16,32,64] [--scale_windows=36,72,108,144]
  python scripts/benchmark.py --suite=kernels [--batch_size=32]
  python scripts/benchmark.py --suite=reference [--torch_python=VENV/bin/python] [--batch_size=32]

``data``: tf.data training pipeline samples/s (a synthetic set is built when --data_dir is absent).
``pretrain`` / ``finetune`` / ``inference`` (Keras model, Keras + XLA, exported SavedModel): samples/s,
ms per step or batch, FLOPs per sample and achieved FLOP/s as a fraction of this machine's measured
matmul peak, at the paper's sizes; each configuration runs in its own process so its peak memory is
its own.
``profile``: pretraining FLOPs counted by TensorFlow's profiler beside the analytic count, and where the
kernel time of a step goes (matmul, element-wise, layout, softmax, ...; no XLA, from a profiler trace).
``scale``: HA-CM pretraining step time (XLA) against batch size and window length (tokens); --plot
writes a PNG.
``kernels``: each kernel of a transformer training step alone at the step's shapes (HA-CM decoder, 432
tokens, width 256, batch of two-person clips): the MLP matmul forward and its gradients, the attention
products, softmax, GELU, LayerNorm; GFLOP/s against the matmul peak, GB/s for the memory-bound ones.
``reference``: one transformer block's training step at the decoder's shapes, hacm_tf's block against
the official code's PyTorch block (scripts/torch_block.py, run by --torch_python, which needs
PyTorch), with each framework's own matmul peak, measured side by side on this machine.
"""

import json
import os
import subprocess
import sys
import tempfile


from absl import flags

from hacm_tf import cli
from hacm_tf.config import PRECISIONS, REMAT_MODES

SUITES = ["data", "pretrain", "finetune", "inference", "profile", "scale", "kernels", "reference", "one"]
flags.DEFINE_enum("suite", "data", SUITES, "What to measure.")
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
flags.DEFINE_list("scale_batches", ["8", "16", "32", "64"], "scale: batch sizes at the paper's window.")
flags.DEFINE_list("scale_windows", ["36", "72", "108", "144"], "scale: windows (frames) at batch 8.")
flags.DEFINE_integer("model_window", None, "one: override the paper's window (internal).")
flags.DEFINE_integer("micro_batches", 1, "pretrain: parts per batch whose gradients are averaged.")
flags.DEFINE_enum("remat", "none", list(REMAT_MODES),
                  "pretrain / finetune: what the backward pass recomputes (ComputeConfig.remat).")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                  "pretrain / finetune: the transformer blocks' compute precision (ComputeConfig.precision).")
flags.DEFINE_string("plot", None, "scale: also write a PNG plot here.")
flags.DEFINE_string("output", None, "Also write the JSON here.")
flags.DEFINE_string("torch_python", sys.executable, "reference: a python that has PyTorch (e.g. a venv's).")
FLAGS = flags.FLAGS

PAPER = {  # docs/official_code.md §3, §4: sizes
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


def kernels_suite():
    from hacm_tf import bench

    peak = bench.matmul_peak()
    batch = FLAGS.batch_size or 32
    rows = bench.kernel_rates(sequences=2 * batch, steps=FLAGS.steps or 7)
    lines = ["| kernel | shape | ms | GFLOP/s | share of matmul peak | GB/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        share = ""
        if "gflops" in r:
            r["share_of_peak"] = round(r["gflops"] / peak, 3)
            share = f"{100 * r['share_of_peak']:.0f} %"
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['ms']} | {r.get('gflops', '')} | {share} | "
                     f"{r.get('gb_per_second', '')} |")
    return {"benchmark": "kernels", "batch_size": batch, "matmul_peak_gflops": round(peak, 1), "rows": rows,
            "markdown": "\n".join(lines)}


def reference_suite():
    """hacm_tf's TransformerBlock and the official PyTorch block, one training step each at the same
    shapes (batch of two-person clips x 432 tokens x 256, 8 heads), each against its own matmul peak."""
    from hacm_tf import bench

    shape = [2 * (FLAGS.batch_size or 32), 432, 256, 8]
    tf_row = bench.block_training_rate(*shape, steps=FLAGS.steps or 5)
    tf_row["matmul_peak_gflops"] = round(bench.matmul_peak(), 1)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_block.py")
    r = subprocess.run([FLAGS.torch_python, script, *map(str, shape)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{FLAGS.torch_python} {script} failed: {r.stderr.strip()[-2000:]}")
    rows = [tf_row, json.loads(r.stdout.strip().splitlines()[-1])]
    lines = ["| framework | matmul peak GFLOP/s | block step ms | GFLOP/s | share of own peak | speed-up |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        row["share_of_peak"] = round(row["gflops"] / row["matmul_peak_gflops"], 3)
        lines.append(f"| {row['framework']} | {row['matmul_peak_gflops']} | {row['ms']} | {row['gflops']} | "
                     f"{100 * row['share_of_peak']:.0f} % | {rows[1]['ms'] / row['ms']:.2f}x |")
    return {"benchmark": "reference", "shape": shape, "rows": rows, "markdown": "\n".join(lines)}


def one():
    """One measurement in this process (the suites run each in its own process)."""
    from hacm_tf import bench
    from hacm_tf.config import ComputeConfig, ModelConfig

    sizes = dict(PAPER[FLAGS.method])
    if FLAGS.model_window:
        sizes["window"] = FLAGS.model_window
    compute = ComputeConfig(remat=FLAGS.remat, precision=FLAGS.precision, jit_compile=FLAGS.xla == "on",
                            micro_batches=FLAGS.micro_batches).validate()
    if FLAGS.kind == "finetune":
        sizes["drop_path"] = 0.3   # docs/official_code.md §5
    cfg = ModelConfig(**sizes).validate()
    if FLAGS.kind == "profile":
        return bench.pretrain_profile(cfg, FLAGS.batch_size or 8, FLAGS.steps or 2, compute=compute)
    if FLAGS.kind == "pretrain":
        return bench.pretrain_throughput(cfg, FLAGS.batch_size or 32, FLAGS.steps or 3, compute=compute)
    if FLAGS.kind == "finetune":
        return bench.finetune_throughput(cfg, FLAGS.batch_size or 32, FLAGS.steps or 3, compute=compute)
    return bench.inference_throughput(cfg, FLAGS.batch_size or 1, FLAGS.steps or 5,
                                      saved_model=FLAGS.runtime == "saved_model", xla=FLAGS.runtime == "keras+xla",
                                      precision=FLAGS.precision)


def measured_suite(kind):
    from hacm_tf import bench

    peak = bench.matmul_peak()
    peak_bf16 = bench.matmul_peak(dtype="bfloat16") if FLAGS.precision == "mixed_bfloat16" else None
    jobs = []
    methods = FLAGS.methods if FLAGS["methods"].present or kind != "scale" else ["hacm"]
    for method in methods:
        if kind == "pretrain":
            jobs += [(method, [f"--xla={x}", f"--batch_size={FLAGS.batch_size or 32}"])
                     for x in (["off", "on"] if FLAGS.xla == "both" else [FLAGS.xla])]
        elif kind == "finetune":
            jobs.append((method, [f"--batch_size={FLAGS.batch_size or 32}"]))
        elif kind == "profile":
            jobs.append((method, [f"--batch_size={FLAGS.batch_size or 8}"]))
        elif kind == "scale":
            points = [(int(b), None) for b in FLAGS.scale_batches] + [(8, int(w)) for w in FLAGS.scale_windows]
            jobs += [(method, ["--xla=on", f"--batch_size={b}"] + ([f"--model_window={w}"] if w else []))
                     for b, w in dict.fromkeys(points)]
        else:
            jobs += [(method, [f"--runtime={rt}", f"--batch_size={b}"]) for b in FLAGS.batch_sizes
                     for rt in ("keras", "keras+xla", "saved_model")]
    rows = []
    for method, extra in jobs:
        child_kind = "pretrain" if kind == "scale" else kind
        args = [sys.executable, os.path.abspath(__file__), "--suite=one", f"--kind={child_kind}", f"--method={method}",
                *extra] + ([f"--steps={FLAGS.steps}"] if FLAGS.steps else []) + (
                    [f"--remat={FLAGS.remat}"] if FLAGS.remat != "none" else []) + (
                    [f"--micro_batches={FLAGS.micro_batches}"] if FLAGS.micro_batches > 1 else []) + (
                    [f"--precision={FLAGS.precision}"] if FLAGS.precision != "float32" else [])
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{method} {extra} failed: {r.stderr[-2000:]}")
        row = json.loads(r.stdout.strip().splitlines()[-1])
        row["matmul_peak_gflops"] = round(peak, 1)
        if "achieved_gflops" in row:
            row["share_of_peak"] = round(row["achieved_gflops"] / peak, 3)
            if peak_bf16:   # the blocks' matmuls run in bfloat16: their own, higher ceiling
                row["matmul_peak_bf16_gflops"] = round(peak_bf16, 1)
                row["share_of_bf16_peak"] = round(row["achieved_gflops"] / peak_bf16, 3)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    table = profile_markdown(rows) if kind == "profile" else markdown(rows)
    if kind == "scale" and FLAGS.plot:
        from hacm_tf import viz

        viz.plot_scale(rows, FLAGS.plot)
    return {"benchmark": kind, "matmul_peak_gflops": round(peak, 1), "rows": rows, "markdown": table}


def profile_markdown(rows):
    """One column per method: FLOP counts, then each category's share of kernel time."""
    cats = list(dict.fromkeys(c for r in rows for c in r["op_time"]["categories"]))
    lines = ["| | " + " | ".join(r["method"] for r in rows) + " |", "|" + "---|" * (len(rows) + 1),
             "| GFLOPs/sample, analytic | " + " | ".join(str(r["gflops_per_sample"]) for r in rows) + " |",
             "| GFLOPs/sample, TF profiler + einsum | " + " | ".join(str(r["profiled_gflops_per_sample"])
                                                               for r in rows) + " |"]
    for c in cats:
        cells = [f"{100 * r['op_time']['categories'].get(c, 0) / r['op_time']['op_seconds']:.1f} %" for r in rows]
        lines.append(f"| kernel time: {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows):
    keys = [k for k in ("method", "batch_size", "window", "tokens", "xla", "precision", "runtime", "ms_per_step",
                        "ms_per_batch", "samples_per_second", "gflops_per_sample", "achieved_gflops", "share_of_peak",
                        "share_of_bf16_peak", "peak_rss_gib") if k in rows[0]]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{100 * r[k]:.0f} %" if k.startswith("share_of") else str(r[k]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.suite == "data":
        result = data_suite()
    elif FLAGS.suite == "one":
        result = one()
    elif FLAGS.suite == "kernels":
        result = kernels_suite()
    elif FLAGS.suite == "reference":
        result = reference_suite()
    else:
        result = measured_suite(FLAGS.suite)
    text = json.dumps(result, indent=None if FLAGS.suite == "one" else 1)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli.run(main)
