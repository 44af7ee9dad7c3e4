"""From recorded skeleton files to action labels.

``predict_files(model, inputs)`` reads each file with the data path's own readers (the same denoising
and centring as the training data), fits it to the model's input (persons padded with zeros or the
first ones kept), runs the model's serving function (an exported SavedModel or a classifier run) and
returns the top-k classes with probabilities per clip. Files that cannot be read are listed with their
reason; the others are still answered.

Formats, by extension:

* ``.skeleton``: NTU RGB+D 60/120 (a lone actor fills the second person slot as the model's training
  data did: copied for NTU-120, zeros otherwise);
* ``.json``: NW-UCLA (``{"skeletons": [T][20][3], ...}``; ``label`` and ``file_name`` optional);
* ``.txt``: a PKU-MMD skeleton file; its clips are the rows of its label file (same name, in
  ``labels`` or in a ``label``-type folder beside the skeleton folder);
* ``.npy``: ``[frames, joints, 3]`` or ``[frames, persons, joints, 3]`` in the joint layout ``layout``
  (default: the model's), centred as the ``arrays`` importer centres.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from hacm_tf.errors import DataError

FORMATS = {".skeleton": "NTU RGB+D", ".json": "NW-UCLA", ".txt": "PKU-MMD", ".npy": "numpy array"}


@dataclasses.dataclass
class Clip:
    """One clip to classify: ``skeleton`` float32 ``[frames, persons, joints, 3]``; ``label`` the class
    index the file carries (-1 when none); ``note`` how it was fitted to the model."""

    name: str
    source: str
    skeleton: np.ndarray
    label: int = -1
    note: str = ""


def list_inputs(inputs: Sequence[str]) -> List[str]:
    """Files named in ``inputs`` plus, for each folder, its files with a known extension (sorted, not
    recursive). Paths that do not exist are kept: reading them reports the problem."""
    files = []
    for path in inputs:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if os.path.splitext(f)[1].lower() in FORMATS)
            if not found:
                raise FileNotFoundError(f"{path}: no {', '.join(FORMATS)} files in this folder")
            files.extend(found)
        else:
            files.append(path)
    return files


def _pku_label_file(path: str, labels: Optional[str]) -> str:
    from hacm_tf.data import pku

    name = os.path.basename(path)
    candidates = []
    if labels:
        candidates.append(labels if os.path.isfile(labels) else os.path.join(labels, name))
    else:
        parent = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        candidates += [os.path.join(parent, d, name) for d in pku.DIR_NAMES["label"]]
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise DataError(path, "no PKU-MMD label file for this video (its clips are the label file's rows); looked "
                          f"for {', '.join(candidates[:3])}{' ...' if len(candidates) > 3 else ''}; pass --labels")


def read_clips(path: str, layout_name: str, dataset: str = "", labels: Optional[str] = None) -> List[Clip]:
    """The clips of one file (one, or one per label row for PKU-MMD); raises DataError naming the file and
    the problem. ``layout_name``: the joint layout of ``.npy`` files; ``dataset``: the model's training
    dataset (for NTU's lone-actor rule); ``labels``: PKU-MMD label file or folder."""
    from hacm_tf.data import arrays, ntu, pku, ucla
    from hacm_tf.data.sample import centre_on_first_frame
    from hacm_tf.skeleton import get_layout

    if not os.path.exists(path):
        raise DataError(path, "no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".skeleton":
        s = ntu.read_ntu_sample(path, copy_single_actor=dataset == "ntu120", require_name=False)
        return [Clip(s.name, path, s.skeleton, s.label)]
    if ext == ".json":
        s = ucla.read_sample(path, require_label=False)
        return [Clip(s.name, path, s.skeleton, s.label)]
    if ext == ".txt":
        video = pku.read_skeleton(path)
        label_path = _pku_label_file(path, labels)
        clips = []
        for row, (label, start, end, _) in enumerate(pku.read_labels(label_path, len(video))):
            x = video[start:end][:pku.MAX_FRAMES].reshape(-1, 2, 25, 3)
            name = f"{os.path.splitext(os.path.basename(path))[0]}_{row:03d}"
            if not np.any(x):
                raise DataError(label_path, f"clip {name} (frames {start}-{end}) is all zeros", line=row + 1)
            clips.append(Clip(name, path, x, label - 1, f"frames {start}-{end}"))
        return clips
    if ext == ".npy":
        layout = get_layout(layout_name)
        name = os.path.splitext(os.path.basename(path))[0]
        x = arrays.load_sample(path, name, layout, None)        # persons as stored
        return [Clip(name, path, centre_on_first_frame(x, layout.centre_joint))]
    raise DataError(path, f"unknown file type {ext or '(none)'!r}; known: {', '.join(FORMATS)}")


def fit_persons(clip: Clip, num_persons: int) -> Clip:
    """Zero-pads or keeps the first ``num_persons`` persons (the readers order persons by importance)."""
    m = clip.skeleton.shape[1]
    if m < num_persons:
        pad = np.zeros((clip.skeleton.shape[0], num_persons - m) + clip.skeleton.shape[2:], np.float32)
        return dataclasses.replace(clip, skeleton=np.concatenate([clip.skeleton, pad], axis=1))
    if m > num_persons and np.any(clip.skeleton[:, num_persons:]):
        note = f"{clip.note}; " if clip.note else ""
        return dataclasses.replace(clip, skeleton=clip.skeleton[:, :num_persons],
                                   note=f"{note}kept the first {num_persons} of {m} persons")
    return dataclasses.replace(clip, skeleton=clip.skeleton[:, :num_persons])


def pad_batch(skeletons: Sequence[np.ndarray]):
    """``[T_i, M, V, 3]`` arrays -> (zero-padded ``[b, max T_i, M, V, 3]``, num_frames int32 ``[b]``)."""
    frames = np.array([len(s) for s in skeletons], np.int32)
    out = np.zeros((len(skeletons), int(frames.max())) + skeletons[0].shape[1:], np.float32)
    for i, s in enumerate(skeletons):
        out[i, :len(s)] = s
    return out, frames


def predict_files(model, inputs: Sequence[str], top_k: int = 5, layout: Optional[str] = None,
                  labels: Optional[str] = None, batch_size: int = 16, progress: bool = True) -> Dict:
    """Top-k classes of every clip in ``inputs`` (files and folders, see :func:`list_inputs`).

    model: a path (SavedModel version or base folder, classifier run directory or checkpoint) or an
      ``export.ServedModel``.
    Returns ``{"model", "model_kind", "model_path", "predictions": [{"file", "clip", "frames",
    "label" (the file's own, or None), "top": [{"class", "index", "probability"}], "note"}],
    "errors": [{"file", "reason"}]}``.
    """
    from hacm_tf.export import ServedModel, open_model
    from hacm_tf.utils import progress_bar

    served = model if isinstance(model, ServedModel) else open_model(model)
    layout = layout or served.info.get("layout") or {25: "ntu25", 20: "kinect_v1_20"}.get(served.num_joints)
    if layout is None:
        raise ValueError(f"the model takes {served.num_joints} joints: give the joint layout of the .npy files")
    classes = served.class_names
    clips, errors = [], []
    for path in progress_bar(list_inputs(inputs), "read", None, "file", not progress):
        try:
            found = read_clips(path, layout, served.info.get("dataset", ""), labels)
            for c in found:
                if c.skeleton.shape[2] != served.num_joints:
                    raise DataError(path, f"{c.skeleton.shape[2]} joints per person; the model takes "
                                          f"{served.num_joints}")
            clips.extend(fit_persons(c, served.num_persons) for c in found)
        except DataError as e:
            line = f"line {e.line}: " if e.line else ""
            errors.append({"file": path, "reason": f"{line}{e.problem}" if e.path == path else str(e)})
    k = min(top_k, len(classes))
    predictions = []
    for i in range(0, len(clips), batch_size):
        chunk = clips[i:i + batch_size]
        x, n = pad_batch([c.skeleton for c in chunk])
        probs = served.predict(x, n)["probabilities"]
        for c, p, frames in zip(chunk, probs, n):
            order = np.argsort(-p, kind="stable")[:k]
            predictions.append({
                "file": c.source, "clip": c.name, "frames": int(frames),
                "label": classes[c.label] if 0 <= c.label < len(classes) else None,
                "top": [{"class": classes[j], "index": int(j), "probability": round(float(p[j]), 6)} for j in order],
                "note": c.note})
    return {"model": getattr(model, "path", model), "model_kind": served.kind, "model_path": served.path,
            "predictions": predictions, "errors": errors}


def format_predictions(result: Dict, width: int = 28) -> str:
    """The result of :func:`predict_files` as text: per clip its top-k classes with probabilities, then the
    files that could not be read, then a one-line summary."""
    lines = []
    for p in result["predictions"]:
        head = f"{p['clip']}  ({p['frames']} frames"
        head += f", labelled {p['label']!r})" if p["label"] else ")"
        if p["note"]:
            head += f"  [{p['note']}]"
        lines.append(head)
        for rank, t in enumerate(p["top"], 1):
            mark = "  <- label" if t["class"] == p["label"] else ""
            lines.append(f"  {rank}. {t['class'][:width]:<{width}} {t['probability']:.3f}{mark}")
    if result["errors"]:
        lines.append("could not read:")
        lines += [f"  {e['file']}: {e['reason']}" for e in result["errors"]]
    labelled = [p for p in result["predictions"] if p["label"]]
    summary = f"{len(result['predictions'])} clips answered, {len(result['errors'])} files unreadable"
    if labelled:
        hits = sum(p["top"][0]["class"] == p["label"] for p in labelled)
        summary += f"; top-1 matches the file's own label on {hits} of {len(labelled)}"
    lines.append(summary)
    return "\n".join(lines)
