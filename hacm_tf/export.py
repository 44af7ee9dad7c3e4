"""SavedModel export for TF Serving: an explicit tf.Module with fixed signatures (docs/serving.md).

``<export_dir>/<version>/`` holds a SavedModel with

* ``serving_default(skeleton float32 [batch, frames, M, V, 3], num_frames int32 [batch])`` ->
  ``logits`` [batch, K], ``probabilities`` [batch, K], ``top_k_classes`` int32 [batch, k],
  ``embedding`` [batch, D]. Raw zero-padded skeletons in the model's layout; the evaluation
  preprocessing (central 95 % crop of the first ``num_frames`` frames, resize to the window) runs
  inside the graph.
* ``embed(skeleton, num_frames)`` -> ``embedding``.

Bad requests (empty batch, num_frames <= 0 or > frames, non-finite values) fail with a clear
message; wrong persons / joints / coordinates are rejected by the signature's fixed shape. The
class names are an asset (``assets/class_names.txt``) and a ``class_names`` constant.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Sequence

import tensorflow as tf

from hacm_tf.data import augment


class ServingModule(tf.Module):
    """Wraps an ActionClassifier with preprocessing and validation."""

    def __init__(self, classifier, class_names: Sequence[str], num_persons: int, num_joints: int,
                 eval_crop: float = augment.EVAL_CROP, velocity: bool = False, top_k: int = 5):
        super().__init__(name="hacm_tf_serving")
        self.classifier = classifier
        # Track the underlying tf.Variables too: otherwise session-based loaders (TF Serving,
        # saved_model_cli run) find the Keras 3 variables duplicated and fail with "Could not find
        # variable" (keras-team/keras#20096, tensorflow/tensorflow#72963).
        self.tf_variables = [v.value for v in classifier.weights]
        self.window = classifier.cfg.window
        self.eval_crop, self.velocity = float(eval_crop), bool(velocity)
        self.top_k = min(int(top_k), classifier.num_classes)
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        self._asset_dir = tempfile.mkdtemp(prefix="hacm_tf_assets_")
        path = os.path.join(self._asset_dir, "class_names.txt")
        with open(path, "w") as f:
            f.write("\n".join(class_names) + "\n")
        self.class_names_asset = tf.saved_model.Asset(path)
        spec = [tf.TensorSpec([None, None, num_persons, num_joints, 3], tf.float32, name="skeleton"),
                tf.TensorSpec([None], tf.int32, name="num_frames")]
        self.serve = tf.function(self._serve, input_signature=spec)
        self.embed = tf.function(self._embed, input_signature=spec)

    def _preprocess(self, skeleton, num_frames):
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
            return augment.eval_transform_batch(tf.identity(skeleton), num_frames, self.window, self.eval_crop,
                                                self.velocity)

    def _serve(self, skeleton, num_frames):
        x = self._preprocess(skeleton, num_frames)
        features = self.classifier.features(x)                                   # [B, M, T', V', D]
        logits = self.classifier.logits_from_features(features)
        _, top = tf.math.top_k(logits, k=self.top_k)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
                "top_k_classes": tf.cast(top, tf.int32), "embedding": tf.reduce_mean(features, axis=[1, 2, 3])}

    def _embed(self, skeleton, num_frames):
        return {"embedding": self.classifier.embed(self._preprocess(skeleton, num_frames))}


def export_saved_model(classifier, class_names: Sequence[str], export_dir: str, version: int, num_persons: int,
                       num_joints: int, eval_crop: float = augment.EVAL_CROP, velocity: bool = False,
                       overwrite: bool = False) -> str:
    """Writes ``<export_dir>/<version>/`` atomically (a temporary folder renamed when complete)."""
    target = os.path.join(export_dir, str(int(version)))
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; choose another --version or pass --overwrite")
    os.makedirs(export_dir, exist_ok=True)
    module = ServingModule(classifier, class_names, num_persons, num_joints, eval_crop, velocity)
    tmp = tempfile.mkdtemp(prefix=f".{version}-tmp-", dir=export_dir)
    try:
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve, "embed": module.embed})
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(module._asset_dir, ignore_errors=True)
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
