"""Poincare-ball maps with curvature c (ball radius 1 / sqrt(c)), numerically safe norms.

All functions act on the last axis: ``x: [..., D]``.
"""

from __future__ import annotations

import math

import tensorflow as tf

from hacm_tf.ops import native

BALL_EPS = 1e-5      # projection keeps points at radius (1 - 1e-5) / sqrt(c)
MIN_NORM = 1e-15


def _norm(x: tf.Tensor) -> tf.Tensor:
    return tf.norm(x, axis=-1, keepdims=True)


def _accurate_tanh(t: tf.Tensor) -> tf.Tensor:
    """tanh evaluated in float64 and rounded once: TF's float32 tanh rounds to 1.0 from |t| ~ 8.3,
    while a correctly rounded one (as PyTorch's) stays below 1 until |t| ~ 9; near the ball's
    boundary that decides whether a point is projected. Applied to one norm per token: cheap."""
    return tf.cast(tf.tanh(tf.cast(t, tf.float64)), t.dtype)


def expmap0(x: tf.Tensor, c: float = 1.0) -> tf.Tensor:
    """Exponential map at the origin: tanh(sqrt(c)|x|) x / (sqrt(c)|x|); x where |x| = 0. [..., D] -> [..., D]."""
    sc = tf.sqrt(tf.cast(c, x.dtype))
    n = _norm(x)
    safe = tf.maximum(n, MIN_NORM)
    return tf.where(n > 0, _accurate_tanh(sc * safe) * x / (sc * safe), x)


def logmap0(y: tf.Tensor, c: float = 1.0) -> tf.Tensor:
    """Inverse of expmap0 inside the ball: artanh(sqrt(c)|y|) y / (sqrt(c)|y|). [..., D] -> [..., D]."""
    sc = tf.sqrt(tf.cast(c, y.dtype))
    n = _norm(y)
    safe = tf.clip_by_value(n, MIN_NORM, (1.0 - BALL_EPS) / sc)
    return tf.where(n > 0, tf.atanh(sc * safe) * y / (sc * safe), y)


def project(y: tf.Tensor, c: float = 1.0, eps: float = BALL_EPS) -> tf.Tensor:
    """Pulls points with |y| >= 1/sqrt(c) back to radius (1 - eps)/sqrt(c) (the reference's rule)."""
    return _project(y, c, eps)[0]


def _project(y, c, eps=BALL_EPS):
    """project(y) and where it pulled a point back [..., 1]."""
    sc = tf.sqrt(tf.cast(c, y.dtype))
    n = _norm(y)
    outside = n >= 1.0 / sc
    return tf.where(outside, y * ((1.0 - eps) / sc) / tf.maximum(n, MIN_NORM), y), outside


def clip_norm(x: tf.Tensor, radius: float) -> tf.Tensor:
    """Euclidean feature clipping before the exponential map: x * min(1, radius / |x|)."""
    n = _norm(x)
    return x * tf.minimum(1.0, radius / tf.maximum(n, MIN_NORM))


def expmap_project(x: tf.Tensor, c: float = 1.0, clip_radius: float = 0.0, fused: bool = False) -> tf.Tensor:
    """project(expmap0(x)), optionally after clipping |x| to ``clip_radius`` (0: no clipping). [..., D] -> [..., D].

    The forward pass is the reference's composition; the gradient uses that each row is only scaled,
    y = scale(|x|) x (radial_factors, radial_gradient): one pass over x and dy instead of
    differentiating the composition's element-wise steps. ``fused`` (training graphs): float32 through
    the native op where it is built (hacm_tf.ops.native.expmap_project: one pass per step, each row
    in cache; the same results to float32 rounding).
    """
    c, clip_radius = float(c), float(clip_radius or 0.0)
    if fused and x.dtype == tf.float32 and native.available():
        return native.expmap_project(x, c, clip_radius)

    @tf.custom_gradient
    def mapped(x):
        norm = _norm(x)
        y, projected = _project(expmap0(clip_norm(x, clip_radius) if clip_radius > 0 else x, c), c)
        scale, slope = (tf.cast(f, x.dtype) for f in radial_factors(norm, projected, c, clip_radius))
        return y, lambda dy: radial_gradient(x, scale, slope, dy)

    return mapped(x)


def radial_factors(norm: tf.Tensor, projected: tf.Tensor, c: float = 1.0, clip_radius: float = 0.0):
    """expmap_project's rows as y = scale x: (scale, slope) in float64 [..., 1] from |x| and where the
    projection fired [..., 1], with dy/dx = scale I + slope x x^T (slope = scale'(|x|) / |x|).

    |y| = tanh(sqrt(c) min(|x|, clip_radius)) / sqrt(c), or (1 - 1e-5) / sqrt(c) where projected; it
    does not change with |x| where projected or clipped. Rows with |x| = 0 keep y = x.
    """
    n = tf.cast(norm, tf.float64)
    sc = math.sqrt(c)
    zero, one = tf.zeros_like(n), tf.ones_like(n)
    th = tf.tanh(sc * (tf.minimum(n, clip_radius) if clip_radius > 0 else n))
    radius = tf.where(projected, one * ((1.0 - BALL_EPS) / sc), th / sc)          # |y|
    flat = projected | (n > clip_radius) if clip_radius > 0 else projected
    d_radius = tf.where(flat, zero, 1.0 - th * th)
    positive = n > 0
    safe = tf.where(positive, n, one)
    scale = tf.where(positive, radius / safe, one)
    slope = tf.where(positive, (d_radius - scale) / (safe * safe), zero)
    return scale, slope


def radial_gradient(x: tf.Tensor, scale: tf.Tensor, slope: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """Gradient of y = scale(|x|) x: dx = scale dy + slope (x . dy) x. x, dy [..., D]; scale, slope [..., 1]."""
    return scale * dy + (slope * tf.reduce_sum(x * dy, axis=-1, keepdims=True)) * x


def distance(u: tf.Tensor, v: tf.Tensor, c: float = 1.0, reference: bool = False) -> tf.Tensor:
    """Poincare distance, broadcasting over leading axes. [..., D], [..., D] -> [...].

    standard:  arccosh(1 + 2 c |u - v|^2 / ((1 - c|u|^2)(1 - c|v|^2))) / sqrt(c)
    reference: the official code's arccosh(1 + c (2|u - v|)^2 / (...)) (4|u - v|^2 numerator).
    """
    return _distance_from(tf.norm(u - v, axis=-1), tf.reduce_sum(u * u, axis=-1), tf.reduce_sum(v * v, axis=-1),
                          c, reference)


def pairwise_distance(points: tf.Tensor, c: float = 1.0, reference: bool = False) -> tf.Tensor:
    """distance between every two of the V points of each set: [..., V, D] -> [..., V, V], the same
    values as distance(points[..., :, None, :], points[..., None, :, :])."""
    squares = tf.reduce_sum(points * points, axis=-1)                  # [..., V]
    return _distance_from(euclidean_pairwise(points), squares[..., :, None], squares[..., None, :], c, reference)


def euclidean_pairwise(points: tf.Tensor) -> tf.Tensor:
    """|p_i - p_j| between the V points of each set: [..., V, D] -> [..., V, V]. float32 takes the native
    op where it is built (hacm_tf.ops.native: no [..., V, V, D] differences in memory; not
    differentiable), otherwise the broadcast formula."""
    if points.dtype == tf.float32 and native.available():
        return native.pairwise_distance(points)
    return tf.norm(points[..., :, None, :] - points[..., None, :, :], axis=-1)


def _distance_from(diff, squares_u, squares_v, c, reference):
    """The Poincare distance from |u - v| and |u|^2, |v|^2 (see distance)."""
    num = tf.square(2.0 * diff) if reference else 2.0 * tf.square(diff)
    den = (1.0 - c * squares_u) * (1.0 - c * squares_v)
    arg = 1.0 + c * num / tf.maximum(den, MIN_NORM)
    d = tf.acosh(tf.maximum(arg, 1.0))
    return d if reference else d / tf.sqrt(tf.cast(c, d.dtype))
