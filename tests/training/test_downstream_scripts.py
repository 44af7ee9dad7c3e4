"""scripts/linprobe.py and scripts/finetune.py end to end: linear probe, fine-tune, semi-supervised,
transfer with a different number of temporal patches, from scratch; compute precision per stage."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run(script, *args, ok=True):
    r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", script), *args], capture_output=True,
                       text=True, timeout=600, cwd=REPO, env=ENV)
    if ok:
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])
    return r


@pytest.fixture(scope="module")
def pretrained(synthetic_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("pre")
    run("pretrain.py", "--flagfile=flags/smoke/pretrain_hacm.flags", f"--data_dir={synthetic_dir}",
        f"--workdir={work}", "--precision=mixed_bfloat16")
    assert json.load(open(work / "config.json"))["compute"]["precision"] == "mixed_bfloat16"
    return str(work)


def check_final(final, protocol, samples):
    assert final["protocol"] == protocol and final["train_samples"] == samples
    for k in ("last_epoch_top1", "best_epoch_top1", "last_epoch_top5", "best_epoch_top5"):
        assert 0.0 <= final[k] <= 1.0
    assert final["best_epoch_top1"] >= final["last_epoch_top1"]


def test_linear_probe(pretrained, synthetic_dir, tmp_path):
    final = run("linprobe.py", "--flagfile=flags/smoke/linprobe.flags", f"--pretrained={pretrained}",
                f"--data_dir={synthetic_dir}", f"--workdir={tmp_path}")
    check_final(final, "linear", 54)
    cfg = json.load(open(tmp_path / "config.json"))
    assert cfg["model"]["window"] == 24 and cfg["pretrained"] == pretrained
    assert cfg["compute"]["precision"] == "float32"   # a compute setting: not inherited from the pretraining run


def test_semi_supervised_fine_tune(pretrained, synthetic_dir, tmp_path):
    final = run("finetune.py", "--flagfile=flags/smoke/finetune.flags", f"--pretrained={pretrained}",
                f"--data_dir={synthetic_dir}", f"--workdir={tmp_path}", "--semi_ratio=0.5", "--semi_stratified",
                "--precision=mixed_bfloat16")
    check_final(final, "finetune", 24)   # 6 classes x round(9 x 0.5)
    assert json.load(open(tmp_path / "config.json"))["compute"]["precision"] == "mixed_bfloat16"
    from hacm_tf.rundir import load_classifier

    clf, _ = load_classifier(str(tmp_path))   # export / evaluate restore it in float32
    assert clf.encoder.blocks[0].fc1.compute_dtype == "float32"


def test_transfer_with_a_longer_window(pretrained, synthetic_dir, tmp_path):
    final = run("finetune.py", "--flagfile=flags/smoke/finetune.flags", f"--pretrained={pretrained}",
                f"--data_dir={synthetic_dir}", f"--workdir={tmp_path}", "--window=36")
    check_final(final, "finetune", 54)
    assert json.load(open(tmp_path / "config.json"))["model"]["window"] == 36


def test_from_scratch_and_bad_pretrained(pretrained, synthetic_dir, tmp_path):
    final = run("finetune.py", "--flagfile=flags/smoke/pretrain_hacm.flags", "--flagfile=flags/smoke/finetune.flags",
                f"--data_dir={synthetic_dir}", f"--workdir={tmp_path / 'scratch'}")
    check_final(final, "finetune", 54)
    r = run("linprobe.py", "--flagfile=flags/smoke/linprobe.flags", f"--pretrained={tmp_path / 'scratch'}",
            f"--data_dir={synthetic_dir}", f"--workdir={tmp_path / 'bad'}", ok=False)
    assert r.returncode == 1 and "not a pretraining run" in r.stderr
    r = run("linprobe.py", "--flagfile=flags/smoke/linprobe.flags", f"--pretrained={pretrained}",
            f"--data_dir={synthetic_dir}", f"--workdir={tmp_path / 'bad2'}", "--dim=64", ok=False)
    assert r.returncode == 1 and "dim: 32 vs 64" in r.stderr
