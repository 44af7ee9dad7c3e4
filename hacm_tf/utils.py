"""Small helpers shared across the package."""

from __future__ import annotations

import sys
from typing import Iterable, Optional


def progress_bar(iterable: Optional[Iterable] = None, desc: str = "", total: Optional[int] = None,
                 unit: str = "it", disable: bool = False):
    """A tqdm progress bar on stderr; silent when ``disable`` or stderr is not a terminal
    and ``HACM_PROGRESS`` is unset (so CI logs stay readable)."""
    import os

    from tqdm.auto import tqdm

    if not disable and not sys.stderr.isatty() and not os.environ.get("HACM_PROGRESS"):
        disable = True
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True,
                file=sys.stderr)
