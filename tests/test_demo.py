import json
import os
import subprocess
import sys

from hacm_tf.console import STARTUP_CHATTER
from tests.conftest import REPO
from tests.test_console import ABSL_LINE


def test_quick_demo_runs_end_to_end_and_reuses_its_outputs(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--quick", f"--workdir={tmp_path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| HA-CM pretrained encoder" in r.stdout and "randomly initialised encoder" in r.stdout
    # a person's console: one line per epoch and stage, no TensorFlow log lines
    lines = r.stderr.strip().splitlines()
    assert not [line for line in lines if ABSL_LINE.match(line) or any(c in line for c in STARTUP_CHATTER)], lines
    assert "pretrain hacm epoch 3/3  loss " in r.stderr and "linear epoch 3/3  loss " in r.stderr
    assert len(lines) <= 20, lines
    # raw files -> labels through the SavedModel: three test-subject files, each with its top-3
    assert "[6/7] classifying three raw .skeleton files" in r.stdout
    assert "3 clips answered, 0 files unreadable" in r.stdout
    s = json.load(open(tmp_path / "summary.json"))
    assert s["dataset"]["train"] == 108 and s["dataset"]["test"] == 36
    assert 0 <= s["saved_model_test"]["top1"] <= 1
    assert len(s["predicted_files"]) == 3 and all(p["label"] for p in s["predicted_files"])
    # the SavedModel answers exactly as the HA-CM linear probe's own last evaluation
    assert s["saved_model_test"]["top1"] == s["linprobe_hacm"]["last_epoch_top1"]
    for png in ("skeletons", "pretrain_loss", "hacm_masks", "confusion", "per_class", "linprobe_hacm_curves"):
        assert (tmp_path / "plots" / f"{png}.png").stat().st_size > 1000
    assert os.listdir(tmp_path / "pretrain_hacm" / "tensorboard")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert again.returncode == 0 and "TFRecords already built" in again.stdout
    assert json.load(open(tmp_path / "summary.json"))["saved_model_test"] == s["saved_model_test"]
    # figures from the demo's runs
    for what, work in (("masks", "pretrain_hacm"), ("embeddings", "pretrain_hacm"), ("embeddings", "linprobe_hacm"),
                       ("curves", "linprobe_hacm"), ("skeletons", None)):
        png = tmp_path / f"{what}_{work}.png"
        args = [sys.executable, os.path.join(REPO, "scripts", "visualize.py"), f"--what={what}",
                f"--data_dir={tmp_path / 'data'}", f"--output={png}", "--max_rows=1"]
        if work:
            args.append(f"--workdir={tmp_path / work}")
        r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert png.stat().st_size > 1000
