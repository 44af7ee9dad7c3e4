"""One harness for every Keras layer of the package: get_config round trip, Keras serialisation (the
restored layer computes the same outputs from the same weights), output shape, and, for layers with a
compute precision, float32 against mixed bfloat16 (float32 outputs that agree to bfloat16 rounding)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import ModelConfig
from hacm_tf.layers.embedding import HyperbolicMapping, PositionEmbedding, SkeletonEmbedding
from hacm_tf.layers.transformer import Attention, DropPath, LayerNorm, TransformerBlock
from hacm_tf.models.encoder import SkeletonEncoder

ENCODER = ModelConfig(method="hacm", window=12, t_patch=3, dim=16, depth=2, heads=4, decoder_dim=16,
                      decoder_depth=1, decoder_heads=4).validate().to_dict()

# (name, constructor kwargs -> layer, input shape, output shape, takes a precision argument)
LAYERS = [
    ("SkeletonEmbedding", lambda **k: SkeletonEmbedding(16, 3, **k), (2, 12, 5, 3), (2, 4, 5, 16), False),
    ("PositionEmbedding", lambda **k: PositionEmbedding(4, 5, 16, **k), (2, 4, 5, 16), (2, 4, 5, 16), False),
    ("HyperbolicMapping", lambda **k: HyperbolicMapping(1.0, 2.0, **k), (2, 4, 5, 16), (2, 4, 5, 16), False),
    ("DropPath", lambda **k: DropPath(0.2, **k), (4, 6, 16), (4, 6, 16), False),
    ("Attention", lambda **k: Attention(16, 4, **k), (2, 6, 16), (2, 6, 16), False),
    ("LayerNorm", lambda **k: LayerNorm(fused=True, **k), (2, 6, 16), (2, 6, 16), False),
    ("TransformerBlock", lambda **k: TransformerBlock(16, 4, drop_path=0.1, **k), (2, 6, 16), (2, 6, 16), True),
    ("TransformerBlock remat", lambda **k: TransformerBlock(16, 4, remat="block", **k), (2, 6, 16), (2, 6, 16),
     True),
    ("SkeletonEncoder", lambda **k: SkeletonEncoder(ENCODER, **k), (2, 12, 25, 3), (2, 4 * 18, 16), True),
]
IDS = [entry[0] for entry in LAYERS]


def _input(shape):
    return tf.constant(np.random.RandomState(0).normal(size=shape).astype(np.float32) * 0.5)


def _built(make, shape, **kwargs):
    layer = make(**kwargs)
    layer(_input(shape))          # builds it
    return layer


@pytest.mark.parametrize("name,make,in_shape,out_shape,has_precision", LAYERS, ids=IDS)
def test_output_shape_and_dtype(name, make, in_shape, out_shape, has_precision):
    y = _built(make, in_shape)(_input(in_shape))
    assert tuple(y.shape) == out_shape and y.dtype == tf.float32


@pytest.mark.parametrize("name,make,in_shape,out_shape,has_precision", LAYERS, ids=IDS)
def test_config_round_trip_and_serialisation(name, make, in_shape, out_shape, has_precision):
    layer = _built(make, in_shape)
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    restored(_input(in_shape))
    assert [tuple(w.shape) for w in restored.weights] == [tuple(w.shape) for w in layer.weights]
    restored.set_weights(layer.get_weights())
    np.testing.assert_array_equal(restored(_input(in_shape)).numpy(), layer(_input(in_shape)).numpy())


@pytest.mark.parametrize("name,make,in_shape,out_shape,has_precision", [e for e in LAYERS if e[4]],
                         ids=[e[0] for e in LAYERS if e[4]])
def test_mixed_bfloat16_agrees_with_float32(name, make, in_shape, out_shape, has_precision):
    f32 = _built(make, in_shape)
    mixed = _built(make, in_shape, precision="mixed_bfloat16")
    mixed.set_weights(f32.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)   # float32 weights, bfloat16 compute
    a, b = f32(_input(in_shape)).numpy(), mixed(_input(in_shape)).numpy()
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()


def test_position_embedding_training_gradients_equal_the_broadcast_gradients():
    layer = PositionEmbedding(4, 5, 16)
    rng = np.random.RandomState(2)
    x = tf.constant(rng.normal(size=(3, 4, 5, 16)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(3, 4, 5, 16)).astype(np.float32))

    def value_and_grads(training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
        return [y] + tape.gradient(y, [x, layer.joint, layer.temporal], output_gradients=dy)

    for got, want in zip(value_and_grads(True), value_and_grads(False)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
