"""Frozen-feature read-outs: weighted kNN and the logistic regression against numpy, raw-coordinate
features, the spectrum, and the kNN monitor of pretraining (labels never reach the training step)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from hacm_tf import readout
from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, MonitorConfig, TrainConfig


def np_knn_scores(train, labels, query, k, num_classes, temperature):
    """Independent reference: cosine similarities, k largest, exp(s / T) votes per class."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    sim = q @ a.T
    scores = np.zeros([len(query), num_classes])
    for i in range(len(query)):
        for j in np.argsort(-sim[i], kind="stable")[:k]:
            scores[i, labels[j]] += np.exp(sim[i, j] / temperature)
    return scores


@pytest.mark.parametrize("k", [1, 3, 20])
def test_knn_scores_match_numpy(k):
    rng = np.random.RandomState(k)
    train, query = rng.normal(size=(30, 8)), rng.normal(size=(11, 8))
    labels = rng.randint(0, 4, size=30)
    got = readout.knn_predict(train, labels, query, k, 4, temperature=0.5, chunk=4)   # several chunks
    np.testing.assert_allclose(got, np_knn_scores(train, labels, query, min(k, 30), 4, 0.5), rtol=1e-4)


def test_knn_accuracy_finds_clusters_and_one_nn_is_exact():
    rng = np.random.RandomState(0)
    centres = rng.normal(size=(3, 16)) * 5
    labels = np.repeat(np.arange(3), 10)
    train = centres[labels] + rng.normal(size=(30, 16))
    acc = readout.knn_accuracy(train, labels, train, labels, 3)
    assert acc == {"knn1_top1": 1.0, "knn20_top1": 1.0}                 # each clip is its own neighbour
    shuffled = readout.knn_accuracy(train, rng.permutation(labels), centres, np.arange(3), 3)
    assert set(shuffled) == {"knn1_top1", "knn20_top1"}


def test_logistic_regression_reaches_the_optimum():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    y = np.argmax(x[:, :3] + 0.5 * rng.normal(size=(120, 3)), axis=1)
    model = readout.LogisticRegression(l2=0.1, steps=3000).fit(x, y, 3)
    # the objective's gradient vanishes at the solution (independent numpy formula)
    logits = x @ model.weights + model.bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    err = (p - np.eye(3)[y]) / len(x)
    grad_w, grad_b = x.T @ err + 0.1 * model.weights, err.sum(0)
    assert np.abs(grad_w).max() < 2e-3 and np.abs(grad_b).max() < 2e-3
    objective = -np.mean(np.log(p[np.arange(len(x)), y])) + 0.05 * np.sum(model.weights ** 2)
    assert model.final_objective == pytest.approx(objective, rel=1e-4)
    assert model.accuracy(x, y) > 0.7


def test_choose_l2_by_validation_on_the_training_set():
    rng = np.random.RandomState(2)
    y = rng.randint(0, 3, size=90)
    x = np.eye(3)[y] * 2.0 + rng.normal(size=(90, 3)) * 0.5
    x = np.concatenate([x, rng.normal(size=(90, 4))], axis=1).astype(np.float32)
    # an l2 of 100 shrinks the weights to nothing (chance); the small one separates the classes
    assert readout.choose_l2(x, y, 3, grid=(100.0, 1e-4), steps=300) == 1e-4


def test_raw_features_positions_then_velocities():
    x = np.arange(2 * 4 * 1 * 2 * 3, dtype=np.float32).reshape(2, 4, 1, 2, 3) ** 2
    f = readout.raw_features(x)
    assert f.shape == (2, 2 * 4 * 2 * 3)
    np.testing.assert_array_equal(f[:, :24], x.reshape(2, -1))
    v = f[:, 24:].reshape(2, 4, 1, 2, 3)
    np.testing.assert_array_equal(v[:, :3], x[:, 1:] - x[:, :-1])
    np.testing.assert_array_equal(v[:, 3], v[:, 2])
    a, b = readout.standardise(f, f[:1])
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-4)


def test_spectrum_detects_collapse():
    rng = np.random.RandomState(3)
    collapsed = np.outer(rng.normal(size=50), rng.normal(size=8)) + 3.0
    s = readout.spectrum(collapsed)
    assert s["effective_rank"] == pytest.approx(1.0, abs=1e-3) and s["top_singular_share"] > 0.999
    assert readout.spectrum(rng.normal(size=(500, 8)))["effective_rank"] > 7.0


def test_raw_baseline_and_random_encoder_readout(synthetic_dir):
    from hacm_tf.training import frozen

    raw = frozen.raw_coordinate_baseline(synthetic_dir, 12)
    assert raw["features"] == 2 * 12 * 2 * 25 * 3
    assert 0.0 <= raw["logreg_top1"] <= 1.0 and raw["logreg_l2"] in (1e-4, 1e-3, 1e-2, 1e-1)
    cfg = ModelConfig(method="mamp", window=12, t_patch=4, dim=16, depth=1, heads=2, decoder_dim=16,
                      decoder_depth=1, decoder_heads=2)
    r = frozen.frozen_readout(synthetic_dir, model_config=cfg, seed=1, diagnostics=True)
    assert r["encoder"] == "random init (seed 1)" and len(r["singular_values"]) == 16
    again = frozen.frozen_readout(synthetic_dir, model_config=cfg, seed=1)
    assert again["knn1_top1"] == r["knn1_top1"]


def test_monitor_records_knn_without_changing_training(synthetic_dir, tmp_path, monkeypatch):
    from hacm_tf.training import pretrain as pretrain_module
    from hacm_tf.training import run

    cfg = ModelConfig(method="hacm", window=24, t_patch=3, dim=32, depth=2, heads=4, decoder_dim=32,
                      decoder_depth=1, decoder_heads=4)
    data = DataConfig(window=24, batch_size=8, min_crop_frames=16)
    tc = TrainConfig(epochs=3, steps_per_epoch=2, lr=1e-3, min_lr=1e-4, warmup_epochs=1)
    specs = []
    original_init = run.Run.__init__

    def spy(self, workdir, strategy, model, make_dataset, *args, **kwargs):
        specs.append(make_dataset(None, 0, 0, 1).element_spec)
        original_init(self, workdir, strategy, model, make_dataset, *args, **kwargs)

    monkeypatch.setattr(run.Run, "__init__", spy)
    no_xla = ComputeConfig(jit_compile=False)
    plain = pretrain_module.pretrain(str(tmp_path / "plain"), synthetic_dir, cfg, data, tc, seed=3, compute=no_xla)
    keras.backend.clear_session()
    monitor = MonitorConfig(monitor_data_dir=synthetic_dir, monitor_every=2)
    watched = pretrain_module.pretrain(str(tmp_path / "watched"), synthetic_dir, cfg, data, tc, seed=3,
                                       monitor=monitor, compute=no_xla)
    assert watched["weights_sha256"] == plain["weights_sha256"]
    # the training batches are skeletons alone: no label tensor exists to reach the step
    assert all(isinstance(s, tf.TensorSpec) and s.shape.rank == 5 for s in specs)
    history = json.load(open(tmp_path / "watched" / "metrics.json"))["history"]
    assert ["eval_knn1_top1" in h for h in history] == [False, True, True]     # every 2 epochs and the last
    assert 0.0 <= history[1]["eval_knn20_top1"] <= 1.0 and history[1]["monitor_seconds"] > 0
    assert all("eval_knn1_top1" not in h for h in json.load(open(tmp_path / "plain" / "metrics.json"))["history"])


def test_monitor_config_validation():
    from hacm_tf.config import ConfigError

    assert not MonitorConfig().enabled and MonitorConfig("d", 5).due(9, 100) and MonitorConfig("d", 5).due(2, 3)
    assert not MonitorConfig("d", 5).due(3, 100)
    with pytest.raises(ConfigError, match="monitor_every"):
        MonitorConfig("d", 0).validate()


def test_linear_probe_check_tells_an_under_trained_probe(synthetic_dir, tmp_path):
    from hacm_tf.config import ProtocolConfig
    from hacm_tf.training import downstream, frozen

    cfg = ModelConfig(method="mamp", window=24, t_patch=4, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=1,
                      decoder_heads=4)
    data = DataConfig(window=24, batch_size=16, min_crop_frames=16)
    checks = {}
    for epochs in (3, 30):
        train = TrainConfig(epochs=epochs, lr=0.1, min_lr=0, warmup_epochs=0, weight_decay=0)
        downstream.train_classifier(str(tmp_path / f"lp{epochs}"), synthetic_dir, cfg, data, train,
                                    ProtocolConfig("linear", eval_every=epochs), None, seed=0)
        keras.backend.clear_session()
        checks[epochs] = frozen.linear_probe_check(str(tmp_path / f"lp{epochs}"), synthetic_dir)
    # the same frozen features: the regression's fit is the probe's attainable level
    assert checks[3]["logreg_train_top1"] == checks[30]["logreg_train_top1"] > 0.9
    assert checks[3]["probe_train_top1"] < checks[3]["logreg_train_top1"] - 0.3          # 39 steps: far below
    assert checks[30]["probe_train_top1"] > checks[30]["logreg_train_top1"] - 0.2        # converged schedule
    assert checks[30]["probe_epochs"] == 30


def test_knn_script_raw_baseline_and_errors(synthetic_dir, tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    def run(*args):
        return subprocess.run([sys.executable, os.path.join("scripts", "knn.py"), f"--data_dir={synthetic_dir}",
                               *args], capture_output=True, text=True, cwd=REPO, timeout=300)

    r = run("--raw", "--window=12", f"--output={tmp_path / 'raw.json'}")
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    saved = json.load(open(tmp_path / "raw.json"))
    assert printed["knn1_top1"] == round(saved["knn1_top1"], 4) and saved["features"] == 2 * 12 * 2 * 25 * 3
    r = run("--raw")
    assert r.returncode == 1 and "--raw needs --window" in r.stderr
    r = run(f"--pretrained={tmp_path / 'nowhere'}")
    assert r.returncode == 1 and "nowhere" in r.stderr
