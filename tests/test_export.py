"""Export -> reload -> same answers; bad requests; saved_model_cli; a TF Serving PredictRequest over gRPC."""

import json
import os
import re
import subprocess
import sys
from concurrent import futures

import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import DataConfig, ModelConfig, TrainConfig
from hacm_tf.data import augment, pipeline
from hacm_tf.export import export_saved_model, load_serving, open_model
from hacm_tf import rundir
from hacm_tf.training import downstream
from tests.conftest import REPO

TINY = dict(window=24, t_patch=3, dim=32, depth=2, heads=4)


@pytest.fixture(scope="module")
def exported(synthetic_dir, tmp_path_factory):
    work = str(tmp_path_factory.mktemp("lin"))
    downstream.train_classifier(work, synthetic_dir, ModelConfig(**TINY), DataConfig(window=24, batch_size=8,
                                min_crop_frames=16), TrainConfig(epochs=1, steps_per_epoch=2, lr=0.1, min_lr=0,
                                warmup_epochs=0, weight_decay=0),
                                downstream.ProtocolConfig("linear"))
    clf, cfg = rundir.load_classifier(work)
    out = str(tmp_path_factory.mktemp("export"))
    path = export_saved_model(clf, cfg["class_names"], out, 3, 2, 25)
    return clf, cfg, path, work


def raw_batch(synthetic_dir, n=4):
    x, frames, y, _ = next(iter(pipeline.make_raw_dataset(synthetic_dir, "test", n)))
    return x.numpy(), frames.numpy().astype(np.int32), y.numpy()


def test_reloaded_saved_model_matches_the_keras_model(exported, synthetic_dir):
    clf, cfg, path, _ = exported
    assert os.path.basename(path) == "3" and os.path.exists(os.path.join(path, "assets", "class_names.txt"))
    loaded, serve = load_serving(path)
    x, n, _ = raw_batch(synthetic_dir)
    out = serve(skeleton=tf.constant(x), num_frames=tf.constant(n))
    pre = np.stack([augment.eval_transform(tf.constant(x[i, :n[i]]), 24).numpy() for i in range(len(n))])
    np.testing.assert_allclose(out["logits"].numpy(), clf(pre).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["embedding"].numpy(), clf.embed(pre).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, atol=1e-5)
    assert out["top_k_classes"].shape == (len(n), 5)
    assert out["top_k_classes"].numpy()[:, 0].tolist() == out["logits"].numpy().argmax(1).tolist()
    emb = loaded.signatures["embed"](skeleton=tf.constant(x), num_frames=tf.constant(n))["embedding"]
    np.testing.assert_allclose(emb.numpy(), out["embedding"].numpy(), atol=1e-6)
    assert [c.decode() for c in loaded.class_names.numpy()] == cfg["class_names"]
    # padding more frames does not change the answer
    padded = np.concatenate([x, np.zeros_like(x[:, :7])], axis=1)
    np.testing.assert_allclose(serve(skeleton=tf.constant(padded), num_frames=tf.constant(n))["logits"].numpy(),
                               out["logits"].numpy(), atol=1e-5)


def test_mixed_bfloat16_export_agrees_with_float32_to_rounding(exported, synthetic_dir, tmp_path):
    _, cfg, path, work = exported
    clf, _ = rundir.load_classifier(work, "mixed_bfloat16")
    assert clf.encoder.blocks[0].fc1.compute_dtype == "bfloat16"
    mixed = export_saved_model(clf, cfg["class_names"], str(tmp_path), 1, 2, 25)
    x, n, _ = raw_batch(synthetic_dir)
    ref = load_serving(path)[1](skeleton=tf.constant(x), num_frames=tf.constant(n))
    got = load_serving(mixed)[1](skeleton=tf.constant(x), num_frames=tf.constant(n))
    assert got["logits"].dtype == tf.float32 and not np.array_equal(got["embedding"].numpy(), ref["embedding"].numpy())
    for k in ("logits", "embedding"):
        err = np.linalg.norm(got[k].numpy() - ref[k].numpy()) / np.linalg.norm(ref[k].numpy())
        assert err < 0.02, (k, err)


def test_export_script_precision(exported, tmp_path):
    work = exported[3]
    script = [sys.executable, os.path.join(REPO, "scripts", "export.py"), f"--workdir={work}",
              f"--export_dir={tmp_path}", "--precision=mixed_bfloat16"]
    r = subprocess.run(script + ["--format=onnx"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 1 and "needs --precision=float32" in r.stderr and not os.listdir(tmp_path)
    r = subprocess.run(script, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["saved_model"] == str(tmp_path / "1")


@pytest.mark.parametrize("change,message", [
    (lambda x, n: (x, np.zeros_like(n)), "num_frames must be >= 1"),
    (lambda x, n: (x, n + x.shape[1]), "num_frames exceeds"),
    (lambda x, n: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), n), "NaN or Inf"),
    (lambda x, n: (x[:0], n[:0]), "empty batch"),
    (lambda x, n: (x, n[:1]), "one entry per skeleton"),
])
def test_bad_requests_fail_clearly(exported, synthetic_dir, change, message):
    _, serve = load_serving(exported[2])
    x, n, _ = raw_batch(synthetic_dir)
    x, n = change(x, n)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(skeleton=tf.constant(x), num_frames=tf.constant(n))


EXPECTED = "skeleton must be [batch, frames, 2 persons, 25 joints, 3 coordinates]; received shape"
WRONG_SHAPES = [(2, 30, 2, 24, 3), (2, 30, 1, 25, 3), (2, 30, 2, 25, 2), (30, 2, 25, 3)]


def _graph_shape(shape):
    return "[" + " ".join(str(d) for d in shape) + "]"


@pytest.mark.parametrize("shape", WRONG_SHAPES)
def test_wrong_shapes_are_named_by_the_loaded_signature(exported, shape):
    _, serve = load_serving(exported[2])
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        serve(skeleton=tf.zeros(shape), num_frames=tf.constant([10] * shape[0], tf.int32))
    assert EXPECTED in str(e.value) and _graph_shape(shape) in str(e.value)


@pytest.mark.parametrize("shape", WRONG_SHAPES[:2])
def test_wrong_shapes_are_named_by_the_keras_model_and_open_model(exported, shape):
    clf, _, path, work = exported
    with pytest.raises(ValueError, match=re.escape(f"{EXPECTED} {list(shape)}")):
        clf(np.zeros(shape, np.float32))
    for source in (path, work):
        with pytest.raises(ValueError, match=re.escape(f"{EXPECTED} {list(shape)}")):
            open_model(source).predict(np.zeros(shape, np.float32), [10] * shape[0])


def test_open_model_reads_the_model_info(exported):
    _, cfg, path, work = exported
    for source, kind in ((os.path.dirname(path), "saved_model"), (work, "checkpoint")):
        m = open_model(source)
        assert (m.kind, m.num_persons, m.num_joints, m.class_names) == (kind, 2, 25, cfg["class_names"])
        assert m.info["layout"] == "ntu25" and m.info["window"] == 24 and m.info["num_classes"] == 6
    assert open_model(path).path == path
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        open_model(os.path.dirname(os.path.dirname(path)))


def test_xla_export_gives_the_same_answers_and_keeps_the_checks(exported, synthetic_dir, tmp_path):
    clf, cfg, path, _ = exported
    xla = export_saved_model(clf, cfg["class_names"], str(tmp_path), 1, 2, 25, jit_compile=True)
    x, n, _ = raw_batch(synthetic_dir)
    ref = load_serving(path)[1](skeleton=tf.constant(x), num_frames=tf.constant(n))
    loaded, serve = load_serving(xla)
    got = serve(skeleton=tf.constant(x), num_frames=tf.constant(n))
    assert json.loads(loaded.model_info.numpy().decode())["jit_compile"] is True
    for k in ("logits", "embedding"):
        np.testing.assert_allclose(got[k].numpy(), ref[k].numpy(), atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(EXPECTED)):
        serve(skeleton=tf.zeros((1, 30, 2, 24, 3)), num_frames=tf.constant([10], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_frames exceeds"):
        serve(skeleton=tf.constant(x), num_frames=tf.constant(n + 1000))


def test_saved_model_cli_show_and_run(exported, synthetic_dir, tmp_path):
    _, _, path, _ = exported
    cli = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    show = subprocess.run(cli + ["show", "--dir", path, "--all"], capture_output=True, text=True, env=env)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "serving_default" in show.stdout and "(-1, -1, 2, 25, 3)" in show.stdout and "embed" in show.stdout
    x, n, _ = raw_batch(synthetic_dir, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "n.npy", n)
    run = subprocess.run(cli + ["run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
                                "--inputs", f"skeleton={tmp_path / 'x.npy'};num_frames={tmp_path / 'n.npy'}",
                                "--outdir", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    _, serve = load_serving(path)
    expected = serve(skeleton=tf.constant(x), num_frames=tf.constant(n))["logits"].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "logits.npy"), expected, atol=1e-6)
    np.save(tmp_path / "wrong.npy", x[:, :, :, :24])
    run = subprocess.run(cli + ["run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
                                "--inputs", f"skeleton={tmp_path / 'wrong.npy'};num_frames={tmp_path / 'n.npy'}",
                                "--outdir", str(tmp_path / "out2")], capture_output=True, text=True, env=env)
    # the session-based client checks the declared shape before the graph runs, naming both shapes
    assert run.returncode != 0
    assert f"Cannot feed value of shape {x[:, :, :, :24].shape}" in run.stderr
    assert "(None, None, 2, 25, 3)" in run.stderr


def test_predict_request_over_grpc(exported, synthetic_dir):
    """A TF Serving PredictRequest, sent over gRPC on 127.0.0.1 to a PredictionService backed by the SavedModel."""
    pytest.importorskip("tensorflow_serving", reason="pip install --no-deps -r requirements-serving.txt")
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    _, serve = load_serving(exported[2])

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):      # as TF Serving: a failed run is INVALID_ARGUMENT with its message
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                outputs = serve(**{k: tf.constant(v) for k, v in inputs.items()})
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            resp = predict_pb2.PredictResponse()
            resp.model_spec.CopyFrom(request.model_spec)
            for k, v in outputs.items():
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
            return resp

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        x, n, _ = raw_batch(synthetic_dir, 2)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "hacm"
        req.model_spec.signature_name = "serving_default"
        req.inputs["skeleton"].CopyFrom(tf.make_tensor_proto(x))
        req.inputs["num_frames"].CopyFrom(tf.make_tensor_proto(n))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=60)
        got = tf.make_ndarray(resp.outputs["logits"])
        np.testing.assert_allclose(got, serve(skeleton=tf.constant(x), num_frames=tf.constant(n))["logits"].numpy(),
                                   atol=1e-6)
        assert tf.make_ndarray(resp.outputs["top_k_classes"]).shape == (2, 5)
        req.inputs["skeleton"].CopyFrom(tf.make_tensor_proto(x[:, :, :1]))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as e:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=60)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert EXPECTED in e.value.details() and _graph_shape(x[:, :, :1].shape) in e.value.details()
    finally:
        server.stop(None)


def test_evaluate_script_on_saved_model_and_checkpoint(exported, synthetic_dir, tmp_path):
    _, _, path, work = exported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = []
    for model in (os.path.dirname(path), work):   # the TF Serving base folder (its version 3) and the run
        report = tmp_path / f"{len(results)}" / "report.json"
        r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "evaluate.py"), f"--model={model}",
                            f"--data_dir={synthetic_dir}", f"--report={report}"], capture_output=True, text=True,
                           env=env, cwd=REPO)
        assert r.returncode == 0, r.stderr[-2000:]
        rep = json.load(open(report))
        assert rep["samples"] == 18 and 0 <= rep["top1"] <= rep["top5"] <= 1
        assert sum(v["samples"] for v in rep["per_class"].values()) == 18
        assert os.path.exists(str(report).replace(".json", "_confusion.png"))
        assert os.path.exists(str(report).replace(".json", "_per_class.png"))
        results.append(rep)
    assert results[0]["model_kind"] == "saved_model" and results[1]["model_kind"] == "checkpoint"
    assert results[0]["model_path"] == path and os.path.basename(results[1]["model_path"]).startswith("ckpt-")
    assert results[0]["top1"] == results[1]["top1"]
    final = json.load(open(os.path.join(work, "metrics.json")))["final"]
    assert final["last_epoch_top1"] == pytest.approx(results[0]["top1"])


def test_onnx_export_matches_the_saved_model(exported, synthetic_dir, tmp_path):
    pytest.importorskip("tf2onnx", reason="optional: pip install -r requirements-onnx.txt")
    ort = pytest.importorskip("onnxruntime")
    import shutil

    from hacm_tf.export import to_onnx

    path = str(tmp_path / "sm")
    shutil.copytree(exported[2], path)
    onnx_path = to_onnx(path, str(tmp_path / "model.onnx"))
    sess = ort.InferenceSession(onnx_path)
    x, n, _ = raw_batch(synthetic_dir)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, {"skeleton": x, "num_frames": n})))
    _, serve = load_serving(exported[2])
    ref = serve(skeleton=tf.constant(x), num_frames=tf.constant(n))
    for k in ("logits", "probabilities", "embedding"):
        np.testing.assert_allclose(got[k], ref[k].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["top_k_classes"], ref["top_k_classes"].numpy())


def test_a_base_folder_resolves_to_its_highest_numeric_version(tmp_path):
    from hacm_tf.export import is_saved_model, resolve_saved_model

    for version in ("1", "2", "10", "tmp"):
        os.makedirs(tmp_path / version)
        (tmp_path / version / "saved_model.pb").write_bytes(b"")
    os.makedirs(tmp_path / "11")                       # a version folder still being written: no saved_model.pb
    assert resolve_saved_model(str(tmp_path)) == str(tmp_path / "10")
    assert resolve_saved_model(str(tmp_path / "2")) == str(tmp_path / "2")
    assert not is_saved_model(str(tmp_path / "11"))
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        resolve_saved_model(str(tmp_path / "11"))
