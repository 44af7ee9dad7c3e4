"""Where a step's kernel time goes: TensorFlow profiler traces summed by op type and category."""

from __future__ import annotations

import os
import time

# op type (substring of the kernel name) -> category, first match wins
OP_CATEGORIES = (
    ("attention (native op: products and softmax)", ("HacmAttention",)),
    ("matmul", ("MatMul", "Einsum", "Conv")),
    ("softmax", ("Softmax",)),
    ("gather / scatter / sort", ("Gather", "Scatter", "TopK", "Sort", "Unique")),
    ("reduction", ("Sum", "Mean", "Max", "Min", "Prod", "Any", "All")),
    ("layout (transpose, reshape, concat, cast)", ("Transpose", "Reshape", "Concat", "Slice", "Tile", "Pack",
                                                   "Unpack", "Split", "Pad", "Identity", "Cast", "Fill",
                                                   "BroadcastTo", "ZerosLike", "OnesLike", "Shape")),
    ("variables / optimizer", ("Assign", "ReadVariable", "ResourceApply", "VarHandle")),
)


XLA_KERNEL = "XlaFusedKernel"   # the trace's event for one XLA executable run ("CpuExecutable::...")


def op_category(op_type: str) -> str:
    """Category of a kernel type for the time profile ("elementwise" when nothing else matches)."""
    for category, keys in OP_CATEGORIES:
        if any(k in op_type for k in keys):
            return category
    return "elementwise"


def profile_op_times(fn, steps: int = 2, logdir: str = None) -> dict:
    """Runs ``fn`` ``steps`` times under the TensorFlow profiler and sums the kernels' durations from
    the trace (XSpace protobuf) by op type and category.

    Op times of parallel kernels add up, so shares are of total kernel time, not of wall time. Use it
    without XLA-compiled steps: an XLA cluster hides its op types inside one kernel; the small fused
    kernels of hacm_tf.ops.fused are counted as type ``XlaFusedKernel`` (element-wise).
    Returns {"wall_seconds", "op_seconds", "categories": {name: seconds}, "top_ops": [[type, seconds, count]]}.
    """
    import collections
    import glob
    import re
    import shutil
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    own = logdir is None
    logdir = logdir or tempfile.mkdtemp(prefix="hacm_profile_")
    try:
        tf.profiler.experimental.start(logdir)
        try:
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            wall = time.perf_counter() - t0
        finally:
            tf.profiler.experimental.stop()
        paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
        if not paths:
            raise RuntimeError(f"the profiler wrote no trace under {logdir}")
        space = xplane_pb2.XSpace()
        with open(paths[-1], "rb") as f:
            space.ParseFromString(f.read())
    finally:
        if own:
            shutil.rmtree(logdir, ignore_errors=True)
    kernel = re.compile(r"^[^:]+:([A-Za-z0-9_]+)$")   # "<op name>:<kernel type>"
    seconds, counts = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                m = kernel.match(name)
                op_type = m.group(1) if m else XLA_KERNEL if name == "CpuExecutable::ExecuteAsyncOnStream" else None
                if op_type:
                    seconds[op_type] += event.duration_ps * 1e-12
                    counts[op_type] += 1
    categories = collections.Counter()
    for op_type, s in seconds.items():
        categories[op_category(op_type)] += s
    return {"wall_seconds": round(wall, 6), "op_seconds": round(sum(seconds.values()), 6),   # microseconds: a
            "categories": {k: round(v, 6) for k, v in categories.most_common()},          # fast CPU's small
            "top_ops": [[k, round(v, 6), counts[k]] for k, v in seconds.most_common(15)]}  # kernels stay > 0
