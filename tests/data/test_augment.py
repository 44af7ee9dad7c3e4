import json

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.data import augment as A
from tests.conftest import shared_path


def ctvm_to_tmvc(x):
    return np.transpose(x, (1, 3, 2, 0))


def tmvc_to_ctvm(x):
    return np.transpose(np.asarray(x), (3, 0, 2, 1))


@pytest.fixture(scope="module")
def feeder():
    ref = np.load(shared_path("reference_outputs", "feeder.npz"))
    meta = json.load(open(shared_path("reference_outputs", "feeder.json")))
    return ref, meta


def numpy_resize(x, start, length, window):
    """Independent float64 statement of PyTorch's half-pixel linear interpolation."""
    out = np.zeros((window,) + x.shape[1:])
    for j in range(window):
        s = max((j + 0.5) * length / window - 0.5, 0.0)
        i0 = int(np.floor(s))
        i1 = min(i0 + 1, length - 1)
        lam = s - i0
        out[j] = (1 - lam) * x[start + i0] + lam * x[start + i1]
    return out


def test_crops_and_rotations_reproduce_reference_feeder(feeder):
    ref, meta = feeder
    for case in meta["meta"]["cases"]:
        key = case["key"]
        sample = key.split("__")[0]
        if "feeder" in key:   # whole-feeder cases: see the tests below
            continue
        if "rot" in key:
            rot = A.rotation_matrix(tf.constant(case["angles (x, y, z) rad"]))
            np.testing.assert_allclose(rot.numpy(), ref[key + "__matrix"], atol=1e-7)
            out = A.rotate(tf.constant(ctvm_to_tmvc(ref[key + "__input"])), rot)
            np.testing.assert_allclose(tmvc_to_ctvm(out), ref[key], atol=2e-6)
            continue
        x = tf.constant(ctvm_to_tmvc(ref[sample + "__input_ctvm"]))
        valid = A.valid_frame_count(x)
        assert int(valid) == case["valid_frame_num"]
        if len(case["p_interval"]) == 1:
            start, length = A.eval_crop(valid, case["p_interval"][0])
            assert int(start) == case["bias"]
        else:
            u = case["u (np.random.rand)"]
            _, length = A.train_crop(valid, tf.constant(u, tf.float64), tf.constant(0.0, tf.float64))
            lo, hi = case["randint_args"]
            assert int(valid) - int(length) + 1 == hi        # same offset range as np.random.randint
            start = case["offset (np.random.randint)"]
        assert int(length) == case["cropped_length"]
        out = A.resize_frames(x, start, length, case["window"])
        np.testing.assert_allclose(tmvc_to_ctvm(out), ref[key], atol=2e-6)
        np.testing.assert_allclose(out.numpy(), numpy_resize(x.numpy(), int(start), int(length), case["window"]),
                                   atol=2e-6)


@pytest.mark.parametrize("sample", ["s0", "s1"])
@pytest.mark.parametrize("vel", [False, True])
def test_full_training_transform_with_recorded_draws(feeder, sample, vel):
    ref, _ = feeder
    key = f"{sample}__feeder_train{'_vel' if vel else ''}_w72"
    rng = json.load(open(shared_path("reference_outputs", "feeder.json")))["keys"][key]["doc"]["rng"]
    x = tf.constant(ctvm_to_tmvc(ref[sample + "__input_ctvm"]))
    _, length = A.train_crop(A.valid_frame_count(x), tf.constant(rng["u"], tf.float64), tf.constant(0.0, tf.float64))
    y = A.resize_frames(x, rng["offset"], length, 72)
    y = A.rotate(y, A.rotation_matrix(tf.constant(rng["angles"])))
    if vel:
        y = A.velocity(y)
    np.testing.assert_allclose(tmvc_to_ctvm(y), ref[key], atol=2e-6)


@pytest.mark.parametrize("sample", ["s0", "s1"])
def test_eval_transform_matches_reference_feeder(feeder, sample):
    ref, _ = feeder
    x = tf.constant(ctvm_to_tmvc(ref[sample + "__input_ctvm"]))
    np.testing.assert_allclose(tmvc_to_ctvm(A.eval_transform(x, 72)), ref[sample + "__feeder_test_w72"], atol=2e-6)


def test_train_crop_bounds_and_rotation_properties():
    for valid in (10, 64, 65, 300):
        for u in (0.0, 0.5, 0.999):
            for v in (0.0, 0.999):
                start, length = A.train_crop(valid, u, v)
                expect = min(max(int(np.floor(valid * (0.5 + 0.5 * u))), 64), valid)
                assert int(length) == expect and 0 <= int(start) <= valid - expect
    r = A.rotation_matrix(tf.constant([0.1, -0.2, 0.3])).numpy()
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-6)


def test_velocity_and_random_transform_in_dataset_map():
    x = tf.random.stateless_normal([90, 2, 25, 3], seed=[1, 2])
    v = A.velocity(x).numpy()
    np.testing.assert_allclose(v[:-1], x.numpy()[1:] - x.numpy()[:-1], atol=1e-6)
    assert not np.any(v[-1])
    ds = tf.data.Dataset.from_tensors(x).map(lambda s: A.train_transform(s, tf.constant([3, 4]), 72))
    a = next(iter(ds)).numpy()
    b = A.train_transform(x, tf.constant([3, 4]), 72).numpy()
    np.testing.assert_array_equal(a, b)           # same in graph (Dataset.map) and eagerly
    c = A.train_transform(x, tf.constant([3, 5]), 72).numpy()
    assert a.shape == (72, 2, 25, 3) and not np.allclose(a, c)
