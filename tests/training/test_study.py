"""Accuracy study: every (variant, seed, protocol) runs once, the table has mean +- std, reruns reuse runs."""

import dataclasses
import json

import numpy as np
import pytest

from hacm_tf import study
from hacm_tf.config import DataConfig
from hacm_tf.study.records import Progress


def test_study_runs_each_variant_and_seed_and_resumes(synthetic_dir, tmp_path):
    cfg = study.StudyConfig(layout="ntu25", num_persons=2, window=12, dim=16, depth=1, heads=2, decoder_depth=1,
                            batch_size=8, pretrain_epochs=1, linear_epochs=2, finetune_epochs=1, semi_epochs=1,
                            seeds=2, eval_every=2)
    logs = []
    result = study.run_study(str(tmp_path), synthetic_dir, cfg, ["hacm_no_cross_contrast", "none"], ["linear"],
                             log=logs.append, baselines=False)
    assert logs[0] == "study: 6 runs (0 already complete), 1 worker(s)"
    assert sum(m.startswith("start pretrain") for m in logs) == 2
    assert sum(m.startswith("start linear") for m in logs) == 4
    done = [m for m in logs if " done " in m]
    assert len(done) == 6 and "(6/6 runs, about 0 min left)" in done[-1] and "(1/6 runs" in done[0]
    rows = result["rows"]
    assert [(r["variant"], r["seed"]) for r in rows] == [("hacm_no_cross_contrast", 0), ("hacm_no_cross_contrast", 1),
                                                         ("none", 0), ("none", 1)]
    acc = np.array([r["last_top1"] for r in rows[:2]]) * 100
    assert f"| hacm_no_cross_contrast | {acc.mean():.1f} ± {acc.std():.1f}" in result["table"]
    saved = json.load(open(tmp_path / "results.json"))
    assert saved["rows"] == rows and saved["study"]["eval_every"] == 2
    logs.clear()
    again = study.run_study(str(tmp_path), synthetic_dir, cfg, ["hacm_no_cross_contrast", "none"], ["linear"],
                            log=logs.append, baselines=False)
    assert logs == ["study: 6 runs (6 already complete), 1 worker(s)"] and again["rows"] == rows


def test_synthetic_preset_and_variants():
    cfg = study.StudyConfig.synthetic()
    assert (cfg.layout, cfg.num_persons, cfg.window % 3, cfg.seeds) == ("ntu25", 2, 0, 3)
    model = study.model_config(cfg, study.VARIANTS["hacm_spatial_only"])
    assert model.method == "hacm" and not model.temporal_criterion and model.t_patch == 3
    assert study.model_config(cfg, study.VARIANTS["mamp"]).t_patch == 4
    assert study.compute_config(cfg).precision == "float32"
    mixed = dataclasses.replace(cfg, precision="mixed_bfloat16")
    assert study.compute_config(mixed).precision == "mixed_bfloat16"


def test_protocol_configs_semi_schedule():
    cfg = study.StudyConfig.synthetic()
    model = study.model_config(cfg, study.VARIANTS["hacm_corrected"])
    data = DataConfig(window=cfg.window, batch_size=cfg.batch_size)
    _, _, lin_train, lin_proto = study.protocol_configs(cfg, "linear", model, data)
    assert (lin_train.epochs, lin_train.lr, lin_proto.protocol, lin_proto.eval_every) == (6, 0.1, "linear", 6)
    semi_model, semi_data, semi_train, semi_proto = study.protocol_configs(cfg, "semi10", model, data)
    assert (semi_data.semi_ratio, semi_model.drop_path, semi_proto.protocol) == (0.1, 0.1, "finetune")
    # 60 labelled clips repeat within 10-step epochs: 100 steps, 10 of warm-up, evaluated after 50 and 100
    assert (semi_train.epochs, semi_train.steps_per_epoch, semi_train.warmup_epochs) == (10, 10, 1)
    assert semi_proto.eval_every == 5
    _, ft_data, ft_train, ft_proto = study.protocol_configs(cfg, "finetune", model, data)
    assert ft_data.semi_ratio == data.semi_ratio and ft_proto.eval_every == 6 and ft_train.steps_per_epoch == 0
    paper = study.StudyConfig.paper()
    _, _, paper_train, paper_proto = study.protocol_configs(paper, "semi10", model, data)
    assert (paper_train.epochs, paper_train.steps_per_epoch, paper_proto.eval_every) == (100, 0, 1)


def test_parallel_workers_give_the_same_rows_as_one_process(synthetic_dir, tmp_path):
    cfg = study.StudyConfig(layout="ntu25", num_persons=2, window=12, dim=16, depth=1, heads=2, decoder_depth=1,
                            batch_size=8, pretrain_epochs=1, linear_epochs=1, finetune_epochs=1, semi_epochs=2,
                            semi_steps_per_epoch=2, semi_eval_every=1, seeds=2)
    logs = []
    result = study.run_study(str(tmp_path), synthetic_dir, cfg, ["mae", "none"], ["linear", "semi10"],
                             log=logs.append, workers=2, baselines=False)
    assert [(r["variant"], r["seed"], r["protocol"]) for r in result["rows"]] == [
        (v, s, p) for v in ("mae", "none") for s in (0, 1) for p in ("linear", "semi10")]
    # worker messages reach the main process as they happen: a start and a done line per run
    assert sum(m.startswith("start pretrain mae") for m in logs) == 2 and len(logs) == 1 + 2 * 10
    assert "(10/10 runs" in logs[-1]
    semi = json.load(open(tmp_path / "mae" / "seed1" / "semi10" / "metrics.json"))
    assert semi["final"]["steps"] == 4 and len([h for h in semi["history"] if "eval_top1" in h]) == 2
    assert json.load(open(tmp_path / "results.json"))["workers"] == 2
    # the same runs, resumed in one process: nothing is re-run, identical rows
    logs.clear()
    again = study.run_study(str(tmp_path), synthetic_dir, cfg, ["mae", "none"], ["linear", "semi10"],
                            log=logs.append, baselines=False)
    assert len(logs) == 1 and again["rows"] == result["rows"]
    with pytest.raises(ValueError, match="workers"):
        study.run_study(str(tmp_path), synthetic_dir, cfg, ["none"], ["linear"], workers=0)


def test_knn_protocol_and_raw_baseline_rows(synthetic_dir, tmp_path):
    cfg = study.StudyConfig(layout="ntu25", num_persons=2, window=12, dim=16, depth=1, heads=2, decoder_depth=1,
                            batch_size=8, pretrain_epochs=2, seeds=1, monitor_every=1)
    result = study.run_study(str(tmp_path), synthetic_dir, cfg, ["mamp", "none"], ["knn"], log=lambda m: None)
    got = {(r["variant"], r["protocol"]): r["last_top1"] for r in result["rows"]}
    assert set(got) == {(v, p) for v in ("mamp", "none", study.RAW) for p in ("logreg", "knn20", "knn1")}
    knn = json.load(open(tmp_path / "mamp" / "seed0" / "knn" / "result.json"))
    assert got[("mamp", "knn20")] == knn["knn20_top1"] and "effective_rank" in knn
    assert knn["encoder"].endswith("pretrain")
    assert json.load(open(tmp_path / "none" / "seed0" / "knn" / "result.json"))["encoder"] == "random init (seed 0)"
    raw = json.load(open(tmp_path / "raw" / "result.json"))
    assert got[(study.RAW, "logreg")] == raw["logreg_top1"] and raw["window"] == 12
    # the pretraining monitor ran on the study's data every epoch
    history = json.load(open(tmp_path / "mamp" / "seed0" / "pretrain" / "metrics.json"))["history"]
    assert all("eval_knn20_top1" in h for h in history)
    assert result["learning_curves"]["mamp"]["epochs"] == [1, 2] and (tmp_path / "learning_curves.png").exists()
    lines = result["table"].splitlines()
    assert lines[0] == "| pretraining | logistic regression | kNN-20 | kNN-1 |"
    # the report of a finished study is its table; with a run missing, the rest is still reported
    report = study.report_study(str(tmp_path), synthetic_dir, cfg, ["mamp", "none"], ["knn"])
    assert report["table"] == result["table"] and report["complete"] == report["runs"] == 3
    import shutil

    shutil.rmtree(tmp_path / "none" / "seed0" / "knn")
    partial = study.report_study(str(tmp_path), synthetic_dir, cfg, ["mamp", "none"], ["knn"])
    assert partial["complete"] == 2 and "| none | – | – | – |" in partial["table"]
    assert lines[-1].startswith(f"| {study.RAW} | {raw['logreg_top1'] * 100:.1f} |")


def test_progress_estimates_time_left_from_measured_rates(tmp_path):
    plan = [{"variant": v, "seed": 0, "stage": stage, "epochs": epochs, "done": False,
             "workdir": str(tmp_path / v / stage)}
            for v in ("a", "b") for stage, epochs in (("pretrain", 10), ("linear", 5))]
    logs = []
    progress = Progress(plan, workers=2, log=logs.append)
    assert progress.seconds_left() is None
    progress.finished("a", 0, "pretrain", 100.0)          # 10 s per pretraining epoch
    assert progress.seconds_left() == pytest.approx((10 * 10 + 2 * 5 * 10) / 2)   # linear: pretraining's rate
    progress.finished("a", 0, "linear", 10.0)             # 2 s per linear epoch
    assert progress.seconds_left() == pytest.approx((10 * 10 + 5 * 2) / 2)
    assert "(2/4 runs, about 1 min left)" in logs[-1]
    # a running pretraining: 4 of its 10 epochs written, at 6 s each
    (tmp_path / "b" / "pretrain").mkdir(parents=True)
    history = [{"epoch": e, "seconds": 6.0} for e in range(4)]
    (tmp_path / "b" / "pretrain" / "metrics.json").write_text(json.dumps({"history": history}))
    assert progress.seconds_left() == pytest.approx((6 * 8 + 5 * 2) / 2)   # 6 epochs left at the mean of 10 and 6 s
    progress.heartbeat()
    assert "2/4 runs done; in progress: pretrain b seed 0 4/10" in logs[-1] and "min left" in logs[-1]


def _dry_run(script, flagfile, tmp_path, *extra):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run([sys.executable, os.path.join("scripts", script), f"--flagfile=flags/ucla_xview/{flagfile}",
                        f"--workdir={tmp_path}", "--dry_run", *extra], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_converged_flagfiles_are_the_converged_study(tmp_path):
    """The stage-by-stage flagfiles and scripts/study.py --preset=converged run the same recipe."""
    cfg = dataclasses.replace(study.StudyConfig.converged(), layout="kinect_v1_20", num_persons=1)
    assert study.CONVERGED_VARIANTS == ("hacm_corrected", "mamp", "mae", "none")
    data = DataConfig(window=cfg.window, batch_size=cfg.batch_size, min_crop_frames=min(64, cfg.window))
    for variant, method in (("hacm_corrected", "hacm"), ("mamp", "mamp"), ("mae", "mae")):
        got = _dry_run("pretrain.py", f"pretrain_{method}_converged.flags", tmp_path, "--data_dir=elsewhere")
        model = study.model_config(cfg, study.VARIANTS[variant])
        assert got["model"] == model.to_dict() and got["data"] == json.loads(json.dumps(data.to_dict()))
        assert got["train"] == study.pretrain_config(cfg).to_dict()
        # --monitor reads the labels of whatever --data_dir is given
        assert got["monitor"] == {"monitor_data_dir": "elsewhere", "monitor_every": cfg.monitor_every,
                                  "monitor_batch_size": 64}
    model = study.model_config(cfg, None)
    for protocol, flagfile in (("linear", "linprobe_converged.flags"), ("finetune", "scratch_converged.flags"),
                               ("semi10", "semi10_converged.flags")):
        script = "linprobe.py" if protocol == "linear" else "finetune.py"
        extra = () if flagfile.startswith("scratch") else tuple(f"--{k}={v}" for k, v in (
            ("method", "hacm"), ("layout", "kinect_v1_20"), ("num_persons", 1), ("window", 48), ("t_patch", 3),
            ("dim", 64), ("depth", 3), ("heads", 4)))                   # what --pretrained would give
        got = _dry_run(script, flagfile, tmp_path, *extra)
        run_model, run_data, train, proto = study.protocol_configs(cfg, protocol, model, data)
        keys = ("epochs", "steps_per_epoch", "lr", "min_lr", "warmup_epochs", "weight_decay", "beta_1", "beta_2")
        assert {k: got["train"][k] for k in keys} == {k: train.to_dict()[k] for k in keys}, protocol
        assert got["protocol"]["eval_every"] == proto.eval_every, protocol
        assert got["data"]["semi_ratio"] == run_data.semi_ratio and got["data"]["window"] == run_data.window
        if protocol != "linear":
            assert got["model"]["drop_path"] == run_model.drop_path
    finetune = _dry_run("finetune.py", "finetune_converged.flags", tmp_path, "--method=hacm", "--layout=kinect_v1_20",
                        "--num_persons=1", "--window=48", "--t_patch=3", "--dim=64", "--depth=3", "--heads=4")
    assert finetune["train"] == _dry_run("finetune.py", "scratch_converged.flags", tmp_path)["train"]


def test_converged_preset_dry_run(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run([sys.executable, os.path.join("scripts", "study.py"), "--dataset=ucla", "--preset=converged",
                        f"--workdir={tmp_path}", "--dry_run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    plan = json.loads(r.stdout.strip().splitlines()[-1])
    # 4 variants x 2 seeds x 4 protocols + 3 pretrained variants x 2 seeds, nothing run, no data built
    assert plan["variants"] == list(study.CONVERGED_VARIANTS) and plan["runs"] == 38 and plan["complete"] == 0
    assert plan["protocols"] == ["knn", "linear", "finetune", "semi10"] and plan["workers"] >= 1
    assert plan["study"]["pretrain_epochs"] == 200 and plan["study"]["monitor_every"] == 25
    assert not os.path.exists(tmp_path / "data")


def _children(pid):
    import os

    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _running(pid):
    """Alive and not a zombie (an exited orphan waits for its new parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_stop_when_the_study_process_is_killed(synthetic_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    code = ("from hacm_tf import study; cfg = study.StudyConfig(layout='ntu25', num_persons=2, window=12, dim=16, "
            "depth=1, heads=2, decoder_depth=1, batch_size=8, pretrain_epochs=500, seeds=2); "
            f"study.run_study({str(tmp_path)!r}, {synthetic_dir!r}, cfg, ['mae'], ['linear'], workers=2)")
    main = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "mae" / "seed1" / "pretrain" / "metrics.json").exists() and time.time() < deadline:
            time.sleep(0.5)                       # both workers are training
        workers = [p for p in _children(main.pid) if "spawn_main" in open(f"/proc/{p}/cmdline").read()]
        assert len(workers) >= 2
        main.send_signal(signal.SIGKILL)
        main.wait()
        deadline = time.time() + 30
        while [p for p in workers if _running(p)] and time.time() < deadline:
            time.sleep(0.5)
        assert not [p for p in workers if _running(p)], "orphaned study workers"
    finally:
        if main.poll() is None:
            main.kill()


def test_configure_presets_and_overrides():
    info = {"joint_layout": "kinect_v1_20", "num_persons": 1}
    cfg, variants, protocols = study.configure("converged", "ucla", info)
    assert (cfg.pretrain_epochs, cfg.seeds, variants, protocols) == (200, 2, study.CONVERGED_VARIANTS,
                                                                    study.STUDY_PROTOCOLS)
    cfg, variants, protocols = study.configure("cpu", "synthetic", {"joint_layout": "ntu25", "num_persons": 2},
                                               seeds=1, downstream_epochs=3, precision="mixed_bfloat16",
                                               variants=["mamp"])
    assert (cfg.layout, cfg.seeds, cfg.linear_epochs, cfg.semi_epochs, cfg.precision) == (
        "ntu25", 1, 3, 3, "mixed_bfloat16")
    assert variants == ("mamp",) and protocols == ("knn", "linear", "semi10")
    with pytest.raises(ValueError, match="unknown preset"):
        study.configure("fast", "ucla", info)


def test_nw_ucla_study_data_needs_its_release_folder(tmp_path):
    with pytest.raises(ValueError, match="--data_root"):
        study.prepare_data("ucla", str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()
