import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import ModelConfig
from hacm_tf.models.classifier import ActionClassifier
from hacm_tf.models.encoder import SkeletonEncoder
from hacm_tf.training import downstream, optim

TINY = dict(window=24, t_patch=3, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=1, decoder_heads=4)


def clf(head="linear", k=5, **kw):
    m = ActionClassifier(ModelConfig(**{**TINY, **kw}).validate().to_dict(), k, head=head,
                         label_smoothing=0.1 if head == "finetune" else 0.0)
    m.build()
    return m


def batch(n=4, seed=0):
    r = np.random.RandomState(seed)
    return np.cumsum(r.normal(size=(n, 24, 2, 25, 3)) * 0.05, axis=1).astype(np.float32), r.randint(0, 5, n)


def test_linear_probe_trains_only_the_head_and_updates_bn_statistics():
    m = clf("linear")
    assert [v.path.split("/")[-2] for v in m.trainable_variables] == ["head_fc", "head_fc"]
    m.optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
    x, y = batch()
    enc_before = [v.numpy() for v in m.encoder.weights]
    mean_before = m.bn.moving_mean.numpy().copy()
    m.train_step((tf.constant(x), tf.constant(y)))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(enc_before, m.encoder.weights))
    assert not np.allclose(mean_before, m.bn.moving_mean.numpy())
    # inference uses the moving statistics: one sample gives the same logits alone or in a batch
    solo = m(x[:1], training=False).numpy()
    np.testing.assert_allclose(solo, m(x, training=False).numpy()[:1], atol=1e-5)


def test_finetune_head_shapes_and_drop_path_schedule():
    m = clf("finetune", drop_path=0.3)
    assert m.fc1.kernel.shape == (18 * 32, 2048) and m.fc.kernel.shape == (2048, 5)
    assert [b.drop.rate for b in m.encoder.blocks] == pytest.approx([0.0, 0.3])
    x, _ = batch()
    assert m(x, training=True).shape == (4, 5)
    a, b = m(x, training=True).numpy(), m(x, training=True).numpy()
    assert not np.allclose(a, b)                                  # dropout / drop path active
    np.testing.assert_allclose(m(x).numpy(), m(x).numpy())        # deterministic at inference


def test_label_smoothing_matches_formula():
    m = clf("finetune")
    logits = np.random.RandomState(1).normal(size=(6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4, 0])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = 0.9 * -logp[np.arange(6), y] + 0.1 * (-logp).mean(1)
    np.testing.assert_allclose(m.loss_fn(tf.constant(y), tf.constant(logits)).numpy(), expected, rtol=1e-5)


def test_layer_decay_scales_and_group_learning_rates():
    m = clf("finetune")
    paths = [v.path for v in m.trainable_variables]
    scales = optim.layer_decay_scales(paths, depth=2, decay=0.8)
    for p, s in scales.items():
        if "joints_embed" in p or "pos_embed" in p:
            assert s == pytest.approx(0.8 ** 3), p
        elif "blocks_0" in p:
            assert s == pytest.approx(0.8 ** 2), p
        elif "blocks_1" in p:
            assert s == pytest.approx(0.8), p
        else:
            assert s == 1.0, p          # final norm and head
    opt = optim.layerwise_adamw(m.trainable_variables, paths, 2, 0.8,
                                lambda s: optim.WarmupCosine(1e-3, 0, 0, 10, 10, scale=s))
    lrs = sorted(float(o.learning_rate) for o in opt.optimizers)
    assert lrs == pytest.approx([1e-3 * 0.8 ** 3, 1e-3 * 0.8 ** 2, 1e-3 * 0.8, 1e-3])
    m.optimizer = opt
    x, y = batch()
    before = {v.path: v.numpy() for v in m.trainable_variables}
    m.train_step((tf.constant(x), tf.constant(y)))
    # Adam's first step moves a weight by about lr * scale * sign(gradient)
    emb = np.abs(m.encoder.pos_embed.joint.numpy() - before[m.encoder.pos_embed.joint.path]).max()
    blk = np.abs(m.encoder.blocks[1].fc1.kernel.numpy() - before[m.encoder.blocks[1].fc1.kernel.path]).max()
    head = np.abs(m.fc.kernel.numpy() - before[m.fc.kernel.path]).max()
    assert emb == pytest.approx(1e-3 * 0.8 ** 3, rel=0.05)
    assert blk == pytest.approx(1e-3 * 0.8, rel=0.05)
    assert head == pytest.approx(1e-3, rel=0.05)


def test_transfer_resizes_the_temporal_embedding_and_rejects_other_encoders():
    src = SkeletonEncoder(ModelConfig(**TINY).validate().to_dict())
    src.build()
    dst_cfg = ModelConfig(**{**TINY, "window": 36}).validate()
    dst = SkeletonEncoder(dst_cfg.to_dict())
    dst.build()
    downstream.transfer_encoder(src, dst)
    assert dst.pos_embed.temporal.shape == (1, 12, 1, 32)
    np.testing.assert_array_equal(dst.blocks[1].fc2.kernel.numpy(), src.blocks[1].fc2.kernel.numpy())
    t = dst.pos_embed.temporal.numpy()[0, :, 0]
    s = src.pos_embed.temporal.numpy()[0, :, 0]
    assert np.corrcoef(t[::3][:8].ravel(), s[::2][:8].ravel())[0, 1] > 0.3    # a smooth resize, not noise
    other = SkeletonEncoder(ModelConfig(**{**TINY, "dim": 64}).validate().to_dict())
    other.build()
    with pytest.raises(ValueError, match="dim: 32 vs 64"):
        downstream.transfer_encoder(src, other)
