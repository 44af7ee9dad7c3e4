"""Property-based checks: malformed .skeleton text gives a DataError or a valid result, never another
crash; the augmentation accepts any sample shape."""

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hacm_tf.data import augment, ntu
from hacm_tf.data.synthetic import format_skeleton
from hacm_tf.errors import DataError

VALID = format_skeleton([[("7", np.random.RandomState(t).normal(size=(25, 3)).astype(np.float32))] for t in range(3)],
                        np.random.RandomState(0)).split("\n")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def parse_or_error(tmp_path, text):
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        raw = ntu.parse_skeleton_file(str(p))
    except DataError as e:
        assert "S001C001P001R001A001.skeleton" in str(e)
        return None
    assert raw.num_frames >= 1 and raw.bodies
    for b in raw.bodies.values():
        assert b.joints.shape[1:] == (25, 3) and np.all(np.isfinite(b.joints))
    return raw


@SETTINGS
@given(st.text(alphabet="0123456789 .-e\nnaif+", max_size=400))
def test_random_text(tmp_path, text):
    parse_or_error(tmp_path, text)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(tmp_path, data):
    parse_or_error(tmp_path, data)


@SETTINGS
@given(st.integers(0, len(VALID) - 1), st.sampled_from(["delete", "junk", "duplicate", "truncate", "extra"]),
       st.text(alphabet="0123456789.-xyz nan", min_size=1, max_size=12))
def test_mutated_valid_files(tmp_path, line, kind, token):
    lines = list(VALID)
    if kind == "delete":
        del lines[line]
    elif kind == "junk":
        lines[line] = token
    elif kind == "duplicate":
        lines.insert(line, lines[line])
    elif kind == "truncate":
        lines = lines[:line]
    else:
        lines[line] = lines[line] + " " + token
    parse_or_error(tmp_path, "\n".join(lines))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 3), st.integers(1, 30), st.integers(2, 30), st.booleans())
def test_augmentation_accepts_any_shape(frames, persons, joints, window, velocity):
    x = tf.random.stateless_normal([frames, persons, joints, 3], seed=[frames, joints])
    for y in (augment.train_transform(x, tf.constant([1, 2]), window, use_velocity=velocity),
              augment.eval_transform(x, window, use_velocity=velocity)):
        assert y.shape == (window, persons, joints, 3) and np.all(np.isfinite(y.numpy()))
