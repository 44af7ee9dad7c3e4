"""scripts/pretrain.py end to end: smoke presets, strategies, SIGKILL resume, multi-worker on 127.0.0.1."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "pretrain.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def cmd(preset, data_dir, workdir, *extra):
    return [sys.executable, SCRIPT, f"--flagfile=flags/smoke/{preset}.flags", f"--data_dir={data_dir}",
            f"--workdir={workdir}", *extra]


def run(*args, env=None):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=600, cwd=REPO, env=env or ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def event_tags(workdir):
    tags = set()
    for f in os.listdir(os.path.join(workdir, "tensorboard")):
        for e in tf.compat.v1.train.summary_iterator(os.path.join(workdir, "tensorboard", f)):
            tags.update(v.tag for v in e.summary.value)
    return tags


@pytest.mark.parametrize("preset", ["pretrain_hacm", "pretrain_mamp", "pretrain_mae"])
def test_smoke_presets(synthetic_dir, tmp_path, preset):
    final = run(*cmd(preset, synthetic_dir, tmp_path))
    assert final["steps"] == 6
    tags = event_tags(str(tmp_path))
    assert {"loss", "loss_rec", "learning_rate", "samples_per_second", "mask_ratio"} <= tags
    assert any(t.startswith("masks") for t in tags)
    assert (tmp_path / "flags.txt").exists() and (tmp_path / "config.json").exists()
    # a second run of the same command finds the run complete and does nothing more
    again = run(*cmd(preset, synthetic_dir, tmp_path))
    assert again["weights_sha256"] == final["weights_sha256"]


def test_mirrored_two_cpus_with_xla(synthetic_dir, tmp_path):
    final = run(*cmd("pretrain_hacm", synthetic_dir, tmp_path, "--strategy=mirrored", "--devices=2",
                     "--jit_compile"))
    assert final["steps"] == 6


def test_sigkill_and_rerun_gives_the_uninterrupted_result(synthetic_dir, tmp_path):
    extra = ["--epochs=4", "--steps_per_epoch=6", "--checkpoint_every=2", "--seed=3"]
    straight = run(*cmd("pretrain_mamp", synthetic_dir, tmp_path / "a", *extra))
    workdir = tmp_path / "b"
    proc = subprocess.Popen(cmd("pretrain_mamp", synthetic_dir, workdir, *extra), cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    ckpts = workdir / "checkpoints"
    while time.time() < deadline:     # kill as soon as a mid-run checkpoint exists
        if ckpts.exists() and any(f.startswith("ckpt-") and f.endswith(".index") and f not in ("ckpt-2.index",)
                                  for f in os.listdir(ckpts)):
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL) if killed else None
    proc.wait()
    resumed = run(*cmd("pretrain_mamp", synthetic_dir, workdir, *extra))
    assert resumed["steps"] == 24
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    assert killed, "the run finished before it could be killed"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes(synthetic_dir, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(cmd("pretrain_mae", synthetic_dir, tmp_path, "--strategy=multi_worker",
                                          "--batch_size=8"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    finals = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert finals[0]["steps"] == finals[1]["steps"] == 6
    assert finals[0]["weights_sha256"] == finals[1]["weights_sha256"]      # all workers agree
    assert os.listdir(tmp_path / "checkpoints") and not os.listdir(tmp_path / ".scratch")


def launch_workers(n, synthetic_dir, workdir, *extra):
    ports = [free_port() for _ in range(n)]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(n):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(cmd("pretrain_mae", synthetic_dir, workdir, "--strategy=multi_worker",
                                          "--batch_size=12", *extra), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.slow
def test_multi_worker_three_processes(synthetic_dir, tmp_path):
    procs = launch_workers(3, synthetic_dir, tmp_path)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    finals = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert len({f["weights_sha256"] for f in finals}) == 1 and finals[0]["steps"] == 6


@pytest.mark.slow
def test_multi_worker_restart_after_a_killed_worker(synthetic_dir, tmp_path):
    extra = ["--epochs=4", "--steps_per_epoch=4", "--checkpoint_every=2"]
    procs = launch_workers(2, synthetic_dir, tmp_path, *extra)
    ckpts = tmp_path / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpts.exists() and any(f.endswith(".index") for f in os.listdir(ckpts))):
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)                       # a worker dies mid-run
    try:
        procs[0].communicate(timeout=180)                      # its peer stops by itself (or is stopped here)
    except subprocess.TimeoutExpired:
        procs[0].kill()
    procs[1].communicate()
    procs = launch_workers(2, synthetic_dir, tmp_path, *extra)  # the same command again on both
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    finals = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert finals[0]["steps"] == finals[1]["steps"] == 16
    assert finals[0]["weights_sha256"] == finals[1]["weights_sha256"]
