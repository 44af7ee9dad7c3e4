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


def test_block_remat_refuses_drop_path():
    with pytest.raises(ValueError, match="drop_path"):
        TransformerBlock(16, 4, drop_path=0.1, remat="block")
