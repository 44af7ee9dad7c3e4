"""PKU-MMD, NW-UCLA, generic arrays and .npz importers, through the builder."""

import os
import pickle
import shutil

import numpy as np
import pytest

from hacm_tf.data import build, pku, tfrecord, ucla
from hacm_tf.errors import DataError
from tests.conftest import shared_path


@pytest.fixture
def pku_dir(tmp_path):
    real = shared_path("pku_mmd", "A10N08-L.txt")
    for d in ("skeleton", "label", "split"):
        os.makedirs(tmp_path / d)
    shutil.copy(real, tmp_path / "skeleton" / "A10N08-L.txt")
    rows = np.loadtxt(real, dtype=np.float32)
    zero = np.zeros((40, 150), np.float32)
    np.savetxt(tmp_path / "skeleton" / "A01N01-M.txt", np.concatenate([rows[:100], zero, rows[:500]]), fmt="%.6f")
    (tmp_path / "label" / "A10N08-L.txt").write_text("3,10,60,1\n51,100,500,2\n7,0,1040,1\n")
    (tmp_path / "label" / "A01N01-M.txt").write_text("1,100,140,1\n2,0,50,1\n")
    (tmp_path / "split" / "cross_subject_v2.txt").write_text(
        "Training videos:\nA01N01-M, A99N99-L\nValidation videos:\nA10N08-L\n")
    return tmp_path, rows


def test_pku_clip_rules(pku_dir, tmp_path_factory):
    d, rows = pku_dir
    out = str(tmp_path_factory.mktemp("pku_out"))
    info = build.build_pku(str(d), out, "pku2", "xsub", progress=False)
    assert info["splits"] == {"train": 1, "test": 3}
    assert info["num_classes"] == 51 and info["joint_layout"] == "ntu25"
    assert [s["name"] for s in info["skipped"]] == ["A01N01-M_000"]          # all-zero clip dropped
    test = {s.name: s for s in tfrecord.iterate_split(out, "test")}
    c = test["A10N08-L_000"]
    assert c.label == 2 and c.skeleton.shape == (50, 2, 25, 3)
    np.testing.assert_array_equal(c.skeleton.reshape(50, 150), rows[10:60])    # rows start..end-1, not centred
    assert test["A10N08-L_001"].label == 50
    assert test["A10N08-L_002"].skeleton.shape[0] == 300                      # truncated to 300 frames
    train = list(tfrecord.iterate_split(out, "train"))
    assert [s.name for s in train] == ["A01N01-M_001"]


def test_pku_label_errors(pku_dir, tmp_path_factory):
    d, _ = pku_dir
    (d / "label" / "A10N08-L.txt").write_text("3,10,60,1\n3,1000,1041,1\n")
    out = str(tmp_path_factory.mktemp("pku_bad"))
    with pytest.raises(DataError, match=r"A10N08-L.txt, line 2: clip \[1000, 1041\) outside the sequence of 1040"):
        build.build_pku(str(d), out, "pku2", "xsub", progress=False)
    assert not os.path.exists(os.path.join(out, "dataset_info.json"))
    info = build.build_pku(str(d), out, "pku2", "xsub", on_error="skip", progress=False)
    assert info["splits"]["test"] == 0 and any("A10N08-L" in s["reason"] for s in info["skipped"])
    os.unlink(d / "label" / "A01N01-M.txt")
    with pytest.raises(DataError, match="A01N01-M.txt: label file missing"):
        build.build_pku(str(d), out, "pku2", "xsub", progress=False)


def test_pku_v1_split_file_name_and_line_two():
    assert pku.SPLIT_FILES[("pku1", "xsub")] == "cross-subject.txt"
    assert pku.SPLIT_FILES[("pku2", "xview")] == "cross_view_v2.txt"


def test_pku_bad_skeleton_rows(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text(" ".join(["0.1"] * 150) + "\n" + " ".join(["0.1"] * 149) + "\n")
    with pytest.raises(DataError, match="v.txt, line 2: expected 150 values"):
        pku.read_skeleton(str(p))


def test_ucla_cross_view_protocol(tmp_path):
    src = shared_path("nw_ucla")
    info = build.build_ucla(src, str(tmp_path), "xview", progress=False)
    assert info["splits"] == {"train": 1020, "test": 464}
    assert info["joint_layout"] == "kinect_v1_20" and info["num_persons"] == 1 and info["num_classes"] == 10
    test = {s.name: s for s in tfrecord.iterate_split(str(tmp_path), "test")}
    with open(os.path.join(src, "val_label.pkl"), "rb") as f:
        val = pickle.load(f)
    assert {v["file_name"] for v in val} == set(test)
    for v in val[:50]:
        s = test[v["file_name"]]
        assert s.label == v["label"] - 1 and s.skeleton.shape == (v["length"], 1, 20, 3)
        np.testing.assert_allclose(s.skeleton[0, 0, 1], 0, atol=1e-7)          # centred on the spine
    assert tfrecord.verify(str(tmp_path), progress=False)["ok"]
    # validation inside the training views: view 1 trains, view 2 tests, view 3 is never read
    val_info = build.build_ucla(src, str(tmp_path / "val"), "xview_val", progress=False)
    assert val_info["splits"]["train"] + val_info["splits"]["test"] == 1020
    names = {s.name for split in ("train", "test") for s in tfrecord.iterate_split(str(tmp_path / "val"), split)}
    assert not names & set(test) and all(n.endswith(("_v01", "_v02")) for n in names)


def test_ucla_bad_json(tmp_path):
    (tmp_path / "a01_s01_e00_v01.json").write_text(
        '{"file_name": "a01_s01_e00_v01", "skeletons": [[[0, 1]]], "label": 1}')
    with pytest.raises(DataError, match="expected skeletons of shape"):
        ucla.read_sample(str(tmp_path / "a01_s01_e00_v01.json"))


def test_generic_arrays_import(tmp_path):
    r = np.random.RandomState(0)
    os.makedirs(tmp_path / "npy")
    rows = ["name,label,subject,view"]
    for i in range(6):
        shape = (r.randint(5, 30), 20, 3) if i % 2 else (r.randint(5, 30), 1, 20, 3)
        np.save(tmp_path / "npy" / f"clip{i}.npy", r.normal(size=shape).astype(np.float32))
        rows.append(f"clip{i},{i % 3},{i},{1 + i % 2}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    info = build.build_arrays(str(tmp_path / "npy"), str(tmp_path / "labels.csv"), str(out), "kinect_v1_20",
                              split_column="view", train_values=["1"], progress=False)
    assert info["splits"] == {"train": 3, "test": 3} and info["num_classes"] == 3
    s = {x.name: x for x in tfrecord.iterate_split(str(out), "train")}["clip0"]
    raw = np.load(tmp_path / "npy" / "clip0.npy")                         # [T, 1, 20, 3]
    assert info["centring"] == "first_frame"                               # centred as NTU / NW-UCLA are
    np.testing.assert_allclose(s.skeleton, raw - raw[0, 0, 1], atol=1e-6)  # spine (joint 1) of frame 0
    kept = build.build_arrays(str(tmp_path / "npy"), str(tmp_path / "labels.csv"), str(tmp_path / "raw"),
                              "kinect_v1_20", split_column="view", train_values=["1"], progress=False,
                              centring="none")
    assert kept["centring"] == "none"
    s = {x.name: x for x in tfrecord.iterate_split(str(tmp_path / "raw"), "train")}["clip0"]
    np.testing.assert_array_equal(s.skeleton, raw)
    np.save(tmp_path / "npy" / "clip3.npy", np.zeros((5, 25, 3), np.float32))
    with pytest.raises(DataError, match="clip3.npy: sample clip3: expected"):
        build.build_arrays(str(tmp_path / "npy"), str(tmp_path / "labels.csv"), str(out), "kinect_v1_20",
                           split_column="view", train_values=["1"], progress=False)
    info = build.build_arrays(str(tmp_path / "npy"), str(tmp_path / "labels.csv"), str(out), "kinect_v1_20",
                              split_column="view", train_values=["1"], on_error="skip", progress=False)
    assert info["splits"] == {"train": 3, "test": 2} and info["skipped"][0]["name"] == "clip3.npy"


def test_npz_import_recovers_valid_frames(tmp_path):
    r = np.random.RandomState(0)
    x = np.zeros((3, 300, 150), np.float32)
    lengths = [50, 300, 120]
    for i, n in enumerate(lengths):
        x[i, :n] = r.normal(size=(n, 150))
    x[1, 75:, 75:] = 0                                       # one person only in some frames
    y = np.eye(4)[[0, 3, 2]]
    np.savez(tmp_path / "toy.npz", x_train=x[:2], y_train=y[:2], x_test=x[2:], y_test=y[2:])
    info = build.build_npz(str(tmp_path / "toy.npz"), str(tmp_path / "out"), progress=False)
    assert info["splits"] == {"train": 2, "test": 1} and info["num_classes"] == 4
    got = {s.name: s for s in tfrecord.iterate_split(str(tmp_path / "out"), "train")}
    assert got["train_000000"].skeleton.shape == (50, 2, 25, 3) and got["train_000001"].label == 3
    one = got["train_000001"].skeleton.reshape(300, 150)
    expected = x[1] - np.tile(x[1, 0, 3:6], 50)                 # person 0's spine-middle of frame 0
    expected[75:, 75:] = 0                                       # the absent person stays zero
    np.testing.assert_allclose(one, expected, atol=1e-5)
    assert info["centring"] == "first_frame"
    kept = build.build_npz(str(tmp_path / "toy.npz"), str(tmp_path / "raw"), progress=False, centring="none")
    got = {s.name: s for s in tfrecord.iterate_split(str(tmp_path / "raw"), "train")}
    np.testing.assert_array_equal(got["train_000001"].skeleton.reshape(300, 150), x[1])
    assert kept["centring"] == "none"


def test_centring_is_idempotent_and_keeps_missing_persons_zero():
    from hacm_tf.data.sample import centre_on_first_frame

    r = np.random.RandomState(4)
    x = r.normal(size=(6, 2, 5, 3)).astype(np.float32)
    x[:2, 0] = 0                                                 # person 0 appears in frame 2
    x[3, 1] = 0
    c = centre_on_first_frame(x, 2)
    np.testing.assert_array_equal(c[2, 0, 2], 0.0)
    np.testing.assert_allclose(c[4], x[4] - x[2, 0, 2], atol=1e-6)
    assert not c[:2, 0].any() and not c[3, 1].any()
    np.testing.assert_array_equal(centre_on_first_frame(c, 2), c)
