"""A study's results: rows of every complete run, the mean +- std table, the learning-curve figure,
results.json / results.md."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence

import numpy as np

from hacm_tf.study.config import RAW, STUDY_PROTOCOLS, VARIANTS, StudyConfig
from hacm_tf.study.records import learning_curves, write_learning_curve_figure

def _final(workdir: str) -> Optional[dict]:
    p = os.path.join(workdir, "metrics.json")
    if os.path.exists(p):
        return json.load(open(p)).get("final")
    return None


def _knn_result(workdir: str) -> Optional[dict]:
    p = os.path.join(workdir, "result.json")
    return json.load(open(p)) if os.path.exists(p) else None


# ---------------------------------------------------------------------------- run plan

def run_plan(out: str, study: StudyConfig, variants: Sequence[str], protocols: Sequence[str]) -> List[dict]:
    """Every run of the study: {"variant", "seed", "stage", "epochs", "workdir", "done"}, stage being
    "pretrain" or a protocol."""
    plan = []
    for variant in variants:
        for seed in range(study.seeds):
            stages = (["pretrain"] if VARIANTS[variant] is not None else []) + list(protocols)
            for stage in stages:
                work = os.path.join(out, variant, f"seed{seed}", stage)
                done = (_knn_result(work) if stage == "knn" else _final(work)) is not None
                plan.append({"variant": variant, "seed": seed, "stage": stage, "epochs": _stage_epochs(study, stage),
                             "workdir": work, "done": done})
    return plan


def _stage_epochs(study: StudyConfig, stage: str) -> int:
    """A run's length in its own epochs (time estimates are per stage, so units never mix)."""
    return {"pretrain": study.pretrain_epochs, "linear": study.linear_epochs, "finetune": study.finetune_epochs,
            "semi10": study.semi_epochs}.get(stage, 1)        # knn: one pass of embeddings


# ---------------------------------------------------------------------------- results

def report_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
                 protocols: Sequence[str] = STUDY_PROTOCOLS) -> dict:
    """The tables and figure of the runs a (possibly unfinished) study has completed, without running
    anything; ``summary["complete"]`` says how many of the planned runs are in."""
    plan = run_plan(out, study, variants, protocols)
    rows = []
    for variant in variants:
        for seed in range(study.seeds):
            for protocol in protocols:
                rows += protocol_rows(variant, seed, protocol, os.path.join(out, variant, f"seed{seed}", protocol))
    rows += raw_rows(_knn_result(os.path.join(out, "raw")))
    return write_summary(out, data_dir, study, variants, rows, None, runs=len(plan),
                          complete=sum(r["done"] for r in plan))


def raw_rows(raw: Optional[dict]) -> List[dict]:
    return readout_rows(RAW, 0, raw)


def readout_rows(variant: str, seed: int, result: Optional[dict]) -> List[dict]:
    """The logreg, knn20 and knn1 rows of a frozen read-out's result (none without a result)."""
    return [] if result is None else [
        {"variant": variant, "seed": seed, "protocol": p, "last_top1": result[k], "best_top1": result[k]}
        for p, k in (("logreg", "logreg_top1"), ("knn20", "knn20_top1"), ("knn1", "knn1_top1"))]


def protocol_rows(variant: str, seed: int, protocol: str, work: str) -> List[dict]:
    """The table rows of one complete downstream run (none when it is not complete): the knn protocol
    gives knn20, knn1 and logreg rows."""
    if protocol == "knn":
        return readout_rows(variant, seed, _knn_result(work))
    final = _final(work)
    return [] if final is None else [{"variant": variant, "seed": seed, "protocol": protocol,
                                      "last_top1": final["last_epoch_top1"], "best_top1": final["best_epoch_top1"]}]


def write_summary(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str], rows: List[dict],
                   seconds: Optional[float], workers: Optional[int] = None, runs: int = 0,
                   complete: Optional[int] = None) -> dict:
    pretrained = [v for v in variants if VARIANTS.get(v) is not None]
    title = f"kNN-20 on the test split during pretraining (mean of {study.seeds} seeds; band: min to max)"
    figure = write_learning_curve_figure(out, rows, pretrained, study.seeds, os.path.join(out, "learning_curves.png"),
                                         ((RAW, "raw coordinates"), ("none", "random encoder")), title=title)
    summary = {"rows": rows, "table": table(rows, variants), "seconds": seconds, "study": dataclasses.asdict(study),
               "data_dir": data_dir, "workers": workers, "runs": runs,
               "complete": runs if complete is None else complete,
               "learning_curves": learning_curves(out, pretrained, study.seeds), "figure": figure}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(summary["table"] + "\n")
    return summary


# table columns: protocol row key -> heading; trained protocols show the best evaluated epoch in brackets
COLUMNS = (("linear", "linear"), ("logreg", "logistic regression"), ("knn20", "kNN-20"), ("knn1", "kNN-1"),
           ("finetune", "fine-tune"), ("semi10", "10 % labels"))
TRAINED = ("linear", "finetune", "semi10")


def table(rows: Sequence[dict], variants: Optional[Sequence[str]] = None) -> str:
    """Markdown: one row per variant (``variants`` first, in order, "–" where nothing is complete), last-
    epoch top-1 mean +- std per protocol (best evaluated epoch in brackets for trained protocols); columns
    only for the protocols present."""
    variants = list(dict.fromkeys(list(variants or []) + [r["variant"] for r in rows]))
    present = {r["protocol"] for r in rows}
    columns = [(k, h) for k, h in COLUMNS if k in present] + sorted(
        (p, p) for p in present if p not in dict(COLUMNS))
    lines = ["| pretraining | " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for v in variants:
        cells = []
        for p, _ in columns:
            last = np.array([r["last_top1"] for r in rows if r["variant"] == v and r["protocol"] == p]) * 100
            best = np.array([r["best_top1"] for r in rows if r["variant"] == v and r["protocol"] == p]) * 100
            if not len(last):
                cells.append("–")
            elif p in TRAINED:
                cells.append(f"{last.mean():.1f} ± {last.std():.1f} ({best.mean():.1f})")
            elif len(last) > 1:
                cells.append(f"{last.mean():.1f} ± {last.std():.1f}")
            else:
                cells.append(f"{last.mean():.1f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
