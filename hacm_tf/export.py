"""SavedModel export for TF Serving: an explicit tf.Module with fixed signatures (docs/serving.md).

``<export_dir>/<version>/`` holds a SavedModel with

* ``serving_default(skeleton float32 [batch, frames, M, V, 3], num_frames int32 [batch])`` ->
  ``logits`` [batch, K], ``probabilities`` [batch, K], ``top_k_classes`` int32 [batch, k],
  ``embedding`` [batch, D]. Raw zero-padded skeletons in the model's layout; the evaluation
  preprocessing (central 95 % crop of the first ``num_frames`` frames, resize to the window) runs
  inside the graph.
* ``embed(skeleton, num_frames)`` -> ``embedding``.

Bad requests fail in the graph with a clear message on every path (Python, a loaded signature,
``saved_model_cli run``, TF Serving): a wrong number of persons, joints or coordinates names the
expected and the received shape; an empty batch, num_frames <= 0 or > frames, and non-finite values
are named too. The class names are an asset (``assets/class_names.txt``) and a ``class_names``
variable; ``model_info`` holds a JSON description (dataset, layout, persons, joints, window, ...)
that ``open_model`` reads. ``jit_compile=True`` compiles preprocessing and model with XLA (the
checks stay outside the compiled part).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Callable, List, Sequence

import numpy as np
import tensorflow as tf

from hacm_tf.data import augment
from hacm_tf.ops.checks import check_skeleton_batch, skeleton_layout_text


class ServingModule(tf.Module):
    """Wraps an ActionClassifier with preprocessing and validation."""

    def __init__(self, classifier, class_names: Sequence[str], num_persons: int, num_joints: int,
                 eval_crop: float = augment.EVAL_CROP, velocity: bool = False, top_k: int = 5,
                 jit_compile: bool = False, dataset: str = ""):
        super().__init__(name="hacm_tf_serving")
        self.classifier = classifier
        # Track the underlying tf.Variables too: otherwise session-based loaders (TF Serving,
        # saved_model_cli run) find the Keras 3 variables duplicated and fail with "Could not find
        # variable" (keras-team/keras#20096, tensorflow/tensorflow#72963).
        self.tf_variables = [v.value for v in classifier.weights]
        self.window = classifier.cfg.window
        self.eval_crop, self.velocity = float(eval_crop), bool(velocity)
        self.top_k = min(int(top_k), classifier.num_classes)
        self.num_persons, self.num_joints = int(num_persons), int(num_joints)
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        # kept as a JSON string: tf.Module would wrap a dict attribute
        self.info_json = json.dumps({
            "dataset": dataset, "layout": classifier.cfg.layout, "num_persons": self.num_persons,
            "num_joints": self.num_joints, "window": self.window, "eval_crop": self.eval_crop,
            "velocity": self.velocity, "num_classes": classifier.num_classes, "jit_compile": bool(jit_compile)})
        self.model_info = tf.Variable(self.info_json, trainable=False, name="model_info")
        spec = [tf.TensorSpec([None, None, num_persons, num_joints, 3], tf.float32, name="skeleton"),
                tf.TensorSpec([None], tf.int32, name="num_frames")]
        self._outputs = tf.function(self._compute, jit_compile=bool(jit_compile))
        self.serve = tf.function(self._serve, input_signature=spec)
        self.embed = tf.function(self._embed, input_signature=spec)

    def _checked(self, skeleton, num_frames):
        skeleton = check_skeleton_batch(skeleton, self.num_persons, self.num_joints, in_graph=True)
        b, t = tf.shape(skeleton)[0], tf.shape(skeleton)[1]
        checks = [
            tf.debugging.assert_positive(b, message="empty batch: send at least one skeleton"),
            tf.debugging.assert_equal(tf.shape(num_frames)[0], b,
                                      message="num_frames must have one entry per skeleton"),
            tf.debugging.assert_positive(num_frames, message="num_frames must be >= 1"),
            tf.debugging.assert_less_equal(num_frames, t, message="num_frames exceeds the frames sent"),
            tf.debugging.assert_all_finite(skeleton, message="skeleton contains NaN or Inf"),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(skeleton), tf.identity(num_frames)

    def _compute(self, skeleton, num_frames):
        """Preprocessing + model on checked inputs (the part ``jit_compile`` compiles)."""
        x = augment.eval_transform_batch(skeleton, num_frames, self.window, self.eval_crop, self.velocity)
        features = self.classifier.features(x)                                   # [B, M, T', V', D]
        logits = self.classifier.logits_from_features(features)
        _, top = tf.math.top_k(logits, k=self.top_k)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "top_k_classes": tf.cast(top, tf.int32), "embedding": tf.reduce_mean(features, axis=[1, 2, 3])}

    def _serve(self, skeleton, num_frames):
        return self._outputs(*self._checked(skeleton, num_frames))

    def _embed(self, skeleton, num_frames):
        return {"embedding": self._outputs(*self._checked(skeleton, num_frames))["embedding"]}


def export_saved_model(classifier, class_names: Sequence[str], export_dir: str, version: int, num_persons: int,
                       num_joints: int, eval_crop: float = augment.EVAL_CROP, velocity: bool = False,
                       overwrite: bool = False, jit_compile: bool = False, dataset: str = "") -> str:
    """Writes ``<export_dir>/<version>/`` atomically (a temporary folder renamed when complete).

    ``jit_compile``: XLA-compile preprocessing and model in the serving functions; ``dataset``: the
    training dataset's name, kept in ``model_info`` (for example, how NTU files are read for it)."""
    target = os.path.join(export_dir, str(int(version)))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; choose another --version or pass --overwrite")
    os.makedirs(export_dir, exist_ok=True)
    module = ServingModule(classifier, class_names, num_persons, num_joints, eval_crop, velocity,
                           jit_compile=jit_compile, dataset=dataset)
    tmp = tempfile.mkdtemp(prefix=f".{version}-tmp-", dir=export_dir)
    asset_dir = tempfile.mkdtemp(prefix="hacm_tf_assets_")
    try:
        asset = os.path.join(asset_dir, "class_names.txt")
        with open(asset, "w") as f:
            f.write("\n".join(class_names) + "\n")
        module.class_names_asset = tf.saved_model.Asset(asset)       # copied into <version>/assets/
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve, "embed": module.embed})
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(asset_dir, ignore_errors=True)
    return target


def resolve_saved_model(path: str) -> str:
    """The SavedModel folder of ``path``: a version folder itself, or, for a TF Serving base folder, its
    highest numeric version (as TF Serving chooses). Raises FileNotFoundError when neither holds one."""
    if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [v for v in (tf.io.gfile.listdir(path) if tf.io.gfile.isdir(path) else [])
                if v.strip("/").isdigit() and tf.io.gfile.exists(os.path.join(path, v.strip("/"), "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"{path}: no saved_model.pb here or in a numeric version folder below it")
    return os.path.join(path, max(versions, key=lambda v: int(v.strip("/"))).strip("/"))


def is_saved_model(path: str) -> bool:
    """Whether ``path`` is a SavedModel version folder or a base folder with one."""
    try:
        resolve_saved_model(path)
        return True
    except FileNotFoundError:
        return False


def load_serving(path: str):
    """tf.saved_model.load of an exported version folder (or a base folder: its highest version); returns
    (loaded, serving_default fn)."""
    loaded = tf.saved_model.load(resolve_saved_model(path))
    return loaded, loaded.signatures["serving_default"]


@dataclasses.dataclass
class ServedModel:
    """A classifier ready to answer raw clips, from an exported SavedModel or a classifier run.

    ``predict(skeleton [b, T, M, V, 3], num_frames [b])`` -> dict of ``logits`` / ``probabilities`` [b, K],
    ``top_k_classes`` [b, k], ``embedding`` [b, D] (numpy); ``kind`` is "saved_model" (``path`` the
    version folder) or "checkpoint" (``path`` the checkpoint prefix); ``info`` as ``model_info``.
    """

    serve: Callable
    class_names: List[str]
    kind: str
    path: str
    num_persons: int
    num_joints: int
    info: dict

    def predict(self, skeleton, num_frames) -> dict:
        """Raises ValueError naming the expected and received shape for a wrong person / joint / coordinate
        count, InvalidArgumentError (from the graph) for other bad requests."""
        x = check_skeleton_batch(tf.convert_to_tensor(skeleton, tf.float32), self.num_persons, self.num_joints)
        out = self.serve(x, tf.cast(num_frames, tf.int32))
        return {k: np.asarray(v) for k, v in out.items()}

    def describe(self) -> str:
        """One line: what was loaded, its classes and input layout."""
        return (f"{self.kind.replace('_', ' ')} {self.path}: {len(self.class_names)} classes, input "
                f"{skeleton_layout_text(self.num_persons, self.num_joints)}"
                + (f", trained on {self.info['dataset']}" if self.info.get("dataset") else ""))


def open_model(path: str, jit_compile: bool = False) -> ServedModel:
    """A SavedModel (version folder, or base folder: its highest version) or a linear-probe / fine-tune run
    (run directory or checkpoint prefix; served through the same ServingModule as an export, optionally
    XLA-compiled) as a ServedModel. Raises FileNotFoundError naming what was looked for."""
    try:
        version = resolve_saved_model(path)
    except FileNotFoundError:
        version = None
    if version is not None:
        loaded, serve = load_serving(version)
        spec = serve.structured_input_signature[1]["skeleton"].shape.as_list()
        info = json.loads(loaded.model_info.numpy().decode()) if hasattr(loaded, "model_info") else {}
        classes = [c.decode() for c in loaded.class_names.numpy()]
        return ServedModel(lambda x, n: serve(skeleton=x, num_frames=n), classes, "saved_model", version,
                           int(spec[2]), int(spec[3]), info)
    from hacm_tf.rundir import load_classifier, resolve_checkpoint
    from hacm_tf.skeleton import get_layout

    try:
        checkpoint = resolve_checkpoint(path)[1]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: neither a SavedModel (saved_model.pb here or in a numeric version "
                                "folder) nor a classifier run (checkpoints/ with a checkpoint)") from None
    clf, cfg = load_classifier(checkpoint)
    module = ServingModule(clf, cfg["class_names"], clf.cfg.num_persons, get_layout(clf.cfg.layout).num_joints,
                           cfg["data"]["eval_crop"], cfg["data"]["velocity"], jit_compile=jit_compile,
                           dataset=cfg.get("dataset", ""))
    return ServedModel(module.serve, list(cfg["class_names"]), "checkpoint", checkpoint, module.num_persons,
                       module.num_joints, json.loads(module.info_json))


def to_onnx(saved_model_dir: str, output: str, opset: int = 17) -> str:
    """Converts the serving_default signature to ONNX (optional: tf2onnx + onnxruntime)."""
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ImportError("ONNX export needs the optional packages: pip install -r requirements-onnx.txt") from None
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved_model_dir,
                        "--signature_def", "serving_default", "--opset", str(opset), "--output", output],
                       capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(output):
        raise RuntimeError(f"tf2onnx failed: {r.stderr[-2000:]}")
    return output
