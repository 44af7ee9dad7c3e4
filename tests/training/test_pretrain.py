import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, TrainConfig
from hacm_tf.models.pretrainer import MaskedPretrainer
from hacm_tf.training import optim, run
from hacm_tf.training.pretrain import pretrain as pretrain_run
from hacm_tf.training.engine import PretrainEngine
from tests.conftest import REPO


def pretrain(*args, **kwargs):
    """pretrain() without XLA (compiling costs more than these short runs)."""
    return pretrain_run(*args, **{"compute": ComputeConfig(jit_compile=False), **kwargs})

TINY = dict(window=24, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=1, decoder_heads=4)
DATA = DataConfig(window=24, batch_size=8, min_crop_frames=16)


def model_config(method="hacm", **kw):
    return ModelConfig(method=method, t_patch=3 if method == "hacm" else 4, **{**TINY, **kw})


def checkpoint_weights(workdir):
    """Every saved tensor (weights, optimizer slots, step, seed states) but the save counter."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith(("save_counter", "_CHECKPOINTABLE"))}


@pytest.mark.parametrize("method,xla", [("mamp", False), ("hacm", True)])
def test_mirrored_update_equals_single_device(method, xla):
    args = [sys.executable, os.path.join(REPO, "tests", "training", "mirrored_check.py"), method]
    args += ["xla"] if xla else []
    r = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["init_diff"] == 0.0 and res["update"] > 0.1
    assert res["diff"] < 1e-5 * res["update"] + 1e-6
    assert res["loss_one"] == pytest.approx(res["loss_two"], rel=1e-6)


def test_pretraining_lowers_the_reconstruction_loss(synthetic_dir, tmp_path):
    tc = TrainConfig(epochs=6, steps_per_epoch=5, lr=2e-3, min_lr=1e-4, warmup_epochs=1, log_every=5)
    pretrain(str(tmp_path), synthetic_dir, model_config("mae"), DATA, tc)
    hist = json.load(open(tmp_path / "metrics.json"))["history"]
    assert len(hist) == 6
    assert hist[-1]["loss_rec"] < 0.8 * hist[0]["loss_rec"]
    assert os.listdir(tmp_path / "tensorboard")


def test_resume_after_a_crash_is_exact(synthetic_dir, tmp_path, monkeypatch):
    cfg = model_config("hacm", drop_path=0.1)
    tc = TrainConfig(epochs=3, steps_per_epoch=4, lr=1e-3, min_lr=1e-4, warmup_epochs=1, checkpoint_every=3,
                     log_every=2)
    pretrain(str(tmp_path / "straight"), synthetic_dir, cfg, DATA, tc, seed=5)
    keras.backend.clear_session()

    calls = {"n": 0}
    original = run.Run.save

    def crash_after_second_save(self):
        original(self)
        calls["n"] += 1
        if calls["n"] == 2:                        # step 4 (end of epoch 1) ... crash mid-epoch 2
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(run.Run, "save", crash_after_second_save)
    with pytest.raises(KeyboardInterrupt):
        pretrain(str(tmp_path / "resumed"), synthetic_dir, cfg, DATA, tc, seed=5)
    monkeypatch.setattr(run.Run, "save", original)
    keras.backend.clear_session()
    final = pretrain(str(tmp_path / "resumed"), synthetic_dir, cfg, DATA, tc, seed=5)
    assert final["steps"] == 12
    a, b = checkpoint_weights(tmp_path / "straight"), checkpoint_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and len(a) > 100
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    h1 = json.load(open(tmp_path / "straight" / "metrics.json"))["history"]
    h2 = json.load(open(tmp_path / "resumed" / "metrics.json"))["history"]
    assert [h["step"] for h in h1] == [h["step"] for h in h2] == [4, 8, 12]
    assert h1[-1]["loss"] == pytest.approx(h2[-1]["loss"], rel=1e-5)


def test_a_workdir_with_another_config_is_rejected(synthetic_dir, tmp_path):
    tc = TrainConfig(epochs=1, steps_per_epoch=1, warmup_epochs=0)
    pretrain(str(tmp_path), synthetic_dir, model_config("mae"), DATA, tc)
    with pytest.raises(run.TrainingError, match="different configuration.*method"):
        pretrain(str(tmp_path), synthetic_dir, model_config("mamp"), DATA, tc)


def test_warmup_cosine_schedule_matches_formula():
    s = optim.WarmupCosine(1e-3, 5e-4, warmup_epochs=2, epochs=10, steps_per_epoch=4)
    for step in (0, 1, 7, 8, 20, 39, 40):
        e = step / 4
        exp = 1e-3 * e / 2 if e < 2 else 5e-4 + 5e-4 * 0.5 * (1 + np.cos(np.pi * (e - 2) / 8))
        assert float(s(step)) == pytest.approx(exp, rel=1e-6)


def test_weight_decay_excludes_one_dimensional_parameters():
    m = MaskedPretrainer(model_config("mae").validate().to_dict())
    m.build()
    opt = optim.adamw(1e-3, m.trainable_variables)
    decayed = [v for v in m.trainable_variables if opt._use_weight_decay(v)]
    assert decayed and all(len(v.shape) > 1 for v in decayed)
    assert len(decayed) < len(m.trainable_variables)
    assert opt.beta_2 == 0.95 and opt.weight_decay == 0.05


def test_compiled_update_equals_the_plain_update_and_is_used_without_a_strategy(monkeypatch):
    """optim.apply_gradients: AdamW steps (decay, schedule, moments) through the XLA-compiled update
    equal optimizer.apply's to float32 rounding; a distribution strategy in scope or an unbuilt
    optimizer takes optimizer.apply itself. optim.global_norm against float64, with and without a
    strategy."""
    rng = np.random.RandomState(0)
    shapes = [(7, 5), (5,), (3, 4, 6)]
    grads = [[tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes] for _ in range(3)]
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    schedule = optim.WarmupCosine(1e-2, 1e-3, warmup_epochs=1, epochs=3, steps_per_epoch=2)
    results = []
    for update in (lambda o, g, v: o.apply(g, v), optim.apply_gradients):
        variables = [tf.Variable(a) for a in start]
        opt = optim.adamw(schedule, variables)
        opt.build(variables)
        step = tf.function(lambda g: update(opt, g, variables))
        for g in grads:
            step(g)
        results.append([v.numpy() for v in variables])
        assert int(opt.iterations) == 3
    for plain, compiled, initial in zip(*results, start):
        assert np.abs(plain - initial).min() > 1e-5                  # every parameter moved
        np.testing.assert_allclose(compiled, plain, rtol=1e-6, atol=1e-7)
    assert len(optim._compiled_updates) >= 1
    want = np.sqrt(sum(np.sum(g.numpy().astype(np.float64) ** 2) for g in grads[0]))
    assert float(optim.global_norm(grads[0])) == pytest.approx(want, rel=1e-6)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert float(optim.global_norm(grads[0])) == pytest.approx(want, rel=1e-6)
    calls = []
    variables = [tf.Variable(a) for a in start]
    opt = optim.adamw(1e-3, variables)
    monkeypatch.setattr(opt, "apply", lambda g, v: calls.append(len(v)))
    optim.apply_gradients(opt, grads[0], variables)              # not built: plain apply
    opt.build(variables)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        optim.apply_gradients(opt, grads[0], variables)          # a strategy: plain apply
    assert calls == [3, 3]


def test_nonfinite_loss_stops_or_is_skipped():
    x = np.full((2, 24, 2, 25, 3), np.nan, np.float32)
    for policy in ("stop", "skip"):
        m = MaskedPretrainer(model_config("mae").validate().to_dict(), seed=0)
        m.build()
        m.compile(optimizer=optim.adamw(1e-3, m.trainable_variables), engine=PretrainEngine(nonfinite=policy))
        if policy == "stop":
            with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
                m.train_step((tf.constant(x), tf.zeros([2], tf.int64)))
        else:
            m.train_step((tf.constant(x), tf.zeros([2], tf.int64)))
            assert all(np.all(np.isfinite(v.numpy())) for v in m.trainable_variables)


def test_keras_fit_works_with_the_custom_train_step(synthetic_dir):
    from hacm_tf.data import pipeline

    m = MaskedPretrainer(model_config("mamp").validate().to_dict(), seed=0)
    m.build()
    m.compile(optimizer=optim.adamw(1e-3, m.trainable_variables))
    ds = pipeline.make_dataset(synthetic_dir, "train", DATA, training=True, batches_per_epoch=2)
    hist = m.fit(ds, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(np.asarray(hist.history["loss"]).ravel()[-1])


def test_a_failing_checkpoint_write_stops_with_the_reason_and_keeps_earlier_ones(synthetic_dir, tmp_path,
                                                                                 monkeypatch):
    import errno

    tc = TrainConfig(epochs=3, steps_per_epoch=2, warmup_epochs=0)
    original = tf.train.CheckpointManager.save
    calls = {"n": 0}

    def disk_full_on_second_save(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *a, **k)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_on_second_save)
    with pytest.raises(run.TrainingError, match="cannot write a checkpoint.*No space left.*earlier checkpoints"):
        pretrain(str(tmp_path), synthetic_dir, model_config("mae"), DATA, tc)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", original)
    keras.backend.clear_session()
    assert pretrain(str(tmp_path), synthetic_dir, model_config("mae"), DATA, tc)["steps"] == 6


def test_micro_batches_run_and_must_divide_the_batch(synthetic_dir, tmp_path):
    from hacm_tf.config import ConfigError

    def parts(k):
        return ComputeConfig(micro_batches=k, jit_compile=False)

    with pytest.raises(ConfigError, match="micro_batches"):
        pretrain(str(tmp_path / "bad"), synthetic_dir, model_config("hacm"), DATA,
                 TrainConfig(epochs=1, steps_per_epoch=1, warmup_epochs=0), compute=parts(3))
    assert not os.path.exists(tmp_path / "bad" / "checkpoints")
    with pytest.raises(ConfigError, match="drop_path"):
        pretrain(str(tmp_path / "bad"), synthetic_dir, model_config("hacm", drop_path=0.1), DATA,
                 TrainConfig(epochs=1, steps_per_epoch=1, warmup_epochs=0), compute=parts(2))
    final = pretrain(str(tmp_path / "ok"), synthetic_dir, model_config("hacm"), DATA,
                     TrainConfig(epochs=1, steps_per_epoch=2, warmup_epochs=0), compute=parts(2))
    assert final["steps"] == 2 and np.isfinite(final["last_epoch"]["loss"])
    assert json.load(open(tmp_path / "ok" / "config.json"))["compute"]["micro_batches"] == 2
