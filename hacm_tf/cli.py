"""Helpers for the thin absl entry points in scripts/ (never imported by the library)."""

from __future__ import annotations

import logging as _pylogging
import os
import sys

from hacm_tf.config import ConfigError
from hacm_tf.errors import DataError, DatasetMismatchError, TrainingError


def _user_errors():
    """Errors a user can act on: reported as one line, exit status 1, no traceback."""
    return (DataError, DatasetMismatchError, ConfigError, TrainingError, FileNotFoundError, ValueError)


def run(main):
    """``absl.app.run(main)`` with user errors reported as a one-line reason and exit status 1, and
    TensorFlow's INFO chatter silenced unless ``--verbosity`` (``-v``) is given."""
    from absl import app, flags

    def wrapped(argv):
        from hacm_tf import console

        console.quiet(verbose=flags.FLAGS["verbosity"].present > 0)
        try:
            return main(argv)
        except _user_errors() as e:
            _pylogging.getLogger("absl").error("%s: %s", type(e).__name__, e)
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(wrapped)


def split_list(value: str):
    """Comma-separated flag value -> list of non-empty stripped items."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# --------------------------------------------------------------------------- dataclass <-> flags

def _field_help(cls) -> dict:
    """Attribute descriptions from a dataclass docstring's "Attributes:" section."""
    import re

    helps, current = {}, None
    for line in (cls.__doc__ or "").splitlines():
        m = re.match(r"\s{6}([a-z_0-9, ]+):\s*(.*)", line)
        if m:
            current = [n.strip() for n in m.group(1).split(",")]
            for n in current:
                helps[n] = m.group(2)
        elif current and line.startswith(" " * 8) and line.strip():
            for n in current:
                helps[n] += " " + line.strip()
    return helps


def define_config_flags(cls, skip=()):
    """Defines one absl flag per dataclass field (same name, same default); shared names are defined once."""
    import dataclasses
    import typing

    from absl import flags

    helps = _field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in flags.FLAGS:
            continue
        hint = typing.get_type_hints(cls)[f.name]
        text = helps.get(f.name, f"{cls.__name__}.{f.name}")
        if hint is bool:
            flags.DEFINE_bool(f.name, f.default, text)
        elif hint is int:
            flags.DEFINE_integer(f.name, f.default, text)
        elif hint is float:
            flags.DEFINE_float(f.name, f.default, text)
        elif hint is str:
            flags.DEFINE_string(f.name, f.default, text)
        elif hint == typing.Optional[bool]:
            flags.DEFINE_enum(f.name, "auto", ["auto", "true", "false"], text + " (auto: follow the mode)")
        elif typing.get_origin(hint) is tuple:
            flags.DEFINE_list(f.name, [str(v) for v in f.default], text)
        else:
            raise TypeError(f"no flag type for {cls.__name__}.{f.name}: {hint}")


def config_from_flags(cls, flag_values, **overrides):
    """Builds and validates a config dataclass from the flags defined by define_config_flags."""
    import dataclasses
    import typing

    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
            continue
        if f.name not in flag_values:
            continue
        v = flag_values[f.name].value
        hint = typing.get_type_hints(cls)[f.name]
        if hint == typing.Optional[bool]:
            v = None if v == "auto" else v == "true"
        elif typing.get_origin(hint) is tuple:
            v = tuple(float(x) for x in v)
        kwargs[f.name] = v
    return cls(**kwargs).validate()


def define_run_flags():
    """The command-line contract shared by every training stage (docs/pretraining.md)."""
    from absl import flags

    flags.DEFINE_string("data_dir", None, "TFRecord directory with dataset_info.json.")
    flags.DEFINE_string("workdir", None, "Everything the run writes (resumes when it holds a run).")
    from hacm_tf.training.strategy import STRATEGIES

    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "Distribution strategy.")
    flags.DEFINE_integer("devices", 0, "mirrored on CPU: number of logical CPU devices (0: all local devices).")
    flags.DEFINE_integer("seed", 0, "Seed of weights, masks, data order and augmentation.")


def compute_from_flags(flag_values):
    """ComputeConfig from its flags; --deterministic switches TF op determinism on for the process."""
    from hacm_tf.config import ComputeConfig

    compute = config_from_flags(ComputeConfig, flag_values)
    if compute.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    return compute


def save_flags(workdir: str):
    """Copies the effective flags into ``workdir/flags.txt`` (a flagfile that reproduces the run)."""
    from absl import flags

    from hacm_tf.data.tfrecord import atomic_write_text

    os.makedirs(workdir, exist_ok=True)
    lines = []
    for module in (sys.argv[0], __name__):
        for flag in flags.FLAGS.get_flags_for_module(module):
            if flag.value is not None:
                lines.append(flag.serialize())
    atomic_write_text(os.path.join(workdir, "flags.txt"), "\n".join(sorted(set(lines))) + "\n")


def start_run(flag_values):
    """Checks --data_dir / --workdir, builds the --strategy, saves the flags on the chief; returns the strategy."""
    if not flag_values.data_dir or not flag_values.workdir:
        raise ValueError("--data_dir and --workdir are required")
    from hacm_tf.training.strategy import get_strategy, is_chief

    strategy = get_strategy(flag_values.strategy, flag_values.devices)
    if is_chief():
        save_flags(flag_values.workdir)
    return strategy
