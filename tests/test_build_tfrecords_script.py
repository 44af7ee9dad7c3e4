import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_path

SCRIPT = os.path.join(REPO, "scripts", "build_tfrecords.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_real_ntu_samples_build_and_verify(tmp_path):
    samples = shared_path("ntu", "samples")
    names = shared_path("ntu", "class_names_ntu60.txt")
    missing = shared_path("ntu", "statistics", "ntu60", "samples_with_missing_skeletons.txt")
    r = run("--source=ntu60", f"--input_dir={samples}", f"--output_dir={tmp_path}", "--protocol=xview",
            f"--class_names_file={names}", f"--missing_list={missing}", "--verify")
    assert r.returncode == 0, r.stderr
    built, verified = [json.loads(line) for line in r.stdout.strip().splitlines()[-2:]]
    assert built["splits"] == {"train": 1, "test": 4}          # only S017C003... is camera 3
    assert verified["ok"] and verified["splits"] == {"train": 1, "test": 4}
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert info["class_names"][49] == "punching/slapping other person"
    assert "--source=ntu60" in info["command"]


def test_bad_input_exits_with_one_line_reason(tmp_path):
    bad = tmp_path / "raw"
    bad.mkdir()
    (bad / "S001C001P001R001A001.skeleton").write_text("2\n1\n")
    r = run("--source=ntu60", f"--input_dir={bad}", f"--output_dir={tmp_path / 'out'}")
    assert r.returncode == 1
    assert "S001C001P001R001A001.skeleton, line 3: unexpected end of file" in r.stderr
    assert not os.path.exists(tmp_path / "out" / "dataset_info.json")
    r = run("--source=ntu60", f"--input_dir={bad}", f"--output_dir={tmp_path / 'out'}", "--on_error=skip", "--verify")
    assert r.returncode == 0, r.stderr
    info = json.load(open(tmp_path / "out" / "dataset_info.json"))
    assert info["splits"] == {"train": 0, "test": 0} and "line 3" in info["skipped"][0]["reason"]


def test_verify_only_reports_a_corrupt_shard(tmp_path):
    r = run("--source=synthetic", f"--output_dir={tmp_path}", "--synthetic_subjects=2", "--synthetic_classes=2")
    assert r.returncode == 0, r.stderr
    shard = sorted(f for f in os.listdir(tmp_path) if f.startswith("train"))[0]
    data = bytearray((tmp_path / shard).read_bytes())
    data[100] ^= 0xFF
    (tmp_path / shard).write_bytes(bytes(data))
    r = run("--verify", f"--output_dir={tmp_path}")
    assert r.returncode == 1 and shard in r.stderr and "sha256" in r.stderr


@pytest.mark.parametrize("args,message", [
    (["--source=ntu60", "--output_dir=x"], "--input_dir is required"),
    (["--output_dir=x"], "give --source"),
    (["--source=ucla", "--input_dir=/nonexistent", "--output_dir=x"], "nonexistent"),
])
def test_usage_errors(args, message):
    r = run(*args)
    assert r.returncode == 1 and message in r.stderr
