"""Shared fixtures: the real-data folder and a small synthetic TFRecord dataset."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("HACM_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))


def shared_path(*parts):
    """Path inside the real-data folder; skips the test (with the reason) when it is absent."""
    p = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(p):
        pytest.skip(f"real data not found at {p} (set HACM_SHARED_DATA)")
    return p


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small synthetic NTU-format dataset built through the full raw -> TFRecord path."""
    from hacm_tf.data import build, synthetic

    out = str(tmp_path_factory.mktemp("synthetic"))
    spec = synthetic.SyntheticSpec(num_subjects=4, num_classes=6, frames=(40, 80),
                                   noise_body_rate=0.3, dropped_frame_rate=0.3)
    build.build_synthetic(out, spec=spec, seed=1, progress=False, num_workers=1)
    return out
