"""Benchmark suites: which configurations a suite measures, each in its own process, and their tables.

A measured suite (pretrain, finetune, inference, profile, scale) runs every configuration as
``python -m hacm_tf.bench '<spec JSON>'`` (``measure_one``), so each has its own peak memory, and
reports it against this machine's matmul peak measured in the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Sequence

from hacm_tf.bench import measure, presets
from hacm_tf.bench.timing import matmul_peak
from hacm_tf.config import ComputeConfig

MEASURED = ("pretrain", "finetune", "inference", "profile", "scale")
RUNTIMES = ("keras", "keras+xla", "saved_model", "saved_model+xla")
LATENCY_CALLS = 50          # timed calls at batch 1, for a stable 95th percentile
TORCH_BLOCK = os.path.join(presets.REPO, "scripts", "torch_block.py")


def apply_process_settings(spec: dict) -> None:
    """Process-wide settings of a measurement, before TensorFlow runs anything: ``serial_ops`` (profile)
    runs a step's ops one at a time (inter-op parallelism 1), so that each op's time in the trace is
    its own cost; by default ops that share the cores overlap and their trace times add up."""
    import tensorflow as tf

    if spec.get("serial_ops"):
        tf.config.threading.set_inter_op_parallelism_threads(1)


def measure_one(spec: dict) -> dict:
    """One measurement in this process. ``spec``: kind (pretrain | finetune | inference | profile), method,
    batch_size, steps, window (optional), runtime (inference), serial_ops (profile), and ComputeConfig
    fields."""
    apply_process_settings(spec)
    kind, method = spec["kind"], spec["method"]
    changes = {"window": spec["window"]} if spec.get("window") else {}
    cfg = presets.paper_model_config(method, finetune=kind == "finetune", **changes)
    fields = ComputeConfig().to_dict()
    compute = ComputeConfig(**{k: v for k, v in spec.items() if k in fields}).validate()
    batch, steps = spec["batch_size"], spec.get("steps")
    if kind == "profile":
        return {**measure.pretrain_profile(cfg, batch, steps or 2, compute=compute),
                "serial_ops": bool(spec.get("serial_ops"))}
    if kind == "pretrain":
        return measure.pretrain_throughput(cfg, batch, steps or 3, compute=compute)
    if kind == "finetune":
        return measure.finetune_throughput(cfg, batch, steps or 3, compute=compute)
    runtime = spec.get("runtime", "keras")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown inference runtime {runtime!r}; use one of {RUNTIMES}")
    return measure.inference_throughput(cfg, batch, steps or (LATENCY_CALLS if batch == 1 else 5),
                                        saved_model=runtime.startswith("saved_model"), xla=runtime.endswith("+xla"),
                                        precision=compute.precision)


def jobs(kind: str, methods: Sequence[str], batch_size: Optional[int] = None, xla: str = "both",
         batch_sizes: Sequence[int] = (1, 64), scale_batches: Sequence[int] = (8, 16, 32, 64),
         scale_windows: Sequence[int] = (36, 72, 108, 144), runtimes: Sequence[str] = RUNTIMES) -> List[dict]:
    """The measurement specs of a measured suite (without the compute settings); ``runtimes``: the
    inference runtimes (a subset of RUNTIMES)."""
    bad = set(runtimes) - set(RUNTIMES)
    if bad:
        raise ValueError(f"unknown inference runtimes {sorted(bad)}; use some of {RUNTIMES}")
    specs = []
    for method in methods:
        if kind == "pretrain":
            specs += [dict(kind=kind, method=method, batch_size=batch_size or 32, jit_compile=x == "on")
                      for x in (["off", "on"] if xla == "both" else [xla])]
        elif kind == "finetune":
            specs.append(dict(kind=kind, method=method, batch_size=batch_size or 32))
        elif kind == "profile":
            specs.append(dict(kind=kind, method=method, batch_size=batch_size or 8))
        elif kind == "scale":
            points = [(b, None) for b in scale_batches] + [(8, w) for w in scale_windows]
            specs += [dict(kind="pretrain", method=method, batch_size=b, jit_compile=True, window=w)
                      for b, w in dict.fromkeys(points)]
        elif kind == "inference":
            specs += [dict(kind=kind, method=method, batch_size=b, runtime=rt) for b in batch_sizes for rt in runtimes]
        else:
            raise ValueError(f"unknown measured suite {kind!r}; use one of {MEASURED}")
    return specs


def run_in_process(spec: dict) -> dict:
    """``measure_one(spec)`` in a fresh Python process (its own peak memory)."""
    r = subprocess.run([sys.executable, "-m", "hacm_tf.bench", json.dumps(spec)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark {spec} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measured_suite(kind: str, specs: Sequence[dict], compute: ComputeConfig = ComputeConfig(),
                   run: Callable[[dict], dict] = run_in_process, log: Callable[[str], None] = lambda line: None,
                   plot: Optional[str] = None) -> dict:
    """Runs ``specs`` (with ``compute``'s settings, XLA off unless a spec asks for it). Pretraining and
    fine-tuning rows carry their share of the matmul probe sampled between their own timed steps (and
    of the bfloat16 probe under mixed precision); other rows with a FLOP rate get their share of the
    probe measured here first."""
    peak = matmul_peak()
    peak_bf16 = matmul_peak(dtype="bfloat16") if compute.precision == "mixed_bfloat16" else None
    rows = []
    for spec in specs:
        row = run({**compute.to_dict(), "jit_compile": False, **spec})
        own_probe = "share_of_peak" in row
        row.setdefault("matmul_peak_gflops", round(peak, 1))
        if "achieved_gflops" in row and not own_probe:
            row["share_of_peak"] = round(row["achieved_gflops"] / peak, 3)
            if peak_bf16:   # the blocks' matmuls run in bfloat16: their own, higher ceiling
                row["matmul_peak_bf16_gflops"] = round(peak_bf16, 1)
                row["share_of_bf16_peak"] = round(row["achieved_gflops"] / peak_bf16, 3)
        rows.append(row)
        log(json.dumps(row))
    if kind == "scale" and plot:
        from hacm_tf import viz

        viz.plot_scale(rows, plot)
    table = profile_markdown(rows) if kind == "profile" else markdown(rows)
    return {"benchmark": kind, "matmul_peak_gflops": round(peak, 1), "rows": rows, "markdown": table}


def data_suite(data_dir: Optional[str] = None, batch_size: int = 128, window: int = 72, steps: int = 20,
               repeats: int = 3) -> dict:
    """The input pipeline's samples/s, median of ``repeats`` (a synthetic set is built when no data_dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            from hacm_tf.data import build, synthetic

            data_dir = os.path.join(tmp, "synthetic")
            build.build_synthetic(data_dir, spec=synthetic.SyntheticSpec(replications=2), progress=False)
        runs = [measure.data_throughput(data_dir, batch_size, window, steps) for _ in range(repeats)]
    runs.sort(key=lambda r: r["samples_per_second"])
    result = dict(runs[len(runs) // 2])
    result["all_samples_per_second"] = [r["samples_per_second"] for r in runs]
    return result


def matmul_bound(rows: Sequence[dict], attention_share: float, recompute_scores: bool,
                 attention_pass: Optional[str] = None) -> float:
    """GFLOP/s of a training step whose only cost were its matmuls at the rates of ``rows``
    (kernel_rates): the dense layers at the harmonic mean of the MLP's forward, input- and
    weight-gradient rates; the attention products (``attention_share`` of the FLOPs) as two score-like
    products (q k^T, dO v^T) and four weight-like ones per block, plus one more score product when the
    backward pass recomputes the scores (fused kernels: time spent, no FLOPs counted). With
    ``attention_pass`` (a kernel row's name), the attention at that whole pass's measured rate
    instead (softmax included)."""
    rate = {r["kernel"]: r["gflops"] for r in rows if "gflops" in r}
    dense = [rate["MLP matmul, forward"], rate["MLP matmul, input gradient"], rate["MLP matmul, weight gradient"]]
    dense_time = sum(1.0 / r for r in dense) / len(dense)                 # seconds per GFLOP
    if attention_pass:
        attention_time = 1.0 / rate[attention_pass]
    else:
        scores, weighted = rate["attention scores q k^T"], rate["attention probs @ v"]
        attention_time = ((3 if recompute_scores else 2) / scores + 4 / weighted) / 6
    return 1.0 / ((1.0 - attention_share) * dense_time + attention_share * attention_time)


def kernels_suite(batch_size: int = 32, steps: int = 7, precision: str = "float32") -> dict:
    """Each kernel of a transformer training step alone at the HA-CM decoder's shapes, against the peak
    (of bfloat16 operands under ``precision="mixed_bfloat16"``), and the share of the peak HA-CM's
    paper-size pretraining step could reach if its matmuls were all it cost (matmul_bound)."""
    from hacm_tf.bench.flops import attention_flops_per_sample, pretrain_flops_per_sample
    from hacm_tf.models.pretrainer import MaskedPretrainer

    dtype = "bfloat16" if precision == "mixed_bfloat16" else "float32"
    peak = matmul_peak(dtype=dtype)
    rows = measure.kernel_rates(sequences=2 * batch_size, steps=steps, dtype=dtype)
    lines = ["| kernel | shape | ms | GFLOP/s | share of matmul peak | GB/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        share = ""
        if "gflops" in r:
            r["share_of_peak"] = round(r["gflops"] / peak, 3)
            share = f"{100 * r['share_of_peak']:.0f} %"
        lines.append(f"| {r['kernel']} | {r['shape']} | {r['ms']} | {r.get('gflops', '')} | {share} | "
                     f"{r.get('gb_per_second', '')} |")
    model = MaskedPretrainer(presets.paper_model_config("hacm").to_dict())
    share = attention_flops_per_sample(model) / pretrain_flops_per_sample(model)
    bound = {f"fused_kernels={fused}": round(matmul_bound(rows, share, fused) / peak, 3) for fused in (False, True)}
    lines.append(f"\nHA-CM pretraining, attention products {100 * share:.0f} % of the FLOPs: matmul-bound share of "
                 f"peak {100 * bound['fused_kernels=False']:.0f} % (scores recomputed, fused kernels: "
                 f"{100 * bound['fused_kernels=True']:.0f} %)")
    for kernel, key in (("attention training pass, XLA-fused path", "xla_attention_pass"),
                        ("attention training pass, native op", "native_attention_pass")):
        if any(r["kernel"] == kernel for r in rows):
            bound[key] = round(matmul_bound(rows, share, True, attention_pass=kernel) / peak, 3)
            lines.append(f"with the dense matmuls and the {kernel.split(', ')[1]}'s measured rate: "
                         f"{100 * bound[key]:.0f} %")
    return {"benchmark": "kernels", "batch_size": batch_size, "dtype": dtype, "matmul_peak_gflops": round(peak, 1),
            "rows": rows, "hacm_attention_flop_share": round(share, 3), "hacm_matmul_bound_share": bound,
            "markdown": "\n".join(lines)}


def reference_suite(torch_python: str, batch_size: int = 32, steps: int = 5, torch_script: str = TORCH_BLOCK) -> dict:
    """hacm_tf's TransformerBlock and the official PyTorch block (``torch_script`` run by ``torch_python``),
    one training step each at the same shapes (two-person clips x 432 tokens x 256, 8 heads), each against
    its own framework's matmul peak."""
    shape = [2 * batch_size, 432, 256, 8]
    tf_row = measure.block_training_rate(*shape, steps=steps)
    tf_row["matmul_peak_gflops"] = round(matmul_peak(), 1)
    r = subprocess.run([torch_python, torch_script, *map(str, shape)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{torch_python} {torch_script} failed: {r.stderr.strip()[-2000:]}")
    rows = [tf_row, json.loads(r.stdout.strip().splitlines()[-1])]
    lines = ["| framework | matmul peak GFLOP/s | block step ms | GFLOP/s | share of own peak | speed-up |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        row["share_of_peak"] = round(row["gflops"] / row["matmul_peak_gflops"], 3)
        lines.append(f"| {row['framework']} | {row['matmul_peak_gflops']} | {row['ms']} | {row['gflops']} | "
                     f"{100 * row['share_of_peak']:.0f} % | {rows[1]['ms'] / row['ms']:.2f}x |")
    return {"benchmark": "reference", "shape": shape, "rows": rows, "markdown": "\n".join(lines)}


def profile_markdown(rows: Sequence[dict]) -> str:
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


def markdown(rows: Sequence[dict]) -> str:
    """A Markdown table of the measured rows (shares in %)."""
    keys = [k for k in ("method", "batch_size", "window", "tokens", "xla", "precision", "runtime", "ms_per_step",
                        "ms_per_batch", "latency_ms_median", "latency_ms_p95", "samples_per_second",
                        "gflops_per_sample", "achieved_gflops", "share_of_peak", "share_of_bf16_peak",
                        "cpu_steal_share", "peak_rss_gib")
            if k in rows[0]]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]

    def cell(k, v):
        return f"{100 * v:.0f} %" if "share" in k and v is not None else str(v)

    for r in rows:
        cells = [cell(k, r.get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
