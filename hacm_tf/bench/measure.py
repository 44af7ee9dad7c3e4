"""Throughput measurements at given sizes (JSON-friendly results): input pipeline, pretraining,
fine-tuning, inference, one transformer block, the kernels of a block."""

from __future__ import annotations

import os
import time
from typing import List

import numpy as np

from hacm_tf.bench.flops import block_flops, classifier_flops_per_sample, graph_flops, pretrain_flops_per_sample
from hacm_tf.bench.profile import profile_op_times
from hacm_tf.bench.timing import (StealMeter, peak_rss_gib, probes_between_steps, sample_all, shares_of_probes,
                                  time_call, time_calls)
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


def random_clips(config, batch_size, seed=0):
    from hacm_tf.skeleton import get_layout

    v = get_layout(config.layout).num_joints
    return np.cumsum(np.random.RandomState(seed).normal(size=(batch_size, config.window, config.num_persons, v, 3))
                     * 0.02, axis=1).astype(np.float32)


def pretrain_step(config, batch_size: int, compute=None, seed: int = 0):
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
    return model, tf.function(model.train_step), tf.constant(random_clips(config, batch_size, seed))


def _native_kernels(compute) -> bool:
    """Whether the fused kernels of a step with these settings include the native ops."""
    from hacm_tf.ops import native

    return bool(compute.fused_kernels and not compute.jit_compile and native.available())


def pretrain_profile(config, batch_size: int = 8, steps: int = 2, seed: int = 0, compute=None) -> dict:
    """FLOPs per clip of a pretraining step counted by TF's profiler (beside the analytic count) and the
    kernel-time profile of ``steps`` steps without XLA (see profile_op_times; XLA-fused kernels of
    ``compute.fused_kernels`` count as element-wise). The FLOPs are counted on the graph without fused
    kernels, whose every op is visible to the profiler (the fused attention's matmuls sit in loops)."""
    import dataclasses

    import tensorflow as tf

    compute = dataclasses.replace(compute or ComputeConfig(), jit_compile=False)
    model, step, x = pretrain_step(config, batch_size, dataclasses.replace(compute, fused_kernels=False), seed)
    batch = (x, tf.zeros([batch_size], tf.int64))
    counted = graph_flops(step.get_concrete_function(batch))
    if compute.fused_kernels:
        model, step, _ = pretrain_step(config, batch_size, compute, seed)
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
    import tensorflow as tf

    compute = compute or ComputeConfig(jit_compile=False)
    model, step, x = pretrain_step(config, batch_size, compute, seed)
    labels = tf.zeros([batch_size], tf.int64)

    def run_step():
        step((x, labels))
        float(model.trackers["loss"].result())  # waits for the step

    return {"benchmark": "pretrain", "method": config.method, "batch_size": batch_size, "window": config.window,
            "t_patch": config.t_patch, "tokens": model.num_tokens, "dim": config.dim, "depth": config.depth,
            "decoder_depth": config.decoder_depth, "xla": compute.jit_compile, "remat": compute.remat,
            "precision": compute.precision, "micro_batches": compute.micro_batches,
            "fused_kernels": compute.fused_kernels, "native_kernels": _native_kernels(compute), "steps": steps,
            **_timed_training(run_step, steps, warmup, compute.precision, pretrain_flops_per_sample(model),
                              batch_size)}


def _timed_training(run_step, steps: int, warmup: int, precision: str, flops_per_sample: float,
                    batch_size: int) -> dict:
    """The timing fields of a training row: run_step timed ``steps`` times after ``warmup``, the matmul
    probes of ``precision`` read after every timed step, the rate's shares of their medians, the steal
    share over the measurement and the peak memory."""
    probes, steal = probes_between_steps(precision), StealMeter()
    med, first = time_call(run_step, steps, warmup, between=sample_all(probes))
    achieved = flops_per_sample * batch_size / med / 1e9
    return {"ms_per_step": round(1000 * med, 1), "samples_per_second": round(batch_size / med, 3),
            "gflops_per_sample": round(flops_per_sample / 1e9, 2), "achieved_gflops": round(achieved, 1),
            **shares_of_probes(achieved, probes), "warmup_seconds": round(first, 1),
            "cpu_steal_share": steal.share(), "peak_rss_gib": peak_rss_gib()}


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

    med, _ = time_call(lambda: [g.numpy() for g in step()], steps, warmup)
    flops = 3.0 * sequences * block_flops(tokens, dim, mlp_ratio)
    return {"framework": f"tensorflow {tf.__version__}", "shape": [sequences, tokens, dim], "heads": heads,
            "ms": round(1000 * med, 1), "gflops": round(flops / med / 1e9, 1)}


def kernel_rates(sequences: int = 64, tokens: int = 432, dim: int = 256, heads: int = 8, mlp_ratio: float = 4.0,
                 steps: int = 7, warmup: int = 2, dtype: str = "float32") -> List[dict]:
    """Rates of the kernels a transformer training step is made of, each alone at the step's shapes.

    ``sequences`` token sequences of ``tokens`` x ``dim`` (a batch of 32 two-person clips = 64):
    the MLP's forward matmul and its two gradient matmuls (transposed operands), the attention
    products, the whole attention training pass in float32 from the packed qkv projection to its
    gradient (XLA-fused path and, where built, the native op: hacm_tf.ops.native), and the
    memory-bound element-wise kernels (softmax over the attention scores, GELU, LayerNorm), on
    ``dtype`` operands. Returns rows with ms (median), GFLOP/s for matmuls and GB/s (bytes read +
    written) for element-wise kernels.
    """
    import tensorflow as tf

    from hacm_tf.layers.transformer import gelu_erf
    from hacm_tf.ops import fused, native

    rows_n, hidden, head_dim = sequences * tokens, int(dim * mlp_ratio), dim // heads
    g = tf.random.Generator.from_seed(0)

    def normal(shape):
        return tf.cast(g.normal(shape), dtype)

    x, h = normal([rows_n, dim]), normal([rows_n, hidden])
    w = normal([dim, hidden])
    q, k = normal([sequences, heads, tokens, head_dim]), normal([sequences, heads, tokens, head_dim])
    scores = normal([sequences, heads, tokens, tokens])
    size = tf.as_dtype(dtype).size / 4.0   # the byte counts below are for float32

    def layer_norm(t):
        mean, var = tf.nn.moments(t, axes=[-1], keepdims=True)
        return (t - mean) * tf.math.rsqrt(var + 1e-5)

    qkv = normal([sequences, tokens, 3, heads, head_dim])   # the layer's packed projection
    d_out = normal([sequences, tokens, heads, head_dim])

    def attention_pass(core):   # forward and d_qkv, weights recomputed, in ``dtype`` (as the layer runs it)
        def run():
            with tf.GradientTape() as tape:
                tape.watch(qkv)
                out = core(qkv, head_dim ** -0.5)
            return tape.gradient(out, qkv, output_gradients=d_out)
        return run

    mm = 2.0 * rows_n * dim * hidden
    att = 2.0 * sequences * heads * tokens * tokens * head_dim
    attention_shape = "qkv [%d, %d, 3, %d, %d]" % (sequences, tokens, heads, head_dim)
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
        # 6 products of the step's FLOP count (2 forward, 4 backward): the score recomputation is not counted
        ("attention training pass, XLA-fused path", attention_shape, attention_pass(fused.packed_attention_xla),
         6 * att, 0),
        ("softmax of the scores", "[%d, %d, %d, %d]" % (sequences, heads, tokens, tokens),
         lambda: tf.nn.softmax(scores), 0, 8.0 * size * scores.shape.num_elements()),
        ("GELU (erf)", "[%d, %d]" % (rows_n, hidden), lambda: gelu_erf(h), 0,
         8.0 * size * h.shape.num_elements()),
        ("LayerNorm", "[%d, %d]" % (rows_n, dim), lambda: layer_norm(x), 0, 8.0 * size * x.shape.num_elements()),
    ]
    if native.available(head_dim) and (tf.as_dtype(dtype) == tf.float32 or native.amx_available(head_dim)):
        kernels.insert(6, ("attention training pass, native op", attention_shape,
                           attention_pass(native.attention_packed), 6 * att, 0))
    rows = []
    for name, shape, fn, flops, nbytes in kernels:
        call = tf.function(lambda fn=fn: tf.reshape(fn(), [-1])[0])
        med, _ = time_call(lambda: call().numpy(), steps, warmup)
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
    import tensorflow as tf

    from hacm_tf.models.classifier import ActionClassifier
    from hacm_tf.training import optim

    compute = compute or ComputeConfig()
    clf = ActionClassifier(config.to_dict(), num_classes, head="finetune", label_smoothing=0.1, **compute.layer_kwargs)
    clf.build()
    paths = [v.path for v in clf.trainable_variables]
    clf.optimizer = optim.layerwise_adamw(clf.trainable_variables, paths, config.depth, 0.8,
                                          lambda s: optim.WarmupCosine(5e-4, 1e-6, 5, 100, 100, scale=s))
    x = tf.constant(random_clips(config, batch_size))
    y = tf.zeros([batch_size], tf.int64)
    step = tf.function(clf.train_step)
    return {"benchmark": "finetune", "method": config.method, "batch_size": batch_size, "remat": compute.remat,
            "precision": compute.precision, "fused_kernels": compute.fused_kernels,
            "native_kernels": _native_kernels(compute), "tokens": config.num_patches * len(clf.encoder.joints),
            **_timed_training(lambda: float(step((x, y))["loss"][0]), steps, warmup, compute.precision,
                              3 * classifier_flops_per_sample(config, num_classes), batch_size)}


def inference_throughput(config, batch_size: int, steps: int = 5, warmup: int = 2, saved_model: bool = False,
                         xla: bool = False, num_classes: int = 60, precision: str = "float32") -> dict:
    """Classifier inference samples/s and per-call latency (median and 95th percentile): the Keras model
    (tf.function, optionally XLA) or the exported SavedModel's serving signature (raw clips, preprocessing
    and input checks inside; ``xla``: exported with the XLA-compiled serving function)."""
    import shutil
    import tempfile

    import tensorflow as tf

    from hacm_tf.models.classifier import ActionClassifier
    from hacm_tf.skeleton import get_layout

    clf = ActionClassifier(config.to_dict(), num_classes, head="finetune", precision=precision)
    clf.build()
    x = tf.constant(random_clips(config, batch_size))
    if saved_model:
        from hacm_tf.export import export_saved_model, load_serving

        tmp = tempfile.mkdtemp()
        path = export_saved_model(clf, [str(i) for i in range(num_classes)], tmp, 1, config.num_persons,
                                  get_layout(config.layout).num_joints, jit_compile=xla)
        _, serve = load_serving(path)
        n = tf.fill([batch_size], config.window)
        fn = lambda: serve(skeleton=x, num_frames=n)["logits"].numpy()  # noqa: E731
    else:
        call = tf.function(lambda t: clf(t, training=False), jit_compile=xla)
        fn = lambda: call(x).numpy()  # noqa: E731
    times, first = time_calls(fn, steps, warmup)
    if saved_model:
        shutil.rmtree(tmp, ignore_errors=True)
    med = float(np.median(times))
    flops = classifier_flops_per_sample(config, num_classes)
    runtime = ("saved_model" if saved_model else "keras") + ("+xla" if xla else "")
    return {"benchmark": "inference", "method": config.method, "batch_size": batch_size, "runtime": runtime,
            "precision": precision,
            "ms_per_batch": round(1000 * med, 1), "latency_ms_median": round(1000 * med, 2),
            "latency_ms_p95": round(1000 * float(np.percentile(times, 95)), 2), "timed_calls": len(times),
            "samples_per_second": round(batch_size / med, 3),
            "gflops_per_sample": round(flops / 1e9, 2), "achieved_gflops": round(flops * batch_size / med / 1e9, 1),
            "warmup_seconds": round(first, 1),
            "peak_rss_gib": peak_rss_gib()}
