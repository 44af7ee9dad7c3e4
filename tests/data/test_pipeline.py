import numpy as np
import pytest
import tensorflow as tf

from hacm_tf.config import ConfigError, DataConfig
from hacm_tf.data import augment, pipeline, tfrecord
from hacm_tf.errors import DatasetMismatchError


def first_batches(ds, n):
    return [tuple(t.numpy() for t in b) for b in ds.take(n)]


def test_training_batches_shapes_and_determinism(synthetic_dir):
    cfg = DataConfig(window=24, batch_size=8, min_crop_frames=16)
    a = first_batches(pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, seed=3), 3)
    b = first_batches(pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, seed=3), 3)
    c = first_batches(pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, seed=4), 3)
    x, y = a[0]
    assert x.shape == (8, 24, 2, 25, 3) and x.dtype == np.float32 and y.dtype == np.int64
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_training_repeats_and_reshuffles_each_epoch(synthetic_dir):
    info = tfrecord.load_info(synthetic_dir)
    n = info["splits"]["train"]
    cfg = DataConfig(window=8, batch_size=1, min_crop_frames=8)
    ds = pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, seed=0, with_names=True)
    names = [b[2][0] for b in first_batches(ds, 2 * n)]
    assert sorted(names[:n]) == sorted(names[n:])          # every sample once per epoch
    assert names[:n] != names[n:]                          # in a new order


def test_eval_dataset_is_the_eval_transform_of_every_sample(synthetic_dir):
    cfg = DataConfig(window=16, batch_size=5)
    got = {}
    for x, y, names in pipeline.make_dataset(synthetic_dir, "test", cfg, training=False, with_names=True):
        for xi, yi, ni in zip(x.numpy(), y.numpy(), names.numpy()):
            got[ni.decode()] = (xi, yi)
    expected = list(tfrecord.iterate_split(synthetic_dir, "test"))
    assert len(got) == len(expected)
    for s in expected[:10]:
        x, y = got[s.name]
        assert y == s.label
        np.testing.assert_allclose(x, augment.eval_transform(tf.constant(s.skeleton), 16).numpy(), atol=1e-6)


def test_each_worker_reads_its_own_share(synthetic_dir):
    cfg = DataConfig(window=8, batch_size=4)
    seen = []
    for worker in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        ds = pipeline.make_dataset(synthetic_dir, "test", cfg, training=False, input_context=ctx, with_names=True)
        names = [n.decode() for b in ds for n in b[2].numpy()]
        assert next(iter(ds))[0].shape[0] == 2                      # per-replica batch
        seen.append(names)
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == tfrecord.load_info(synthetic_dir)["splits"]["test"]


def test_semi_supervised_subsets(synthetic_dir):
    names, labels = pipeline.read_labels(synthetic_dir, "train")
    n = len(names)
    sub = pipeline.semi_supervised_subset(names, labels, 0.1, seed=0)
    assert len(sub) == int(n * 0.1)
    assert sub == pipeline.semi_supervised_subset(names, labels, 0.1, seed=0)
    assert sub != pipeline.semi_supervised_subset(names, labels, 0.1, seed=1)
    # reference rule: the first int(N * ratio) indices of RandomState(seed).permutation(N)
    perm = np.random.RandomState(0).permutation(n)
    assert set(sub) == {names[i] for i in perm[: int(n * 0.1)]}
    strat = pipeline.semi_supervised_subset(names, labels, 0.1, seed=0, stratified=True)
    lab = dict(zip(names, labels))
    assert sorted({lab[s] for s in strat}) == sorted(set(labels))
    # the pipeline applies it
    cfg = DataConfig(window=8, batch_size=1, semi_ratio=0.1)
    ds = pipeline.make_dataset(synthetic_dir, "train", cfg, training=False, seed=0, with_names=True)
    assert sorted(b[2][0].decode() for b in first_batches(ds, 1000)) == sorted(sub)


def test_reference_semi_subset_sizes():
    for n, ratio, size in ((40091, 0.01, 400), (40091, 0.1, 4009), (37646, 0.01, 376), (37646, 0.1, 3764)):
        names = [str(i) for i in range(n)]
        assert len(pipeline.semi_supervised_subset(names, np.zeros(n), ratio)) == size


def test_mismatches_are_reported(synthetic_dir):
    cfg = DataConfig(window=8, batch_size=2)
    with pytest.raises(DatasetMismatchError, match="joint layout"):
        pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, joint_layout="kinect_v1_20")
    with pytest.raises(DatasetMismatchError, match="classes"):
        pipeline.make_dataset(synthetic_dir, "train", cfg, training=True, num_classes=60)
    with pytest.raises(ConfigError, match="train_crop"):
        pipeline.make_dataset(synthetic_dir, "train", DataConfig(train_crop=(0.9, 0.5)), training=True)


def test_resume_position_reproduces_the_stream(synthetic_dir):
    cfg = DataConfig(window=8, batch_size=4, min_crop_frames=8)
    full = first_batches(pipeline.make_dataset(synthetic_dir, "train", cfg, True, seed=2, batches_per_epoch=5), 12)
    resumed = first_batches(pipeline.make_dataset(synthetic_dir, "train", cfg, True, seed=2, batches_per_epoch=5,
                                                  start_epoch=1, skip_batches=2), 5)
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(full[0][0], full[5][0])        # epochs differ
