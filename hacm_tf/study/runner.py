"""Running a study: the plan of runs, each (variant, seed) chain of stages, in parallel worker processes
that end with the parent, resumable (complete runs are reused, an interrupted pretraining continues)."""

from __future__ import annotations

import os
import time
from typing import Callable, List, Optional, Sequence

from hacm_tf.config import DataConfig, MonitorConfig
from hacm_tf.study.config import (STUDY_PROTOCOLS, VARIANTS, StudyConfig, compute_config, model_config,
                                  pretrain_config, protocol_configs)
from hacm_tf.study.records import Progress
from hacm_tf.study.report import _final, _knn_result, protocol_rows, raw_rows, run_plan, write_summary

# ---------------------------------------------------------------------------- the study

def run_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
              protocols: Sequence[str] = STUDY_PROTOCOLS, log: Callable = print, workers: int = 1,
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
    bad = set(protocols) - set(STUDY_PROTOCOLS)
    if bad:
        raise ValueError(f"unknown protocols {sorted(bad)}; known: {STUDY_PROTOCOLS}")
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
    return write_summary(out, data_dir, study, variants, rows + raw_rows(raw), round(time.time() - t0, 1),
                          workers=workers, runs=len(plan))


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
    are reused. Returns the rows of the protocols (the knn protocol gives knn20, knn1 and logreg rows).
    The runs' own per-epoch console lines are off: the study reports its progress itself."""
    from hacm_tf import console

    with console.silenced():
        return _chain_stages(out, data_dir, study, variant, seed, protocols, log, report)


def _chain_stages(out, data_dir, study, variant, seed, protocols, log, report) -> List[dict]:
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
            rows += protocol_rows(variant, seed, protocol, work)
            continue
        if _final(work) is None:
            log(f"start {protocol} {variant} seed {seed}")
            keras.backend.clear_session()
            t = time.time()
            run_cfg, run_data, train, proto = protocol_configs(study, protocol, cfg, data)
            downstream.train_classifier(work, data_dir, run_cfg, run_data, train, proto, pre_dir, seed=seed,
                                        compute=compute_config(study))
            report(variant, seed, protocol, time.time() - t)
        rows += protocol_rows(variant, seed, protocol, work)
    return rows
