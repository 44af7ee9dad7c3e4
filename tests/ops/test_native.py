"""The native attention op (hacm_tf.ops.native) against float64 autodiff; its build, switch and
fallback. Where no C++ compiler exists the op tests are skipped (the XLA path they would replace is
tested in test_fused.py); where one exists, the build must succeed."""

import logging
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.layers.transformer import TransformerBlock
from hacm_tf.ops import fused, native
from tests.ops.test_fused import classifier_graphs

RNG = np.random.RandomState(3)
NO_BIAS = tf.zeros([0], tf.float32)   # the attention ops without the projection's bias
needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C++ compiler on this machine")


def _plain_attention(q, k, v):
    return tf.matmul(tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1), v)


def _value_and_grads(fn, arrays, d_out):
    inputs = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = fn(*inputs)
    grads = tape.gradient(out, inputs, output_gradients=tf.cast(d_out, out.dtype))
    return [out.numpy()] + [g.numpy() for g in grads]


def _graph_op_types(fn, *specs):
    return {op.type for op in tf.function(fn).get_concrete_function(*specs).graph.get_operations()}


@pytest.fixture(scope="module")
def op_library():
    assert native.enabled(), "HACM_TF_NATIVE_KERNELS switches the native kernels off"
    path = native.build()   # a machine with a compiler must build it
    assert path.exists() and native.load() is not None
    return path


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 3, 37, 16), (1, 2, 50, 32), (2, 19, 48), (1, 1, 70, 64), (3, 1, 16),
                                   (1, 2, 8, 32), (1, 1, 100, 32)])
def test_values_and_gradients_match_float64_autodiff(op_library, shape):
    arrays = [RNG.normal(size=shape) * 1.5 for _ in range(3)]
    d_out = RNG.normal(size=shape)
    got = _value_and_grads(native.attention, [a.astype(np.float32) for a in arrays], d_out)
    want = _value_and_grads(_plain_attention, arrays, d_out)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5 * np.abs(w).max(), err_msg=name)


@needs_compiler
def test_saturated_rows_stay_finite(op_library):
    rng = np.random.RandomState(11)          # its own draw: the result may not depend on the tests' order
    q = np.zeros((1, 1, 20, 16), np.float32)
    q[..., 0] = 60.0                      # scores up to +-3600: exp over- and underflows without the shift
    k = rng.normal(size=q.shape).astype(np.float32)
    v = rng.normal(size=q.shape).astype(np.float32)
    got = _value_and_grads(native.attention, [q, k, v], np.ones(q.shape))
    want = _value_and_grads(_plain_attention, [a.astype(np.float64) for a in (q, k, v)], np.ones(q.shape))
    for g, w in zip(got, want):
        assert np.isfinite(g).all()   # scores of 3600 carry float32 rounding of 2e-4: tolerance 1e-3;
        # nearly one-hot rows have gradients that cancel to ~1e-10, resolved to float32 rounding of
        # the O(1) terms they cancel from (1e-6)
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=max(1e-3 * np.abs(w).max(), 1e-6))


@needs_compiler
def test_bfloat16_inputs_give_bfloat16_results(op_library):
    arrays = [RNG.normal(size=(2, 2, 24, 32)).astype(np.float32) for _ in range(3)]
    want = native.attention(*arrays).numpy()
    got = native.attention(*(tf.cast(a, tf.bfloat16) for a in arrays))
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want, atol=5e-2)


def _amx_or_skip():
    if not native.amx_available(32):
        pytest.skip("this CPU, build or OS has no AMX-BF16 tiles (the bfloat16 attention falls back)")


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 37, 3, 2, 32), (1, 64, 3, 3, 32), (1, 5, 3, 1, 32), (1, 100, 3, 2, 32)])
def test_bfloat16_attention_on_amx_tiles_matches_float64(op_library, shape):
    _amx_or_skip()
    scale = shape[-1] ** -0.5
    qkv = tf.cast(RNG.normal(size=shape) * 1.5, tf.bfloat16)   # the float64 reference sees the same values
    d_out = tf.cast(RNG.normal(size=shape[:2] + shape[3:]), tf.bfloat16)
    got = _value_and_grads(lambda t: native.attention_packed(t, scale), [qkv], d_out)
    want = _value_and_grads(lambda t: _plain_packed(t, scale), [tf.cast(qkv, tf.float64)], d_out)
    assert "HacmAttention" in _graph_op_types(lambda t: native.attention_packed(t, scale),
                                              tf.TensorSpec(shape, tf.bfloat16))
    for name, g, w in zip(("out", "d_qkv"), got, want):
        assert g.dtype == tf.bfloat16.as_numpy_dtype and g.shape == w.shape
        # bfloat16 rounding (2^-8 relative) of the results and of the weights before their products
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=0, atol=8e-3 * np.abs(w).max(), err_msg=name)
    ops = native.load()   # the log-sum-exp in float32, to float32 rounding of the float32 sums
    lse = ops.hacm_attention(qkv, NO_BIAS, scale=scale)[1].numpy()
    q, k = (tf.transpose(tf.cast(qkv, tf.float64)[:, :, i], [0, 2, 1, 3]) for i in (0, 1))
    want_lse = tf.reduce_logsumexp(scale * tf.matmul(q, k, transpose_b=True), axis=-1).numpy()
    np.testing.assert_allclose(lse, want_lse, rtol=0, atol=2e-4)


@needs_compiler
def test_bfloat16_attention_on_amx_tiles_saturated_and_rejected_shapes(op_library):
    _amx_or_skip()
    ops = native.load()
    qkv = np.zeros((1, 20, 3, 1, 32), np.float32)
    qkv[:, :, 0, :, 0] = 60.0                                 # scores up to +-60 k: one-hot rows
    qkv[:, :, 1:] = np.random.RandomState(3).normal(size=(1, 20, 2, 1, 32))
    qkv = tf.cast(qkv, tf.bfloat16)
    out, lse = ops.hacm_attention(qkv, NO_BIAS, scale=1.0)
    d_qkv, _ = ops.hacm_attention_grad(qkv, NO_BIAS, out, lse, tf.ones_like(out), scale=1.0)
    assert all(np.isfinite(tf.cast(t, tf.float32).numpy()).all() for t in (out, lse, d_qkv))
    k, v = (tf.cast(qkv, tf.float32)[0, :, i, 0] for i in (1, 2))
    np.testing.assert_allclose(tf.cast(out, tf.float32)[0, :, 0].numpy(),   # each row: v of its largest k_0
                               np.broadcast_to(v[int(np.argmax(k[:, 0]))], (20, 32)), rtol=1e-2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bfloat16 head dimension 16 is not 32"):
        ops.hacm_attention(tf.zeros((2, 5, 3, 1, 16), tf.bfloat16), NO_BIAS, scale=1.0)


def _plain_packed(qkv, scale):
    """softmax(scale q k^T) v per head from [B, N, 3, H, D]: [B, N, H, D]."""
    q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))
    return tf.transpose(_plain_attention(q * scale, k, v), [0, 2, 1, 3])


@needs_compiler
@pytest.mark.parametrize("native_op", [True, False], ids=["native", "xla"])
@pytest.mark.parametrize("shape", [(2, 45, 3, 3, 16), (1, 9, 3, 2, 32)])
def test_packed_attention_matches_float64_autodiff(op_library, shape, native_op, monkeypatch):
    if not native_op:
        monkeypatch.setenv(native.SWITCH_ENV, "0")
    scale = shape[-1] ** -0.5
    qkv = RNG.normal(size=shape) * 2
    d_out = RNG.normal(size=shape[:2] + shape[3:])
    got = _value_and_grads(lambda t: fused.packed_attention(t, scale), [qkv.astype(np.float32)], d_out)
    want = _value_and_grads(lambda t: _plain_packed(t, scale), [qkv], d_out)
    for name, g, w in zip(("out", "d_qkv"), got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-5 * np.abs(w).max(), err_msg=name)


@needs_compiler
@pytest.mark.parametrize("shape, dtype", [((2, 45, 3, 3, 16), "float32"), ((2, 37, 3, 2, 32), "float32"),
                                          ((2, 37, 3, 2, 32), "bfloat16")])   # AMX: head dimension 32
def test_packed_attention_adds_the_projection_bias_as_a_bias_addition_before_it(op_library, shape, dtype):
    """attention_packed(qkv, scale, bias) equals attention_packed(qkv + bias) with the sum rounded to qkv's
    dtype first (bfloat16: as HacmBiasAdd rounds it), in value and in the gradients of qkv and bias."""
    if dtype == "bfloat16":
        _amx_or_skip()
    scale = shape[-1] ** -0.5
    qkv = tf.cast(RNG.normal(size=shape), dtype)
    bias = tf.constant(RNG.normal(size=[3 * shape[3] * shape[4]]), tf.float32)
    d_out = tf.cast(RNG.normal(size=shape[:2] + shape[3:]), dtype)

    def added_before(t, b):
        return native.attention_packed(tf.cast(tf.cast(t, tf.float32) + tf.reshape(b, shape[2:]), dtype), scale)

    got = _value_and_grads(lambda t, b: native.attention_packed(t, scale, b), [qkv, bias], d_out)
    want = _value_and_grads(added_before, [qkv, bias], d_out)
    for name, g, w in zip(("out", "d_qkv", "d_bias"), got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if name == "d_bias":   # sums of the same d_qkv in another order
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max(), err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
    ops = native.load()
    out, lse = ops.hacm_attention(qkv, bias, scale=scale)
    d_qkv, d_bias = ops.hacm_attention_grad(qkv, bias, out, lse, d_out, scale=scale)
    assert ops.hacm_attention_grad(qkv, NO_BIAS, out, lse, d_out, scale=scale)[1].shape == (0,)
    want_bias = tf.reduce_sum(tf.cast(d_qkv, tf.float64), axis=[0, 1]).numpy().reshape(-1)  # [3, H, D] order
    np.testing.assert_allclose(d_bias.numpy(), want_bias, rtol=1e-5, atol=1e-5 * np.abs(want_bias).max())


@needs_compiler
def test_bad_shapes_are_rejected_with_their_sizes(op_library):
    ops = native.load()
    with pytest.raises(tf.errors.InvalidArgumentError, match="head dimension 8"):
        ops.hacm_attention(tf.zeros((2, 5, 3, 1, 8)), NO_BIAS, scale=1.0)
    layout = r"\[batch, tokens, 3, heads, head_dim\], got \[2,5,2,1,16\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=layout):
        ops.hacm_attention(tf.zeros((2, 5, 2, 1, 16)), NO_BIAS, scale=1.0)
    qkv = tf.zeros((2, 5, 3, 2, 16))
    out, lse = ops.hacm_attention(qkv, NO_BIAS, scale=1.0)
    assert out.shape == (2, 5, 2, 16) and lse.shape == (2, 2, 5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"lse has shape \[2,5,2\], expected \[2,2,5\]"):
        ops.hacm_attention_grad(qkv, NO_BIAS, out, tf.zeros((2, 5, 2)), out, scale=1.0)
    bias = r"HacmAttention: bias must be \[96\] \(3 x heads x head_dim of qkv \[2,5,3,2,16\]\) or empty, got \[32\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=bias):
        ops.hacm_attention(qkv, tf.zeros([32]), scale=1.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="HacmAttentionGrad: bias must be"):
        ops.hacm_attention_grad(qkv, tf.zeros([2, 48]), out, lse, out, scale=1.0)
    out, lse = ops.hacm_attention(tf.zeros((3, 0, 3, 2, 16)), tf.zeros([96]), scale=1.0)
    assert out.shape == (3, 0, 2, 16) and lse.shape == (3, 2, 0)
    d_qkv, d_bias = ops.hacm_attention_grad(tf.zeros((3, 0, 3, 2, 16)), tf.ones([96]), out, lse, out, scale=1.0)
    assert d_qkv.shape == (3, 0, 3, 2, 16) and (d_bias.numpy() == 0).all()


@needs_compiler
def test_fused_attention_takes_the_native_op_unless_switched_off(op_library, monkeypatch):
    spec = tf.TensorSpec([2, 2, 40, 16], tf.float32)
    assert "HacmAttention" in _graph_op_types(fused.attention, spec, spec, spec)
    odd = tf.TensorSpec([2, 2, 40, 8], tf.float32)   # head dimension the kernels are not built for
    assert "HacmAttention" not in _graph_op_types(fused.attention, odd, odd, odd)
    half = tf.TensorSpec([2, 40, 3, 2, 16], tf.bfloat16)   # bfloat16, head dimension 16: oneDNN's products
    assert "HacmAttention" not in _graph_op_types(lambda t: fused.packed_attention(t, 0.25), half)
    half = tf.TensorSpec([2, 40, 3, 2, 32], tf.bfloat16)   # head dimension 32: the AMX kernels where they run
    types = _graph_op_types(lambda t: fused.packed_attention(t, 0.25), half)
    assert ("HacmAttention" in types) == native.amx_available(32)
    xla = tf.function(lambda q, k, v: fused.attention(q, k, v), jit_compile=True)   # custom ops cannot compile
    assert "HacmAttention" not in {op.type for op in xla.get_concrete_function(spec, spec, spec).graph.get_operations()}
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert not native.available(16)
    assert "HacmAttention" not in _graph_op_types(fused.attention, spec, spec, spec)


@needs_compiler
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_block_with_native_attention_equals_plain_ops(op_library, precision):
    """The native attention op with the qkv projection's bias added inside it (no bias addition of its
    own in the graph): the block's output and gradients of plain ops."""
    dim = 32 if precision == "float32" else 64      # head dimension 16: float32 op; 32: the AMX kernels
    if precision == "mixed_bfloat16":
        _amx_or_skip()
    block = TransformerBlock(dim, 2, fused=True, precision=precision)
    x = tf.constant(RNG.normal(size=(2, 30, dim)).astype(np.float32))
    block(x)

    def step(fused_kernels):
        block.fused = block.attn.fused = block.norm1.fused = block.norm2.fused = fused_kernels
        with tf.GradientTape() as tape:
            y = block(x, training=True)
            loss = tf.reduce_sum(y * y)
        return [y] + tape.gradient(loss, block.trainable_variables)

    ops = _graph_op_types(lambda: step(True))
    assert {"HacmAttention", "HacmAttentionGrad"} <= ops and not ops & {"BiasAdd", "HacmBiasAdd", "BiasAddGrad"}
    tol = 2e-4 if precision == "float32" else 3e-2
    for got, want in zip(step(True), step(False)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=tol, atol=tol * np.abs(want).max())


@needs_compiler
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_block_with_drop_path_equals_plain_ops_for_the_same_seeds(op_library, precision):
    """Native residual additions (drop-path factors, bfloat16 branches) and the LayerNorm gradient
    with the residual stream's gradient summed in: the same block output and gradients as plain ops."""
    block = TransformerBlock(32, 2, drop_path=0.5, precision=precision, fused=True)
    x = tf.constant(RNG.normal(size=(6, 30, 32)).astype(np.float32))
    block(x)
    seeds = tf.constant([[1, 2], [3, 4]], tf.int32)
    weights = tf.constant(RNG.normal(size=(6, 30, 32)).astype(np.float32))

    def step(fused_kernels):
        block.fused = block.attn.fused = block.norm1.fused = block.norm2.fused = fused_kernels
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = block._residuals(x, True, seeds)
            loss = tf.reduce_sum(y * weights)
        return [y] + tape.gradient(loss, [x] + block.trainable_variables)

    ops = _graph_op_types(lambda: step(True))
    assert {"HacmResidualAdd", "HacmResidualAddGrad", "HacmLayerNormGrad"} <= ops and "AddN" not in ops
    got, want = step(True), step(False)
    factors = block.drop.factors(x, True, seeds[0]).numpy()
    assert 0 < np.count_nonzero(factors) < len(factors)                 # some samples dropped, some kept
    tol = 2e-4 if precision == "float32" else 3e-2
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=tol, atol=tol * np.abs(w).max())


@needs_compiler
@pytest.mark.parametrize("branch_dtype", [tf.float32, tf.bfloat16])
def test_residual_add_and_layer_norm_residual_match_plain_ops(op_library, branch_dtype):
    x = tf.constant(RNG.normal(size=(3, 7, 37)).astype(np.float32))       # D = 37: a scalar tail
    branch = tf.cast(RNG.normal(size=(3, 7, 37)), branch_dtype)
    dy = tf.constant(RNG.normal(size=(3, 7, 37)).astype(np.float32))
    bias = RNG.normal(size=37).astype(np.float32)
    for scale, with_bias in ((None, False), (tf.constant([0.0, 1.25, 1.25]), False), (None, True),
                             (tf.constant([1.25, 0.0, 1.25]), True)):
        factor = 1.0 if scale is None else scale[:, None, None]
        if with_bias:
            got = _value_and_grads(lambda x, b, c: native.residual_add(x, b, scale, c), [x, branch, bias], dy)
            want = _value_and_grads(lambda x, b, c: x + (tf.cast(b, tf.float32) + c) * factor, [x, branch, bias], dy)
        else:
            got = _value_and_grads(lambda x, b: native.residual_add(x, b, scale), [x, branch], dy)
            want = _value_and_grads(lambda x, b: x + tf.cast(b, tf.float32) * factor, [x, branch], dy)
        assert got[2].dtype == want[2].dtype == branch_dtype.as_numpy_dtype
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.float32(g), np.float32(w), rtol=1e-5, atol=1e-5)
    ops = native.load()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"HacmResidualAdd: scale has 2 factors for an input "
                                                             r"of shape \[3,7,37\]"):
        ops.hacm_residual_add(x, branch, tf.zeros([0]), tf.ones([2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"HacmResidualAdd: branch has shape \[3,7,36\]"):
        ops.hacm_residual_add(x, tf.cast(branch[..., 1:], branch_dtype), tf.zeros([0]), tf.zeros([0]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"HacmResidualAdd: bias has shape \[5\], expected \[37\]"):
        ops.hacm_residual_add(x, branch, tf.zeros([5]), tf.zeros([0]))
    # the residual stream's gradient summed into the LayerNorm's
    gamma, beta = tf.constant(RNG.normal(size=37), tf.float32), tf.constant(RNG.normal(size=37), tf.float32)
    d_norm = tf.cast(RNG.normal(size=(3, 7, 37)), branch_dtype)

    def summed(x, gamma, beta):
        kept, y = native.layer_norm_residual(x, gamma, beta, 1e-5, branch_dtype)
        return tf.reduce_sum(kept * dy) + tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(d_norm, tf.float32))

    def plain(x, gamma, beta):
        y = tf.cast(tf.cast(_plain_layer_norm(x, gamma, beta), branch_dtype), tf.float32)
        return tf.reduce_sum(x * dy) + tf.reduce_sum(y * tf.cast(d_norm, tf.float32))

    got = _value_and_grads(summed, [x, gamma, beta], 1.0)
    want = _value_and_grads(plain, [x, gamma, beta], 1.0)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def _plain_layer_norm(x, gamma, beta):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) / tf.sqrt(var + 1e-5) * gamma + beta


@needs_compiler
@pytest.mark.parametrize("shape", [(3, 700, 256), (5, 37), (1, 16), (2, 0, 24)])
def test_layer_norm_matches_float64_autodiff(op_library, shape):
    arrays = [RNG.normal(size=shape) * 3 + 1, RNG.normal(size=shape[-1:]), RNG.normal(size=shape[-1:])]
    d_out = RNG.normal(size=shape)
    got = _value_and_grads(lambda x, g, b: native.layer_norm(x, g, b, 1e-5), [a.astype(np.float32) for a in arrays],
                           d_out)
    want = _value_and_grads(_plain_layer_norm, arrays, d_out)
    for name, g, w in zip(("y", "dx", "d_gamma", "d_beta"), got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * max(np.abs(w).max(initial=0), 1), err_msg=name)


@needs_compiler
@pytest.mark.parametrize("x_dtype", [tf.bfloat16, tf.float32], ids=["bfloat16", "float32_to_bfloat16"])
@pytest.mark.parametrize("shape", [(3, 70, 256), (5, 37)])
def test_bfloat16_layer_norm_matches_float64(op_library, shape, x_dtype):
    x = tf.cast(RNG.normal(size=shape) * 3 + 1, x_dtype)
    x64 = tf.cast(x, tf.float64)
    gamma, beta = (RNG.normal(size=shape[-1:]).astype(np.float32) for _ in range(2))
    d_out, d_out64 = _bfloat16_values(shape, 1.0)
    got = _value_and_grads(lambda x, g, b: native.layer_norm(x, g, b, 1e-5, tf.bfloat16), [x, gamma, beta], d_out)
    want = _value_and_grads(_plain_layer_norm, [x64, gamma.astype(np.float64), beta.astype(np.float64)], d_out64)
    dtypes = {"y": tf.bfloat16.as_numpy_dtype, "dx": x_dtype.as_numpy_dtype}
    for name, g, w in zip(("y", "dx", "d_gamma", "d_beta"), got, want):
        assert g.dtype == dtypes.get(name, np.float32)
        # y and dx: one bfloat16 rounding of values of order one (2^-8 relative); the sums in float32
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=2 ** -8, atol=2 ** -8 * np.abs(w).max() / 8,
                                   err_msg=name)


@needs_compiler
def test_layer_norm_rejects_mismatched_parameters_and_fused_takes_it(op_library, monkeypatch):
    ops = native.load()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"LayerNorm: gamma has shape \[8\], expected \[6\]"):
        ops.hacm_layer_norm(tf.zeros((4, 6)), tf.zeros(8), tf.zeros(6), epsilon=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"NormGrad: dy has shape \[4,5\], expected \[4,6\]"):
        ops.hacm_layer_norm_grad(tf.zeros((4, 6)), tf.zeros(6), tf.zeros(4), tf.zeros(4), tf.zeros((4, 5)), [])
    spec, vector = tf.TensorSpec([2, 9, 24], tf.float32), tf.TensorSpec([24], tf.float32)

    def norm(x, g, b):
        return fused.layer_norm(x, g, b, 1e-5)

    assert "HacmLayerNorm" in _graph_op_types(norm, spec, vector, vector)
    half = tf.TensorSpec([2, 9, 24], tf.bfloat16)
    assert "HacmLayerNorm" in _graph_op_types(norm, half, vector, vector)
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert "HacmLayerNorm" not in _graph_op_types(norm, spec, vector, vector)


def _plain_bias_gelu(h, bias):
    z = h + bias
    return 0.5 * z * tf.math.erfc(-z / np.sqrt(2.0))     # erfc: accurate where Phi(z) is tiny


@needs_compiler
@pytest.mark.parametrize("shape", [(4, 9, 64), (7, 37), (3, 0, 16)])
def test_bias_gelu_matches_float64_autodiff(op_library, shape):
    h = np.concatenate([np.linspace(-12, 12, 4 * shape[-1]), RNG.normal(size=int(np.prod(shape))) * 3])
    h = h[:int(np.prod(shape))].reshape(shape)     # both tails, the erfc branches' boundary and zero
    arrays = [h, RNG.normal(size=shape[-1:]) * 0.1]
    d_out = RNG.normal(size=shape)
    got = _value_and_grads(native.bias_gelu, [a.astype(np.float32) for a in arrays], d_out)
    want = _value_and_grads(_plain_bias_gelu, arrays, d_out)
    for name, g, w in zip(("y", "dh", "d_bias"), got, want):
        assert g.dtype == np.float32 and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=2e-6 * max(np.abs(w).max(initial=0), 1), err_msg=name)
    tail = np.float32([-9.0, -6.0, -4.0])          # relative accuracy where Phi is tiny
    np.testing.assert_allclose(native.bias_gelu(tail, tf.zeros(3)).numpy(),
                               _plain_bias_gelu(tail.astype(np.float64), 0.0).numpy(), rtol=1e-5)


def _bfloat16_values(shape, spread):
    """bfloat16 test values and the same values in float64 (the reference sees what the op sees)."""
    x = tf.cast(RNG.normal(size=shape) * spread, tf.bfloat16)
    return x, tf.cast(x, tf.float64)


@needs_compiler
@pytest.mark.parametrize("shape", [(4, 9, 64), (7, 37)])
def test_bfloat16_bias_gelu_and_bias_add_match_float64(op_library, shape):
    z = tf.cast(np.linspace(-14, 14, 4001), tf.bfloat16)   # both tails: relative accuracy where Phi is tiny
    got = tf.cast(native.bias_gelu(z[None], tf.zeros([4001])), tf.float64).numpy()[0]
    want = _plain_bias_gelu(tf.cast(z, tf.float64), 0.0).numpy()
    np.testing.assert_allclose(got, want, rtol=2 ** -8 + 5e-4, atol=1e-37)   # below: float32's normal range
    h, h64 = _bfloat16_values(shape, 3.0)
    bias = RNG.normal(size=shape[-1:]).astype(np.float32)
    d_out, d_out64 = _bfloat16_values(shape, 1.0)
    for op, plain in ((native.bias_gelu, _plain_bias_gelu), (native.bias_add, lambda a, b: a + b)):
        with tf.GradientTape() as tape:
            b = tf.constant(bias)
            tape.watch([h, b])
            y = op(h, b)
        dh, db = tape.gradient(y, [h, b], output_gradients=d_out)
        with tf.GradientTape() as tape:
            b64 = tf.constant(bias.astype(np.float64))
            tape.watch([h64, b64])
            y64 = plain(h64, b64)
        dh64, db64 = tape.gradient(y64, [h64, b64], output_gradients=d_out64)
        assert y.dtype == dh.dtype == tf.bfloat16 and db.dtype == tf.float32
        # one bfloat16 rounding (2^-8 relative) and the bfloat16 GELU's approximation (3e-4 relative in
        # Phi and phi; dh = dy (Phi + z phi) cancels near z = -0.75, hence its absolute part)
        for name, g, w, floor in (("y", y, y64, 1e-6), ("dh", dh, dh64, 5e-4)):
            np.testing.assert_allclose(tf.cast(g, tf.float64).numpy(), w.numpy(), rtol=2 ** -8 + 5e-4,
                                       atol=floor * np.abs(w.numpy()).max(), err_msg=f"{op.__name__} {name}")
        np.testing.assert_allclose(db.numpy(), db64.numpy(), rtol=1e-2,     # float32 sums of rounded terms
                                   atol=1e-2 * np.abs(db64.numpy()).max(), err_msg=f"{op.__name__} d_bias")


@needs_compiler
def test_bfloat16_dense_layers_take_the_native_bias_ops(op_library):
    layer = keras.layers.Dense(24, dtype="mixed_bfloat16")
    layer.build((None, 16))
    for dtype in (tf.bfloat16, tf.float32):   # float32: a float32 residual stream's LayerNorm output
        spec = tf.TensorSpec([2, 9, 16], dtype)
        assert "HacmBiasAdd" in _graph_op_types(lambda x: fused.dense(x, layer), spec)
        assert "HacmBiasGelu" in _graph_op_types(lambda x: fused.dense_gelu(x, layer), spec)
        x = tf.cast(RNG.normal(size=(2, 9, 16)), dtype)
        for got, want in ((fused.dense(x, layer), layer(x)), (fused.dense_gelu(x, layer), fused.gelu(layer(x)))):
            assert got.dtype == tf.bfloat16
            np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), tf.cast(want, tf.float32).numpy(),
                                       rtol=2e-2, atol=2e-2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"HacmBiasAdd: bias has shape \[5\], expected \[6\]"):
        native.load().hacm_bias_add(tf.zeros((4, 6), tf.bfloat16), tf.zeros(5))


@needs_compiler
def test_dense_gelu_takes_the_native_op_and_checks_shapes(op_library, monkeypatch):
    ops = native.load()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias has shape \[5\], expected \[6\]"):
        ops.hacm_bias_gelu(tf.zeros((4, 6)), tf.zeros(5))
    layer = keras.layers.Dense(24, name="fc1")
    layer.build((None, 16))
    spec = tf.TensorSpec([2, 9, 16], tf.float32)
    assert "HacmBiasGelu" in _graph_op_types(lambda x: fused.dense_gelu(x, layer), spec)
    x = tf.constant(RNG.normal(size=(2, 9, 16)).astype(np.float32))
    np.testing.assert_allclose(fused.dense_gelu(x, layer).numpy(), _plain_bias_gelu(
        tf.matmul(x, layer.kernel), layer.bias).numpy(), rtol=1e-5, atol=1e-6)
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert "HacmBiasGelu" not in _graph_op_types(lambda x: fused.dense_gelu(x, layer), spec)


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 3, 7, 40), (5, 19), (4, 1, 16), (0, 6, 8)])
def test_pairwise_distance_matches_float64(op_library, shape):
    x = (RNG.normal(size=shape) * 0.3).astype(np.float32)   # D = 40, 19: vector and scalar tails
    got = native.pairwise_distance(tf.constant(x)).numpy()
    want = np.linalg.norm(x[..., :, None, :].astype(np.float64) - x[..., None, :, :], axis=-1)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got, np.swapaxes(got, -1, -2))      # symmetric to the bit, zero diagonal
    assert not np.diagonal(got, axis1=-2, axis2=-1).any()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"HacmPairwiseDistance: x must have at least two"):
        native.pairwise_distance(tf.zeros([3]))
    points = tf.constant(x)
    with tf.GradientTape() as tape:                      # registered as not differentiable
        tape.watch(points)
        d = native.pairwise_distance(points)
    assert tape.gradient(d, points) is None


@needs_compiler
def test_pairwise_poincare_distance_takes_the_native_op(op_library, monkeypatch):
    from hacm_tf.ops import hyperbolic
    spec = tf.TensorSpec([2, 5, 16], tf.float32)
    assert "HacmPairwiseDistance" in _graph_op_types(hyperbolic.pairwise_distance, spec)
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert "HacmPairwiseDistance" not in _graph_op_types(hyperbolic.pairwise_distance, spec)


@needs_compiler
@pytest.mark.parametrize("c,clip_radius", [(1.0, 0.0), (2.0, 0.0), (1.0, 2.0)])
@pytest.mark.parametrize("shape", [(3, 40, 256), (50, 19), (4, 3), (0, 8)])
def test_expmap_project_matches_the_plain_map(op_library, shape, c, clip_radius):
    """Values and gradients against hacm_tf.ops.hyperbolic's plain ops, rows from zero to far outside
    the ball (D = 256, 19, 3: vector and scalar tails)."""
    from hacm_tf.ops import hyperbolic
    rows = int(np.prod(shape[:-1]))
    norms = RNG.choice([0.0, 1e-3, 0.3, 1.0, 2.5, 6.0, 40.0], size=(rows, 1))
    x = RNG.normal(size=(rows, shape[-1])) / np.sqrt(shape[-1]) * norms
    x, dy = x.reshape(shape).astype(np.float32), RNG.normal(size=shape).astype(np.float32)
    got = _value_and_grads(lambda x: native.expmap_project(x, c, clip_radius), [x], dy)
    want = _value_and_grads(lambda x: hyperbolic.expmap_project(x, c, clip_radius), [x], dy)
    # a row at the boundary may be projected by one and not the other (|expmap0(x)| = 1 / sqrt(c) up to
    # the summation order of its norm): the two radii differ by 1e-5 there
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6 * max(1.0, np.abs(w).max(initial=0)))
    inside = (np.linalg.norm(x, axis=-1) < 4.0)[..., None]
    np.testing.assert_allclose(np.where(inside, got[0], 0), np.where(inside, want[0], 0), rtol=1e-6, atol=1e-7)


@needs_compiler
def test_hyperbolic_mapping_takes_the_native_op_in_training_only(op_library, monkeypatch):
    from hacm_tf.layers.embedding import HyperbolicMapping
    layer, spec = HyperbolicMapping(1.0), tf.TensorSpec([2, 5, 16], tf.float32)
    assert "HacmExpmapProject" in _graph_op_types(lambda x: layer(x, training=True), spec)
    assert "HacmExpmapProject" not in _graph_op_types(lambda x: layer(x, training=False), spec)
    assert "HacmExpmapProject" not in _graph_op_types(lambda x: HyperbolicMapping(1.0, fused=False)(
        x, training=True), spec)
    with pytest.raises(tf.errors.InvalidArgumentError, match="HacmExpmapProjectGrad: factors has shape"):
        native.load().hacm_expmap_project_grad(tf.zeros([2, 4]), tf.zeros([2, 3]), tf.zeros([2, 4]))
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    assert "HacmExpmapProject" not in _graph_op_types(lambda x: layer(x, training=True), spec)


def test_failed_build_falls_back_with_the_reason_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("CXX", "false")                 # a "compiler" that always fails
    with pytest.raises(native.NativeBuildError, match="failed"):
        native.build()
    assert not any(tmp_path.rglob(native.LIBRARY_NAME))   # nothing half-written left behind
    monkeypatch.setattr(native, "_state", {})
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.load() is None and not native.available(32)
    assert "using the XLA path" in caplog.text
    spec = tf.TensorSpec([2, 2, 40, 32], tf.float32)
    assert "HacmAttention" not in _graph_op_types(fused.attention, spec, spec, spec)


def test_unwritable_cache_folder_falls_back_to_the_temporary_directory(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(native.CACHE_ENV, str(blocked / "cache"))     # cannot be created: a file is in the way
    monkeypatch.setenv("CXX", "false")
    path = native.library_path()
    assert str(path).startswith(tempfile.gettempdir()) and path.name == native.LIBRARY_NAME


def test_no_compiler_is_a_clear_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert native.compiler() is None
    with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler"):
        native.build()


@needs_compiler
def test_inference_graph_has_no_custom_op_and_training_graph_has(op_library):
    def custom(graph):
        return {op.type for op in graph.get_operations() if op.type.startswith("Hacm")}

    inference, training = classifier_graphs(32, 2)     # head dimension 16: the native attention
    assert custom(inference) == set()                  # what export and serving trace
    assert custom(training) == {"HacmAttention", "HacmAttentionGrad", "HacmLayerNorm", "HacmLayerNormGrad",
                                "HacmBiasGelu", "HacmBiasGeluGrad", "HacmResidualAdd", "HacmResidualAddGrad",
                                "HacmExpmapProject", "HacmExpmapProjectGrad"}
