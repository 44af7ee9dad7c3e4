"""tf.data input pipeline: TFRecord shards -> augmented batches.

Straight-line, every step a TF op (no Python per sample)::

    shard files -> (per-worker file shard) -> interleave TFRecordDataset
      -> parse -> (semi-supervised filter) -> (cache) -> shuffle -> repeat
      -> enumerate -> map(crop/resize/rotate/velocity with a per-sample
         stateless seed (seed, worker, element index)) -> batch -> prefetch

Batches are ``(skeleton, label)`` with skeleton ``[batch, window, persons,
joints, 3]`` float32 and label ``[batch]`` int64. Deterministic for a seed:
the same seed gives the same order and the same augmentation.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from hacm_tf.config import DataConfig
from hacm_tf.data import augment, tfrecord

AUTOTUNE = tf.data.AUTOTUNE


def parse_record(record: tf.Tensor) -> dict:
    """Serialised schema-v1 Example -> {"skeleton": [T, M, V, 3], "label", "name"}."""
    ex = tf.io.parse_single_example(record, tfrecord.feature_spec())
    x = tf.io.decode_raw(ex["skeleton"], tf.float32, little_endian=True)
    x = tf.reshape(x, tf.cast(ex["shape"], tf.int32))
    return {"skeleton": x, "label": ex["label"], "name": ex["name"]}


def _record_dataset(paths: Sequence[str], compression: Optional[str], ordered: bool) -> tf.data.Dataset:
    files = tf.data.Dataset.from_tensor_slices(list(paths))
    read = lambda f: tf.data.TFRecordDataset(f, compression_type=compression or "")  # noqa: E731
    if ordered:  # block_length 1 over all shards restores the writer's round-robin order
        return files.interleave(read, cycle_length=len(paths), block_length=1)
    return files.interleave(read, cycle_length=min(len(paths), 8), block_length=1,
                            num_parallel_calls=AUTOTUNE, deterministic=True)


def read_labels(data_dir: str, split: str, info: Optional[dict] = None) -> Tuple[List[str], np.ndarray]:
    """Names and labels of a split in the order the builder wrote them."""
    info = info or tfrecord.load_info(data_dir)
    paths = tfrecord.shard_paths(data_dir, info, split)
    ds = _record_dataset(paths, info.get("compression"), ordered=True).map(
        lambda r: tf.io.parse_single_example(r, {"name": tf.io.FixedLenFeature([], tf.string),
                                                 "label": tf.io.FixedLenFeature([], tf.int64)}),
        num_parallel_calls=AUTOTUNE, deterministic=True).batch(4096)
    names, labels = [], []
    for b in ds:
        names.extend(n.decode() for n in b["name"].numpy())
        labels.append(b["label"].numpy())
    return names, (np.concatenate(labels) if labels else np.zeros([0], np.int64))


def semi_supervised_subset(names: Sequence[str], labels: np.ndarray, ratio: float, seed: int = 0,
                           stratified: bool = False) -> List[str]:
    """Deterministic labelled subset for semi-supervised protocols.

    Plain (the reference): a permutation of all indices from
    ``RandomState(seed)``, keep the first ``int(N * ratio)``. Stratified: the same
    permutation, keeping ``max(1, round(n_c * ratio))`` samples of every class c.
    The result depends on the seed only, so every worker selects the same subset.
    """
    n = len(names)
    perm = np.random.RandomState(seed).permutation(n)
    if not stratified:
        keep = perm[: int(n * ratio)]
    else:
        labels = np.asarray(labels)
        keep = []
        for c in np.unique(labels):
            members = perm[labels[perm] == c]
            keep.extend(members[: max(1, int(round(len(members) * ratio)))])
        keep = np.sort(np.array(keep, dtype=np.int64))
    return [names[i] for i in sorted(keep)]


def make_dataset(data_dir: str, split: str, config: DataConfig, training: bool, seed: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 repeat: Optional[bool] = None, subset: Optional[Sequence[str]] = None,
                 joint_layout: Optional[str] = None, num_classes: Optional[int] = None,
                 check_hashes: bool = False, with_names: bool = False) -> tf.data.Dataset:
    """Batched dataset of a split.

    Args:
      data_dir: TFRecord directory with dataset_info.json.
      split: "train", "test", ...
      config: DataConfig (window, crops, rotation, velocity, global batch size ...).
      training: random crop + rotation, shuffling, repetition, drop_remainder.
      seed: shuffling and augmentation seed.
      input_context: from ``strategy.distribute_datasets_from_function``: gives
        the per-replica batch size and this worker's share of the shards.
      repeat: repeat forever (default: ``training``).
      subset: keep only these sample names (semi-supervised protocols). When
        None and ``config.semi_ratio < 1`` the subset is chosen from ``seed``.
      joint_layout, num_classes: expected values, checked against dataset_info.
      check_hashes: verify each shard's sha256 before reading.
      with_names: add the sample names as a third element.

    Returns:
      Dataset of ``(skeleton [b, window, M, V, 3], label [b])``.
    """
    config.validate()
    info = tfrecord.load_info(data_dir)
    tfrecord.check_info(info, data_dir, joint_layout=joint_layout, num_classes=num_classes, split=split)
    paths = tfrecord.shard_paths(data_dir, info, split, check_hashes=check_hashes)
    repeat = training if repeat is None else repeat
    batch = config.batch_size
    workers, worker = 1, 0
    if input_context is not None:
        batch = input_context.get_per_replica_batch_size(config.batch_size)
        workers, worker = input_context.num_input_pipelines, input_context.input_pipeline_id
    if subset is None and config.semi_ratio < 1.0 and split == "train":
        names, labels = read_labels(data_dir, split, info)
        subset = semi_supervised_subset(names, labels, config.semi_ratio, seed, config.semi_stratified)

    shard_files = workers > 1 and len(paths) >= workers
    if shard_files:                                   # each worker reads its own shard files
        paths = paths[worker::workers]
    ds = _record_dataset(paths, info.get("compression"), ordered=not training)
    if workers > 1 and not shard_files:               # too few files: shard by record
        ds = ds.shard(workers, worker)
    ds = ds.map(parse_record, num_parallel_calls=AUTOTUNE, deterministic=True)
    if subset is not None:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(subset), tf.string),
                                                tf.ones([len(subset)], tf.int32)), default_value=0)
        ds = ds.filter(lambda ex: table.lookup(ex["name"]) > 0)
    if config.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate()
    worker_seed = tf.constant(seed, tf.int64) * 7919 + worker

    def transform(index, ex):
        if training:
            sample_seed = tf.cast(tf.stack([worker_seed, index]) % (2 ** 31 - 1), tf.int32)
            x = augment.train_transform(ex["skeleton"], sample_seed, config.window, config.train_crop,
                                        config.min_crop_frames, config.rotation_range, config.velocity)
        else:
            x = augment.eval_transform(ex["skeleton"], config.window, config.eval_crop, config.velocity)
        x = tf.ensure_shape(x, [config.window, info["num_persons"], info["num_joints"], 3])
        return (x, ex["label"], ex["name"]) if with_names else (x, ex["label"])

    ds = ds.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(batch, drop_remainder=training)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)
