"""Config validation, serialisation and the run-directory layout change that moved compute settings."""

import json

import pytest

from hacm_tf.config import (ComputeConfig, ConfigError, DataConfig, ModelConfig, MonitorConfig, TrainConfig,
                            migrate_run_config)
from hacm_tf.errors import TrainingError
from hacm_tf.rundir import check_workdir_config


@pytest.mark.parametrize("cls,field,value", [
    (ComputeConfig, "remat", "everything"), (ComputeConfig, "precision", "float16"),
    (ComputeConfig, "micro_batches", 0), (ComputeConfig, "nonfinite", "ignore"),
    (ModelConfig, "mask_ratio", 1.0), (ModelConfig, "window", 71), (ModelConfig, "method", "simclr"),
    (DataConfig, "eval_crop", 0.0), (DataConfig, "batch_size", 0),
    (TrainConfig, "warmup_epochs", 500.0), (TrainConfig, "lr", 0.0), (MonitorConfig, "monitor_every", 0)])
def test_invalid_values_name_the_field(cls, field, value):
    with pytest.raises(ConfigError, match=field):
        cls(**{field: value}).validate()


@pytest.mark.parametrize("cls", [ComputeConfig, ModelConfig, DataConfig, TrainConfig, MonitorConfig])
def test_round_trip_through_json(cls):
    cfg = cls()
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        cls.from_dict({**cfg.to_dict(), "no_such_field": 1})


def test_compute_settings_are_not_architecture():
    assert "precision" not in ModelConfig().to_dict() and "jit_compile" not in TrainConfig().to_dict()
    assert ComputeConfig(remat="block", precision="mixed_bfloat16").layer_kwargs == {
        "remat": "block", "precision": "mixed_bfloat16", "fused": True}


OLD_LAYOUT = {"stage": "pretrain", "seed": 0,
              "model": {**ModelConfig(dim=64).to_dict(), "remat": "attention", "precision": "mixed_bfloat16"},
              "train": {**TrainConfig(epochs=50).to_dict(), "jit_compile": False, "micro_batches": 2,
                        "nonfinite": "skip", "deterministic": False}}


def test_an_older_run_config_is_migrated():
    new = migrate_run_config(OLD_LAYOUT)
    assert ModelConfig.from_dict(new["model"]) == ModelConfig(dim=64)
    assert TrainConfig.from_dict(OLD_LAYOUT["train"]) == TrainConfig(epochs=50)   # moved fields are ignored
    assert new["compute"] == ComputeConfig(remat="attention", precision="mixed_bfloat16", jit_compile=False,
                                           micro_batches=2, nonfinite="skip").to_dict()
    assert migrate_run_config(new) == new


def test_a_run_resumes_under_other_compute_settings_but_not_another_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(OLD_LAYOUT))
    current = {**migrate_run_config(OLD_LAYOUT), "compute": ComputeConfig().to_dict()}
    check_workdir_config(str(tmp_path), current)       # same model, data and schedule: accepted
    other = {**current, "model": ModelConfig(dim=32).to_dict()}
    with pytest.raises(TrainingError, match="different configuration.*dim"):
        check_workdir_config(str(tmp_path), other)
