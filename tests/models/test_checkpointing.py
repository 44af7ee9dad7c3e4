"""Object-based checkpoints hold every weight (block lists included) and restore them exactly."""

import numpy as np
import tensorflow as tf

from hacm_tf.config import ModelConfig
from hacm_tf.models.classifier import ActionClassifier
from hacm_tf.models.pretrainer import MaskedPretrainer

CFG = ModelConfig(window=24, dim=32, depth=3, heads=4, decoder_dim=32, decoder_depth=2, decoder_heads=4)


def roundtrip(make, tmp_path):
    a = make()
    path = tf.train.Checkpoint(model=a).save(str(tmp_path / "c"))
    saved = {n for n, _ in tf.train.list_variables(path)}
    b = make()
    tf.train.Checkpoint(model=b).restore(path).assert_existing_objects_matched()
    assert len(a.weights) > 20
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)
    return saved


def test_pretrainer_checkpoint_holds_every_weight(tmp_path):
    def make():
        m = MaskedPretrainer(CFG.validate().to_dict())
        m.build()
        return m

    saved = roundtrip(make, tmp_path)
    assert any("/encoder/block2/" in n for n in saved) and any("/decoder_block1/" in n for n in saved)


def test_classifier_checkpoint_holds_the_frozen_encoder(tmp_path):
    def make():
        m = ActionClassifier(CFG.validate().to_dict(), 7, head="linear")
        m.build()
        return m

    saved = roundtrip(make, tmp_path)
    assert any("/encoder/block0/" in n for n in saved)
