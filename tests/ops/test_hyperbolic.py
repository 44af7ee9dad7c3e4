import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.ops import hyperbolic as H


def np_expmap0(x, c):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 0, np.tanh(np.sqrt(c) * n) * x / (np.sqrt(c) * np.maximum(n, 1e-30)), x)


def np_distance(u, v, c, reference):
    num = 4 * np.sum((u - v) ** 2, -1) if reference else 2 * np.sum((u - v) ** 2, -1)
    den = (1 - c * np.sum(u * u, -1)) * (1 - c * np.sum(v * v, -1))
    d = np.arccosh(1 + c * num / den)
    return d if reference else d / np.sqrt(c)


@pytest.mark.parametrize("c", [1.0, 0.5, 2.0])
def test_expmap_logmap_against_numpy(c):
    x = np.random.RandomState(0).normal(size=(50, 16)) * 0.3
    x[0] = 0
    y = H.expmap0(tf.constant(x, tf.float32), c).numpy()
    np.testing.assert_allclose(y, np_expmap0(x, c), atol=1e-6)
    assert np.all(np.linalg.norm(y, axis=-1) < 1 / np.sqrt(c))
    np.testing.assert_allclose(H.logmap0(tf.constant(y), c).numpy(), x, atol=2e-5)


def test_projection_keeps_points_inside_the_ball():
    x = tf.constant(np.random.RandomState(1).normal(size=(20, 8)) * 100, tf.float32)
    for c in (1.0, 4.0):
        y = H.expmap_project(x, c).numpy()
        norms = np.linalg.norm(y.astype(np.float64), axis=-1)
        assert np.all(norms < 1 / np.sqrt(c)) and np.all(norms > 0.99 / np.sqrt(c))
    clipped = H.expmap_project(x, 1.0, clip_radius=2.0).numpy()
    np.testing.assert_allclose(np.linalg.norm(clipped, axis=-1), np.tanh(2.0), rtol=1e-5)


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("c", [1.0, 2.0])
def test_distance(reference, c):
    r = np.random.RandomState(2)
    u = np_expmap0(r.normal(size=(7, 1, 5)), c)
    v = np_expmap0(r.normal(size=(1, 9, 5)), c)
    d = H.distance(tf.constant(u, tf.float32), tf.constant(v, tf.float32), c, reference).numpy()
    np.testing.assert_allclose(d, np_distance(u, v, c, reference), rtol=1e-4, atol=1e-4)
    p = tf.constant(np_expmap0(r.normal(size=(6, 5)), c), tf.float32)
    m = H.distance(p[:, None], p[None, :], c, reference).numpy()
    np.testing.assert_allclose(m, m.T, atol=1e-5)
    np.testing.assert_allclose(np.diag(m), 0, atol=1e-3)
    # d(0, tanh(1) e1) = 2 for the standard distance with c = 1
    if c == 1.0 and not reference:
        e = tf.constant([[np.tanh(1.0), 0, 0, 0, 0]], tf.float32)
        assert float(H.distance(tf.zeros([1, 5]), e, 1.0)[0]) == pytest.approx(2.0, rel=1e-5)


def test_gradients_are_finite_at_zero_and_at_the_boundary():
    x = tf.Variable([[0.0, 0.0], [50.0, 0.0], [0.1, 0.2]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(H.expmap_project(x))
    g = tape.gradient(y, x).numpy()
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("reference", [False, True])
def test_pairwise_distance_equals_the_broadcast_distance(reference):
    rng = np.random.RandomState(4)
    p = H.project(H.expmap0(tf.constant(rng.normal(size=(2, 3, 6, 8)).astype(np.float32))))
    got = H.pairwise_distance(p, 1.0, reference).numpy()
    want = H.distance(p[..., :, None, :], p[..., None, :, :], 1.0, reference).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (2, 3, 6, 6)


@pytest.mark.parametrize("c,clip_radius", [(1.0, 0.0), (2.0, 0.0), (1.0, 2.0), (0.5, 1.5)])
def test_expmap_project_gradient_equals_the_composition_gradient(c, clip_radius):
    """The radial gradient (scale dy + slope (x . dy) x) against autodiff through clip, expmap0 and
    project, in float64, for rows at zero, small, inside, clipped and projected (|x| up to 60)."""
    rng = np.random.RandomState(5)
    x = rng.normal(size=(60, 12)) * rng.choice([1e-4, 0.05, 0.4, 1.0, 3.0, 60.0], size=(60, 1))
    x[0] = 0
    x, dy = tf.constant(x), tf.constant(rng.normal(size=x.shape))

    def composition(x):
        return H.project(H.expmap0(H.clip_norm(x, clip_radius) if clip_radius else x, c), c)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        mapped, composed = H.expmap_project(x, c, clip_radius), composition(x)
        loss_mapped, loss_composed = tf.reduce_sum(mapped * dy), tf.reduce_sum(composed * dy)
    np.testing.assert_array_equal(mapped.numpy(), composed.numpy())
    want = tape.gradient(loss_composed, x).numpy()
    got = tape.gradient(loss_mapped, x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    projected = np.isclose(np.linalg.norm(mapped.numpy(), axis=-1), (1 - H.BALL_EPS) / np.sqrt(c), rtol=1e-12, atol=0)
    assert projected.any() == (clip_radius == 0)     # the test reaches the projected branch
    # a projected row's gradient is tangential: no change of |y| along x
    radial = np.sum(got * x.numpy(), -1)
    np.testing.assert_allclose(radial[projected], 0, atol=1e-9)
