"""Transformer layers: GELU and its hand-written gradient against numpy; attention recomputation
(remat) gives the same outputs and gradients."""

import math

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.layers.transformer import TransformerBlock, gelu_erf

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


@pytest.mark.parametrize("remat,jit", [("attention", False), ("attention", True), ("block", False), ("block", True)])
def test_remat_gives_the_same_outputs_and_gradients(remat, jit):
    x = tf.random.stateless_normal([2, 10, 16], seed=[1, 2])
    results = []
    for mode in ("none", remat):
        block = TransformerBlock(16, 4, remat=mode)
        block.build((None, 10, 16))
        if results:
            for v, w in zip(block.weights, results[0][2]):
                v.assign(w)

        @tf.function(jit_compile=jit)
        def loss_and_grads(x, block=block):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(block(x) ** 2)
            return loss, tape.gradient(loss, [x] + block.trainable_variables)

        loss, grads = loss_and_grads(x)
        results.append((loss.numpy(), [g.numpy() for g in grads], [w.numpy() for w in block.weights]))
    assert TransformerBlock.from_config(block.get_config()).remat == remat
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6)
    for a, b in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_block_remat_with_drop_path_drops_the_same_samples(jit):
    """remat='block' recomputes the block from seeds drawn before it: the same drops, outputs and
    gradients as without remat (both blocks start from the same weights and seed-generator state)."""
    x = tf.random.stateless_normal([8, 10, 16], seed=[3, 4])
    results = []
    for mode in ("none", "block"):
        block = TransformerBlock(16, 4, drop_path=0.5, remat=mode)
        block.build((None, 10, 16))
        if results:
            for v, w in zip(block.weights, results[0][2]):
                v.assign(w)
        state = [w.numpy() for w in block.weights]
        block.drop.seed_generator.state.assign([123, 0])

        @tf.function(jit_compile=jit)
        def loss_and_grads(x, block=block):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = block(x, training=True)
                loss = tf.reduce_sum(y ** 2)
            return y, loss, tape.gradient(loss, [x] + block.trainable_variables)

        y, loss, grads = loss_and_grads(x)
        results.append((y.numpy(), [g.numpy() for g in grads], state))
    assert not np.allclose(results[0][0], block(x).numpy())   # some branches were dropped
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # a different draw drops differently: the seeds do reach the recomputed pass
    other = TransformerBlock(16, 4, drop_path=0.5, remat="block")
    other.build((None, 10, 16))
    for v, w in zip(other.weights, results[0][2]):
        v.assign(w)
    other.drop.seed_generator.state.assign([124, 0])
    assert not np.allclose(other(x, training=True).numpy(), results[0][0])


@pytest.mark.parametrize("method,jit", [("hacm", False), ("mamp", True)])
def test_micro_batches_give_the_full_batch_update(method, jit):
    """Exact for everything but HA-CM's in-batch cross-contrast (which, as across replicas, then
    contrasts within each part; see the next test), so HA-CM runs with cc_weight 0 here."""
    from hacm_tf import bench
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(method=method, window=12, t_patch=3 if method == "hacm" else 4, dim=16, depth=1, heads=2,
                      decoder_dim=16, decoder_depth=1, decoder_heads=2, cc_weight=0.0).validate()
    model, _, x = bench._pretrain_step(cfg, 4)
    noise = model.sample_noise(8)
    step = tf.function(model._loss_and_grads, jit_compile=jit)
    full_out, full_grads = step(x, noise)
    model.micro_batches = 2
    step = tf.function(model._loss_and_grads, jit_compile=jit)
    out, grads = step(x, noise)
    for key in ("loss", "loss_rec") + (("loss_cc",) if method != "hacm" else ()):   # HA-CM logs loss_cc
        np.testing.assert_allclose(out[key].numpy(), full_out[key].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["mask"].numpy(), np.mean(full_out["mask"].numpy()), rtol=1e-6)
    assert [g is None for g in grads] == [g is None for g in full_grads]
    for a, b in zip(grads, full_grads):
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_micro_batches_contrast_within_each_part():
    from hacm_tf import bench
    from hacm_tf.config import ModelConfig

    cfg = ModelConfig(method="hacm", window=12, t_patch=3, dim=16, depth=1, heads=2, decoder_dim=16, decoder_depth=1,
                      decoder_heads=2).validate()
    model, _, x = bench._pretrain_step(cfg, 4)
    noise = model.sample_noise(8)
    parts = [model.compute_losses(x[i:i + 2], [n[2 * i:2 * i + 4] for n in noise]) for i in (0, 2)]
    model.micro_batches = 2
    out, _ = model._loss_and_grads(x, noise)
    for key in ("loss", "loss_rec", "loss_cc"):
        np.testing.assert_allclose(out[key].numpy(), np.mean([p[key].numpy() for p in parts]), rtol=1e-5)
