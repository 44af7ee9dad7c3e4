"""Read-outs of frozen representations: pooled embeddings, weighted k-nearest neighbours, a
full-batch logistic regression, the raw-coordinate baseline and spectrum diagnostics.

Labels are used here only to score a representation; nothing in this module trains an encoder.

kNN follows the self-supervised literature (Wu et al. 2018): cosine similarity between
L2-normalised embeddings; each of the k nearest training clips votes for its class with weight
``exp(similarity / temperature)``; k = 1 is the plain nearest neighbour.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from hacm_tf.config import DataConfig
from hacm_tf.data import pipeline

KNN_TEMPERATURE = 0.07
KNN_KS = (1, 20)


def knn_predict(train: np.ndarray, train_labels: np.ndarray, query: np.ndarray, k: int, num_classes: int,
                temperature: float = KNN_TEMPERATURE, chunk: int = 1024) -> np.ndarray:
    """Weighted kNN class scores.

    Args:
      train: [N, D] embeddings of the labelled clips; train_labels: [N] ints in [0, num_classes).
      query: [Q, D] embeddings to classify.
      k: neighbours (clipped to N); temperature: vote weight exp(cos / temperature).

    Returns:
      [Q, num_classes] summed vote weights (argmax = prediction; ties go to the lower class index).
    """
    train = tf.math.l2_normalize(tf.constant(train, tf.float32), axis=1)
    labels = tf.constant(np.asarray(train_labels), tf.int32)
    k = min(int(k), int(train.shape[0]))
    out = []
    for start in range(0, len(query), chunk):               # bounded [chunk, N] similarity blocks
        q = tf.math.l2_normalize(tf.constant(query[start:start + chunk], tf.float32), axis=1)
        sim, idx = tf.math.top_k(tf.matmul(q, train, transpose_b=True), k=k)          # [q, k]
        votes = tf.one_hot(tf.gather(labels, idx), num_classes) * tf.exp(sim / temperature)[..., None]
        out.append(tf.reduce_sum(votes, axis=1).numpy())
    return np.concatenate(out) if out else np.zeros([0, num_classes], np.float32)


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
                 num_classes: int, ks: Sequence[int] = KNN_KS, temperature: float = KNN_TEMPERATURE
                 ) -> Dict[str, float]:
    """{"knn1_top1": ..., "knn20_top1": ...}: top-1 of the weighted kNN for each k."""
    return {f"knn{k}_top1": float(np.mean(np.argmax(knn_predict(train, train_labels, query, k, num_classes,
                                                                    temperature), 1) == query_labels))
            for k in ks}


# ---------------------------------------------------------------------------- embeddings

def embed_split(embed_fn, data_dir: str, split: str, window: int, batch_size: int = 64,
                eval_crop: float = DataConfig.eval_crop, velocity: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, D], labels [N]) of every clip of a split through ``embed_fn``
    ([b, window, M, V, 3] -> [b, D]), with the evaluation transform (central crop, resize)."""
    cfg = DataConfig(window=window, batch_size=batch_size, eval_crop=eval_crop, velocity=velocity,
                     min_crop_frames=1)
    ds = pipeline.make_dataset(data_dir, split, cfg, training=False)
    feats, labels = [], []
    for x, y in ds:
        feats.append(np.asarray(embed_fn(x)))
        labels.append(y.numpy())
    if not feats:
        raise ValueError(f"{data_dir}: the {split} split is empty")
    return np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int64)


def encoder_embed_fn(encoder):
    """A compiled ``[b, T, M, V, 3] -> [b, D]`` function: the encoder over all tokens in inference mode,
    mean over persons and tokens (the linear probe's pooled feature)."""
    from hacm_tf.models.encoder import fold_persons

    @tf.function(reduce_retracing=True)
    def fn(x):
        x = tf.convert_to_tensor(x, tf.float32)
        h = encoder(fold_persons(x), training=False)                         # [b * M, L, D]
        h = tf.reshape(h, [tf.shape(x)[0], x.shape[2], -1, h.shape[-1]])
        return tf.reduce_mean(tf.cast(h, tf.float32), axis=[1, 2])

    return fn


def run_embeddings(path: str, data_dir: str, split: str = "test", batch_size: int = 64):
    """(embeddings [N, D], labels [N], run config) of a split through a run's encoder: a pretraining run's
    pooled encoder features, or a classifier run's ``embed`` (its head's input), with the run's evaluation
    transform."""
    from hacm_tf import rundir

    cfg = rundir.read_run_config(rundir.resolve_checkpoint(path)[0])
    if cfg["stage"] == "pretrain":
        fn = encoder_embed_fn(rundir.load_pretrained_encoder(path)[0])
    else:
        fn = rundir.load_classifier(path)[0].embed
    data = DataConfig.from_dict(cfg["data"])
    feats, labels = embed_split(fn, data_dir, split, data.window, batch_size, data.eval_crop, data.velocity)
    return feats, labels, cfg


def raw_features(x: np.ndarray) -> np.ndarray:
    """Raw-coordinate clip features: [N, T, M, V, 3] -> [N, 2 * T * M * V * 3], positions then
    velocities (frame differences, the last frame's repeated)."""
    x = np.asarray(x, np.float32)
    v = np.diff(x, axis=1)
    v = np.concatenate([v, v[:, -1:]], axis=1)
    return np.concatenate([x.reshape(len(x), -1), v.reshape(len(x), -1)], axis=1)


def raw_split(data_dir: str, split: str, window: int, batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """(raw_features, labels) of a split after the evaluation transform (central crop resized to
    ``window``; clips stored centred as the builders centre them)."""
    return embed_split(raw_features, data_dir, split, window, batch_size)


def standardise(train: np.ndarray, *others: np.ndarray, eps: float = 1e-6):
    """Each feature to zero mean and unit variance with the training statistics."""
    mean, std = train.mean(0), train.std(0) + eps
    return tuple((a - mean) / std for a in (train,) + others)


# ---------------------------------------------------------------------------- logistic regression

@dataclasses.dataclass
class LogisticRegression:
    """Multinomial logistic regression, ``mean CE + l2 / 2 * |W|^2``, fitted full-batch.

    A convex problem solved to a tolerance (Adam with a decaying step, full batch), so the result is a
    property of the features and l2, not of a training schedule: the reference a linear probe's SGD
    should approach. ``fit`` standardises nothing; call ``standardise`` first.
    """

    l2: float = 1e-3
    steps: int = 2000
    lr: float = 0.05

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> "LogisticRegression":
        """x: [N, D] features, y: [N] ints in [0, num_classes)."""
        w, b, objective = _fit_logistic(tf.constant(x, tf.float32), tf.one_hot(tf.constant(y, tf.int32), num_classes),
                                        tf.constant(self.l2, tf.float32), tf.constant(self.lr, tf.float32),
                                        tf.constant(self.steps, tf.int32))
        self.weights, self.bias, self.final_objective = w.numpy(), b.numpy(), float(objective)
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float32) @ self.weights + self.bias

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.logits(x), 1) == y))


def choose_l2(x: np.ndarray, y: np.ndarray, num_classes: int, grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
              folds: int = 3, seed: int = 0, steps: int = 1000) -> float:
    """The l2 of ``grid`` with the best mean k-fold accuracy on the training set alone."""
    order = np.random.RandomState(seed).permutation(len(x))
    parts = np.array_split(order, folds)
    scores = []
    for l2 in grid:
        acc = []
        for i in range(folds):
            held = parts[i]
            fit = np.concatenate([p for j, p in enumerate(parts) if j != i])
            model = LogisticRegression(l2, steps).fit(x[fit], y[fit], num_classes)
            acc.append(model.accuracy(x[held], y[held]))
        scores.append(np.mean(acc))
    return float(grid[int(np.argmax(scores))])


def linear_readout(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                   num_classes: int, l2: Optional[float] = None) -> Dict[str, float]:
    """Standardised features -> logistic regression (l2 by 3-fold validation on the training set when
    None) -> {"logreg_top1", "logreg_train_top1", "logreg_l2"}."""
    train, test = standardise(train, test)
    if l2 is None:
        l2 = choose_l2(train, train_labels, num_classes)
    model = LogisticRegression(l2).fit(train, train_labels, num_classes)
    return {"logreg_top1": model.accuracy(test, test_labels),
            "logreg_train_top1": model.accuracy(train, train_labels), "logreg_l2": float(l2)}


def _logistic_objective(x, onehot, w, b, l2):
    logits = tf.matmul(x, w) + b
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits)) + 0.5 * l2 * tf.reduce_sum(w * w)


@tf.function(reduce_retracing=True)
def _fit_logistic(x, onehot, l2, lr, steps):
    """Full-batch Adam (0.9, 0.999) with a cosine step decay to 1 % of ``lr``; returns (w, b, objective)."""
    params = [tf.zeros([tf.shape(x)[1], tf.shape(onehot)[1]]), tf.zeros([tf.shape(onehot)[1]])]
    m = [tf.zeros_like(p) for p in params]
    v = [tf.zeros_like(p) for p in params]
    total = tf.cast(steps, tf.float32)

    def body(i, params, m, v):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = _logistic_objective(x, onehot, params[0], params[1], l2)
        grads = tape.gradient(loss, params)
        t = tf.cast(i + 1, tf.float32)
        rate = lr * (0.01 + 0.99 * 0.5 * (1.0 + tf.cos(np.pi * (t - 1.0) / total)))
        m = [0.9 * a + 0.1 * g for a, g in zip(m, grads)]
        v = [0.999 * a + 0.001 * g * g for a, g in zip(v, grads)]
        params = [p - rate * (a / (1 - 0.9 ** t)) / (tf.sqrt(c / (1 - 0.999 ** t)) + 1e-8)
                  for p, a, c in zip(params, m, v)]
        return i + 1, params, m, v

    _, params, _, _ = tf.while_loop(lambda i, *_: i < steps, body, [tf.constant(0), params, m, v])
    return params[0], params[1], _logistic_objective(x, onehot, params[0], params[1], l2)


# ---------------------------------------------------------------------------- diagnostics

def spectrum(features: np.ndarray) -> Dict[str, float]:
    """Collapse diagnostics of [N, D] features: singular values of the centred matrix, the effective
    rank exp(entropy of the normalised singular values) and the share of the largest one."""
    f = np.asarray(features, np.float64)
    s = np.linalg.svd(f - f.mean(0), compute_uv=False)
    p = s / max(s.sum(), 1e-12)
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    return {"effective_rank": float(np.exp(entropy)), "top_singular_share": float(p[0]) if len(p) else 0.0,
            "dims": int(f.shape[1]), "singular_values": [float(v) for v in s]}


def encoder_knn(encoder, data_dir: str, window: int, train_split: str = "train", test_split: str = "test",
                ks: Sequence[int] = KNN_KS, batch_size: int = 64, eval_crop: float = DataConfig.eval_crop,
                return_embeddings: bool = False) -> Dict:
    """kNN top-1 of a frozen encoder: pooled embeddings of ``train_split`` (evaluation transform, no
    augmentation) are the neighbours of ``test_split``'s. Returns {"knn1_top1", "knn20_top1", ...}
    (and "embeddings": (train, train_labels, test, test_labels) when asked)."""
    from hacm_tf.data import tfrecord

    info = tfrecord.load_info(data_dir)
    fn = encoder_embed_fn(encoder)
    train, train_labels = embed_split(fn, data_dir, train_split, window, batch_size, eval_crop)
    test, test_labels = embed_split(fn, data_dir, test_split, window, batch_size, eval_crop)
    out: Dict = knn_accuracy(train, train_labels, test, test_labels, info["num_classes"], ks)
    if return_embeddings:
        out["embeddings"] = (train, train_labels, test, test_labels)
    return out
