import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.ops import masking as M
from hacm_tf.ops import patching


def np_gumbel_topk(scores, noise, keep, tau, keep_high):
    s = scores / (tau * scores.max(-1, keepdims=True) + 1e-10)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    z = np.log(p) - np.log(-np.log(noise + 1e-10) + 1e-10)
    order = np.argsort(-z if keep_high else z, axis=-1, kind="stable")
    return order[:, :keep]


@pytest.mark.parametrize("keep_high", [True, False])
def test_gumbel_topk_against_numpy(keep_high):
    r = np.random.RandomState(0)
    scores = r.uniform(0, 5, size=(6, 40)).astype(np.float32)
    noise = r.uniform(size=(6, 40)).astype(np.float32)
    res = M.gumbel_topk(tf.constant(scores), tf.constant(noise), 7, 0.8, keep_high)
    np.testing.assert_array_equal(res.ids_keep.numpy(), np_gumbel_topk(scores, noise, 7, 0.8, keep_high))


def test_mask_restore_consistency():
    r = np.random.RandomState(1)
    res = M.gumbel_topk(tf.constant(r.normal(size=(4, 30)), tf.float32),
                        tf.constant(r.uniform(size=(4, 30)), tf.float32), 5, 0.5)
    mask, restore, keep = res.mask.numpy(), res.ids_restore.numpy(), res.ids_keep.numpy()
    assert mask.sum(1).tolist() == [25] * 4                         # 1 = masked
    for b in range(4):
        assert sorted(np.nonzero(mask[b] == 0)[0]) == sorted(keep[b])
        assert sorted(restore[b]) == list(range(30))                   # a permutation
        np.testing.assert_array_equal(restore[b][keep[b]], np.arange(5))   # kept tokens have ranks 0..k-1


def test_direction_and_temperature():
    """High scores are kept (HA-CM direction) or masked (MAMP); a lower tau sharpens the choice."""
    r = np.random.RandomState(2)
    scores = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (2000, 1))
    noise = tf.constant(r.uniform(size=(2000, 50)), tf.float32)

    def mean_kept_score(tau, keep_high):
        ids = M.gumbel_topk(tf.constant(scores), noise, 10, tau, keep_high).ids_keep.numpy()
        return scores[0][ids].mean()

    assert mean_kept_score(0.8, True) > 0.55 > 0.45 > mean_kept_score(0.8, False)
    assert mean_kept_score(0.2, True) > mean_kept_score(0.8, True) + 0.1
    # tau -> large: uniform sampling
    assert abs(mean_kept_score(1000.0, True) - 0.5) < 0.02


def test_random_masking_keeps_smallest_noise():
    noise = tf.constant([[0.5, 0.1, 0.9, 0.3]])
    res = M.random_masking(noise, 2)
    assert res.ids_keep.numpy().tolist() == [[1, 3]]
    assert res.mask.numpy().tolist() == [[1, 0, 1, 0]]


def test_keep_count_matches_reference_float_arithmetic():
    assert M.keep_count(750, 0.9) == 74 and M.keep_count(216, 0.9) == 21 and M.keep_count(432, 0.9) == 43


def test_motion_scores_against_numpy():
    x = np.random.RandomState(3).normal(size=(2, 12, 5, 3)).astype(np.float32)
    p = patching.patchify(tf.constant(x), 4).numpy()                  # [2, 3, 5, 12]
    # numpy restatement of the patch layout: value index = frame_in_patch * 3 + xyz
    np.testing.assert_array_equal(p[1, 2, 4].reshape(4, 3), x[1, 8:12, 4])
    s = M.motion_scores(tf.constant(p)).numpy().reshape(2, 3, 5)
    d = np.abs(p[:, 1:] - p[:, :-1]).mean(-1)
    np.testing.assert_allclose(s[:, 1:], d, atol=1e-6)
    np.testing.assert_allclose(s[:, 0], d[:, 0], atol=1e-6)


def test_normalize_patches_unbiased():
    t = np.random.RandomState(4).normal(size=(3, 7, 9)).astype(np.float32)
    got = patching.normalize_patches(tf.constant(t)).numpy()
    exp = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(got, exp, atol=1e-5)


def _value_and_grad(fn, x, dy):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return y.numpy(), tape.gradient(y, x, output_gradients=dy).numpy()


@pytest.mark.parametrize("batched", [True, False])
def test_permute_tokens_equals_the_gather_with_its_gradient(batched):
    rng = np.random.RandomState(5)
    x = tf.constant(rng.normal(size=(3, 7, 4)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(3, 7, 4)).astype(np.float32))
    perm = np.stack([rng.permutation(7) for _ in range(3)]) if batched else rng.permutation(7)
    gather = (lambda t: tf.gather(t, perm, batch_dims=1)) if batched else (lambda t: tf.gather(t, perm, axis=1))
    got = _value_and_grad(lambda t: M.permute_tokens(t, perm), x, dy)
    want = _value_and_grad(gather, x, dy)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_gather_tokens_with_ranks_equals_the_gather_with_its_gradient():
    rng = np.random.RandomState(6)
    x = tf.constant(rng.normal(size=(3, 9, 4)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(3, 4, 4)).astype(np.float32))
    res = M.random_masking(tf.constant(rng.uniform(size=(3, 9)), tf.float32), 4)
    got = _value_and_grad(lambda t: M.gather_tokens(t, res.ids_keep, res.ids_restore), x, dy)
    want = _value_and_grad(lambda t: tf.gather(t, res.ids_keep, batch_dims=1), x, dy)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert np.count_nonzero(got[1].any(-1)) == 3 * 4            # the hidden tokens' rows stay zero
