"""ActionClassifier: the pretraining encoder over all tokens with a linear-probe or fine-tune head
(docs/official_code.md §5).

Input ``[N, T, M, V, 3]``; persons are folded into the batch for the encoder and averaged in the head.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from hacm_tf.config import ComputeConfig, ModelConfig, ProtocolConfig
from hacm_tf.layers.transformer import dense
from hacm_tf.models.encoder import SkeletonEncoder, fold_persons
from hacm_tf.ops.checks import check_skeleton_batch
from hacm_tf.skeleton import get_layout
from hacm_tf.training.optim import apply_gradients

HEADS = ("linear", "finetune")
HIDDEN = 2048


@keras.saving.register_keras_serializable("hacm_tf")
class ActionClassifier(keras.Model):
    """Encoder + head.

    ``head="linear"``: frozen encoder run in inference mode; mean over persons and tokens -> BatchNorm
    without affine (eps 1e-6) -> Dense (N(0, 0.01^2) init).
    ``head="finetune"``: trainable encoder with drop path; Dropout(0.3) on token features -> mean over
    time -> joints x channels -> mean over persons -> Dense(2048) -> BatchNorm (eps 1e-5) -> ReLU -> Dense.
    """

    def __init__(self, config: dict, num_classes: int, head: str = "linear", dropout: float = 0.3,
                 label_smoothing: float = 0.0, remat: str = "none", precision: str = "float32",
                 fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.config = dict(config)
        self.cfg = ModelConfig.from_dict(self.config)
        self.num_classes, self.head, self.dropout_rate = int(num_classes), head, float(dropout)
        self.label_smoothing = float(label_smoothing)
        self.remat, self.precision, self.fused = remat, precision, bool(fused)
        self.encoder = SkeletonEncoder(self.config, remat, precision, fused, name="encoder")
        self.num_token_joints = len(self.encoder.joints)
        self.num_joints = get_layout(self.cfg.layout).num_joints
        if head == "linear":
            self.encoder.trainable = False
            self.bn = keras.layers.BatchNormalization(center=False, scale=False, epsilon=1e-6, momentum=0.9,
                                                      name="head_bn")
            self.fc = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
                                         bias_initializer="zeros", name="head_fc")
        else:
            self.drop = keras.layers.Dropout(dropout, name="head_dropout")
            self.fc1 = dense(HIDDEN, "head_fc1")
            self.bn = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="head_bn")
            self.fc = dense(num_classes, "head_fc2")
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "top1", "top5")}

    def build(self, input_shape=None):
        d = self.cfg.dim
        self.encoder.build(None)
        if self.head == "linear":
            self.bn.build((None, d))
            self.fc.build((None, d))
        else:
            self.fc1.build((None, self.num_token_joints * d))
            self.bn.build((None, HIDDEN))
            self.fc.build((None, HIDDEN))
        self.built = True

    def features(self, x, training=False) -> tf.Tensor:
        """Token features ``[N, M, T', V', D]`` of ``x`` ``[N, T, M, V, 3]`` (a wrong M, V or coordinate count
        raises ValueError naming both shapes)."""
        x = check_skeleton_batch(tf.convert_to_tensor(x, tf.float32), self.cfg.num_persons, self.num_joints)
        n, m = tf.shape(x)[0], x.shape[2]
        enc_training = training and self.head == "finetune"
        h = self.encoder(fold_persons(x), training=enc_training)              # [N*M, T'*V', D]
        return tf.reshape(h, [n, m, self.cfg.num_patches, self.num_token_joints, self.cfg.dim])

    def embed(self, x) -> tf.Tensor:
        """Pooled clip embedding ``[N, D]``: mean over persons, time and joints."""
        return tf.reduce_mean(self.features(x), axis=[1, 2, 3])

    def call(self, x, training=False):
        """[N, T, M, V, 3] -> logits [N, K]."""
        return self.logits_from_features(self.features(x, training), training)

    def logits_from_features(self, f, training=False):
        """Token features [N, M, T', V', D] -> logits [N, K]."""
        if self.head == "linear":
            pooled = tf.reduce_mean(f, axis=[1, 2, 3])                       # [N, D]
            return self.fc(self.bn(pooled, training=training))
        f = self.drop(f, training=training)
        f = tf.reduce_mean(f, axis=2)                                         # [N, M, V', D]
        f = tf.reduce_mean(tf.reshape(f, [tf.shape(f)[0], f.shape[1], -1]), axis=1)   # [N, V' * D]
        h = tf.nn.relu(self.bn(self.fc1(f), training=training))
        return self.fc(h)

    # ------------------------------------------------------------------ training

    @property
    def metrics(self):
        return list(self.trackers.values())

    def loss_fn(self, labels, logits):
        """Per-sample cross-entropy with label smoothing (Keras' CategoricalCrossentropy convention)."""
        onehot = tf.one_hot(labels, self.num_classes)
        if self.label_smoothing:
            onehot = onehot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return tf.nn.softmax_cross_entropy_with_logits(onehot, logits)

    def train_step(self, data):
        x, y = data[0], data[1]
        n_rep = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            loss = tf.reduce_mean(self.loss_fn(y, logits))
            scaled = loss / tf.cast(n_rep, tf.float32)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        apply_gradients(self.optimizer, grads, variables)
        self._update(self.loss_fn(y, logits), y, logits)
        return {k: tf.reshape(m.result(), [1]) for k, m in self.trackers.items()}

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self(x, training=False)
        self._update(self.loss_fn(y, logits), y, logits)
        return {k: tf.reshape(m.result(), [1]) for k, m in self.trackers.items()}

    def _update(self, losses, y, logits):
        """Per-sample updates (an empty replica batch adds nothing)."""
        self.trackers["loss"].update_state(losses)
        k5 = min(5, self.num_classes)
        self.trackers["top1"].update_state(tf.cast(tf.math.in_top_k(y, logits, 1), tf.float32))
        self.trackers["top5"].update_state(tf.cast(tf.math.in_top_k(y, logits, k5), tf.float32))

    def get_config(self):
        return {"config": self.config, "num_classes": self.num_classes, "head": self.head,
                "dropout": self.dropout_rate, "label_smoothing": self.label_smoothing, "remat": self.remat,
                "precision": self.precision, "fused": self.fused}


def build_classifier(model_config: ModelConfig, num_classes: int, protocol: ProtocolConfig,
                     compute: ComputeConfig = None) -> ActionClassifier:
    """The built ActionClassifier of a protocol (linear or fine-tune head) under ``compute``'s layer settings."""
    finetune = protocol.protocol == "finetune"
    clf = ActionClassifier(model_config.to_dict(), num_classes, head="finetune" if finetune else "linear",
                           dropout=protocol.dropout, label_smoothing=protocol.label_smoothing if finetune else 0.0,
                           **(compute or ComputeConfig()).layer_kwargs)
    clf.build()
    return clf
