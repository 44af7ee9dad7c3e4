"""Helpers for the thin absl entry points in scripts/ (never imported by the library)."""

from __future__ import annotations

import logging as _pylogging
import os
import sys

from hacm_tf.config import ConfigError
from hacm_tf.errors import DataError, DatasetMismatchError

# Errors a user can act on: reported as one line, exit status 1, no traceback.
USER_ERRORS = (DataError, DatasetMismatchError, ConfigError, FileNotFoundError, ValueError)


def run(main):
    """``absl.app.run(main)`` with user errors reported as a one-line reason and exit status 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import app

    def wrapped(argv):
        try:
            return main(argv)
        except USER_ERRORS as e:
            _pylogging.getLogger("absl").error("%s: %s", type(e).__name__, e)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(wrapped)


def split_list(value: str):
    """Comma-separated flag value -> list of non-empty stripped items."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]
