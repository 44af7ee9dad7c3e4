"""HA-CM's pure masking functions (ops.hacm) and the official code's adapters (ops.reference) against
numpy formulas."""

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.ops import hacm, masking, reference

RNG = np.random.RandomState(0)


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_token_groups_cover_the_grid_once():
    g = hacm.token_groups(5, 4)
    assert (g.times_t, g.times_s, g.len_t, g.len_s) == ((0, 2, 4), (1, 3), 12, 8)
    assert sorted(g.slot_cells.tolist()) == list(range(20))
    np.testing.assert_array_equal(g.slot_cells[g.cell_slots], np.arange(20))
    # time-major: slot 1 of the temporal group is (t=0, v=1); joint-major: (t=2, v=0)
    assert g.slot_cells[1] == 1 and hacm.token_groups(5, 4, temporal_joint_major=True).slot_cells[1] == 2 * 4


def test_temporal_attention_and_scores():
    q, k = RNG.randn(2, 3, 4, 8).astype(np.float32), RNG.randn(2, 3, 4, 8).astype(np.float32)
    logits = np.einsum("btvd,buvd->bvtu", q, k)
    attn = hacm.temporal_attention(tf.constant(q), tf.constant(k)).numpy()
    np.testing.assert_allclose(attn, _softmax(logits / np.sqrt(8), -1), rtol=1e-5)
    np.testing.assert_allclose(hacm.temporal_scores(tf.constant(attn)).numpy(), attn.sum(2).transpose(0, 2, 1),
                               rtol=1e-6)
    ref = reference.temporal_attention(tf.constant(q), tf.constant(k)).numpy()
    np.testing.assert_allclose(ref, _softmax(logits * np.sqrt(8), 1), rtol=1e-4, atol=1e-6)


def test_spatial_scores_sum_distances_and_the_hub_term():
    p, f = RNG.randn(2, 3, 5, 4).astype(np.float32), RNG.randn(2, 3, 1, 4).astype(np.float32)
    euclid = lambda u, v: tf.norm(u - v, axis=-1)   # noqa: E731
    got = hacm.spatial_scores(tf.constant(p), tf.constant(f), 0.5, euclid).numpy()
    pair = np.linalg.norm(p[:, :, :, None] - p[:, :, None, :], axis=-1).sum(2)
    np.testing.assert_allclose(got, pair + 0.5 * np.linalg.norm(f - p, axis=-1), rtol=1e-5)


def _results(b, length, keep):
    return masking.random_masking(tf.constant(RNG.uniform(size=(b, length)), tf.float32), keep)


def test_restore_groups_puts_each_visible_token_in_its_cell():
    groups = hacm.token_groups(4, 3)
    res_t, res_s = _results(2, groups.len_t, 2), _results(2, groups.len_s, 1)
    visible = RNG.randn(2, 3, 5).astype(np.float32)
    token = RNG.randn(1, 1, 5).astype(np.float32)
    got = hacm.restore_groups(tf.constant(visible), tf.constant(token), res_t, res_s, 2,
                              tf.constant(groups.cell_slots)).numpy()
    want = np.tile(token, (2, 12, 1))
    for n in range(2):
        for j, slot in enumerate(res_t.ids_keep.numpy()[n]):
            want[n, groups.slot_cells[slot]] = visible[n, j]
        for j, slot in enumerate(res_s.ids_keep.numpy()[n]):
            want[n, groups.slot_cells[groups.len_t + slot]] = visible[n, 2 + j]
    np.testing.assert_array_equal(got, want)


def test_restore_groups_gradients_equal_the_concat_and_gather_formula():
    """The table gather's hand-written gradient (visible rows gathered back, the mask token's as all
    rows less the visible) against autodiff of tile + concat + gather."""
    groups = hacm.token_groups(5, 4)
    res_t, res_s = _results(3, groups.len_t, 4), _results(3, groups.len_s, 2)
    visible = tf.constant(RNG.randn(3, 6, 5).astype(np.float32))
    token = tf.constant(RNG.randn(1, 1, 5).astype(np.float32))
    dy = tf.constant(RNG.randn(3, 20, 5).astype(np.float32))

    def formula(visible, token):
        b = 3
        filled = tf.concat([visible[:, :4], tf.tile(token, [b, groups.len_t - 4, 1]), visible[:, 4:],
                            tf.tile(token, [b, groups.len_s - 2, 1])], axis=1)
        sources = tf.concat([res_t.ids_restore, res_s.ids_restore + groups.len_t], axis=1)
        return tf.gather(filled, tf.gather(sources, groups.cell_slots, axis=1), batch_dims=1)

    results = []
    for fn in (lambda v, t: hacm.restore_groups(v, t, res_t, res_s, 4, tf.constant(groups.cell_slots)), formula):
        with tf.GradientTape() as tape:
            tape.watch([visible, token])
            out = fn(visible, token)
        results.append([out.numpy()] + [g.numpy() for g in tape.gradient(out, [visible, token], dy)])
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for got, want in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(results[0][2]).sum() > 0                       # the mask token gets a gradient


def test_reference_restore_offsets_the_spatial_ranks():
    res_t, res_s = _results(1, 6, 2), _results(1, 6, 2)
    visible = np.arange(4, dtype=np.float32).reshape(1, 4, 1) + 1
    got = reference.restore_relabelled(tf.constant(visible), tf.zeros([1, 1, 1]), res_t, res_s).numpy()[0, :, 0]
    seq = np.concatenate([visible[0, :, 0], np.zeros(8)])
    ids = np.concatenate([res_t.ids_restore.numpy()[0], res_s.ids_restore.numpy()[0] + 6])
    np.testing.assert_array_equal(got, seq[ids])


def test_reference_orders():
    grid = RNG.randn(2, 3, 4, 5).astype(np.float32)
    np.testing.assert_array_equal(reference.joint_major(tf.constant(grid)).numpy(),
                                  grid.transpose(0, 2, 1, 3).reshape(2, 12, 5))
    target = RNG.randn(2, 4, 3, 6).astype(np.float32)
    got = reference.target_by_group(tf.constant(target), (0, 2), (1, 3)).numpy()
    np.testing.assert_array_equal(got, np.concatenate([target[:, [0, 2]].reshape(2, 6, 6),
                                                       target[:, [1, 3]].reshape(2, 6, 6)], axis=1))
    assert reference.keep_count(45) == 4


@pytest.mark.parametrize("patches", [6, 7])
def test_even_odd_patches_equal_the_group_gathers_with_gradients(patches):
    groups = hacm.token_groups(patches, 3)
    x = tf.constant(RNG.normal(size=(2, patches, 3, 4)).astype(np.float32))
    weights = [tf.constant(RNG.normal(size=(2, len(t), 3, 4)).astype(np.float32))
               for t in (groups.times_t, groups.times_s)]

    def value_and_grad(split):
        with tf.GradientTape() as tape:
            tape.watch(x)
            parts = split(x)
            loss = sum(tf.reduce_sum(p * w) for p, w in zip(parts, weights))
        return [p.numpy() for p in parts] + [tape.gradient(loss, x).numpy()]

    got = value_and_grad(hacm.even_odd_patches)
    want = value_and_grad(lambda t: (tf.gather(t, groups.times_t, axis=1), tf.gather(t, groups.times_s, axis=1)))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
