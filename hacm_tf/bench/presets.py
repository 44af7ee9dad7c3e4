"""Model sizes of the benchmarks, read from the flagfile presets (``flags/common/``): one source of truth
for the paper's sizes and the fine-tuning drop path."""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Dict, Optional

from hacm_tf.config import ConfigError, ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS_DIR = os.path.join(REPO, "flags")
METHODS = ("hacm", "mamp", "mae")


def read_flagfile(path: str) -> Dict[str, str]:
    """``--name=value`` / ``--name`` / ``--noname`` lines of a flagfile (nested ``--flagfile=`` resolved
    against the repository root) -> {name: value as text}; later lines win."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such flagfile (the benchmarks read the paper's sizes from the "
                                "repository's flags/; pass flags_dir=)")
    values: Dict[str, str] = {}
    for number, raw in enumerate(open(path), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("--"):
            raise ConfigError(f"{path}, line {number}: expected --name=value, got {line!r}")
        name, eq, value = line[2:].partition("=")
        if name == "flagfile":
            values.update(read_flagfile(os.path.join(REPO, value)))
        elif eq:
            values[name] = value
        else:   # --name or --noname; the reader keeps only the names of config fields
            values[name] = "true"
            if name.startswith("no"):
                values[name[2:]] = "false"
    return values


def _typed(cls, values: Dict[str, str]) -> dict:
    """The flag values naming fields of dataclass ``cls``, converted to the fields' types."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        text, hint = values[f.name], hints[f.name]
        if hint in (bool, Optional[bool]):
            out[f.name] = None if text == "auto" else text.lower() in ("true", "1")
        elif hint in (int, float):
            out[f.name] = hint(text)
        elif typing.get_origin(hint) is tuple:
            out[f.name] = tuple(float(v) for v in text.split(","))
        else:
            out[f.name] = text
    return out


def paper_model_config(method: str, finetune: bool = False, flags_dir: str = FLAGS_DIR, **changes) -> ModelConfig:
    """The paper's ModelConfig of ``method`` (``flags/common/model_<method>.flags``); ``finetune`` adds the
    fine-tuning preset's model fields (drop path); ``changes`` override."""
    if method not in METHODS:
        raise ConfigError(f"method: must be one of {METHODS}, got {method!r}")
    values = read_flagfile(os.path.join(flags_dir, "common", f"model_{method}.flags"))
    if finetune:
        values.update(read_flagfile(os.path.join(flags_dir, "common", "finetune.flags")))
    return ModelConfig(**{**_typed(ModelConfig, values), **changes}).validate()
