"""Every flagfile preset parses and validates with the script its header names (--dry_run)."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = sorted(p for p in glob.glob(os.path.join(REPO, "flags", "*", "*.flags")) if "/common/" not in p)


def header_script(path):
    own = re.escape(os.path.relpath(path, REPO))
    m = re.search(rf"python (scripts/\w+\.py) --flagfile={own}", open(path).read())
    assert m, f"{path}: the header names no command"
    return m.group(1)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "flags")))
def test_preset_validates_with_its_script(preset, tmp_path):
    script = header_script(preset)
    r = subprocess.run([sys.executable, script, f"--flagfile={os.path.relpath(preset, REPO)}",
                        f"--workdir={tmp_path}", "--dry_run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads(r.stdout.strip().splitlines()[-1])
    model, data = cfg["model"], cfg["data"]
    assert model["window"] % model["t_patch"] == 0 and data["window"] == model["window"]
    if "protocol" in cfg:
        assert cfg["protocol"]["protocol"] == ("linear" if "linprobe" in script else "finetune")
