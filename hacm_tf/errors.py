"""Exceptions with enough context to act on."""

from __future__ import annotations

from typing import Optional


class DataError(ValueError):
    """Malformed input data.

    The message names the file, the line (1-based) when known, and the problem,
    e.g. ``S001C001P001R001A001.skeleton, line 214: expected 25 joints, found 24``.
    """

    def __init__(self, path: str, problem: str, line: Optional[int] = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # picklable across multiprocessing workers
        return (DataError, (self.path, self.problem, self.line))


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, incompatible workdir, unwritable disk)."""


class DatasetMismatchError(ValueError):
    """A TFRecord directory does not match what the caller expects."""
