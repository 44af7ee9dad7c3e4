"""Fused training kernels (hacm_tf.ops.fused) against float64 autodiff of the plain formulas; the
inference graph keeps the plain ops (the block with and without them: tests/layers/test_transformer.py)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.models.classifier import ActionClassifier
from hacm_tf.config import ModelConfig
from hacm_tf.ops import fused, native

RNG = np.random.RandomState(0)


def _value_and_grads(fn, inputs, dy):
    """fn(*inputs), and the gradients of sum(fn * dy) with respect to every input."""
    inputs = [tf.constant(a) for a in inputs]
    with tf.GradientTape() as tape:
        for t in inputs:
            tape.watch(t)
        y = fn(*inputs)
        loss = tf.reduce_sum(y * tf.cast(dy, y.dtype))
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, inputs)]


def _assert_matches_float64(fused_fn, plain_fn, arrays, dy, rtol=2e-5):
    got = _value_and_grads(fused_fn, [a.astype(np.float32) for a in arrays], dy)
    want = _value_and_grads(plain_fn, [a.astype(np.float64) for a in arrays], dy)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


def test_gelu_and_gradient_match_float64_autodiff():
    x = np.linspace(-7, 7, 6 * 97).reshape(6, 97)
    _assert_matches_float64(fused.gelu, lambda t: 0.5 * t * (1 + tf.math.erf(t / math.sqrt(2.0))),
                            [x], RNG.normal(size=x.shape))


@pytest.mark.parametrize("native_op", [True, False], ids=["native-if-built", "xla"])
def test_layer_norm_and_gradients_match_float64_autodiff(native_op, monkeypatch):
    if not native_op:
        monkeypatch.setenv(native.SWITCH_ENV, "0")
    x = RNG.normal(size=(3, 5, 24)) * 3 + 1
    gamma, beta = RNG.normal(size=24), RNG.normal(size=24)

    def plain(t, g, b):
        mean, var = tf.nn.moments(t, axes=[-1], keepdims=True)
        return (t - mean) / tf.sqrt(var + 1e-5) * g + b

    _assert_matches_float64(lambda t, g, b: fused.layer_norm(t, g, b, 1e-5), plain, [x, gamma, beta],
                            RNG.normal(size=x.shape))


@pytest.mark.parametrize("heads", [1, 3, 8])
@pytest.mark.parametrize("per_sequence", [False, True], ids=["whole", "per_sequence"])
def test_attention_and_gradients_match_float64_autodiff(heads, per_sequence, monkeypatch):
    if per_sequence:   # every sequence longer than "short": the loop over sequences
        monkeypatch.setattr(fused, "WHOLE_SCORES", 0)
    q, k, v = (RNG.normal(size=(2, heads, 11, 8)) for _ in range(3))

    def plain(q, k, v):
        return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1), v)

    _assert_matches_float64(fused.attention, plain, [q, k, v], RNG.normal(size=q.shape))


def test_bfloat16_inputs_give_bfloat16_results_close_to_float32():
    x = RNG.normal(size=(4, 64)).astype(np.float32)
    dy = RNG.normal(size=x.shape).astype(np.float32)
    want = _value_and_grads(fused.gelu, [x], dy)
    got = _value_and_grads(lambda t: fused.gelu(tf.cast(t, tf.bfloat16)), [x], dy)
    assert _value_and_grads(fused.gelu, [x.astype(tf.bfloat16.as_numpy_dtype)], dy)[0].dtype != np.float32
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, np.float32), w, rtol=2e-2, atol=2e-2)


def _xla_calls(graph):
    """Ops of a graph (and its functions) that call an XLA-compiled function."""
    found = [op.name for op in graph.get_operations() if op.node_def.attr.get("_XlaMustCompile")]
    for fn in graph._functions.values():   # inner functions: where jit_compile calls would sit
        found += [n.name for n in fn.definition.node_def if n.attr.get("_XlaMustCompile")]
    return found


def classifier_graphs(dim: int, heads: int):
    """Traced graphs of a small fine-tuning classifier: (inference, training step's gradients)."""
    cfg = ModelConfig(method="hacm", window=12, t_patch=3, dim=dim, depth=1, heads=heads, decoder_dim=dim,
                      decoder_depth=1, decoder_heads=heads).validate()
    clf = ActionClassifier(cfg.to_dict(), 5, head="finetune")
    clf.build()
    x = tf.TensorSpec([2, 12, 2, 25, 3], tf.float32)

    def train(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(clf(batch, training=True))
        return tape.gradient(loss, clf.trainable_variables)

    return (tf.function(lambda b: clf(b, training=False)).get_concrete_function(x).graph,
            tf.function(train).get_concrete_function(x).graph)


def test_inference_graph_has_no_xla_call_and_training_graph_has():
    inference, training = classifier_graphs(16, 4)     # head dimension 4: the XLA-fused attention
    assert not _xla_calls(inference)
    assert _xla_calls(training)


@pytest.mark.parametrize("units", [8, 40])   # weight [24, 8]: transposed weight gradient, MatMul input gradient;
#                                             [24, 40]: direct weight gradient, einsum input gradient
def test_dense_equals_the_keras_layer_with_gradients(units):
    import keras

    layer = keras.layers.Dense(units, name="fc")
    layer.build((None, 24))
    x = tf.constant(RNG.normal(size=(2, 5, 24)).astype(np.float32))
    dy = tf.constant(RNG.normal(size=(2, 5, units)).astype(np.float32))

    def value_and_grads(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return [y] + tape.gradient(y, [x] + layer.trainable_variables, output_gradients=dy)

    for got, want in zip(value_and_grads(lambda t: fused.dense(t, layer)), value_and_grads(layer)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    half = tf.cast(x, tf.bfloat16)                   # other dtypes: the layer itself
    np.testing.assert_array_equal(fused.dense(half, layer).numpy(), layer(half).numpy())
