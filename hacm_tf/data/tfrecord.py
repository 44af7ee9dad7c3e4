"""TFRecord storage, schema version 1 (docs/data.md).

Each ``tf.train.Example`` holds one unpadded sample:

=============  =======  =====================================================
feature        type     meaning
=============  =======  =====================================================
skeleton       bytes    float32 little-endian, valid frames only
shape          int64[4] [frames, persons, joints, 3]
label          int64    0-based class, -1 unlabelled
name           bytes    sample name
subject        int64    -1 when unknown (likewise camera, setup, replication)
=============  =======  =====================================================

Shards are ``<split>-00000-of-000NN.tfrecord`` (``.gz`` suffix when GZIP),
written in a staging directory and moved into place only when complete;
``dataset_info.json`` (written last, atomically) lists every shard with its
size, example count and sha256, so a directory is either complete or has no
``dataset_info.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from hacm_tf.data.sample import Sample
from hacm_tf.errors import DataError, DatasetMismatchError

SCHEMA_VERSION = 1
INFO_FILE = "dataset_info.json"
INT_FIELDS = ("label", "subject", "camera", "setup", "replication")


def _tf():
    import tensorflow as tf  # imported lazily: readers and parsers work without TF

    return tf


# --------------------------------------------------------------------------- encoding


def encode_example(sample: Sample) -> bytes:
    """Serialises a Sample as a schema-v1 ``tf.train.Example``."""
    tf = _tf()
    x = np.ascontiguousarray(sample.skeleton, dtype="<f4")
    feats = {
        "skeleton": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(x.shape))),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[sample.name.encode()])),
    }
    for k in INT_FIELDS:
        feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(getattr(sample, k))]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def decode_example(record: bytes, where: str = "record") -> Sample:
    """Parses a serialised Example back into a Sample (numpy, no graph)."""
    tf = _tf()
    ex = tf.train.Example.FromString(record)
    f = ex.features.feature
    missing = [k for k in ("skeleton", "shape", "name") + INT_FIELDS if k not in f]
    if missing:
        raise DataError(where, f"record lacks features {missing} (not schema version {SCHEMA_VERSION})")
    shape = tuple(f["shape"].int64_list.value)
    raw = f["skeleton"].bytes_list.value[0]
    if len(shape) != 4 or shape[-1] != 3 or int(np.prod(shape)) * 4 != len(raw):
        raise DataError(where, f"record shape {shape} does not match its {len(raw)} skeleton bytes")
    x = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    ints = {k: int(f[k].int64_list.value[0]) for k in INT_FIELDS}
    return Sample(f["name"].bytes_list.value[0].decode(), x, **ints)


def feature_spec():
    """``tf.io.parse_single_example`` spec of schema v1."""
    tf = _tf()
    spec = {
        "skeleton": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([4], tf.int64),
        "name": tf.io.FixedLenFeature([], tf.string),
    }
    for k in INT_FIELDS:
        spec[k] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    return spec


# --------------------------------------------------------------------------- files


def shard_name(split: str, index: int, count: int, compression: Optional[str]) -> str:
    suffix = ".tfrecord.gz" if compression == "GZIP" else ".tfrecord"
    return f"{split}-{index:05d}-of-{count:05d}{suffix}"


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str, text: str):
    """Writes ``text`` to ``path`` via a temporary file in the same directory + rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class DatasetWriter:
    """Writes samples of several splits into sharded TFRecords plus dataset_info.json.

    Usage::

        with DatasetWriter(out_dir, shards={"train": 8, "test": 4}, info={...}) as w:
            for split, sample in ...:
                w.write(split, sample)

    Samples go round-robin into the split's shards; a split with fewer samples than shards keeps one
    shard per sample (no empty shard, except the one of a split without samples). Everything is written into
    a staging directory inside ``out_dir``; on success the shards are moved into
    place and dataset_info.json is written last. On an exception nothing of the
    new dataset is left behind (an older complete dataset in ``out_dir`` is
    replaced only at the very end).
    """

    def __init__(self, out_dir: str, shards: Dict[str, int], info: dict,
                 compression: Optional[str] = None):
        if compression not in (None, "GZIP"):
            raise ValueError(f"compression must be None or 'GZIP', got {compression!r}")
        for split, n in shards.items():
            if n < 1:
                raise ValueError(f"split {split}: need at least one shard, got {n}")
        self.out_dir = out_dir
        self.shards = dict(shards)
        self.info = dict(info)
        self.compression = compression
        self.counts = {s: [0] * n for s, n in shards.items()}
        self.class_counts: Dict[str, Dict[int, int]] = {s: {} for s in shards}
        self.skipped: List[dict] = []
        self._writers = {}
        self._staging = None

    def __enter__(self):
        tf = _tf()
        os.makedirs(self.out_dir, exist_ok=True)
        remove_stale_staging(self.out_dir)
        self._staging = tempfile.mkdtemp(prefix=".staging-", dir=self.out_dir)
        opts = tf.io.TFRecordOptions(compression_type=self.compression or "")
        for split, n in self.shards.items():
            for i in range(n):
                path = os.path.join(self._staging, shard_name(split, i, n, self.compression))
                self._writers[(split, i)] = tf.io.TFRecordWriter(path, opts)
        return self

    def write(self, split: str, sample: Sample):
        if split not in self.shards:
            raise ValueError(f"unknown split {split!r}; this writer has {sorted(self.shards)}")
        n = self.shards[split]
        i = sum(self.counts[split]) % n
        self._writers[(split, i)].write(encode_example(sample))
        self.counts[split][i] += 1
        cc = self.class_counts[split]
        cc[sample.label] = cc.get(sample.label, 0) + 1

    def skip(self, name: str, reason: str):
        """Records a sample that was skipped (``--on_error=skip``)."""
        self.skipped.append({"name": name, "reason": reason})

    def __exit__(self, exc_type, exc, tb):
        for w in self._writers.values():
            w.close()
        if exc_type is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            return False
        try:
            self._finish()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
        return False

    def _finish(self):
        shard_list = []
        for (split, i) in sorted(self._writers):
            # round-robin fills the first shards first: a split keeps min(shards, samples) of them (one, empty,
            # for a split without samples), renamed <split>-0000i-of-<kept>
            kept = max(1, min(self.shards[split], sum(self.counts[split])))
            if i >= kept:
                continue
            name = shard_name(split, i, kept, self.compression)
            path = os.path.join(self._staging, name)
            os.replace(os.path.join(self._staging, shard_name(split, i, self.shards[split], self.compression)), path)
            shard_list.append({"file": name, "split": split, "examples": self.counts[split][i],
                               "bytes": os.path.getsize(path), "sha256": sha256_file(path)})
        info = dict(self.info)
        info.update({
            "schema_version": SCHEMA_VERSION,
            "compression": self.compression,
            "splits": {s: sum(c) for s, c in self.counts.items()},
            "class_counts": {s: {str(k): v for k, v in sorted(cc.items())} for s, cc in self.class_counts.items()},
            "shards": shard_list,
            "skipped": self.skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        info.setdefault("command", " ".join(sys.argv))
        info_path = os.path.join(self.out_dir, INFO_FILE)
        if os.path.exists(info_path):   # an older dataset: invalidate it before replacing shards
            os.unlink(info_path)
        for old in os.listdir(self.out_dir):
            if ".tfrecord" in old and not old.startswith("."):
                os.unlink(os.path.join(self.out_dir, old))
        for s in shard_list:
            os.replace(os.path.join(self._staging, s["file"]), os.path.join(self.out_dir, s["file"]))
        atomic_write_text(info_path, json.dumps(info, indent=1) + "\n")
        self.info = info


def remove_stale_staging(out_dir: str):
    """Deletes staging directories left by an interrupted build."""
    for entry in os.listdir(out_dir):
        if entry.startswith(".staging-") or entry.startswith(".tmp-"):
            p = os.path.join(out_dir, entry)
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)


# --------------------------------------------------------------------------- reading


def load_info(data_dir: str) -> dict:
    """Reads and checks dataset_info.json of a TFRecord directory."""
    path = os.path.join(data_dir, INFO_FILE)
    if not os.path.exists(path):
        raise DatasetMismatchError(
            f"{data_dir}: no {INFO_FILE}; not a complete hacm_tf TFRecord directory "
            "(build one with scripts/build_tfrecords.py)")
    try:
        with open(path) as f:
            info = json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetMismatchError(f"{path}: not valid JSON ({e})") from None
    if info.get("schema_version") != SCHEMA_VERSION:
        raise DatasetMismatchError(
            f"{path}: schema version {info.get('schema_version')!r}, this hacm_tf reads version {SCHEMA_VERSION}")
    return info


def check_info(info: dict, data_dir: str = "", joint_layout: Optional[str] = None,
               num_classes: Optional[int] = None, num_persons: Optional[int] = None,
               split: Optional[str] = None):
    """Raises DatasetMismatchError when the dataset is not what the caller expects."""
    where = data_dir or info.get("dataset", "dataset")
    if joint_layout is not None and info["joint_layout"] != joint_layout:
        raise DatasetMismatchError(
            f"{where}: joint layout is {info['joint_layout']!r}, the model expects {joint_layout!r}")
    if num_classes is not None and info["num_classes"] != num_classes:
        raise DatasetMismatchError(
            f"{where}: {info['num_classes']} classes, the model expects {num_classes}")
    if num_persons is not None and info["num_persons"] != num_persons:
        raise DatasetMismatchError(
            f"{where}: {info['num_persons']} persons per sample, the model expects {num_persons}")
    if split is not None and split not in info["splits"]:
        raise DatasetMismatchError(f"{where}: no split {split!r}; it has {sorted(info['splits'])}")


def shard_paths(data_dir: str, info: dict, split: str, check_files: bool = True,
                check_hashes: bool = False) -> List[str]:
    """Paths of a split's shards, checking that each exists with the recorded size (and hash)."""
    check_info(info, data_dir, split=split)
    paths = []
    for s in info["shards"]:
        if s["split"] != split:
            continue
        p = os.path.join(data_dir, s["file"])
        if check_files:
            if not os.path.exists(p):
                raise DatasetMismatchError(f"{p}: shard listed in {INFO_FILE} is missing")
            size = os.path.getsize(p)
            if size != s["bytes"]:
                raise DatasetMismatchError(
                    f"{p}: {size} bytes, {INFO_FILE} records {s['bytes']} (truncated or modified shard)")
        if check_hashes and sha256_file(p) != s["sha256"]:
            raise DatasetMismatchError(f"{p}: sha256 differs from {INFO_FILE} (corrupt shard)")
        paths.append(p)
    return paths


def iterate_split(data_dir: str, split: str, info: Optional[dict] = None) -> Iterable[Sample]:
    """Yields every Sample of a split in shard order (numpy; for tools and tests)."""
    tf = _tf()
    info = info or load_info(data_dir)
    for p in shard_paths(data_dir, info, split):
        try:
            for i, rec in enumerate(tf.data.TFRecordDataset(p, compression_type=info.get("compression") or "")):
                yield decode_example(rec.numpy(), where=f"{p}, record {i}")
        except tf.errors.DataLossError as e:
            raise DataError(p, f"corrupt TFRecord shard ({e.message.splitlines()[0]})") from None


def verify(data_dir: str, progress: bool = True) -> dict:
    """Re-checks a built directory: files, sizes, sha256, every record parses, counts match.

    Returns a summary dict; raises DatasetMismatchError / DataError naming the shard.
    """
    tf = _tf()
    info = load_info(data_dir)
    listed = {s["file"] for s in info["shards"]}
    extra = sorted(f for f in os.listdir(data_dir) if ".tfrecord" in f and f not in listed)
    if extra:
        raise DatasetMismatchError(f"{data_dir}: shard files not listed in {INFO_FILE}: {extra}")
    counts: Dict[str, int] = {}
    from hacm_tf.utils import progress_bar

    for s in progress_bar(info["shards"], desc="verify", unit="shard", disable=not progress):
        p = shard_paths(data_dir, {**info, "shards": [s]}, s["split"], check_hashes=True)[0]
        n = 0
        try:
            for rec in tf.data.TFRecordDataset(p, compression_type=info.get("compression") or ""):
                sample = decode_example(rec.numpy(), where=f"{p}, record {n}")
                if sample.skeleton.shape[2] != info["num_joints"] or sample.skeleton.shape[1] != info["num_persons"]:
                    raise DataError(p, f"record {n} ({sample.name}) has shape {sample.shape}, dataset declares "
                                    f"{info['num_persons']} persons x {info['num_joints']} joints")
                n += 1
        except tf.errors.DataLossError as e:
            raise DataError(p, f"corrupt TFRecord shard ({e.message.splitlines()[0]})") from None
        if n != s["examples"]:
            raise DatasetMismatchError(f"{p}: {n} records, {INFO_FILE} records {s['examples']}")
        counts[s["split"]] = counts.get(s["split"], 0) + n
    if counts != info["splits"]:
        raise DatasetMismatchError(f"{data_dir}: split counts {counts} differ from {INFO_FILE} {info['splits']}")
    return {"data_dir": data_dir, "splits": counts, "shards": len(info["shards"]), "ok": True}


def make_info(dataset: str, protocol: str, layout_name: str, num_joints: int, num_persons: int,
              class_names: Sequence[str], **extra) -> dict:
    """The descriptive part of dataset_info.json (counts and shards are added by the writer)."""
    info = {"dataset": dataset, "protocol": protocol, "joint_layout": layout_name,
            "num_joints": num_joints, "num_persons": num_persons,
            "num_classes": len(class_names), "class_names": list(class_names)}
    info.update(extra)
    return info
