"""Transformer layers: GELU and its hand-written gradient against numpy; attention recomputation
(remat) gives the same outputs and gradients; mixed bfloat16 agrees with float32 to bfloat16 rounding."""

import math

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.layers.transformer import TransformerBlock, gelu_erf
from hacm_tf.ops import fused as fused_ops
from hacm_tf.training.engine import PretrainEngine

ERF = np.vectorize(math.erf)


def test_gelu_and_its_gradient_match_numpy():
    x = np.linspace(-6, 6, 241).astype(np.float64)
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = gelu_erf(xt)
    dy = tape.gradient(y, xt).numpy()
    cdf = 0.5 * (1 + ERF(x / math.sqrt(2)))
    np.testing.assert_allclose(y.numpy(), x * cdf, atol=1e-6)
    np.testing.assert_allclose(dy, cdf + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi), atol=1e-6)
    # tf.nn.gelu uses erfc in the negative tail: the two agree to float32 rounding
    np.testing.assert_allclose(y.numpy(), tf.nn.gelu(xt, approximate=False).numpy(), atol=1e-6)


def _block_step(mode, x, weights=None, drop_path=0.0, training=False, seed_state=None, jit=False,
                precision="float32", fused=True):
    """A TransformerBlock(16, 4) with remat ``mode`` (weights and drop-path seed state copied in) and its
    output, loss sum(y^2) and gradients for [x] + trainable variables, as numpy."""
    block = TransformerBlock(16, 4, drop_path=drop_path, remat=mode, precision=precision, fused=fused)
    block.build((None,) + tuple(x.shape[1:]))
    for v, w in zip(block.weights, weights or []):
        v.assign(w)
    if seed_state is not None:
        block.drop.seed_generator.state.assign(seed_state)

    @tf.function(jit_compile=jit)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = block(x, training=training)
            loss = tf.reduce_sum(y ** 2)
        return y, loss, tape.gradient(loss, [x] + block.trainable_variables)

    y, loss, grads = run(x)
    return block, y.numpy(), loss.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("remat,jit", [("attention", False), ("attention", True), ("block", False), ("block", True)])
def test_remat_gives_the_same_outputs_and_gradients(remat, jit):
    x = tf.random.stateless_normal([2, 10, 16], seed=[1, 2])
    base, _, loss0, grads0 = _block_step("none", x, jit=jit)
    block, _, loss1, grads1 = _block_step(remat, x, [w.numpy() for w in base.weights], jit=jit)
    assert TransformerBlock.from_config(block.get_config()).remat == remat
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6)
    for a, b in zip(grads1, grads0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_block_remat_with_drop_path_drops_the_same_samples(jit):
    """remat='block' recomputes the block from seeds drawn before it: the same drops, outputs and
    gradients as without remat (both blocks start from the same weights and seed-generator state)."""
    x = tf.random.stateless_normal([8, 10, 16], seed=[3, 4])
    base, y0, _, grads0 = _block_step("none", x, None, 0.5, True, [123, 0], jit)
    weights = [w.numpy() for w in base.weights]
    block, y1, _, grads1 = _block_step("block", x, weights, 0.5, True, [123, 0], jit)
    assert not np.allclose(y0, block(x).numpy())   # some branches were dropped
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads1, grads0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # a different draw drops differently: the seeds do reach the recomputed pass
    _, y2, _, _ = _block_step("block", x, weights, 0.5, True, [124, 0], jit)
    assert not np.allclose(y2, y0)


def _relative_error(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


@pytest.mark.parametrize("remat,jit", [("none", False), ("block", True)])
def test_mixed_bfloat16_block_agrees_with_float32_to_bfloat16_rounding(remat, jit):
    """Same weights and drop-path seeds: float32 in and out, float32 weights, outputs and gradients within
    a few bfloat16 ulps (8 mantissa bits: 2^-8 = 0.4 %) of the float32 block's, but not equal to them."""
    x = tf.random.stateless_normal([8, 10, 16], seed=[5, 6])
    base, y0, loss0, grads0 = _block_step("none", x, None, 0.3, True, [7, 0], jit)
    weights = [w.numpy() for w in base.weights]
    block, y1, loss1, grads1 = _block_step(remat, x, weights, 0.3, True, [7, 0], jit, "mixed_bfloat16")
    assert y1.dtype == np.float32 and all(v.dtype == "float32" for v in block.weights)
    assert block.fc1.compute_dtype == "bfloat16" and block.norm1.compute_dtype == "float32"
    assert TransformerBlock.from_config(block.get_config()).precision == "mixed_bfloat16"
    assert not np.array_equal(y1, y0)
    assert _relative_error(y1, y0) < 0.01
    np.testing.assert_allclose(loss1, loss0, rtol=0.01)
    for a, b in zip(grads1, grads0):
        assert _relative_error(a, b) < 0.02
    with pytest.raises(ValueError, match="precision"):
        TransformerBlock(16, 4, precision="float16")


@pytest.mark.parametrize("method,mode,jit", [("hacm", "corrected", False), ("hacm", "reference", True),
                                             ("mamp", "corrected", True), ("mae", "corrected", False)])
def test_micro_batches_give_the_full_batch_update(method, mode, jit):
    """Losses and gradients of 2 and 4 parts equal the whole batch's, HA-CM's batch-wide cross-contrast
    included (its first pass and the parts' surrogate terms)."""
    from hacm_tf.bench import measure
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(method=method, hacm_mode=mode, window=12, t_patch=3 if method == "hacm" else 4, dim=16,
                      depth=1, heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2, cc_weight=0.7).validate()
    model, _, x = measure.pretrain_step(cfg, 4)
    noise = model.sample_noise(8)

    def loss_and_grads(parts):
        engine = PretrainEngine(micro_batches=parts)
        return tf.function(lambda a, b: engine.loss_and_grads(model, a, b), jit_compile=jit)(x, noise)

    full_out, full_grads = loss_and_grads(1)
    if method == "hacm":   # the contrast is on and contributes to the gradients
        assert full_out["loss_cc"].numpy() > 0
        _, rec_grads = PretrainEngine.part_loss_and_grads(model, x, noise, tf.zeros([3, 8, 16]))
        assert not all(np.allclose(a, b) for a, b in zip(rec_grads, full_grads) if a is not None)
    for parts in (2, 4):
        out, grads = loss_and_grads(parts)
        for key in ("loss", "loss_rec", "loss_cc"):
            np.testing.assert_allclose(out[key].numpy(), full_out[key].numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out["mask"].numpy(), np.mean(full_out["mask"].numpy()), rtol=1e-6)
        assert [g is None for g in grads] == [g is None for g in full_grads]
        for a, b in zip(grads, full_grads):
            if a is not None:
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_hacm_micro_batches_refuse_encoder_drop_path():
    from hacm_tf.bench import measure
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(method="hacm", window=12, t_patch=3, dim=16, depth=1, heads=2, decoder_dim=16,
                      decoder_depth=1, decoder_heads=2, drop_path=0.1).validate()
    model, _, x = measure.pretrain_step(cfg, 4)
    with pytest.raises(ValueError, match="drop_path"):
        PretrainEngine(micro_batches=2).loss_and_grads(model, x, model.sample_noise(8))


@pytest.mark.parametrize("remat", ["none", "attention", "block"])
@pytest.mark.parametrize("per_sequence", [False, True], ids=["whole", "per_sequence"])
def test_block_with_fused_kernels_equals_plain_ops(remat, per_sequence, monkeypatch):
    if per_sequence:   # every sequence longer than "short": the fused attention's loop over sequences
        monkeypatch.setattr(fused_ops, "WHOLE_SCORES", 0)
    rng = np.random.RandomState(0)
    x = tf.constant(rng.normal(size=(3, 10, 16)).astype(np.float32))
    ref = TransformerBlock(16, 4, drop_path=0.2)
    ref.build((None, 10, 16))
    weights = [w.numpy() + rng.normal(size=w.shape).astype(np.float32) * 0.1 for w in ref.weights]
    seed_state = ref.drop.seed_generator.state.numpy()      # both blocks drop the same clips

    def outputs(fused, training=True, seeds=seed_state):
        _, y, _, grads = _block_step(remat, x, weights, 0.2, training, seeds, fused=fused)
        return [y] + grads

    for p, f in zip(outputs(False), outputs(True)):
        np.testing.assert_allclose(f, p, rtol=1e-5, atol=1e-5 * np.abs(p).max())
    # inference runs the plain ops whatever the setting: identical outputs
    np.testing.assert_array_equal(outputs(True, False, None)[0], outputs(False, False, None)[0])
