import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import ConfigError, ModelConfig
from hacm_tf.models.pretrainer import MaskedPretrainer
from hacm_tf.training.engine import PretrainEngine
from tests.models import np_reference

TINY = dict(window=24, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=1, decoder_heads=4)


def tiny(method="hacm", precision="float32", **kw):
    cfg = ModelConfig(method=method, t_patch=3 if method == "hacm" else 4, **{**TINY, **kw}).validate()
    m = MaskedPretrainer(cfg.to_dict(), seed=0, precision=precision)
    m.build()
    return m


def batch(n=3, layout_joints=25, persons=2, t=24, seed=0):
    r = np.random.RandomState(seed)
    return (np.cumsum(r.normal(size=(n, t, persons, layout_joints, 3)) * 0.05, axis=1)).astype(np.float32)


def noises(model, b, seed=1):
    r = np.random.RandomState(seed)
    return [r.uniform(size=s).astype(np.float32) for s in model.noise_shapes(b)]


def test_corrected_hacm_matches_independent_numpy():
    m = tiny("hacm", clip_radius=0.0)
    x = batch()
    nz = noises(m, 6)
    out = m.compute_losses(x, nz)
    ref = np_reference.hacm_corrected(m, x, *nz)
    np.testing.assert_array_equal(out["mask"].numpy(), ref["mask"])
    np.testing.assert_allclose(out["pred"].numpy(), ref["pred"], atol=2e-5)
    for k in ("loss_rec", "loss_cc", "loss"):
        assert float(out[k]) == pytest.approx(ref[k], rel=2e-5), k
    assert float(out["loss_cc"]) > 1e-3            # the corrected cross-contrast term is active


@pytest.mark.parametrize("method", ["mamp", "mae"])
def test_baselines_match_independent_numpy(method):
    m = tiny(method)
    x = batch()
    nz = noises(m, 6)
    out = m.compute_losses(x, nz)
    ref = np_reference.mamp_mae(m, x, nz[0])
    np.testing.assert_array_equal(out["mask"].numpy(), ref["mask"])
    np.testing.assert_allclose(out["pred"].numpy(), ref["pred"], atol=2e-5)
    assert float(out["loss"]) == pytest.approx(ref["loss"], rel=2e-5)


@pytest.mark.parametrize("kw,joints,persons", [({}, 25, 2), ({"layout": "kinect_v1_20", "num_persons": 1}, 20, 1)])
@pytest.mark.parametrize("window", [24, 30])
def test_any_layout_persons_and_odd_patch_counts(kw, joints, persons, window):
    m = tiny("hacm", window=window, **kw)
    x = batch(2, joints, persons, window)
    out = m.compute_losses(x)
    b = 2 * persons
    assert out["pred"].shape == (b, m.num_tokens, 9)
    tp = window // 3
    kept = 18 if joints == 25 else 13
    assert m.len_t == ((tp + 1) // 2) * kept and m.len_s == (tp // 2) * kept
    assert float(out["loss"]) > 0 and np.isfinite(float(out["loss"]))
    assert out["mask"].numpy().sum(1).tolist() == [m.num_tokens - m.keep_t - m.keep_s] * b


def test_ablation_switches_change_behaviour():
    x = batch()
    base = tiny("hacm", tau=0.05)   # sharp criteria, so that every component changes the masks
    nz = noises(base, 6)

    def signature(model):   # loss and criterion scores: a switch must change at least one
        out = model.compute_losses(x, nz, intermediates=True)
        return np.array([float(out["loss"]), float(tf.reduce_sum(out["score_raw_t"])),
                         float(tf.reduce_sum(out["score_raw_s"]))])

    ref_sig = signature(base)
    for kw in ({"temporal_criterion": False}, {"spatial_criterion": False}, {"hyperbolic": False},
               {"keep_high_scores": False}, {"cc_weight": 0.0}, {"ref_distance": True}, {"ref_token_order": True},
               {"ref_unshuffle": True}, {"ref_target_order": True}, {"ref_attention": True},
               {"ref_cross_contrast": True}, {"mask_ratio": 0.5}, {"ref_tau": True}, {"curvature": 2.0}):
        m = tiny("hacm", **{"tau": 0.05, **kw})
        m.set_weights(base.get_weights())
        sig = signature(m)
        assert np.all(np.isfinite(sig)), kw
        assert not np.allclose(sig, ref_sig, rtol=1e-6), kw
    # the hub (father) weight enters only through the spatial scores
    m = tiny("hacm", tau=0.05, father_weight=50.0)
    m.set_weights(base.get_weights())
    assert not np.array_equal(m.compute_losses(x, nz)["mask"].numpy(), base.compute_losses(x, nz)["mask"].numpy())


def test_reference_keep_fraction_ignores_mask_ratio():
    m = tiny("hacm", hacm_mode="reference", mask_ratio=0.5)
    assert (m.keep_t, m.keep_s, m.tau) == (int(0.1 * m.len_t), int(0.1 * m.len_s), 0.9)
    m = tiny("hacm", mask_ratio=0.5, tau=0.3)
    assert (m.keep_t, m.tau) == (m.len_t // 2, 0.3)


def test_config_validation():
    with pytest.raises(ConfigError, match="not divisible by the temporal patch"):
        ModelConfig(window=25).validate()
    with pytest.raises(ConfigError, match="mask_ratio"):
        ModelConfig(mask_ratio=1.0).validate()
    with pytest.raises(ConfigError, match="method"):
        ModelConfig(method="simclr").validate()


def test_gradients_reach_encoder_and_decoder_but_not_the_criteria():
    m = tiny("hacm")
    x = batch()
    with tf.GradientTape() as tape:
        loss = m.compute_losses(x, noises(m, 6), training=True)["loss"]
    grads = dict(zip([v.path for v in m.trainable_variables], tape.gradient(loss, m.trainable_variables)))
    assert all(g is None for p, g in grads.items()
               if "/l1/" in p or "/l2/" in p or p.startswith("l1") or p.startswith("l2"))
    assert any(g is not None for p, g in grads.items() if "blocks_0" in p and "decoder" not in p)
    assert grads[m.mask_token.path] is not None


@pytest.mark.parametrize("method", ["hacm", "mamp"])
def test_mixed_bfloat16_pretrainer_reads_float32_checkpoints_and_agrees_to_rounding(method, tmp_path):
    """The masks come from float32 criteria, so they are identical; losses agree to bfloat16 rounding; a
    float32 checkpoint restores into the mixed model (same variables) and its training step is finite."""
    f32 = tiny(method)
    path = tf.train.Checkpoint(model=f32).save(str(tmp_path / "ckpt"))
    mixed = tiny(method, precision="mixed_bfloat16")
    tf.train.Checkpoint(model=mixed).restore(path).assert_existing_objects_matched()
    assert all(v.dtype == "float32" for v in mixed.weights)
    x = batch()
    nz = noises(f32, 6)
    a, b = f32.compute_losses(x, nz), mixed.compute_losses(x, nz)
    np.testing.assert_array_equal(b["mask"].numpy(), a["mask"].numpy())
    assert b["pred"].dtype == tf.float32 and not np.array_equal(b["pred"].numpy(), a["pred"].numpy())
    for key in ("loss_rec", "loss_cc", "loss"):
        assert float(b[key]) == pytest.approx(float(a[key]), rel=0.02, abs=1e-6), key
    out, grads = PretrainEngine().loss_and_grads(mixed, tf.constant(x), nz)
    assert np.isfinite(float(out["loss"])) and all(np.isfinite(g.numpy()).all() for g in grads if g is not None)


def test_get_config_round_trips_the_model_and_the_engine_stays_a_compile_choice():
    m = tiny("hacm", precision="mixed_bfloat16", drop_path=0.1)
    again = MaskedPretrainer.from_config(m.get_config())
    assert again.get_config() == m.get_config() and again.precision == "mixed_bfloat16" and again.seed == 0
    again.build()
    again.set_weights(m.get_weights())
    x, nz = batch(), noises(m, 6)
    np.testing.assert_array_equal(again.compute_losses(x, nz)["pred"].numpy(), m.compute_losses(x, nz)["pred"].numpy())
    assert "micro_batches" not in m.get_config()
    m.compile(optimizer="sgd", engine=PretrainEngine(micro_batches=2, nonfinite="skip"))
    assert (m.engine.micro_batches, m.engine.nonfinite) == (2, "skip")
    with pytest.raises(ValueError, match="nonfinite"):
        PretrainEngine(nonfinite="ignore")
