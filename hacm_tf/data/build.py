"""Dataset building: raw sources -> sharded TFRecords + dataset_info.json.

One function per source; each returns the written dataset_info dict. Samples
that fail with a DataError stop the build (``on_error="raise"``, nothing is
written) or are recorded under ``skipped`` in dataset_info (``on_error="skip"``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import hacm_tf
from hacm_tf.data import SOURCES, arrays, npz, ntu, pku, synthetic, ucla  # noqa: F401  (SOURCES: what build_* read)
from hacm_tf.data.tfrecord import DatasetWriter, make_info
from hacm_tf.errors import DataError
from hacm_tf.skeleton import KINECT_V1_20, NTU25, get_layout
from hacm_tf.utils import progress_bar

ON_ERROR = ("raise", "skip")
DEFAULT_SHARDS = 4
RECORDS_PER_SHARD = 4000


def _check_on_error(on_error: str):
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def _write_all(output_dir: str, items: Iterable[Tuple[str, object]], shards: Dict[str, int], info: dict,
               compression: Optional[str], on_error: str, skipped: Sequence[dict] = ()) -> dict:
    """Writes ``(split, item)`` pairs and returns dataset_info.

    An item is a Sample (written), a DataError (raised, or recorded as skipped
    with ``on_error="skip"``) or a ``{"name", "reason"}`` dict (recorded as skipped).
    """
    _check_on_error(on_error)
    with DatasetWriter(output_dir, shards, info, compression) as writer:
        for entry in skipped:
            writer.skip(entry["name"], entry["reason"])
        for split, item in items:
            if isinstance(item, dict):
                writer.skip(item["name"], item["reason"])
                continue
            if isinstance(item, DataError):
                if on_error == "raise":
                    raise item
                writer.skip(os.path.basename(item.path), str(item))
                continue
            writer.write(split, item)
    return writer.info


def _read_ntu(args):
    path, copy_single_actor = args
    try:
        return ntu.read_ntu_sample(path, copy_single_actor)
    except DataError as e:
        return e


def class_names_from_file(path: Optional[str], count: int, prefix: str = "A") -> List[str]:
    """Class names from a file (one per line) or generic ``A001``... names."""
    if path is None:
        return [f"{prefix}{i + 1:03d}" for i in range(count)]
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != count:
        raise ValueError(f"{path}: {len(names)} class names, the dataset has {count} classes")
    return names


def build_ntu(input_dirs: Sequence[str], output_dir: str, dataset: str = "ntu60", protocol: str = "xsub",
              shards: Optional[int] = None, compression: Optional[str] = None, on_error: str = "raise",
              missing_list: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
              num_workers: Optional[int] = None, progress: bool = True, info_extra: Optional[dict] = None,
              split_dataset: Optional[str] = None) -> dict:
    """NTU RGB+D 60/120 ``.skeleton`` folders -> TFRecords (docs/official_code.md §1).

    Args:
      input_dirs: folders holding ``*.skeleton`` (NTU-120: both download folders).
      dataset: "ntu60" (lone actor padded with zeros) or "ntu120" (lone actor copied).
      protocol: "xsub" / "xview" (NTU-60) or "xsub" / "xset" (NTU-120).
      shards: shards per split (default: one per 4,000 samples, at least 4).
      missing_list: file of sample names to exclude (the official list of
        samples with missing skeletons: 302 for NTU-60, 535 for NTU-120).
      class_names: names in label order (default ``A001``...).
      num_workers: parallel parser processes (default: all cores).
      split_dataset: dataset whose split rule applies (default ``dataset``).
    """
    _check_on_error(on_error)
    split_dataset = split_dataset or dataset
    k = ntu.num_classes(dataset) if class_names is None else len(class_names)
    class_names = list(class_names) if class_names is not None else class_names_from_file(None, k)
    files = ntu.find_skeleton_files(input_dirs)
    excluded = set(ntu.read_name_list(missing_list)) if missing_list else set()
    names = [n for n in files if n not in excluded]
    if not names:
        raise FileNotFoundError(f"no .skeleton files to read in {list(input_dirs)}")
    skipped = []
    valid_names = []
    for n in names:  # file-name errors are reported before any parsing starts
        try:
            ntu.parse_name(n, files[n])
            valid_names.append(n)
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.append({"name": n, "reason": str(e)})
    splits = ntu.split_names(valid_names, split_dataset, protocol)
    order = [(s, n) for s in ("train", "test") for n in splits[s]]
    n_shards = shards or {s: max(DEFAULT_SHARDS, math.ceil(len(v) / RECORDS_PER_SHARD)) for s, v in splits.items()}
    n_shards = n_shards if isinstance(n_shards, dict) else {"train": n_shards, "test": n_shards}
    info = make_info(dataset, protocol, NTU25.name, NTU25.num_joints, 2, class_names,
                     source={"input_dirs": [os.path.abspath(d) for d in input_dirs],
                             "excluded": len(excluded & set(files)), "missing_list": missing_list},
                     hacm_tf_version=hacm_tf.__version__, **(info_extra or {}))
    copy = dataset == "ntu120"
    tasks = [(files[n], copy) for _, n in order]
    workers = num_workers or os.cpu_count() or 1

    def items():
        if workers <= 1 or len(tasks) < 64:
            results = map(_read_ntu, tasks)
            yield from zip((s for s, _ in order), progress_bar(results, "parse", len(tasks), "file", not progress))
            return
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.imap(_read_ntu, tasks, chunksize=32)
            yield from zip((s for s, _ in order), progress_bar(results, "parse", len(tasks), "file", not progress))

    return _write_all(output_dir, items(), n_shards, info, compression, on_error, skipped)


def build_synthetic(output_dir: str, raw_dir: Optional[str] = None, protocol: str = "xsub",
                    spec: synthetic.SyntheticSpec = synthetic.SyntheticSpec(), seed: int = 0,
                    shards: Optional[int] = None, compression: Optional[str] = None,
                    progress: bool = True, num_workers: Optional[int] = None) -> dict:
    """Generates synthetic NTU-format ``.skeleton`` files, then builds them like NTU-60."""
    raw_dir = raw_dir or os.path.join(output_dir, "raw_skeletons")
    synthetic.generate_files(raw_dir, spec, seed, progress=progress)
    return build_ntu([raw_dir], output_dir, dataset="synthetic", protocol=protocol, shards=shards or 2,
                     compression=compression, class_names=synthetic.class_names(spec.num_classes),
                     progress=progress, num_workers=num_workers, split_dataset="ntu60",
                     info_extra={"synthetic": {"seed": seed, **{k: v for k, v in vars(spec).items()}}})


def build_pku(input_dir: str, output_dir: str, phase: str = "pku2", protocol: str = "xsub",
              split_file: Optional[str] = None, shards: Optional[int] = None,
              compression: Optional[str] = None, on_error: str = "raise",
              class_names: Optional[Sequence[str]] = None, progress: bool = True) -> dict:
    """PKU-MMD phase I ("pku1") or II ("pku2") -> TFRecords of action clips (docs/official_code.md §1)."""
    if (phase, protocol) not in pku.SPLIT_FILES:
        raise ValueError(f"unknown PKU-MMD phase/protocol {phase}/{protocol}; use pku1|pku2 and xsub|xview")
    layout = pku.find_layout(input_dir)
    split_file = split_file or os.path.join(layout["split"], pku.SPLIT_FILES[(phase, protocol)])
    train_videos = pku.read_train_videos(split_file)
    clips = pku.iterate_clips(layout["skeleton"], layout["label"], train_videos)
    names = list(class_names) if class_names is not None else class_names_from_file(None, pku.NUM_CLASSES)
    info = make_info(phase, protocol, NTU25.name, NTU25.num_joints, 2, names,
                     source={"input_dir": os.path.abspath(input_dir), "split_file": split_file},
                     hacm_tf_version=hacm_tf.__version__)
    n = shards or DEFAULT_SHARDS
    items = progress_bar(clips, "clips", None, "clip", not progress)
    return _write_all(output_dir, items, {"train": n, "test": n}, info, compression, on_error)


def build_ucla(input_dir: str, output_dir: str, protocol: str = "xview", shards: Optional[int] = None,
               compression: Optional[str] = None, on_error: str = "raise", progress: bool = True) -> dict:
    """NW-UCLA JSON release -> TFRecords (``[T, 1, 20, 3]``, Kinect-v1-20 layout)."""
    if protocol not in ucla.SPLITS:
        raise ValueError(f"unknown NW-UCLA protocol {protocol!r}; use one of {ucla.SPLITS}")

    def items():
        for path in progress_bar(ucla.list_files(input_dir), "ucla", None, "file", not progress):
            try:
                sample = ucla.read_sample(path)
            except DataError as e:
                yield "", e
                continue
            split = ucla.split_of(sample, protocol)
            if split is not None:
                yield split, sample

    info = make_info("ucla", protocol, KINECT_V1_20.name, KINECT_V1_20.num_joints, 1, ucla.CLASS_NAMES,
                     source={"input_dir": os.path.abspath(input_dir)}, hacm_tf_version=hacm_tf.__version__)
    n = shards or DEFAULT_SHARDS
    return _write_all(output_dir, items(), {"train": n, "test": n}, info, compression, on_error)


def build_npz(path: str, output_dir: str, dataset: str = "npz", protocol: str = "xsub",
              num_persons: int = 2, layout_name: str = "ntu25", shards: Optional[int] = None,
              compression: Optional[str] = None, on_error: str = "raise",
              class_names: Optional[Sequence[str]] = None, progress: bool = True,
              centring: str = "first_frame") -> dict:
    """``x_train / y_train / x_test / y_test`` arrays -> TFRecords (centred unless ``centring="none"``;
    recorded in dataset_info.json)."""
    layout = get_layout(layout_name)
    k = npz.num_classes(path)
    names = list(class_names) if class_names is not None else class_names_from_file(None, k)
    info = make_info(dataset, protocol, layout.name, layout.num_joints, num_persons, names,
                     source={"npz": os.path.abspath(path)}, centring=centring, hacm_tf_version=hacm_tf.__version__)
    n = shards or DEFAULT_SHARDS
    items = progress_bar(npz.iterate(path, num_persons, layout.num_joints, layout.centre_joint, centring), "npz",
                         None, "sample", not progress)
    return _write_all(output_dir, items, {"train": n, "test": n}, info, compression, on_error)


def build_arrays(input_dir: str, csv_path: str, output_dir: str, layout_name: str, num_persons: int = 1,
                 split_column: Optional[str] = None, train_values: Sequence[str] = (),
                 train_list: Optional[str] = None, dataset: str = "arrays", protocol: str = "custom",
                 class_names: Optional[Sequence[str]] = None, shards: Optional[int] = None,
                 compression: Optional[str] = None, on_error: str = "raise", progress: bool = True,
                 centring: str = "first_frame") -> dict:
    """A folder of ``<name>.npy`` + labels CSV -> TFRecords (any joint layout; centred unless
    ``centring="none"``, recorded in dataset_info.json)."""
    layout = get_layout(layout_name)
    rows = arrays.read_csv(csv_path)
    k = max(int(r["label"]) for r in rows) + 1
    names = list(class_names) if class_names is not None else class_names_from_file(None, k)
    info = make_info(dataset, protocol, layout.name, layout.num_joints, num_persons, names,
                     source={"input_dir": os.path.abspath(input_dir), "csv": os.path.abspath(csv_path)},
                     centring=centring, hacm_tf_version=hacm_tf.__version__)
    items = arrays.iterate(input_dir, csv_path, layout, num_persons, split_column, train_values, train_list,
                           centring)
    n = shards or DEFAULT_SHARDS
    return _write_all(output_dir, progress_bar(items, "arrays", len(rows), "sample", not progress),
                      {"train": n, "test": n}, info, compression, on_error)

