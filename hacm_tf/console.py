"""What a person sees on the terminal.

Long work shows one progress bar per stage (``utils.progress_bar``: on a terminal, or with
``HACM_PROGRESS=1``) and one concise line per epoch, evaluation or milestone (:func:`say`, on stderr,
through tqdm so that a running bar is not broken). Machine-readable figures go to ``metrics.json`` and
TensorBoard, not here. :func:`quiet` silences TensorFlow's own INFO chatter (start-up banners,
checkpoint sharding timings, signature renames); the scripts call it unless ``--verbosity`` is given.
"""

from __future__ import annotations

import contextlib
import logging as _pylogging
import os
import sys
import tempfile
from typing import Mapping

# Lines TensorFlow prints at start-up whatever TF_CPP_MIN_LOG_LEVEL says (absl C++ logging in TF 2.21).
STARTUP_CHATTER = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog")

_state = {"enabled": True}


@contextlib.contextmanager
def silenced():
    """:func:`say` off inside the block (restored after)."""
    before = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = before


def say(message: str):
    """One line for the person at the terminal (stderr), unless disabled."""
    if not _state["enabled"]:
        return
    from tqdm.auto import tqdm

    sys.stdout.flush()                     # keep the order of stdout and stderr lines
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()


def figures(values: Mapping[str, float], digits: int = 4) -> str:
    """``{"loss": 0.123456, "top1": 0.5}`` -> ``"loss 0.1235  top1 0.5000"`` (``digits`` decimals for
    figures below 10, fewer above)."""
    parts = []
    for k, v in values.items():
        if isinstance(v, float):
            v = f"{v:.{digits}f}" if abs(v) < 10 else f"{v:.{max(digits - 2, 1)}f}"
        parts.append(f"{k} {v}")
    return "  ".join(parts)


def _import_tensorflow_filtered():
    """Imports TensorFlow (and runs one op, which prints the second banner) with stderr captured at the
    file-descriptor level, then re-emits every captured line except the known start-up chatter."""
    if "tensorflow" in sys.modules:
        return
    fd = sys.stderr.fileno()
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            import tensorflow as tf

            tf.constant(1.0) + 1.0
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines()
                    if line.strip() and not any(c in line for c in STARTUP_CHATTER)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def quiet(verbose: bool = False):
    """Console set-up for a command: with ``verbose`` False, TensorFlow's C++ and Python INFO logs and the
    start-up banners are silenced and absl logs warnings and errors only; with True, everything is shown."""
    from absl import logging

    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.set_verbosity(logging.INFO)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        fileno_ok = sys.stderr.fileno() >= 0
    except (AttributeError, OSError, ValueError):   # a replaced stderr (pytest capture, notebooks)
        fileno_ok = False
    if fileno_ok:
        _import_tensorflow_filtered()
    logging.set_verbosity(logging.WARNING)
    _pylogging.getLogger("tensorflow").setLevel(_pylogging.WARNING)
