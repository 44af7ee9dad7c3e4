"""tf.data input pipeline: TFRecord shards -> augmented batches.

Straight-line, every step a TF op (no Python per sample)::

    shard files -> (per-worker file shard)
    per epoch e (training): stateless shuffle of the shard order -> interleave
      TFRecordDataset -> windows of ``shuffle_buffer`` serialised records, each
      permuted with a stateless shuffle -> parse -> (semi-supervised filter)
      -> map(crop/resize/rotate/velocity with a stateless seed (seed, worker, e,
      index)) -> batch; epochs concatenated -> prefetch

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
                 check_hashes: bool = False, with_names: bool = False, start_epoch: int = 0,
                 skip_batches: int = 0, batches_per_epoch: Optional[int] = None) -> tf.data.Dataset:
    """Batched dataset of a split.

    Args:
      data_dir: TFRecord directory with dataset_info.json.
      split: "train", "test", ...
      config: DataConfig (window, crops, rotation, velocity, global batch size ...).
      training: random crop + rotation, shuffling, repetition, drop_remainder.
      seed: shuffling and augmentation seed.
      input_context: from ``strategy.distribute_datasets_from_function``: gives
        the per-replica batch size and this worker's share of the shards.
      repeat: repeat forever, epoch after epoch (default: ``training``).
      subset: keep only these sample names (semi-supervised protocols). When
        None and ``config.semi_ratio < 1`` the subset is chosen from ``seed``.
      joint_layout, num_classes: expected values, checked against dataset_info.
      check_hashes: verify each shard's sha256 before reading.
      with_names: add the sample names as a third element.
      start_epoch, skip_batches: resume position (training): epoch e's order and
        augmentation depend only on (seed, worker, e), so a resumed run sees
        exactly the batches an uninterrupted run would.
      batches_per_epoch: batches of this pipeline per epoch (training; default:
        all full batches). More than the data holds repeats the epoch's order.

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
    compression = info.get("compression")
    table = None
    if subset is not None:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(subset), tf.string),
                                                tf.ones([len(subset)], tf.int32)), default_value=0)
    shape = [config.window, info["num_persons"], info["num_joints"], 3]

    def parse_and_select(records):
        if workers > 1 and not shard_files:           # too few files: shard by record
            records = records.shard(workers, worker)
        records = records.map(parse_record, num_parallel_calls=AUTOTUNE, deterministic=True)
        if table is not None:
            records = records.filter(lambda ex: table.lookup(ex["name"]) > 0)
        return records

    def output(x, ex):
        x = tf.ensure_shape(x, shape)
        return (x, ex["label"], ex["name"]) if with_names else (x, ex["label"])

    if not training:
        ds = parse_and_select(_record_dataset(paths, compression, ordered=True))
        ds = ds.map(lambda ex: output(augment.eval_transform(ex["skeleton"], config.window, config.eval_crop,
                                                             config.velocity), ex),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.repeat() if repeat else ds
        return _finish(ds.batch(batch))

    files = tf.constant(paths)
    # the file order may only depend on the seed when workers shard by record (all must agree)
    order_key = tf.constant(seed * 7919 + (worker if shard_files else 0), tf.int64)
    sample_key = tf.constant(seed * 7919 + worker, tf.int64)

    def epoch(e):
        """One epoch: shuffled file order, windowed shuffle of the serialised records, augmentation,
        everything seeded by (seed, worker, e) with stateless ops, so any epoch can be rebuilt alone."""
        e = tf.cast(e, tf.int64)
        order_seed = _seed_pair(order_key, e)
        epoch_files = tf.random.experimental.stateless_shuffle(files, seed=order_seed)
        records = tf.data.Dataset.from_tensor_slices(epoch_files).interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type=compression or ""),
            cycle_length=min(len(paths), 8), block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)
        records = records.batch(config.shuffle_buffer).enumerate().map(
            lambda i, window: tf.random.experimental.stateless_shuffle(
                window, seed=tf.random.experimental.stateless_fold_in(order_seed, tf.cast(i, tf.int32) + 1)),
            num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        records = parse_and_select(records)
        if batches_per_epoch is not None:
            records = records.repeat()
        aug_seed = _seed_pair(sample_key, e)

        def transform(index, ex):
            sample_seed = tf.random.experimental.stateless_fold_in(aug_seed, tf.cast(index, tf.int32))
            x = augment.train_transform(ex["skeleton"], sample_seed, config.window, config.train_crop,
                                        config.min_crop_frames, config.rotation_range, config.velocity)
            return output(x, ex)

        ds = records.enumerate().map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = ds.batch(batch, drop_remainder=True)
        return ds.take(batches_per_epoch) if batches_per_epoch is not None else ds

    first = epoch(start_epoch).skip(skip_batches)
    if repeat:
        first = first.concatenate(tf.data.Dataset.range(start_epoch + 1, 2 ** 62).flat_map(epoch))
    return _finish(first)


def _seed_pair(key: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """int32 [2] stateless seed from an int64 key and an epoch."""
    return tf.cast(tf.stack([key, epoch]) % (2 ** 31 - 1), tf.int32)


def _finish(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(AUTOTUNE)


def make_raw_dataset(data_dir: str, split: str, batch_size: int = 32) -> tf.data.Dataset:
    """Unprocessed samples for serving-style evaluation, in the builder's order.

    Batches of ``(skeleton [b, frames, M, V, 3] zero-padded, num_frames [b] int32, label [b], name [b])``.
    """
    info = tfrecord.load_info(data_dir)
    paths = tfrecord.shard_paths(data_dir, info, split)
    ds = _record_dataset(paths, info.get("compression"), ordered=True)
    ds = ds.map(parse_record, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.map(lambda ex: (ex["skeleton"], tf.shape(ex["skeleton"])[0], ex["label"], ex["name"]))
    return ds.padded_batch(batch_size).prefetch(AUTOTUNE)
