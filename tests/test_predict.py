"""From raw file to action label: predict on the real sample files of every format."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hacm_tf import predict
from hacm_tf.config import ComputeConfig, ModelConfig, ProtocolConfig
from hacm_tf.data import ntu, ucla
from hacm_tf.export import export_saved_model, open_model
from hacm_tf.models.classifier import build_classifier
from tests.conftest import REPO, shared_path

TINY = dict(window=24, t_patch=3, dim=32, depth=1, heads=4, decoder_dim=32, decoder_depth=1, decoder_heads=4)


def _export(tmp_path_factory, layout, persons, class_names, dataset, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    cfg = ModelConfig(layout=layout, num_persons=persons, **TINY).validate()
    clf = build_classifier(cfg, len(class_names), ProtocolConfig("linear"), ComputeConfig())
    joints = {"ntu25": 25, "kinect_v1_20": 20}[layout]
    out = str(tmp_path_factory.mktemp(f"export_{dataset}"))
    export_saved_model(clf, class_names, out, 1, persons, joints, dataset=dataset)
    return out


@pytest.fixture(scope="module")
def ntu_model(tmp_path_factory):
    names = [f"action {i + 1}" for i in range(60)]
    return _export(tmp_path_factory, "ntu25", 2, names, "ntu60")


@pytest.fixture(scope="module")
def ucla_model(tmp_path_factory):
    return _export(tmp_path_factory, "kinect_v1_20", 1, list(ucla.CLASS_NAMES), "ucla")


def _check_contract(result, classes, k=5):
    for p in result["predictions"]:
        probs = [t["probability"] for t in p["top"]]
        assert len(p["top"]) == k and all(t["class"] in classes for t in p["top"])
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert len({t["class"] for t in p["top"]}) == k


def test_ntu_skeleton_files_and_an_unreadable_one(ntu_model, tmp_path):
    folder = shared_path("ntu", "samples")
    bad = tmp_path / "S001C001P001R001A009.skeleton"
    bad.write_text("3\n1\n")                     # truncated file
    result = predict.predict_files(ntu_model, [folder, str(bad), str(tmp_path / "absent.skeleton")], progress=False)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".skeleton"))
    assert [p["clip"] + ".skeleton" for p in result["predictions"]] == files
    assert [p["label"] for p in result["predictions"]][:3] == ["action 1", "action 2", "action 3"]
    _check_contract(result, open_model(ntu_model).class_names)
    assert [e["file"] for e in result["errors"]] == [str(bad), str(tmp_path / "absent.skeleton")]
    assert "no such file" in result["errors"][1]["reason"] and result["errors"][0]["reason"]
    # the same reader as the training data: answers equal serving the reader's sample directly
    served = open_model(ntu_model)
    s = ntu.read_ntu_sample(os.path.join(folder, files[3]))
    direct = served.predict(s.skeleton[None], [len(s.skeleton)])["probabilities"][0]
    got = result["predictions"][3]["top"]
    np.testing.assert_allclose([t["probability"] for t in got], np.sort(direct)[::-1][:5], atol=1e-5)
    text = predict.format_predictions(result)
    assert "could not read" in text and "5 clips answered, 2 files unreadable" in text


def test_ucla_json_files_with_and_without_label(ucla_model, tmp_path):
    files = sorted(os.listdir(shared_path("nw_ucla", "all_sqe")))[:3]
    paths = [shared_path("nw_ucla", "all_sqe", f) for f in files]
    with open(paths[0]) as f:
        d = json.load(f)
    unlabelled = tmp_path / "recording.json"
    unlabelled.write_text(json.dumps({"skeletons": d["skeletons"]}))
    result = predict.predict_files(ucla_model, paths + [str(unlabelled)], progress=False)
    assert len(result["predictions"]) == 4 and not result["errors"]
    assert result["predictions"][0]["label"] == ucla.CLASS_NAMES[d["label"] - 1]
    assert result["predictions"][3]["label"] is None and result["predictions"][3]["clip"] == "recording"
    assert result["predictions"][3]["top"] == result["predictions"][0]["top"]
    _check_contract(result, ucla.CLASS_NAMES)
    # an NTU file has 25 joints: named as unreadable for a 20-joint model
    wrong = predict.predict_files(ucla_model, [shared_path("ntu", "samples", "S001C001P001R001A001.skeleton")],
                                  progress=False)
    assert not wrong["predictions"] and "25 joints per person; the model takes 20" in wrong["errors"][0]["reason"]


def test_pku_mmd_clips_come_from_the_label_rows(ntu_model, tmp_path):
    source = shared_path("pku_mmd", "A10N08-L.txt")
    (tmp_path / "skeleton").mkdir()
    (tmp_path / "label").mkdir()
    shutil.copy(source, tmp_path / "skeleton" / "A10N08-L.txt")
    (tmp_path / "label" / "A10N08-L.txt").write_text("5,10,80,1\n12,100,220,1\n")
    result = predict.predict_files(ntu_model, [str(tmp_path / "skeleton")], progress=False)
    assert [(p["clip"], p["frames"], p["label"]) for p in result["predictions"]] == [
        ("A10N08-L_000", 70, "action 5"), ("A10N08-L_001", 120, "action 12")]
    _check_contract(result, open_model(ntu_model).class_names)
    # without a label file the video is named with the reason; --labels points at one elsewhere
    alone = tmp_path / "elsewhere" / "videos"
    alone.mkdir(parents=True)
    shutil.copy(source, alone / "A10N08-L.txt")
    missing = predict.predict_files(ntu_model, [str(alone / "A10N08-L.txt")], progress=False)
    assert not missing["predictions"] and "no PKU-MMD label file" in missing["errors"][0]["reason"]
    given = predict.predict_files(ntu_model, [str(alone / "A10N08-L.txt")], labels=str(tmp_path / "label"),
                                  progress=False)
    assert len(given["predictions"]) == 2


def test_npy_arrays_use_the_layout_and_are_centred(ntu_model, tmp_path):
    s = ntu.read_ntu_sample(shared_path("ntu", "samples", "S001C001P001R001A050.skeleton"))
    np.save(tmp_path / "a.npy", s.skeleton)
    present = np.any(s.skeleton != 0, axis=(2, 3))[:, :, None, None]     # person-frames recorded
    np.save(tmp_path / "b.npy", s.skeleton + np.array([1.0, -2.0, 3.0], np.float32) * present)
    np.save(tmp_path / "one_person.npy", s.skeleton[:, 0])
    np.save(tmp_path / "wrong.npy", s.skeleton[:, :, :20])
    result = predict.predict_files(ntu_model, [str(tmp_path)], layout="ntu25", progress=False)
    by_clip = {p["clip"]: p for p in result["predictions"]}
    assert sorted(by_clip) == ["a", "b", "one_person"]
    a, b = ([t["probability"] for t in by_clip[k]["top"]] for k in "ab")   # translation removed by the centring
    assert [t["class"] for t in by_clip["a"]["top"]] == [t["class"] for t in by_clip["b"]["top"]]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert by_clip["one_person"]["top"] != by_clip["a"]["top"]
    assert [e["file"] for e in result["errors"]] == [str(tmp_path / "wrong.npy")]
    assert "expected" in result["errors"][0]["reason"] and "ntu25" in result["errors"][0]["reason"]


def test_fit_persons_pads_or_keeps_the_first():
    x = np.ones((5, 3, 4, 3), np.float32)
    assert predict.fit_persons(predict.Clip("c", "f", x[:, :1]), 2).skeleton[:, 1].sum() == 0
    kept = predict.fit_persons(predict.Clip("c", "f", x), 2)
    assert kept.skeleton.shape == (5, 2, 4, 3) and "first 2 of 3 persons" in kept.note


def test_predict_script_table_json_and_exit_status(ntu_model, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = tmp_path / "pred.json"
    sample = shared_path("ntu", "samples", "S001C001P001R001A002.skeleton")
    base = [sys.executable, os.path.join(REPO, "scripts", "predict.py"), f"--model={ntu_model}"]
    r = subprocess.run(base + [f"--input={sample},{tmp_path / 'none.skeleton'}", f"--output={out}"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "S001C001P001R001A002  (" in r.stdout and "  1. action" in r.stdout
    assert "none.skeleton: no such file" in r.stdout
    assert f"saved model {ntu_model}/1" in r.stderr                # the base folder resolved to its version
    doc = json.loads(out.read_text())
    assert len(doc["predictions"]) == 1 and len(doc["predictions"][0]["top"]) == 5 and len(doc["errors"]) == 1
    r = subprocess.run(base + [f"--input={tmp_path / 'none.skeleton'}"], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=300)
    assert r.returncode == 1 and "no clip could be answered" in r.stderr


def test_predict_on_the_raw_files_agrees_with_evaluate_on_the_built_split(ucla_model, tmp_path):
    """The NW-UCLA view-3 files through predict and the same clips as a TFRecord test split through
    evaluate: the same confusion matrix (same reader, same centring, same serving function)."""
    from hacm_tf.data import build
    from hacm_tf.evaluate import evaluate_model_path

    root = shared_path("nw_ucla")
    build.build_ucla(root, str(tmp_path / "ucla"), progress=False)
    rep = evaluate_model_path(ucla_model, str(tmp_path / "ucla"), "test")
    files = [os.path.join(root, "all_sqe", f) for f in sorted(os.listdir(os.path.join(root, "all_sqe")))
             if f.endswith("_v03.json")]
    result = predict.predict_files(ucla_model, files, top_k=1, progress=False)
    assert len(result["predictions"]) == rep["samples"] == 464 and not result["errors"]
    confusion = np.zeros((10, 10), int)
    for p in result["predictions"]:
        confusion[ucla.CLASS_NAMES.index(p["label"]), p["top"][0]["index"]] += 1
    np.testing.assert_array_equal(confusion, np.array(rep["confusion_matrix"]))
