"""Throughput measurements used by scripts/benchmark.py (JSON-friendly results)."""

from __future__ import annotations

import os
import time
from typing import List

from hacm_tf.config import ComputeConfig, DataConfig


def data_throughput(data_dir: str, batch_size: int = 128, window: int = 72, steps: int = 20,
                    warmup: int = 3, velocity: bool = False, seed: int = 0) -> dict:
    """tf.data samples/s of the training pipeline (crop, resize, rotation) at ``batch_size``.

    Iterates ``warmup`` batches first (pipeline start-up, autotuning), then times ``steps`` batches.
    """
    from hacm_tf.data import pipeline, tfrecord

    info = tfrecord.load_info(data_dir)
    cfg = DataConfig(window=window, batch_size=batch_size, velocity=velocity)
    it = iter(pipeline.make_dataset(data_dir, "train", cfg, training=True, seed=seed))
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, _ = next(it)
        x.numpy()
    elapsed = time.perf_counter() - t0
    return {"benchmark": "data", "data_dir": data_dir, "dataset": info["dataset"],
            "train_samples": info["splits"]["train"], "batch_size": batch_size, "window": window,
            "augmentation": "crop+resize+rotation" + ("+velocity" if velocity else ""),
            "steps": steps, "seconds": round(elapsed, 3),
            "samples_per_second": round(steps * batch_size / elapsed, 1),
            "ms_per_batch": round(1000 * elapsed / steps, 2), "cpu_count": os.cpu_count()}


def matmul_peak(n: int = 2048, repeats: int = 10, dtype: str = "float32") -> float:
    """Measured matmul GFLOP/s of this machine (best of ``repeats``; float32: the MFU denominator)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f().numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block (2 per multiply-add): projections + MLP + attention."""
    return 2 * tokens * (4 * dim * dim + 2 * dim * int(dim * mlp_ratio)) + 4 * tokens * tokens * dim


def pretrain_flops_per_sample(model) -> float:
    """Training FLOPs per clip (all persons) of a MaskedPretrainer: 3 x forward of the trained path
    (embedding, encoder on visible tokens, decoder on all tokens) + the masking criteria's forward."""
    cfg = model.cfg
    seqs = cfg.num_persons
    L, P, D, Dd = model.num_tokens, model.patch_values, cfg.dim, cfg.decoder_dim
    if cfg.method == "hacm":
        visible = model.keep_t + model.keep_s
        hubs = cfg.num_patches * len(model.layout.hub_joints)
        embed = 2 * (L + hubs) * P * D
        tt, ts, vp = len(model.times_t), len(model.times_s), model.num_token_joints
        criteria = 2 * 2 * model.len_t * D * D + 2 * vp * tt * tt * D + 3 * ts * vp * vp * D
    else:
        from hacm_tf.ops.masking import keep_count

        visible, embed, criteria = keep_count(L, cfg.mask_ratio), 2 * L * P * D, 0
    fwd = (embed + cfg.depth * _block_flops(visible, D, cfg.mlp_ratio) + 2 * visible * D * Dd
           + cfg.decoder_depth * _block_flops(L, Dd, cfg.mlp_ratio) + 2 * L * Dd * P)
    return seqs * (3 * fwd + criteria)


def _pretrain_step(config, batch_size: int, compute=None, seed: int = 0):
    """A built MaskedPretrainer (ComputeConfig ``compute``; default: no XLA) with AdamW, its train_step as
    a tf.function and a batch of random walks [B, T, M, V, 3]."""
    import tensorflow as tf

    from hacm_tf.models.pretrainer import MaskedPretrainer
    from hacm_tf.training import optim
    from hacm_tf.training.engine import PretrainEngine

    compute = compute or ComputeConfig(jit_compile=False)
    model = MaskedPretrainer(config.to_dict(), seed=seed, **compute.layer_kwargs)
    model.build()
    model.compile(optimizer=optim.adamw(1e-4, model.trainable_variables), engine=PretrainEngine.from_config(compute))
    model.optimizer.build(model.trainable_variables)
    return model, tf.function(model.train_step), tf.constant(_random_clips(config, batch_size, seed))


def pretrain_profile(config, batch_size: int = 8, steps: int = 2, seed: int = 0, compute=None) -> dict:
    """FLOPs per clip of a pretraining step counted by TF's profiler (beside the analytic count) and the
    kernel-time profile of ``steps`` steps without XLA (see profile_op_times)."""
    import dataclasses

    import tensorflow as tf

    compute = dataclasses.replace(compute or ComputeConfig(), jit_compile=False)
    model, step, x = _pretrain_step(config, batch_size, compute, seed)
    batch = (x, tf.zeros([batch_size], tf.int64))
    counted = graph_flops(step.get_concrete_function(batch))
    step(batch)["loss"].numpy()
    op_time = profile_op_times(lambda: step(batch)["loss"].numpy(), steps)
    return {"benchmark": "profile", "method": config.method, "batch_size": batch_size, "window": config.window,
            "tokens": model.num_tokens, "gflops_per_sample": round(pretrain_flops_per_sample(model) / 1e9, 2),
            "profiled_gflops_per_sample": round(counted["total"] / batch_size / 1e9, 2),
            "profiler_gflops_without_einsum": round(counted["profiler"] / batch_size / 1e9, 2),
            "op_time": op_time}


def pretrain_throughput(config, batch_size: int = 32, steps: int = 3, warmup: int = 2, compute=None,
                        seed: int = 0) -> dict:
    """Pretraining samples/s and ms/step (fwd + bwd + AdamW) of a ModelConfig on random skeletons under a
    ComputeConfig (default: no XLA, float32)."""
    import resource

    import tensorflow as tf

    compute = compute or ComputeConfig(jit_compile=False)
    model, step, x = _pretrain_step(config, batch_size, compute, seed)
    labels = tf.zeros([batch_size], tf.int64)

    def run_step():
        step((x, labels))
        float(model.trackers["loss"].result())  # waits for the step

    med, t_compile = _time(run_step, steps, warmup)
    flops = pretrain_flops_per_sample(model)
    return {"benchmark": "pretrain", "method": config.method, "batch_size": batch_size, "window": config.window,
            "t_patch": config.t_patch, "tokens": model.num_tokens, "dim": config.dim, "depth": config.depth,
            "decoder_depth": config.decoder_depth, "xla": compute.jit_compile, "remat": compute.remat,
            "precision": compute.precision, "micro_batches": compute.micro_batches, "steps": steps,
            "ms_per_step": round(1000 * med, 1), "samples_per_second": round(batch_size / med, 3),
            "gflops_per_sample": round(flops / 1e9, 2), "achieved_gflops": round(flops * batch_size / med / 1e9, 1),
            "warmup_seconds": round(t_compile, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def classifier_flops_per_sample(config, num_classes: int = 60, head: str = "finetune") -> float:
    """Forward FLOPs per clip of an ActionClassifier over all tokens (+ head)."""
    from hacm_tf.models.encoder import token_joints

    vp = len(token_joints(config))
    tokens = config.num_patches * vp
    fwd = 2 * tokens * config.t_patch * 3 * config.dim + config.depth * _block_flops(tokens, config.dim,
                                                                                       config.mlp_ratio)
    fwd *= config.num_persons
    if head == "finetune":
        fwd += 2 * vp * config.dim * 2048 + 2 * 2048 * num_classes
    return fwd


def _random_clips(config, batch_size, seed=0):
    import numpy as np

    from hacm_tf.skeleton import get_layout

    v = get_layout(config.layout).num_joints
    return np.cumsum(np.random.RandomState(seed).normal(size=(batch_size, config.window, config.num_persons, v, 3))
                     * 0.02, axis=1).astype(np.float32)


def _time(fn, steps, warmup):
    import numpy as np

    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), first


def block_training_rate(sequences: int = 64, tokens: int = 432, dim: int = 256, heads: int = 8,
                        mlp_ratio: float = 4.0, steps: int = 5, warmup: int = 2) -> dict:
    """ms and GFLOP/s of one TransformerBlock's training step (forward + input and weight gradients) on
    [sequences, tokens, dim]; scripts/torch_block.py measures the official code's block the same way."""
    import tensorflow as tf

    from hacm_tf.layers.transformer import TransformerBlock

    block = TransformerBlock(dim, heads, mlp_ratio)
    x = tf.random.Generator.from_seed(0).normal([sequences, tokens, dim])
    block.build(x.shape)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = block(x, training=True)
            loss = tf.reduce_mean(y * y)
        return tape.gradient(loss, [x] + block.trainable_variables)

    med, _ = _time(lambda: [g.numpy() for g in step()], steps, warmup)
    flops = 3.0 * sequences * _block_flops(tokens, dim, mlp_ratio)
    return {"framework": f"tensorflow {tf.__version__}", "shape": [sequences, tokens, dim], "heads": heads,
            "ms": round(1000 * med, 1), "gflops": round(flops / med / 1e9, 1)}


def kernel_rates(sequences: int = 64, tokens: int = 432, dim: int = 256, heads: int = 8, mlp_ratio: float = 4.0,
                 steps: int = 7, warmup: int = 2) -> List[dict]:
    """Rates of the kernels a transformer training step is made of, each alone at the step's shapes.

    ``sequences`` token sequences of ``tokens`` x ``dim`` (a batch of 32 two-person clips = 64):
    the MLP's forward matmul and its two gradient matmuls (transposed operands), the attention
    products, and the memory-bound element-wise kernels (softmax over the attention scores, GELU,
    LayerNorm). Returns rows with ms (median), GFLOP/s for matmuls and GB/s (bytes read + written)
    for element-wise kernels.
    """
    import tensorflow as tf

    from hacm_tf.layers.transformer import gelu_erf

    rows_n, hidden, head_dim = sequences * tokens, int(dim * mlp_ratio), dim // heads
    g = tf.random.Generator.from_seed(0)
    x, h = g.normal([rows_n, dim]), g.normal([rows_n, hidden])
    w = g.normal([dim, hidden])
    q, k = g.normal([sequences, heads, tokens, head_dim]), g.normal([sequences, heads, tokens, head_dim])
    scores = g.normal([sequences, heads, tokens, tokens])

    def layer_norm(t):
        mean, var = tf.nn.moments(t, axes=[-1], keepdims=True)
        return (t - mean) * tf.math.rsqrt(var + 1e-5)

    mm = 2.0 * rows_n * dim * hidden
    att = 2.0 * sequences * heads * tokens * tokens * head_dim
    kernels = [
        ("MLP matmul, forward", "[%d, %d] @ [%d, %d]" % (rows_n, dim, dim, hidden), lambda: tf.matmul(x, w), mm, 0),
        ("MLP matmul, input gradient", "[%d, %d] @ [%d, %d]^T" % (rows_n, hidden, dim, hidden),
         lambda: tf.matmul(h, w, transpose_b=True), mm, 0),
        ("MLP matmul, weight gradient", "[%d, %d]^T @ [%d, %d]" % (rows_n, dim, rows_n, hidden),
         lambda: tf.matmul(x, h, transpose_a=True), mm, 0),
        ("attention scores q k^T", "%d x [%d, %d] @ [%d, %d]^T" % (sequences * heads, tokens, head_dim, tokens,
                                                                    head_dim),
         lambda: tf.matmul(q, k, transpose_b=True), att, 0),
        ("attention probs @ v", "%d x [%d, %d] @ [%d, %d]" % (sequences * heads, tokens, tokens, tokens, head_dim),
         lambda: tf.matmul(scores, q), att, 0),
        ("softmax of the scores", "[%d, %d, %d, %d]" % (sequences, heads, tokens, tokens),
         lambda: tf.nn.softmax(scores), 0, 8.0 * scores.shape.num_elements()),
        ("GELU (erf)", "[%d, %d]" % (rows_n, hidden), lambda: gelu_erf(h), 0,
         8.0 * h.shape.num_elements()),
        ("LayerNorm", "[%d, %d]" % (rows_n, dim), lambda: layer_norm(x), 0, 8.0 * x.shape.num_elements()),
    ]
    rows = []
    for name, shape, fn, flops, nbytes in kernels:
        call = tf.function(lambda fn=fn: tf.reshape(fn(), [-1])[0])
        med, _ = _time(lambda: call().numpy(), steps, warmup)
        row = {"kernel": name, "shape": shape, "ms": round(1000 * med, 2)}
        if flops:
            row["gflops"] = round(flops / med / 1e9, 1)
        else:
            row["gb_per_second"] = round(nbytes / med / 1e9, 1)
        rows.append(row)
    return rows


def finetune_throughput(config, batch_size: int = 32, steps: int = 3, warmup: int = 2, num_classes: int = 60,
                        compute=None) -> dict:
    """Fine-tuning samples/s (drop path, label smoothing, layer-wise AdamW) on random clips (ComputeConfig
    ``compute``: remat and precision)."""
    import resource

    import tensorflow as tf

    from hacm_tf.models.classifier import ActionClassifier
    from hacm_tf.training import optim

    compute = compute or ComputeConfig()
    clf = ActionClassifier(config.to_dict(), num_classes, head="finetune", label_smoothing=0.1, **compute.layer_kwargs)
    clf.build()
    paths = [v.path for v in clf.trainable_variables]
    clf.optimizer = optim.layerwise_adamw(clf.trainable_variables, paths, config.depth, 0.8,
                                          lambda s: optim.WarmupCosine(5e-4, 1e-6, 5, 100, 100, scale=s))
    x = tf.constant(_random_clips(config, batch_size))
    y = tf.zeros([batch_size], tf.int64)
    step = tf.function(clf.train_step)
    med, first = _time(lambda: float(step((x, y))["loss"][0]), steps, warmup)
    flops = 3 * classifier_flops_per_sample(config, num_classes)
    return {"benchmark": "finetune", "method": config.method, "batch_size": batch_size, "remat": compute.remat,
            "precision": compute.precision,
            "tokens": config.num_patches * len(clf.encoder.joints), "ms_per_step": round(1000 * med, 1),
            "samples_per_second": round(batch_size / med, 3), "gflops_per_sample": round(flops / 1e9, 2),
            "achieved_gflops": round(flops * batch_size / med / 1e9, 1), "warmup_seconds": round(first, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def inference_throughput(config, batch_size: int, steps: int = 5, warmup: int = 2, saved_model: bool = False,
                         xla: bool = False, num_classes: int = 60, precision: str = "float32") -> dict:
    """Classifier inference samples/s: the Keras model (tf.function, optionally XLA) or the exported
    SavedModel's serving signature (raw clips, preprocessing inside)."""
    import resource
    import shutil
    import tempfile

    import tensorflow as tf

    from hacm_tf.models.classifier import ActionClassifier
    from hacm_tf.skeleton import get_layout

    clf = ActionClassifier(config.to_dict(), num_classes, head="finetune", precision=precision)
    clf.build()
    if saved_model:
        from hacm_tf.export import export_saved_model, load_serving

        tmp = tempfile.mkdtemp()
        path = export_saved_model(clf, [str(i) for i in range(num_classes)], tmp, 1, config.num_persons,
                                  get_layout(config.layout).num_joints)
        _, serve = load_serving(path)
        x = tf.constant(_random_clips(config, batch_size))
        n = tf.fill([batch_size], config.window)
        fn = lambda: serve(skeleton=x, num_frames=n)["logits"].numpy()  # noqa: E731
    else:
        x = tf.constant(_random_clips(config, batch_size))
        call = tf.function(lambda t: clf(t, training=False), jit_compile=xla)
        fn = lambda: call(x).numpy()  # noqa: E731
    med, first = _time(fn, steps, warmup)
    if saved_model:
        shutil.rmtree(tmp, ignore_errors=True)
    flops = classifier_flops_per_sample(config, num_classes)
    return {"benchmark": "inference", "method": config.method, "batch_size": batch_size,
            "runtime": "saved_model" if saved_model else ("keras+xla" if xla else "keras"),
            "precision": precision,
            "ms_per_batch": round(1000 * med, 1), "samples_per_second": round(batch_size / med, 3),
            "gflops_per_sample": round(flops / 1e9, 2), "achieved_gflops": round(flops * batch_size / med / 1e9, 1),
            "warmup_seconds": round(first, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}


def graph_flops(concrete_function) -> dict:
    """FLOPs of a traced tf.function (static shapes) counted by TensorFlow's profiler, an independent
    check of the analytic counts above.

    TF's ``float_operation`` profiler has no FLOP rule for ``Einsum`` (HA-CM's temporal-attention logits), so
    Einsum ops are counted separately as 2 x the product of all index sizes of their equation.
    Returns {"profiler": ..., "einsum": ..., "total": ...} in FLOPs for the whole traced batch.
    """
    import numpy as np
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = concrete_function.graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    profiled = float(model_analyzer.profile(graph, options=opts).total_float_ops)
    einsum = 0.0
    for op in graph.get_operations():
        if op.type != "Einsum":
            continue
        equation = op.get_attr("equation").decode()
        sizes = {}
        for spec, tensor in zip(equation.split("->")[0].split(","), op.inputs):
            shape = tensor.shape.as_list()
            if "." in spec or None in shape:
                raise ValueError(f"cannot count einsum {equation!r} with shape {shape}: needs static shapes")
            sizes.update(zip(spec, shape))
        einsum += 2.0 * float(np.prod(list(sizes.values()), dtype=np.float64))
    return {"profiler": profiled, "einsum": einsum, "total": profiled + einsum}


# op type (substring of the kernel name) -> category, first match wins
OP_CATEGORIES = (
    ("matmul", ("MatMul", "Einsum", "Conv")),
    ("softmax", ("Softmax",)),
    ("gather / scatter / sort", ("Gather", "Scatter", "TopK", "Sort", "Unique")),
    ("reduction", ("Sum", "Mean", "Max", "Min", "Prod", "Any", "All")),
    ("layout (transpose, reshape, concat, cast)", ("Transpose", "Reshape", "Concat", "Slice", "Tile", "Pack",
                                                   "Unpack", "Split", "Pad", "Identity", "Cast", "Fill",
                                                   "BroadcastTo", "ZerosLike", "OnesLike", "Shape")),
    ("variables / optimizer", ("Assign", "ReadVariable", "ResourceApply", "VarHandle")),
)


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
    without XLA: XLA clusters hide the op types inside one kernel.
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
                m = kernel.match(plane.event_metadata[event.metadata_id].name)
                if m:
                    seconds[m.group(1)] += event.duration_ps * 1e-12
                    counts[m.group(1)] += 1
    categories = collections.Counter()
    for op_type, s in seconds.items():
        categories[op_category(op_type)] += s
    return {"wall_seconds": round(wall, 6), "op_seconds": round(sum(seconds.values()), 6),   # microseconds: a
            "categories": {k: round(v, 6) for k, v in categories.most_common()},          # fast CPU's small
            "top_ops": [[k, round(v, 6), counts[k]] for k, v in seconds.most_common(15)]}  # kernels stay > 0
