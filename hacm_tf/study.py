"""Accuracy studies: pretrain with each method / ablation and several seeds, then linear probe,
fine-tune and 10 %-label semi-supervised fine-tune; mean +- std tables.

Every run has its own workdir under the study folder, so an interrupted study resumes (complete
runs are reused).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from hacm_tf.config import DataConfig, ModelConfig, ProtocolConfig, TrainConfig

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
PROTOCOLS = ("linear", "finetune", "semi10")


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
      precision: ModelConfig.precision of every stage.
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

    @classmethod
    def synthetic(cls) -> "StudyConfig":
        """The synthetic study's CPU preset: NTU-25, two persons, 36-frame windows, shorter runs and
        evaluation every few epochs. The 10 %-label runs (60 clips) take 10 epochs of 10 steps = 100
        optimisation steps, evaluated after 50 and 100."""
        return cls(layout="ntu25", num_persons=2, window=36, pretrain_epochs=8, linear_epochs=6,
                   finetune_epochs=10, semi_epochs=10, eval_every=6, semi_eval_every=5)

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
                       decoder_depth=study.decoder_depth, decoder_heads=study.heads, precision=study.precision,
                       **changes).validate()


def _final(workdir: str) -> Optional[dict]:
    p = os.path.join(workdir, "metrics.json")
    if os.path.exists(p):
        return json.load(open(p)).get("final")
    return None


def run_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
              protocols: Sequence[str] = PROTOCOLS, log: Callable = print, workers: int = 1) -> dict:
    """Runs every (variant, seed, protocol); returns {"rows": [...], "table": markdown}.

    ``workers`` > 1 runs that many (variant, seed) chains (pretraining, then the protocols) at once,
    each in its own process with ``cpu_count // workers`` TensorFlow threads: on a few CPU cores the
    small study models use the cores better that way than one run with all threads.
    """
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.time()
    chains = [(out, data_dir, study, variant, seed, tuple(protocols), t0)
              for variant in variants for seed in range(study.seeds)]
    results: List[Optional[List[dict]]] = [None] * len(chains)
    if workers == 1:
        for i, chain in enumerate(chains):
            results[i] = _run_chain(*chain, log=log)
    else:
        import concurrent.futures
        import multiprocessing

        threads = max(1, (os.cpu_count() or workers) // workers)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_chain_job, chain): i for i, chain in enumerate(chains)}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]], messages = future.result()
                for message in messages:
                    log(message)
    rows = [row for chain_rows in results for row in chain_rows]
    summary = {"rows": rows, "table": table(rows), "seconds": round(time.time() - t0, 1),
               "study": dataclasses.asdict(study), "data_dir": data_dir, "workers": workers}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(summary["table"] + "\n")
    return summary


def _init_worker(threads: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _chain_job(chain) -> tuple:
    messages: List[str] = []
    return _run_chain(*chain, log=messages.append), messages


def _run_chain(out: str, data_dir: str, study: StudyConfig, variant: str, seed: int, protocols: Sequence[str],
               t0: float, log: Callable = print) -> List[dict]:
    """Pretraining (unless the variant has none) and each protocol of one (variant, seed); complete runs
    are reused. Returns one row per protocol."""
    import keras

    from hacm_tf.training import downstream
    from hacm_tf.training.pretrain import pretrain

    cfg = model_config(study, VARIANTS[variant])
    data = DataConfig(window=study.window, batch_size=study.batch_size, min_crop_frames=min(64, study.window))
    pre_dir = None
    if VARIANTS[variant] is not None:
        pre_dir = os.path.join(out, variant, f"seed{seed}", "pretrain")
        if _final(pre_dir) is None:
            log(f"[{time.time() - t0:6.0f} s] pretrain {variant} seed {seed}")
            keras.backend.clear_session()
            pretrain(pre_dir, data_dir, cfg, data,
                     TrainConfig(epochs=study.pretrain_epochs, lr=2e-3, min_lr=2e-4,
                                 warmup_epochs=max(1, study.pretrain_epochs // 10), log_every=20,
                                 jit_compile=False), seed=seed)
    rows = []
    for protocol in protocols:
        work = os.path.join(out, variant, f"seed{seed}", protocol)
        final = _final(work)
        if final is None:
            log(f"[{time.time() - t0:6.0f} s] {protocol} {variant} seed {seed}")
            keras.backend.clear_session()
            run_cfg, run_data, train, proto = protocol_configs(study, protocol, cfg, data)
            final = downstream.train_classifier(work, data_dir, run_cfg, run_data, train, proto, pre_dir, seed=seed)
        rows.append({"variant": variant, "seed": seed, "protocol": protocol,
                     "last_top1": final["last_epoch_top1"], "best_top1": final["best_epoch_top1"]})
    return rows


def protocol_configs(study: StudyConfig, protocol: str, cfg: ModelConfig, data: DataConfig):
    """(model, data, train, protocol) configs of one downstream run of the study."""
    if protocol == "linear":
        train = TrainConfig(epochs=study.linear_epochs, lr=0.1, min_lr=0.0, warmup_epochs=0, weight_decay=0.0,
                            log_every=20, jit_compile=False)
        return cfg, data, train, ProtocolConfig("linear", eval_every=study.eval_every)
    semi = protocol == "semi10"
    epochs = study.semi_epochs if semi else study.finetune_epochs
    train = TrainConfig(epochs=epochs, lr=1e-3, min_lr=1e-5, warmup_epochs=max(1, epochs // 10),
                        beta_2=0.999, log_every=20, jit_compile=False,
                        steps_per_epoch=study.semi_steps_per_epoch if semi else 0)
    every = study.semi_eval_every if semi and study.semi_eval_every else study.eval_every
    cfg = dataclasses.replace(cfg, drop_path=0.1)
    if semi:
        data = dataclasses.replace(data, semi_ratio=0.1, semi_stratified=True)
    return cfg, data, train, ProtocolConfig("finetune", eval_every=every)


def table(rows: Sequence[dict]) -> str:
    """Markdown: one row per variant, last-epoch top-1 mean +- std per protocol (best epoch in brackets)."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    head = "| pretraining | " + " | ".join(protocols) + " |"
    lines = [head, "|" + "---|" * (len(protocols) + 1)]
    for v in variants:
        cells = []
        for p in protocols:
            last = np.array([r["last_top1"] for r in rows if r["variant"] == v and r["protocol"] == p]) * 100
            best = np.array([r["best_top1"] for r in rows if r["variant"] == v and r["protocol"] == p]) * 100
            cells.append(f"{last.mean():.1f} ± {last.std():.1f} ({best.mean():.1f})" if len(last) else "–")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
