"""Accuracy studies: pretrain with each method / ablation and several seeds, then the frozen
read-outs (kNN, logistic regression), linear probe, fine-tune and 10 %-label semi-supervised
fine-tune; mean +- std tables with the raw-coordinate baseline beside them.

Every run has its own workdir under the study folder, so an interrupted study resumes (complete
runs are reused; an interrupted pretraining continues from its last checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, MonitorConfig, ProtocolConfig, TrainConfig
from hacm_tf.study_records import Progress, learning_curves, write_learning_curve_figure

# variant name -> ModelConfig changes (None: no pretraining, the encoder starts from random weights)
VARIANTS: Dict[str, Optional[dict]] = {
    "hacm_corrected": dict(method="hacm"),
    "hacm_reference": dict(method="hacm", hacm_mode="reference"),
    "mamp": dict(method="mamp"),
    "mae": dict(method="mae"),
    "none": None,
    "hacm_no_hyperbolic": dict(method="hacm", hyperbolic=False),
    "hacm_temporal_only": dict(method="hacm", spatial_criterion=False),
    "hacm_spatial_only": dict(method="hacm", temporal_criterion=False),
    "hacm_no_cross_contrast": dict(method="hacm", cc_weight=0.0),
}
# "knn": frozen read-outs of the pooled embeddings (kNN k = 1 / 20 and a logistic regression), no training
PROTOCOLS = ("knn", "linear", "finetune", "semi10")
CONVERGED_VARIANTS = ("hacm_corrected", "mamp", "mae", "none")
RAW = "raw coordinates"


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Sizes of a study.

    Attributes:
      layout, num_persons, window, dim, depth, heads, decoder_depth: model (HA-CM uses t_patch 3,
        MAMP / MAE t_patch 4 as in the paper).
      batch_size: every stage.
      pretrain_epochs, linear_epochs, finetune_epochs, semi_epochs: run lengths.
      seeds: seeds per variant.
      eval_every: epochs between test-split evaluations in the downstream runs (the last epoch is always
        evaluated; "best epoch" is the best of the evaluated ones).
      semi_eval_every: the same for the 10 %-label runs (0: eval_every).
      semi_steps_per_epoch: steps of a 10 %-label epoch (0: one pass over the labelled clips); a small
        labelled subset repeats within an epoch, which saves the per-epoch checkpoint and bookkeeping.
      precision: ComputeConfig.precision of every trained stage.
      pretrain_lr, pretrain_min_lr, pretrain_warmup_epochs: pretraining schedule (warm-up 0: a tenth
        of the epochs).
      monitor_every: pretraining epochs between kNN read-outs on the study's data (0: none).
      linear_lr: linear-probe SGD learning rate (cosine to 0).
      finetune_lr: fine-tune AdamW learning rate (cosine to 1 % of it).
      semi_warmup_epochs: warm-up of the 10 %-label runs (0: a tenth of the epochs).
    """

    layout: str = "kinect_v1_20"
    num_persons: int = 1
    window: int = 48
    dim: int = 64
    depth: int = 3
    heads: int = 4
    decoder_depth: int = 2
    batch_size: int = 32
    pretrain_epochs: int = 10
    linear_epochs: int = 10
    finetune_epochs: int = 10
    semi_epochs: int = 10
    seeds: int = 3
    eval_every: int = 1
    semi_eval_every: int = 2
    semi_steps_per_epoch: int = 10
    precision: str = "float32"
    pretrain_lr: float = 2e-3
    pretrain_min_lr: float = 2e-4
    pretrain_warmup_epochs: int = 0
    monitor_every: int = 0
    linear_lr: float = 0.1
    finetune_lr: float = 1e-3
    semi_warmup_epochs: int = 0

    @classmethod
    def synthetic(cls) -> "StudyConfig":
        """The synthetic study's CPU preset: NTU-25, two persons, 36-frame windows, shorter runs and
        evaluation every few epochs. The 10 %-label runs (60 clips) take 10 epochs of 10 steps = 100
        optimisation steps, evaluated after 50 and 100."""
        return cls(layout="ntu25", num_persons=2, window=36, pretrain_epochs=8, linear_epochs=6,
                   finetune_epochs=10, semi_epochs=10, eval_every=6, semi_eval_every=5)

    @classmethod
    def converged(cls) -> "StudyConfig":
        """NW-UCLA (or any one-person Kinect-v1 dataset) trained to convergence on 2 CPU cores: the CPU
        study's model (64 wide, 3 blocks, 48-frame windows) pretrained for 200 epochs with a kNN read-out
        every 25, linear probe 50 epochs, fine-tune 50 epochs (the supervised-from-scratch reference uses
        the same schedule), 10 %-label runs of 200 steps; 2 seeds."""
        return cls(pretrain_epochs=200, monitor_every=25, linear_epochs=50, finetune_epochs=50, semi_epochs=20,
                   semi_steps_per_epoch=10, semi_eval_every=5, eval_every=10, seeds=2)

    @classmethod
    def paper(cls, layout="ntu25", num_persons=2) -> "StudyConfig":
        """The paper's model size and run lengths (for accelerators)."""
        return cls(layout=layout, num_persons=num_persons, window=72, dim=256, depth=8, heads=8, decoder_depth=3,
                   batch_size=64, pretrain_epochs=400, linear_epochs=100, finetune_epochs=100, semi_epochs=100,
                   semi_eval_every=0, semi_steps_per_epoch=0)


def model_config(study: StudyConfig, changes: Optional[dict]) -> ModelConfig:
    changes = dict(changes or {"method": "hacm"})
    t_patch = 3 if changes["method"] == "hacm" else 4
    return ModelConfig(layout=study.layout, num_persons=study.num_persons, window=study.window, t_patch=t_patch,
                       dim=study.dim, depth=study.depth, heads=study.heads, decoder_dim=study.dim,
                       decoder_depth=study.decoder_depth, decoder_heads=study.heads,
                       **changes).validate()


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


# ---------------------------------------------------------------------------- the study

def run_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
              protocols: Sequence[str] = PROTOCOLS, log: Callable = print, workers: int = 1,
              baselines: bool = True) -> dict:
    """Runs every (variant, seed, protocol); returns {"rows": [...], "table": markdown, ...}.

    ``workers`` > 1 runs that many (variant, seed) chains (pretraining, then the protocols) at once,
    each in its own process with ``cpu_count // workers`` TensorFlow threads: on a few CPU cores the
    small study models use the cores better that way than one run with all threads.
    ``baselines``: add the raw-coordinate rows (logistic regression and kNN on the evaluation crops).
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    bad = set(protocols) - set(PROTOCOLS)
    if bad:
        raise ValueError(f"unknown protocols {sorted(bad)}; known: {PROTOCOLS}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.time()
    plan = run_plan(out, study, variants, protocols)
    progress = Progress(plan, workers, log)
    todo = sum(not r["done"] for r in plan)
    log(f"study: {len(plan)} runs ({len(plan) - todo} already complete), {workers} worker(s)")
    chains = [(out, data_dir, study, variant, seed, tuple(protocols))
              for variant in variants for seed in range(study.seeds)]
    # the reference rows (no pretraining: minutes) first, so a study stopped early already has them
    order = sorted(range(len(chains)), key=lambda i: VARIANTS[chains[i][3]] is not None)
    results: List[Optional[List[dict]]] = [None] * len(chains)
    if workers == 1:
        for i in order:
            results[i] = _run_chain(*chains[i], log=log, report=progress.finished)
    else:
        done = _run_parallel([chains[i] for i in order], workers, log, progress)
        for i, chain_rows in zip(order, done):
            results[i] = chain_rows
    rows = [row for chain_rows in results for row in chain_rows]
    raw = raw_baseline(out, data_dir, study) if baselines and any(p in protocols for p in ("knn", "linear")) else None
    return _write_summary(out, data_dir, study, variants, rows + _raw_rows(raw), round(time.time() - t0, 1),
                          workers=workers, runs=len(plan))


def report_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
                 protocols: Sequence[str] = PROTOCOLS) -> dict:
    """The tables and figure of the runs a (possibly unfinished) study has completed, without running
    anything; ``summary["complete"]`` says how many of the planned runs are in."""
    plan = run_plan(out, study, variants, protocols)
    rows = []
    for variant in variants:
        for seed in range(study.seeds):
            for protocol in protocols:
                rows += _protocol_rows(variant, seed, protocol, os.path.join(out, variant, f"seed{seed}", protocol))
    rows += _raw_rows(_knn_result(os.path.join(out, "raw")))
    return _write_summary(out, data_dir, study, variants, rows, None, runs=len(plan),
                          complete=sum(r["done"] for r in plan))


def _raw_rows(raw: Optional[dict]) -> List[dict]:
    return _readout_rows(RAW, 0, raw)


def _readout_rows(variant: str, seed: int, result: Optional[dict]) -> List[dict]:
    """The logreg, knn20 and knn1 rows of a frozen read-out's result (none without a result)."""
    return [] if result is None else [
        {"variant": variant, "seed": seed, "protocol": p, "last_top1": result[k], "best_top1": result[k]}
        for p, k in (("logreg", "logreg_top1"), ("knn20", "knn20_top1"), ("knn1", "knn1_top1"))]


def _protocol_rows(variant: str, seed: int, protocol: str, work: str) -> List[dict]:
    """The table rows of one complete downstream run (none when it is not complete): the knn protocol
    gives knn20, knn1 and logreg rows."""
    if protocol == "knn":
        return _readout_rows(variant, seed, _knn_result(work))
    final = _final(work)
    return [] if final is None else [{"variant": variant, "seed": seed, "protocol": protocol,
                                      "last_top1": final["last_epoch_top1"], "best_top1": final["best_epoch_top1"]}]


def _write_summary(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str], rows: List[dict],
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


def raw_baseline(out: str, data_dir: str, study: StudyConfig) -> dict:
    """The raw-coordinate read-outs at the study's window (computed once, kept in ``out/raw``)."""
    from hacm_tf.training import frozen

    work = os.path.join(out, "raw")
    result = _knn_result(work)
    if result is None:
        result = frozen.raw_coordinate_baseline(data_dir, study.window)
        os.makedirs(work, exist_ok=True)
        frozen.write_json(os.path.join(work, "result.json"), result)
    return result


def _run_parallel(chains, workers: int, log: Callable, progress: Progress,
                  heartbeat_seconds: float = 300.0) -> List[List[dict]]:
    import concurrent.futures
    import multiprocessing
    import queue as queue_module

    threads = max(1, (os.cpu_count() or workers) // workers)
    results: List[Optional[List[dict]]] = [None] * len(chains)
    context = multiprocessing.get_context("spawn")
    events = context.Queue()            # handed to the workers at start-up: no server process to orphan

    def drain():
        while True:
            try:
                kind, payload = events.get_nowait()
            except queue_module.Empty:
                return
            if kind == "log":
                log(payload)
            else:
                progress.finished(*payload)

    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                initargs=(threads, os.getpid(), events)) as pool:
        futures = {pool.submit(_chain_job, chain): i for i, chain in enumerate(chains)}
        pending = set(futures)
        last_beat = time.time()
        while pending:
            finished, pending = concurrent.futures.wait(pending, timeout=2.0)
            drain()
            if time.time() - last_beat > heartbeat_seconds:
                progress.heartbeat()
                last_beat = time.time()
            for future in finished:
                results[futures[future]] = future.result()
    drain()
    return results


_EVENTS = None      # a worker's queue of ("log", message) / ("done", (variant, seed, stage, seconds))


def _init_worker(threads: int, parent: Optional[int] = None, events=None):
    import threading

    global _EVENTS
    _EVENTS = events
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if parent is not None:     # a worker never outlives the study process (killed, even with -9)
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int, poll_seconds: float = 2.0):
    while os.getppid() == parent:
        time.sleep(poll_seconds)
    os._exit(1)


def _chain_job(chain) -> List[dict]:
    return _run_chain(*chain, log=lambda m: _EVENTS.put(("log", m)), report=lambda *a: _EVENTS.put(("done", a)))


def _run_chain(out: str, data_dir: str, study: StudyConfig, variant: str, seed: int, protocols: Sequence[str],
               log: Callable = print, report: Optional[Callable] = None) -> List[dict]:
    """Pretraining (unless the variant has none) and each protocol of one (variant, seed); complete runs
    are reused. Returns the rows of the protocols (the knn protocol gives knn20, knn1 and logreg rows)."""
    import keras

    from hacm_tf.training import downstream, frozen
    from hacm_tf.training.pretrain import pretrain

    report = report or (lambda *a: None)
    cfg = model_config(study, VARIANTS[variant])
    data = DataConfig(window=study.window, batch_size=study.batch_size, min_crop_frames=min(64, study.window))
    pre_dir = None
    if VARIANTS[variant] is not None:
        pre_dir = os.path.join(out, variant, f"seed{seed}", "pretrain")
        if _final(pre_dir) is None:
            log(f"start pretrain {variant} seed {seed}")
            keras.backend.clear_session()
            t = time.time()
            monitor = MonitorConfig(data_dir, study.monitor_every) if study.monitor_every else None
            pretrain(pre_dir, data_dir, cfg, data, pretrain_config(study), seed=seed, monitor=monitor,
                     compute=compute_config(study))
            report(variant, seed, "pretrain", time.time() - t)
    rows = []
    for protocol in protocols:
        work = os.path.join(out, variant, f"seed{seed}", protocol)
        if protocol == "knn":
            if _knn_result(work) is None:
                log(f"start knn {variant} seed {seed}")
                keras.backend.clear_session()
                t = time.time()
                result = frozen.frozen_readout(data_dir, pre_dir, None if pre_dir else cfg, seed=seed, logreg=True,
                                               diagnostics=True)
                os.makedirs(work, exist_ok=True)
                frozen.write_json(os.path.join(work, "result.json"), result)
                report(variant, seed, protocol, time.time() - t)
            rows += _protocol_rows(variant, seed, protocol, work)
            continue
        if _final(work) is None:
            log(f"start {protocol} {variant} seed {seed}")
            keras.backend.clear_session()
            t = time.time()
            run_cfg, run_data, train, proto = protocol_configs(study, protocol, cfg, data)
            downstream.train_classifier(work, data_dir, run_cfg, run_data, train, proto, pre_dir, seed=seed,
                                        compute=compute_config(study))
            report(variant, seed, protocol, time.time() - t)
        rows += _protocol_rows(variant, seed, protocol, work)
    return rows


def compute_config(study: StudyConfig) -> ComputeConfig:
    """How every trained stage of a study computes: the study's precision, no XLA (short runs)."""
    return ComputeConfig(precision=study.precision, jit_compile=False).validate()


def pretrain_config(study: StudyConfig) -> TrainConfig:
    """The pretraining schedule of a study (AdamW, warm-up then half-cosine)."""
    warmup = study.pretrain_warmup_epochs or max(1, study.pretrain_epochs // 10)
    return TrainConfig(epochs=study.pretrain_epochs, lr=study.pretrain_lr, min_lr=study.pretrain_min_lr,
                       warmup_epochs=warmup, log_every=20)


def protocol_configs(study: StudyConfig, protocol: str, cfg: ModelConfig, data: DataConfig):
    """(model, data, train, protocol) configs of one downstream run of the study."""
    if protocol == "linear":
        train = TrainConfig(epochs=study.linear_epochs, lr=study.linear_lr, min_lr=0.0, warmup_epochs=0,
                            weight_decay=0.0, log_every=20)
        return cfg, data, train, ProtocolConfig("linear", eval_every=study.eval_every)
    semi = protocol == "semi10"
    epochs = study.semi_epochs if semi else study.finetune_epochs
    warmup = (study.semi_warmup_epochs if semi else 0) or max(1, epochs // 10)
    train = TrainConfig(epochs=epochs, lr=study.finetune_lr, min_lr=study.finetune_lr / 100, warmup_epochs=warmup,
                        beta_2=0.999, log_every=20,
                        steps_per_epoch=study.semi_steps_per_epoch if semi else 0)
    every = study.semi_eval_every if semi and study.semi_eval_every else study.eval_every
    cfg = dataclasses.replace(cfg, drop_path=0.1)
    if semi:
        data = dataclasses.replace(data, semi_ratio=0.1, semi_stratified=True)
    return cfg, data, train, ProtocolConfig("finetune", eval_every=every)


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


