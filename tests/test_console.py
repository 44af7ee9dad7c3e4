"""What the terminal shows: concise lines, TensorFlow's chatter silenced unless --verbosity asks for it."""

import os
import re
import subprocess
import sys

from hacm_tf import console
from tests.conftest import REPO

ABSL_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d")       # an absl / TensorFlow log line

SCRIPT = '''
from absl import flags
from hacm_tf import cli

def main(argv):
    import tensorflow as tf
    ckpt = tf.train.Checkpoint(v=tf.Variable(1.0))
    ckpt.save(flags.FLAGS.out)
    from hacm_tf import console
    console.say("saved")

flags.DEFINE_string("out", None, "")
cli.run(main)
'''


def test_figures_are_short():
    assert console.figures({"loss": 0.123456, "top1": 0.5, "grad_norm": 23.901573, "step": 11}) == \
        "loss 0.1235  top1 0.5000  grad_norm 23.90  step 11"


def test_say_is_silenced_inside_the_block(capsys):
    console.say("one")
    with console.silenced():
        console.say("two")
    console.say("three")
    err = capsys.readouterr().err
    assert "one" in err and "three" in err and "two" not in err


def test_scripts_are_quiet_unless_verbosity_is_given(tmp_path):
    script = tmp_path / "save.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    base = [sys.executable, str(script), f"--out={tmp_path / 'ckpt'}"]
    quiet = subprocess.run(base, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr.strip().splitlines() == ["saved"], quiet.stderr
    loud = subprocess.run(base + ["--verbosity=0"], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert loud.returncode == 0 and "saved" in loud.stderr
    assert any(ABSL_LINE.match(line) for line in loud.stderr.splitlines()), loud.stderr   # TF's INFO is back
