"""Benchmarks with JSON output (and a Markdown table).

  python scripts/benchmark.py --suite=data [--data_dir=DIR] [--batch_size=128]
  python scripts/benchmark.py --suite=pretrain [--methods=hacm,mamp,mae] [--batch_size=32] [--xla=both]
  python scripts/benchmark.py --suite=finetune [--methods=hacm,mamp] [--batch_size=32]
  python scripts/benchmark.py --suite=inference [--methods=hacm,mamp] [--batch_sizes=1,64] [--runtimes=...]
  python scripts/benchmark.py --suite=profile [--methods=hacm] [--batch_size=8] [--serial_ops]
  python scripts/benchmark.py --suite=scale [--scale_batches=8,16,32,64] [--scale_windows=36,72,108,144]
  python scripts/benchmark.py --suite=kernels [--batch_size=32] [--precision=mixed_bfloat16]
  python scripts/benchmark.py --suite=reference [--torch_python=VENV/bin/python] [--batch_size=32]

``data``: tf.data training pipeline samples/s (a synthetic set is built when --data_dir is absent).
``pretrain`` / ``finetune`` / ``inference`` (Keras model, Keras + XLA, exported SavedModel): samples/s,
ms per step or batch, FLOPs per sample and achieved FLOP/s as a fraction of this machine's measured
matmul peak, at the paper's sizes; each configuration runs in its own process so its peak memory is
its own.
``profile``: pretraining FLOPs counted by TensorFlow's profiler beside the analytic count, and where the
kernel time of a step goes (matmul, element-wise, layout, softmax, ...; no XLA, from a profiler trace);
--serial_ops runs the ops one at a time, so that each op's share is its own cost (by default small ops
overlap the matmuls on the shared cores and their trace times add up).
``scale``: HA-CM pretraining step time (XLA) against batch size and window length (tokens); --plot
writes a PNG.
``kernels``: each kernel of a transformer training step alone at the step's shapes (HA-CM decoder, 432
tokens, width 256, batch of two-person clips): the MLP matmul forward and its gradients, the attention
products, the whole attention training pass (XLA-fused path; native op where built), softmax, GELU,
LayerNorm; GFLOP/s against the matmul peak, GB/s for the memory-bound ones.
--nonative_kernels: measure without the native ops (hacm_tf.ops.native) even where they are built.
``reference``: one transformer block's training step at the decoder's shapes, hacm_tf's block against
the official code's PyTorch block (scripts/torch_block.py, run by --torch_python, which needs
PyTorch), with each framework's own matmul peak, measured side by side on this machine.
"""

import json
import os
import sys

from absl import flags

from hacm_tf import cli
from hacm_tf.config import PRECISIONS, REMAT_MODES

SUITES = ["data", "pretrain", "finetune", "inference", "profile", "scale", "kernels", "reference"]
flags.DEFINE_enum("suite", "data", SUITES, "What to measure.")
flags.DEFINE_string("data_dir", None, "TFRecord directory (default: build a synthetic one).")
flags.DEFINE_integer("batch_size", None, "Batch size (default 128 for data, 32 for pretrain).")
flags.DEFINE_integer("window", 72, "data: frames per sample after resizing.")
flags.DEFINE_integer("steps", None, "Timed batches / steps (default 20 for data, 3 for pretrain).")
flags.DEFINE_integer("repeats", 3, "data: repeat the measurement; the median is reported.")
flags.DEFINE_list("methods", ["hacm", "mamp", "mae"], "pretrain: methods to measure.")
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "pretrain: with and/or without XLA.")
flags.DEFINE_list("batch_sizes", ["1", "64"], "inference: batch sizes.")
flags.DEFINE_list("runtimes", ["keras", "keras+xla", "saved_model", "saved_model+xla"],
                  "inference: runtimes (saved_model+xla: exported with the XLA serving function).")
flags.DEFINE_list("scale_batches", ["8", "16", "32", "64"], "scale: batch sizes at the paper's window.")
flags.DEFINE_list("scale_windows", ["36", "72", "108", "144"], "scale: windows (frames) at batch 8.")
flags.DEFINE_integer("micro_batches", 1, "pretrain: parts per batch whose gradients are averaged.")
flags.DEFINE_enum("remat", "none", list(REMAT_MODES),
                  "pretrain / finetune: what the backward pass recomputes (ComputeConfig.remat).")
flags.DEFINE_enum("precision", "float32", list(PRECISIONS),
                  "pretrain / finetune: the transformer blocks' compute precision (ComputeConfig.precision).")
flags.DEFINE_bool("fused_kernels", True, "pretrain / finetune: XLA-fused GELU, LayerNorm and softmax gradient "
                  "in training (ComputeConfig.fused_kernels).")
flags.DEFINE_bool("native_kernels", True, "pretrain / finetune / profile / kernels: the native attention and "
                  "LayerNorm ops where built (hacm_tf.ops.native; sets HACM_TF_NATIVE_KERNELS for the "
                  "measuring processes).")
flags.DEFINE_bool("serial_ops", False, "profile: run the step's ops one at a time (inter-op parallelism 1), so "
                  "that each op's trace time is its own cost (by default ops sharing the cores overlap and "
                  "their times add up).")
flags.DEFINE_string("plot", None, "scale: also write a PNG plot here.")
flags.DEFINE_string("output", None, "Also write the JSON here.")
flags.DEFINE_string("torch_python", sys.executable, "reference: a python that has PyTorch (e.g. a venv's).")
FLAGS = flags.FLAGS

def main(argv):
    del argv
    from hacm_tf.bench import suites
    from hacm_tf.config import ComputeConfig
    from hacm_tf.ops import native

    if not FLAGS.native_kernels:
        os.environ[native.SWITCH_ENV] = "0"
    if FLAGS.suite == "data":
        result = suites.data_suite(FLAGS.data_dir, FLAGS.batch_size or 128, FLAGS.window, FLAGS.steps or 20,
                                   FLAGS.repeats)
    elif FLAGS.suite == "kernels":
        result = suites.kernels_suite(FLAGS.batch_size or 32, FLAGS.steps or 7, FLAGS.precision)
    elif FLAGS.suite == "reference":
        result = suites.reference_suite(FLAGS.torch_python, FLAGS.batch_size or 32, FLAGS.steps or 5)
    else:
        methods = FLAGS.methods if FLAGS["methods"].present or FLAGS.suite != "scale" else ["hacm"]
        specs = suites.jobs(FLAGS.suite, methods, FLAGS.batch_size, FLAGS.xla, [int(b) for b in FLAGS.batch_sizes],
                            [int(b) for b in FLAGS.scale_batches], [int(w) for w in FLAGS.scale_windows],
                            FLAGS.runtimes)
        for spec in specs:
            if FLAGS.steps:
                spec["steps"] = FLAGS.steps
            if FLAGS.serial_ops and FLAGS.suite == "profile":
                spec["serial_ops"] = True
        compute = ComputeConfig(remat=FLAGS.remat, precision=FLAGS.precision, micro_batches=FLAGS.micro_batches,
                                fused_kernels=FLAGS.fused_kernels).validate()
        result = suites.measured_suite(FLAGS.suite, specs, compute, log=lambda line: print(line, file=sys.stderr),
                                       plot=FLAGS.plot)
    text = json.dumps(result, indent=1)
    print(text)
    if FLAGS.output:
        from hacm_tf.data.tfrecord import atomic_write_text

        atomic_write_text(FLAGS.output, text + "\n")


if __name__ == "__main__":
    cli.run(main)
