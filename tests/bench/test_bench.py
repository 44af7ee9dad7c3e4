"""FLOP counts from the architecture agree with PyTorch's FLOP counter on the official code
(../shared/BENCHMARKS.md: GFLOPs per clip)."""

import subprocess
import sys

import pytest

from hacm_tf.bench import flops, measure, profile
from hacm_tf.config import ComputeConfig, ModelConfig
from hacm_tf.models.pretrainer import MaskedPretrainer


@pytest.mark.parametrize("method,window,t_patch,gflops", [("hacm", 72, 3, 19.1), ("mamp", 120, 4, 37.6)])
def test_pretraining_flops_match_the_reference_counter(method, window, t_patch, gflops):
    m = MaskedPretrainer(ModelConfig(method=method, window=window, t_patch=t_patch).validate().to_dict())
    assert flops.pretrain_flops_per_sample(m) / 1e9 == pytest.approx(gflops, rel=0.01)


@pytest.mark.parametrize("method,window,t_patch,gflops", [("hacm", 72, 3, 14.0), ("mamp", 120, 4, 28.1)])
def test_classifier_flops_match_the_reference_counter(method, window, t_patch, gflops):
    cfg = ModelConfig(method=method, window=window, t_patch=t_patch).validate()
    assert flops.classifier_flops_per_sample(cfg) / 1e9 == pytest.approx(gflops, rel=0.01)


def test_data_throughput_reports_a_rate(synthetic_dir):
    r = measure.data_throughput(synthetic_dir, batch_size=8, window=16, steps=2, warmup=1)
    assert r["samples_per_second"] > 0 and r["batch_size"] == 8


@pytest.mark.parametrize("method,t_patch", [("hacm", 3), ("mamp", 4)])
def test_profiler_flop_count_agrees_with_the_analytic_count(method, t_patch):
    import tensorflow as tf

    cfg = ModelConfig(method=method, window=24, t_patch=t_patch, dim=32, depth=2, heads=4, decoder_dim=32,
                      decoder_depth=1, decoder_heads=4).validate()
    model, step, x = measure.pretrain_step(cfg, 2, ComputeConfig(jit_compile=False, fused_kernels=False))
    counted = flops.graph_flops(step.get_concrete_function((x, tf.zeros([2], tf.int64))))
    assert counted["total"] == counted["profiler"] + counted["einsum"]
    assert counted["einsum"] > 0 if method == "hacm" else counted["einsum"] == 0   # HA-CM's attention logits
    # the profiler also counts element-wise work and the optimizer, which the analytic count leaves out
    assert counted["total"] / 2 == pytest.approx(flops.pretrain_flops_per_sample(model), rel=0.15)


def test_einsum_flops_are_counted_from_the_equation():
    import tensorflow as tf

    a, b = tf.ones([2, 3, 5]), tf.ones([2, 5, 7])
    counted = flops.graph_flops(tf.function(lambda: tf.einsum("bij,bjk->bik", a, b)).get_concrete_function())
    assert counted["einsum"] == 2 * 2 * 3 * 5 * 7


def test_op_time_profile_finds_the_matmuls():
    import tensorflow as tf

    a = tf.random.normal([256, 256])
    f = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a) + 1.0))
    f()
    prof = profile.profile_op_times(lambda: f().numpy(), steps=2)
    cats = prof["categories"]
    assert max(cats, key=cats.get) == "matmul"            # the one large kernel of this function
    assert sum(cats.values()) == pytest.approx(prof["op_seconds"], rel=1e-3, abs=1e-5)
    assert profile.op_category("_MklBatchMatMulV2") == "matmul" and profile.op_category("Erf") == "elementwise"
    assert profile.op_category("HacmAttentionGrad").startswith("attention (native op")


def test_op_time_profile_counts_xla_fused_kernels_as_elementwise():
    import tensorflow as tf

    from hacm_tf.ops import fused

    x = tf.random.normal([512, 256])
    f = tf.function(lambda: tf.reduce_sum(fused.gelu(x)))
    f()
    prof = profile.profile_op_times(lambda: f().numpy(), steps=2)
    kernels = {op_type: count for op_type, _, count in prof["top_ops"]}
    assert kernels.get(profile.XLA_KERNEL) == 2 and prof["categories"]["elementwise"] > 0


def test_scale_plot_is_written(tmp_path):
    from hacm_tf import viz

    rows = [dict(method="hacm", batch_size=b, window=w, tokens=w // 3 * 25, ms_per_step=10.0 * b * w,
                 share_of_peak=0.5) for b, w in ((8, 72), (16, 72), (8, 36), (8, 144))]
    viz.plot_scale(rows, str(tmp_path / "scale.png"))
    assert (tmp_path / "scale.png").stat().st_size > 1000


def test_throughput_reports_are_consistent():
    cfg = ModelConfig(method="hacm", window=12, t_patch=3, dim=16, depth=1, heads=2, decoder_dim=16,
                      decoder_depth=1, decoder_heads=2).validate()
    pre = measure.pretrain_throughput(cfg, batch_size=2, steps=2, warmup=1)
    assert pre["ms_per_step"] > 0 and pre["warmup_seconds"] > 0
    assert pre["samples_per_second"] == pytest.approx(2000 / pre["ms_per_step"], rel=0.01)
    from hacm_tf.models.encoder import token_joints

    tokens = cfg.num_patches * len(token_joints(cfg))
    assert (pre["method"], pre["batch_size"], pre["tokens"], pre["micro_batches"]) == ("hacm", 2, tokens, 1)
    fine = measure.finetune_throughput(cfg, batch_size=2, steps=2, warmup=1, num_classes=5)
    inf = measure.inference_throughput(cfg, batch_size=1, steps=2, warmup=1)
    for row in (pre, fine, inf):   # achieved FLOP/s = FLOPs per sample x samples per second (both rounded)
        rounding = 0.005 * row["samples_per_second"] + 0.06
        assert row["achieved_gflops"] == pytest.approx(row["gflops_per_sample"] * row["samples_per_second"],
                                                       abs=rounding)
    for row in (pre, fine):   # the float32 probe read once after each timed step, the share of its median
        assert row["probe_readings"] == 2 and "share_of_bf16_peak" not in row
        assert row["cpu_steal_share"] is None or 0 <= row["cpu_steal_share"] < 1
        assert row["share_of_peak"] == pytest.approx(row["achieved_gflops"] / row["matmul_peak_gflops"], abs=0.001)


def test_matmul_probe_readings_between_timed_calls():
    from hacm_tf.bench import timing

    probe = timing.MatmulProbe("bfloat16", n=128)
    with pytest.raises(ValueError, match="no readings"):
        probe.median()
    order = []
    times, _ = timing.time_calls(lambda: order.append("step"), 3, 1,
                                 between=lambda: (order.append("probe"), timing.sample_all([probe])()))
    assert order == ["step"] + ["step", "probe"] * 3 and len(times) == 3 and len(probe.readings) == 3
    probe.readings = [100.0, 300.0, 200.0]
    row = timing.shares_of_probes(50.0, [probe])
    assert row == {"probe_readings": 3, "matmul_peak_bf16_gflops": 200.0, "matmul_peak_bf16_range": [100.0, 300.0],
                   "share_of_bf16_peak": 0.25}
    assert timing.matmul_peak(n=64, repeats=2) > 0


def test_steal_meter_reads_the_hypervisors_share_from_proc_stat(tmp_path):
    from hacm_tf.bench import timing

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n")   # steal 35 of 1,000 jiffies
    meter = timing.StealMeter(str(stat))
    stat.write_text("cpu  160 0 70 900 10 0 5 55 0 0\n")              # +20 steal of +200
    assert meter.share() == 0.1
    assert timing.StealMeter(str(tmp_path / "missing")).share() is None
    stat.write_text("intr 1 2 3\n")
    assert timing.StealMeter(str(stat)).share() is None


@pytest.mark.parametrize("dim", [16, 32])    # head dimension 8 (no native op) and 16
def test_kernel_rates_cover_the_step_kernels(dim):
    from hacm_tf.ops import native

    rows = measure.kernel_rates(sequences=2, tokens=12, dim=dim, heads=2, steps=1, warmup=1)
    names = [r["kernel"] for r in rows]
    with_native = dim == 32 and native.available(16)
    assert ("attention training pass, native op" in names) == with_native
    assert len(names) == 9 + with_native and "softmax of the scores" in names
    assert "MLP matmul, weight gradient" in names and "attention training pass, XLA-fused path" in names
    assert all(r["ms"] > 0 and ("gflops" in r) != ("gb_per_second" in r) for r in rows)
    assert [("gflops" in r) for r in rows] == [True] * (6 + with_native) + [False] * 3
    assert rows[0]["shape"] == f"[24, {dim}] @ [{dim}, {4 * dim}]"


def test_matmul_bound_weights_the_kernel_rates_by_their_flops():
    from hacm_tf.bench.suites import matmul_bound

    def rows(dense, scores, weighted):
        names = ("MLP matmul, forward", "MLP matmul, input gradient", "MLP matmul, weight gradient",
                 "attention scores q k^T", "attention probs @ v")
        return [{"kernel": n, "gflops": g} for n, g in zip(names, dense + [scores, weighted])] + [
            {"kernel": "softmax of the scores", "gb_per_second": 1.0}]

    assert matmul_bound(rows([100.0] * 3, 100.0, 100.0), 0.3, False) == pytest.approx(100.0)
    assert matmul_bound(rows([100.0, 50.0, 100.0], 7.0, 7.0), 0.0, True) == pytest.approx(75.0)  # 3 / (1 + 2 + 1) * 100
    # half the FLOPs in attention at 2 score products (rate 10) and 4 weight products (rate 40) per 6
    assert matmul_bound(rows([100.0] * 3, 10.0, 40.0), 0.5, False) == pytest.approx(1 / (0.005 + 0.5 * 0.1 / 3
                                                                                          + 0.5 * 0.1 / 6 * 1))
    # a measured whole attention pass replaces the products' estimate
    with_pass = rows([100.0] * 3, 10.0, 40.0) + [{"kernel": "attention pass", "gflops": 50.0}]
    assert matmul_bound(with_pass, 0.5, True, attention_pass="attention pass") == pytest.approx(1 / (0.005 + 0.01))
    # recomputing the scores costs one score product more in the same FLOPs
    assert matmul_bound(rows([100.0] * 3, 10.0, 40.0), 0.5, True) < matmul_bound(rows([100.0] * 3, 10.0, 40.0), 0.5,
                                                                                 False)


def test_attention_flops_are_part_of_the_pretraining_count():
    cfg = ModelConfig(method="mamp", window=24, t_patch=4, dim=32, depth=2, heads=4, decoder_dim=16,
                      decoder_depth=1, decoder_heads=4, mask_ratio=0.75).validate()
    model = MaskedPretrainer(cfg.to_dict())
    tokens, visible = model.num_tokens, model.num_tokens // 4
    want = 2 * 3 * (4 * 32 * 2 * visible ** 2 + 4 * 16 * 1 * tokens ** 2)
    assert flops.attention_flops_per_sample(model) == want < flops.pretrain_flops_per_sample(model)


def test_block_training_rate_counts_the_block_flops():
    r = measure.block_training_rate(sequences=2, tokens=12, dim=16, heads=2, steps=1, warmup=1)
    assert r["shape"] == [2, 12, 16] and r["ms"] > 0
    count = 3 * 2 * (2 * 12 * (4 * 16 * 16 + 2 * 16 * 64) + 4 * 12 * 12 * 16)
    assert r["gflops"] == pytest.approx(count / (r["ms"] / 1000) / 1e9, rel=0.1, abs=0.1)


def test_torch_block_script_measures_or_says_what_it_needs():
    """scripts/torch_block.py (the official code's block) with this interpreter: a JSON line with the same
    FLOP count as block_training_rate when PyTorch is importable, otherwise a clear message and exit 1."""
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "scripts", "torch_block.py")
    r = subprocess.run([sys.executable, script, "2", "12", "16", "2"], capture_output=True, text=True)
    if importlib.util.find_spec("torch") is None:
        assert r.returncode == 1 and "needs PyTorch" in r.stderr and "--torch_python" in r.stderr
    else:
        row = json.loads(r.stdout.strip().splitlines()[-1])
        count = 3 * 2 * flops.block_flops(12, 16, 4.0)
        assert row["shape"] == [2, 12, 16] and row["gflops"] == pytest.approx(count / row["ms"] * 1e-6, rel=0.1,
                                                                              abs=0.1)


def test_paper_sizes_come_from_the_flagfile_presets(tmp_path):
    from hacm_tf.bench import presets
    from hacm_tf.config import ConfigError

    hacm, mamp = presets.paper_model_config("hacm"), presets.paper_model_config("mamp", finetune=True)
    sizes = (hacm.window, hacm.t_patch, hacm.dim, hacm.depth, hacm.decoder_depth, hacm.drop_path)
    assert sizes == (72, 3, 256, 8, 3, 0.0)
    assert (mamp.window, mamp.t_patch, mamp.drop_path) == (120, 4, 0.3)
    # a preset edited in flags/ is what the benchmark measures
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "model_mae.flags").write_text("# small\n--method=mae\n--window=40\n--t_patch=4\n"
                                                         "--dim=32\n--heads=4\n--nonorm_target\n")
    mae = presets.paper_model_config("mae", flags_dir=str(tmp_path))
    assert (mae.window, mae.dim, mae.norm_target) == (40, 32, False)
    (tmp_path / "common" / "model_mae.flags").write_text("window=40\n")
    with pytest.raises(ConfigError, match="line 1: expected --name=value"):
        presets.paper_model_config("mae", flags_dir=str(tmp_path))


def test_suite_jobs_and_one_measurement_in_its_own_process():
    from hacm_tf.bench import suites

    specs = suites.jobs("pretrain", ["hacm", "mamp"], xla="both")
    assert [(s["method"], s["jit_compile"], s["batch_size"]) for s in specs] == [
        ("hacm", False, 32), ("hacm", True, 32), ("mamp", False, 32), ("mamp", True, 32)]
    scale = suites.jobs("scale", ["hacm"], scale_batches=(8, 16), scale_windows=(72, 36))
    assert [(s["batch_size"], s["window"]) for s in scale] == [(8, None), (16, None), (8, 72), (8, 36)]
    assert len(suites.jobs("inference", ["hacm"], batch_sizes=(1, 64))) == 8
    with pytest.raises(ValueError, match="unknown inference runtimes"):
        suites.jobs("inference", ["hacm"], runtimes=("onnx",))
    with pytest.raises(ValueError, match="unknown measured suite"):
        suites.jobs("speed", ["hacm"])
    seen = []

    def fake_run(spec):   # the suite's bookkeeping without measuring
        seen.append(spec)
        return {"method": spec["method"], "batch_size": spec["batch_size"], "achieved_gflops": 1.0}

    from hacm_tf.config import ComputeConfig

    result = suites.measured_suite("finetune", suites.jobs("finetune", ["hacm"], batch_size=4),
                                   ComputeConfig(remat="block"), run=fake_run)
    assert seen[0]["remat"] == "block" and result["rows"][0]["share_of_peak"] > 0
    own = suites.measured_suite("finetune", suites.jobs("finetune", ["hacm"], batch_size=4), run=lambda spec: {
        **fake_run(spec), "matmul_peak_gflops": 4.0, "share_of_peak": 0.25})   # sampled between its steps: kept
    assert (own["rows"][0]["matmul_peak_gflops"], own["rows"][0]["share_of_peak"]) == (4.0, 0.25)
    assert "| hacm | 4 |" in result["markdown"]


def test_benchmark_script_runs_a_suite_each_configuration_in_its_own_process(tmp_path):
    """scripts/benchmark.py --suite=inference at the paper's HA-CM size, batch 1, one timed step: a row per
    runtime asked for (here the two SavedModel ones), each from its own process, with the machine's
    matmul peak beside it."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "inference.json"
    r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "benchmark.py"), "--suite=inference",
                        "--methods=hacm", "--batch_sizes=1", "--steps=1", "--runtimes=saved_model,saved_model+xla",
                        f"--output={out}"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.load(open(out))
    assert [row["runtime"] for row in result["rows"]] == ["saved_model", "saved_model+xla"]
    assert all(row["samples_per_second"] > 0 and row["share_of_peak"] > 0 for row in result["rows"])
    assert all(0 < row["latency_ms_median"] <= row["latency_ms_p95"] for row in result["rows"])
    assert result["matmul_peak_gflops"] > 0 and "| hacm | 1 |" in result["markdown"]


def test_serial_ops_setting_runs_one_op_at_a_time_in_the_measuring_process():
    code = ("from hacm_tf.bench import suites; suites.apply_process_settings({'serial_ops': True}); "
            "import tensorflow as tf; tf.constant(1.0) + 1.0; "
            "print(tf.config.threading.get_inter_op_parallelism_threads())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "1"
