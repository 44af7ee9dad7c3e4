"""Faults: runs killed with SIGKILL at random moments (several times, checkpoints every step so kills
land during checkpoint writes too) end with the uninterrupted run's weights; a dataset build killed
mid-way and rerun is complete and verified, with no partial shards left."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def final_of(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def kill_repeatedly(cmd, kills, rng, min_delay=4.0, max_delay=10.0):
    """Starts ``cmd`` and SIGKILLs it ``kills`` times at random moments; returns how many landed."""
    landed = 0
    for _ in range(kills):
        p = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(min_delay, max_delay))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            landed += 1
        p.wait()
    return landed


@pytest.mark.slow
@pytest.mark.parametrize("script,preset,pretrained", [("pretrain.py", "pretrain_mae", False),
                                                      ("finetune.py", "finetune", True)])
def test_random_kills_then_rerun_give_the_uninterrupted_weights(synthetic_dir, tmp_path, script, preset, pretrained):
    extra = ["--epochs=6", "--steps_per_epoch=4", "--checkpoint_every=1", "--keep_checkpoints=2", "--seed=1"]
    if pretrained:
        pre = tmp_path / "pre"
        final_of(subprocess.run([sys.executable, os.path.join(REPO, "scripts", "pretrain.py"),
                                 "--flagfile=flags/smoke/pretrain_mae.flags", f"--data_dir={synthetic_dir}",
                                 f"--workdir={pre}"], capture_output=True, text=True, cwd=REPO, env=ENV))
        extra.append(f"--pretrained={pre}")

    def cmd(work):
        return [sys.executable, os.path.join(REPO, "scripts", script), f"--flagfile=flags/smoke/{preset}.flags",
                f"--data_dir={synthetic_dir}", f"--workdir={work}", *extra]

    straight = final_of(subprocess.run(cmd(tmp_path / "a"), capture_output=True, text=True, cwd=REPO, env=ENV))
    landed = kill_repeatedly(cmd(tmp_path / "b"), 3, random.Random(7))
    resumed = final_of(subprocess.run(cmd(tmp_path / "b"), capture_output=True, text=True, cwd=REPO, env=ENV))
    assert landed >= 1
    assert resumed["steps"] == straight["steps"] == 24
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    if pretrained:
        assert resumed["last_epoch_top1"] == straight["last_epoch_top1"]


@pytest.mark.slow
def test_killed_dataset_build_is_completed_by_a_rerun(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, os.path.join(REPO, "scripts", "build_tfrecords.py"), "--source=synthetic",
           f"--output_dir={out}", "--synthetic_subjects=6", "--num_workers=1"]
    p = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:      # kill once the staging folder exists
        if out.exists() and any(n.startswith(".staging-") for n in os.listdir(out)):
            break
        time.sleep(0.02)
    killed = p.poll() is None
    p.send_signal(signal.SIGKILL) if killed else None
    p.wait()
    assert killed
    assert not (out / "dataset_info.json").exists()          # an incomplete build is not a dataset
    r = subprocess.run(cmd + ["--verify"], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["ok"]
    assert not [n for n in os.listdir(out) if n.startswith(".")]
