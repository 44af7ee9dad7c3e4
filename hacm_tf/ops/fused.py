"""Training-pass kernels of the transformer blocks: GELU, LayerNorm and attention with hand-written
gradients whose element-wise work runs as XLA-fused loops.

Without them, TensorFlow runs every element-wise op of these functions and of their autodiff
gradients as its own pass over memory (GELU's gradient alone is eleven passes over [rows, 4 D]; the
softmax gradient four passes over [B, H, N, N]). Here each forward and backward is one fused kernel
(an inner ``tf.function(jit_compile=True)``, called from graphs with or without XLA). The attention
runs one sequence at a time, whose [H, N, N] scores stay in cache, recomputes them in the backward
pass instead of keeping them, and takes the softmax gradient's row term from the [B, H, N, Dh] output
instead of the weights: sum_j P_ij dP_ij = sum_d dO_id O_id. Where the native ops are available
(hacm_tf.ops.native, built for this CPU) they replace the attention, LayerNorm and GELU paths:
scores, softmax and products in cache, one pass per row statistic; in bfloat16 also LayerNorm,
bias + GELU and the other bias additions, and the attention where the AMX tiles run it. Results equal
the plain formulas to float32 rounding (tests/ops/test_fused.py, test_native.py); the element-wise maths runs
in float32 for bfloat16 inputs and rounds once at the end. The matmuls stay TensorFlow's (oneDNN).

Used by the transformer blocks in training; inference, export and ONNX conversion keep the plain
ops (no XLA call in the serving graph).
"""

from __future__ import annotations

import math

import tensorflow as tf

from hacm_tf.ops import native

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _f32(x):
    return tf.cast(x, tf.float32)


@tf.function(jit_compile=True, autograph=False)
def _gelu_forward(x):
    x32 = _f32(x)
    return tf.cast(0.5 * x32 * (1.0 + tf.math.erf(x32 * _INV_SQRT2)), x.dtype)


@tf.function(jit_compile=True, autograph=False)
def _gelu_backward(x, dy):
    x32 = _f32(x)
    cdf = 0.5 * (1.0 + tf.math.erf(x32 * _INV_SQRT2))
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * x32 * x32)
    return tf.cast(_f32(dy) * (cdf + x32 * pdf), dy.dtype)


@tf.custom_gradient
def gelu(x: tf.Tensor):
    """Exact GELU x Phi(x), any shape; gradient Phi(x) + x phi(x) from x alone (one kept tensor)."""
    return _gelu_forward(x), lambda dy: _gelu_backward(x, dy)


@tf.function(jit_compile=True, autograph=False)
def _layer_norm_forward(x, gamma, beta, epsilon):
    x32 = _f32(x)
    centred = x32 - tf.reduce_mean(x32, -1, keepdims=True)
    inv_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), -1, keepdims=True) + epsilon)
    return tf.cast(centred * inv_std * _f32(gamma) + _f32(beta), x.dtype), inv_std


@tf.function(jit_compile=True, autograph=False)
def _layer_norm_backward(x, gamma, inv_std, dy):
    x32, dy32 = _f32(x), _f32(dy)
    x_hat = (x32 - tf.reduce_mean(x32, -1, keepdims=True)) * inv_std
    dx_hat = dy32 * _f32(gamma)
    dx = inv_std * (dx_hat - tf.reduce_mean(dx_hat, -1, keepdims=True)
                    - x_hat * tf.reduce_mean(dx_hat * x_hat, -1, keepdims=True))
    rows = list(range(len(x.shape) - 1))
    return (tf.cast(dx, x.dtype), tf.cast(tf.reduce_sum(dy32 * x_hat, rows), gamma.dtype),
            tf.cast(tf.reduce_sum(dy32, rows), gamma.dtype))


@tf.custom_gradient
def _matmul(x, w):
    """x [M, K] @ w [K, F] with each gradient product in the orientation oneDNN runs fastest (measured
    on 2 cores at the decoder's shapes, M = 27648 rows): the input gradient dy w^T as an einsum when
    F >= K (the qkv, attention output and first MLP projections: 94-97 % of the matmul peak against
    83-85 % for a transposed-operand MatMul, which TensorFlow's graph rewriter would also fold a
    materialised transpose back into), a MatMul otherwise (the second MLP layer: 96 against 91 %);
    the weight gradient as (dy^T x)^T when K > F (the second MLP layer: 83 against 57 %), x^T dy
    otherwise."""
    def grad(dy):
        if w.shape[1] >= w.shape[0]:
            d_x = tf.einsum("mf,kf->mk", dy, w)
        else:
            d_x = tf.matmul(dy, w, transpose_b=True)
        if w.shape[0] > w.shape[1]:
            d_w = tf.transpose(tf.matmul(dy, x, transpose_a=True))
        else:
            d_w = tf.matmul(x, dy, transpose_a=True)
        return d_x, d_w

    return tf.matmul(x, w), grad


def _on_rows(fn, x: tf.Tensor, units: int) -> tf.Tensor:
    """fn applied to x [..., D] seen as rows [M, D] (one 2-D matmul), the result [M, units] reshaped to
    [..., units]."""
    shape = tf.shape(x)
    return tf.reshape(fn(tf.reshape(x, [-1, x.shape[-1]])), tf.concat([shape[:-1], [units]], 0))


def _float32_dense(x: tf.Tensor, layer) -> bool:
    return x.dtype == tf.float32 and layer.compute_dtype == "float32" and layer.use_bias


def _bfloat16_dense(x: tf.Tensor, layer) -> bool:
    """A bfloat16 Dense layer with bias (mixed bfloat16: its input float32 or bfloat16) whose bias the
    native ops can add."""
    return (layer.compute_dtype == "bfloat16" and x.dtype in (tf.float32, tf.bfloat16) and layer.use_bias
            and native.available())


def _dense_then(finish, x: tf.Tensor, layer) -> tf.Tensor:
    """finish(x @ kernel, bias) of a Keras Dense ``layer`` over x [..., D] as rows, with _matmul (x and
    the kernel in the layer's compute dtype, as the layer itself would cast them)."""
    x = tf.cast(x, layer.compute_dtype)
    kernel = tf.cast(layer.kernel, x.dtype)
    return _on_rows(lambda rows: finish(_matmul(rows, kernel), layer.bias), x, layer.units)


def dense(x: tf.Tensor, layer) -> tf.Tensor:
    """layer(x) for a Keras Dense ``layer`` with bias: [..., D] -> [..., units]. In float32 the
    gradients take the faster orientations (_matmul); in bfloat16 with the native ops also, and the
    bias is added in one pass each way (TensorFlow's bfloat16 BiasAdd and its gradient convert one
    element at a time); otherwise the layer itself."""
    if _float32_dense(x, layer):
        return _dense_then(tf.nn.bias_add, x, layer)
    if _bfloat16_dense(x, layer):
        return _dense_then(native.bias_add, x, layer)
    return layer(x)


def dense_unbiased(x: tf.Tensor, layer):
    """(x @ kernel, bias) of a Keras Dense ``layer`` for a caller that adds the bias itself
    (residual_add): [..., D] -> ([..., units], [units]); (layer(x), None) where dense() would call the
    layer."""
    if _float32_dense(x, layer) or _bfloat16_dense(x, layer):
        return _dense_then(lambda h, bias: h, x, layer), layer.bias
    return layer(x), None


def dense_gelu(x: tf.Tensor, layer) -> tf.Tensor:
    """gelu(layer(x)) for a Keras Dense ``layer`` (with bias): [..., D] -> [..., units].

    float32 or bfloat16 with the native ops: the matmul, then bias and GELU in one op
    (hacm_tf.ops.native); else the layer and the XLA-fused gelu.
    """
    if not ((_float32_dense(x, layer) and native.available()) or _bfloat16_dense(x, layer)):
        return gelu(layer(x))
    return _dense_then(native.bias_gelu, x, layer)


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float, out_dtype=None) -> tf.Tensor:
    """LayerNorm over the last axis: (x - mean) / sqrt(var + epsilon) * gamma + beta. x [..., D];
    gamma, beta [D]; the result in ``out_dtype`` (default x's). The backward pass keeps x and the
    [..., 1] inverse deviations. float32 and bfloat16 run on the native op where it is built
    (hacm_tf.ops.native; a float32 x normalised straight into bfloat16), the rest as XLA-fused
    kernels."""
    if x.dtype in (tf.float32, tf.bfloat16) and native.available():
        return native.layer_norm(x, gamma, beta, epsilon, out_dtype)
    epsilon = tf.constant(epsilon, tf.float32)

    @tf.custom_gradient
    def normalise(x, gamma, beta):
        y, inv_std = _layer_norm_forward(x, gamma, beta, epsilon)
        return y, lambda dy: _layer_norm_backward(x, gamma, inv_std, dy)

    y = normalise(x, tf.convert_to_tensor(gamma), tf.convert_to_tensor(beta))
    return y if out_dtype is None else tf.cast(y, out_dtype)


def layer_norm_residual(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float, out_dtype=None):
    """(x, layer_norm(x, ...)) for a pre-norm residual block that adds its branch to the first result:
    with the native op the gradient x receives there is summed in the LayerNorm's gradient pass
    (hacm_tf.ops.native.layer_norm_residual); otherwise TensorFlow sums the two."""
    if x.dtype in (tf.float32, tf.bfloat16) and native.available():
        return native.layer_norm_residual(x, gamma, beta, epsilon, out_dtype)
    return x, layer_norm(x, gamma, beta, epsilon, out_dtype)


def residual_add(x: tf.Tensor, branch: tf.Tensor, scale=None, bias=None) -> tf.Tensor:
    """x + scale[b] * (branch + bias) in x's dtype: x [B, ..., D], branch of its shape in any float dtype,
    bias [D] or None, scale [B] per-sample factors (drop path) or None. float32 x with a float32 or
    bfloat16 branch takes the native op where built (conversion, bias, factor and addition in one pass
    each way)."""
    if x.dtype == tf.float32 and branch.dtype in (tf.float32, tf.bfloat16) and native.available():
        return native.residual_add(x, branch, scale, bias)
    branch = tf.cast(branch, x.dtype)
    if bias is not None:
        branch = branch + tf.cast(bias, x.dtype)
    return x + (branch if scale is None else scale_samples(branch, scale))


def scale_samples(x: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """x [B, ...] with each sample multiplied by its factor [B] (in x's dtype)."""
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    return x * tf.reshape(tf.cast(factors, x.dtype), shape)


@tf.function(jit_compile=True, autograph=False)
def _scores_gradient(weights, d_weights, d_out, out):
    """dS = P * (dP - rowsum(dO * O)): [B, H, N, N]; the row term from [B, H, N, Dh]."""
    row = tf.reduce_sum(_f32(d_out) * _f32(out), -1, keepdims=True)
    return tf.cast(_f32(weights) * (_f32(d_weights) - row), weights.dtype)


def _attention_weights(q, k):
    return tf.nn.softmax(tf.matmul(q, k, transpose_b=True), axis=-1)


def _attention_gradients(q, k, v, weights, out, d_out):
    """(dq, dk, dv) of out = weights v, weights = softmax(q k^T), given d_out."""
    d_scores = _scores_gradient(weights, tf.matmul(d_out, v, transpose_b=True), d_out, out)
    return (tf.matmul(d_scores, k), tf.matmul(d_scores, q, transpose_a=True),
            tf.matmul(weights, d_out, transpose_a=True))


# sequences whose H x N x N scores are at most this many elements (2 MiB in float32, about a core's L2
# cache) run in one piece: there the loop costs more than the memory it saves (measured on 2 CPU cores:
# 4 heads x 208 tokens 1.15x faster in one piece; 8 x 432 the same speed per sequence, 1.7 GiB less)
WHOLE_SCORES = 512 * 1024


@tf.custom_gradient
def _attention_whole(q, k, v):
    weights = _attention_weights(q, k)
    out = tf.matmul(weights, v)
    return out, lambda d_out: _attention_gradients(q, k, v, weights, out, d_out)


def _sequence_forward(a):
    q, k, v = a
    return tf.matmul(_attention_weights(q, k), v)


def _sequence_gradients(a):
    q, k, v, d_out, out = a
    return _attention_gradients(q, k, v, _attention_weights(q, k), out, d_out)


@tf.custom_gradient
def _attention_per_sequence(q, k, v):
    out = tf.map_fn(_sequence_forward, (q, k, v), fn_output_signature=q.dtype, parallel_iterations=2)

    def grad(d_out):
        return tf.map_fn(_sequence_gradients, (q, k, v, d_out, out), fn_output_signature=(q.dtype,) * 3,
                         parallel_iterations=2)

    return out, grad


def attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """softmax(q k^T) v per head: [B, H, N, Dh] x 3 -> [B, H, N, Dh] (q already scaled).

    For float32 inputs the native op (hacm_tf.ops.native: built for this CPU when a C++ compiler is
    present, Dh in 16/32/48/64) keeps the N x N scores in cache in both passes; otherwise, and for
    bfloat16 (whose products oneDNN runs on the AMX/bfloat16 units: the op in float32 with casts
    measured the same, 14.20 against 14.33 samples/s in HA-CM pretraining), attention_xla. Results
    equal the plain formula's to float32 rounding.
    """
    if q.dtype == tf.float32 and native.available(q.shape[-1]):
        return native.attention(q, k, v)
    return attention_xla(q, k, v)


def packed_attention(qkv: tf.Tensor, scale: float, bias=None) -> tf.Tensor:
    """Multi-head softmax(scale q k^T) v from the packed projection: [B, N, 3, H, Dh] -> [B, N, H, Dh];
    ``bias`` [3 H Dh]: the projection's bias, not yet added to qkv (None: none or already added).

    float32 with the native op, and bfloat16 with its AMX kernels (hacm_tf.ops.native.amx_available):
    read and written in place (no head transposes, no scaled copy of q; the bias added and its gradient
    summed inside the ops); otherwise the bias added in float32 and heads-major transposes around
    attention_xla.
    """
    head_dim = qkv.shape[-1]
    if ((qkv.dtype == tf.float32 and native.available(head_dim))
            or (qkv.dtype == tf.bfloat16 and native.amx_available(head_dim))):
        return native.attention_packed(qkv, scale, bias)
    if bias is not None:
        qkv = tf.cast(tf.cast(qkv, tf.float32) + tf.reshape(tf.cast(bias, tf.float32), qkv.shape[2:]), qkv.dtype)
    return packed_attention_xla(qkv, scale)


def packed_attention_xla(qkv: tf.Tensor, scale: float) -> tf.Tensor:
    """packed_attention without the native op: heads-major transposes around attention_xla."""
    q, k, v = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))
    return tf.transpose(attention_xla(q * scale, k, v), [0, 2, 1, 3])


def attention_xla(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """attention without the native op: [B, H, N, Dh] x 3 -> [B, H, N, Dh].

    Long sequences (H x N x N > WHOLE_SCORES, or N unknown when traced) run one sequence at a time
    (two at once), so its [H, N, N] scores stay in cache; the backward pass recomputes a sequence's
    weights from q and k instead of keeping [B, H, N, N] (the memory of ``remat="attention"``, at
    less time than the plain ops). Short ones run in one piece and keep their small weights. The
    softmax gradient is one XLA-fused kernel.
    """
    heads, tokens = q.shape[1], q.shape[2]
    if tokens is not None and heads * tokens * tokens <= WHOLE_SCORES:
        return _attention_whole(q, k, v)
    return _attention_per_sequence(q, k, v)
