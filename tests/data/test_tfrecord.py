import json
import os
import shutil

import numpy as np
import pytest

from hacm_tf.data import tfrecord
from hacm_tf.data.sample import Sample
from hacm_tf.errors import DataError, DatasetMismatchError


def samples(n, persons=2, joints=25, seed=0):
    r = np.random.RandomState(seed)
    return [Sample(f"s{i:03d}", r.normal(size=(r.randint(5, 40), persons, joints, 3)).astype(np.float32),
                   label=i % 3, subject=i, camera=1 + i % 3, setup=2, replication=1) for i in range(n)]


def write(out, items, shards=None, compression=None):
    info = tfrecord.make_info("toy", "xsub", "ntu25", 25, 2, ["a", "b", "c"])
    with tfrecord.DatasetWriter(str(out), shards or {"train": 3, "test": 2}, info, compression) as w:
        for split, s in items:
            w.write(split, s)
    return w.info


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_round_trip_is_bit_exact(tmp_path, compression):
    data = samples(11)
    items = [("train" if i < 8 else "test", s) for i, s in enumerate(data)]
    info = write(tmp_path, items, compression=compression)
    assert info["splits"] == {"train": 8, "test": 3}
    assert info["class_counts"]["train"] == {"0": 3, "1": 3, "2": 2}
    got = list(tfrecord.iterate_split(str(tmp_path), "train"))
    by_name = {s.name: s for s in got}
    for _, s in items[:8]:
        g = by_name[s.name]
        assert g.skeleton.dtype == np.float32
        np.testing.assert_array_equal(g.skeleton, s.skeleton)
        assert (g.label, g.subject, g.camera, g.setup, g.replication) == (s.label, s.subject, s.camera, 2, 1)
    assert tfrecord.verify(str(tmp_path), progress=False)["splits"] == {"train": 8, "test": 3}
    names = sorted(os.listdir(tmp_path))
    suffix = ".tfrecord.gz" if compression else ".tfrecord"
    assert f"train-00000-of-00003{suffix}" in names and not any(n.startswith(".") for n in names)


def test_failed_build_leaves_nothing_and_keeps_old_dataset(tmp_path):
    write(tmp_path, [("train", s) for s in samples(4)])
    before = sorted(os.listdir(tmp_path))
    info_before = open(tmp_path / "dataset_info.json").read()

    def bad():
        yield "train", samples(1)[0]
        raise DataError("x.skeleton", "boom", line=3)

    with pytest.raises(DataError, match="x.skeleton, line 3: boom"):
        write(tmp_path, bad())
    assert sorted(os.listdir(tmp_path)) == before
    assert open(tmp_path / "dataset_info.json").read() == info_before
    tfrecord.verify(str(tmp_path), progress=False)


def test_stale_staging_is_removed_on_rebuild(tmp_path):
    os.makedirs(tmp_path / ".staging-old")
    (tmp_path / ".staging-old" / "train-00000-of-00001.tfrecord").write_bytes(b"partial")
    write(tmp_path, [("train", s) for s in samples(3)])
    assert not any(n.startswith(".") for n in os.listdir(tmp_path))


@pytest.fixture
def built(tmp_path):
    write(tmp_path, [("train", s) for s in samples(9)] + [("test", s) for s in samples(4, seed=1)])
    return tmp_path


def test_truncated_shard_is_named(built):
    p = built / "train-00001-of-00003.tfrecord"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetMismatchError, match="train-00001-of-00003.tfrecord: .*truncated"):
        tfrecord.verify(str(built), progress=False)
    with pytest.raises(DatasetMismatchError, match="train-00001-of-00003"):
        list(tfrecord.iterate_split(str(built), "train"))


def test_flipped_byte_is_detected(built):
    p = built / "train-00002-of-00003.tfrecord"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetMismatchError, match="train-00002-of-00003.tfrecord: sha256 differs"):
        tfrecord.verify(str(built), progress=False)
    # reading without the hash check still fails with the file name (CRC)
    with pytest.raises(DataError, match="train-00002-of-00003.tfrecord: corrupt"):
        list(tfrecord.iterate_split(str(built), "train"))


def test_unlisted_and_missing_shards(built):
    shutil.copy(built / "test-00000-of-00002.tfrecord", built / "test-00005-of-00009.tfrecord")
    with pytest.raises(DatasetMismatchError, match="not listed"):
        tfrecord.verify(str(built), progress=False)
    os.unlink(built / "test-00005-of-00009.tfrecord")
    os.unlink(built / "test-00001-of-00002.tfrecord")
    with pytest.raises(DatasetMismatchError, match="test-00001-of-00002.tfrecord: shard listed .* is missing"):
        tfrecord.verify(str(built), progress=False)


def test_schema_version_and_expectations(built):
    info = json.load(open(built / "dataset_info.json"))
    with pytest.raises(DatasetMismatchError, match="joint layout is 'ntu25', the model expects 'kinect_v1_20'"):
        tfrecord.check_info(info, str(built), joint_layout="kinect_v1_20")
    with pytest.raises(DatasetMismatchError, match="3 classes, the model expects 60"):
        tfrecord.check_info(info, str(built), num_classes=60)
    with pytest.raises(DatasetMismatchError, match="no split 'val'"):
        tfrecord.check_info(info, str(built), split="val")
    info["schema_version"] = 2
    (built / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetMismatchError, match="schema version 2"):
        tfrecord.load_info(str(built))
    os.unlink(built / "dataset_info.json")
    with pytest.raises(DatasetMismatchError, match="no dataset_info.json"):
        tfrecord.load_info(str(built))


def test_record_with_wrong_shape_is_reported(tmp_path):
    s = samples(1)[0]
    write(tmp_path, [("train", s)], shards={"train": 1})
    good = open(tmp_path / "train-00000-of-00001.tfrecord", "rb").read()
    import tensorflow as tf

    first = next(iter(tf.data.TFRecordDataset(str(tmp_path / "train-00000-of-00001.tfrecord"))))
    ex = tf.train.Example.FromString(first.numpy())
    ex.features.feature["shape"].int64_list.value[0] += 1
    with pytest.raises(DataError, match="does not match its"):
        tfrecord.decode_example(ex.SerializeToString(), where="r")
    assert good


def test_no_empty_shards_when_a_split_has_fewer_samples_than_shards(tmp_path):
    data = samples(3)
    info = write(tmp_path, [("train", data[0]), ("test", data[1]), ("test", data[2])],
                 shards={"train": 4, "test": 4, "val": 4})
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".tfrecord"))
    assert files == ["test-00000-of-00002.tfrecord", "test-00001-of-00002.tfrecord",
                     "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    assert [s["examples"] for s in info["shards"]] == [1, 1, 1, 0]   # only the split without samples is empty
    assert tfrecord.verify(str(tmp_path), progress=False)["splits"] == {"test": 2, "train": 1, "val": 0}
    assert [s.name for s in tfrecord.iterate_split(str(tmp_path), "test")] == ["s001", "s002"]
