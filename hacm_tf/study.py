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
      semi_eval_every: the same for the 10 %-label runs, whose epochs are a tenth as long (0: eval_every).
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
    semi_epochs: int = 15
    seeds: int = 3
    eval_every: int = 1
    semi_eval_every: int = 0

    @classmethod
    def synthetic(cls) -> "StudyConfig":
        """The synthetic study's CPU preset: NTU-25, two persons, 36-frame windows, shorter runs and
        evaluation every few epochs. The 10 %-label runs see 60 clips (one batch per epoch), so they get
        100 epochs = 100 optimisation steps, evaluated every 25."""
        return cls(layout="ntu25", num_persons=2, window=36, pretrain_epochs=8, linear_epochs=6,
                   finetune_epochs=10, semi_epochs=100, eval_every=3, semi_eval_every=25)

    @classmethod
    def paper(cls, layout="ntu25", num_persons=2) -> "StudyConfig":
        """The paper's model size and run lengths (for accelerators)."""
        return cls(layout=layout, num_persons=num_persons, window=72, dim=256, depth=8, heads=8, decoder_depth=3,
                   batch_size=64, pretrain_epochs=400, linear_epochs=100, finetune_epochs=100, semi_epochs=100)


def model_config(study: StudyConfig, changes: Optional[dict]) -> ModelConfig:
    changes = dict(changes or {"method": "hacm"})
    t_patch = 3 if changes["method"] == "hacm" else 4
    return ModelConfig(layout=study.layout, num_persons=study.num_persons, window=study.window, t_patch=t_patch,
                       dim=study.dim, depth=study.depth, heads=study.heads, decoder_dim=study.dim,
                       decoder_depth=study.decoder_depth, decoder_heads=study.heads, **changes).validate()


def _final(workdir: str) -> Optional[dict]:
    p = os.path.join(workdir, "metrics.json")
    if os.path.exists(p):
        return json.load(open(p)).get("final")
    return None


def run_study(out: str, data_dir: str, study: StudyConfig, variants: Sequence[str] = tuple(VARIANTS),
              protocols: Sequence[str] = PROTOCOLS, log: Callable = print) -> dict:
    """Runs every (variant, seed, protocol); returns {"rows": [...], "table": markdown}."""
    import keras

    from hacm_tf.training import downstream
    from hacm_tf.training.pretrain import pretrain

    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; known: {sorted(VARIANTS)}")
    rows: List[dict] = []
    t0 = time.time()
    for variant in variants:
        cfg = model_config(study, VARIANTS[variant])
        data = DataConfig(window=study.window, batch_size=study.batch_size, min_crop_frames=min(64, study.window))
        for seed in range(study.seeds):
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
            for protocol in protocols:
                work = os.path.join(out, variant, f"seed{seed}", protocol)
                final = _final(work)
                if final is None:
                    log(f"[{time.time() - t0:6.0f} s] {protocol} {variant} seed {seed}")
                    keras.backend.clear_session()
                    final = _downstream(work, data_dir, cfg, data, study, protocol, pre_dir, seed, downstream)
                rows.append({"variant": variant, "seed": seed, "protocol": protocol,
                             "last_top1": final["last_epoch_top1"], "best_top1": final["best_epoch_top1"]})
    summary = {"rows": rows, "table": table(rows), "seconds": round(time.time() - t0, 1),
               "study": dataclasses.asdict(study), "data_dir": data_dir}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(summary["table"] + "\n")
    return summary


def protocol_configs(study: StudyConfig, protocol: str, cfg: ModelConfig, data: DataConfig):
    """(model, data, train, protocol) configs of one downstream run of the study."""
    if protocol == "linear":
        train = TrainConfig(epochs=study.linear_epochs, lr=0.1, min_lr=0.0, warmup_epochs=0, weight_decay=0.0,
                            log_every=20, jit_compile=False)
        return cfg, data, train, ProtocolConfig("linear", eval_every=study.eval_every)
    epochs = study.finetune_epochs if protocol == "finetune" else study.semi_epochs
    train = TrainConfig(epochs=epochs, lr=1e-3, min_lr=1e-5, warmup_epochs=max(1, epochs // 10),
                        beta_2=0.999, log_every=20, jit_compile=False)
    every = study.semi_eval_every if protocol == "semi10" and study.semi_eval_every else study.eval_every
    cfg = dataclasses.replace(cfg, drop_path=0.1)
    if protocol == "semi10":
        data = dataclasses.replace(data, semi_ratio=0.1, semi_stratified=True)
    return cfg, data, train, ProtocolConfig("finetune", eval_every=every)


def _downstream(work, data_dir, cfg, data, study, protocol, pretrained, seed, downstream):
    cfg, data, train, proto = protocol_configs(study, protocol, cfg, data)
    return downstream.train_classifier(work, data_dir, cfg, data, train, proto, pretrained, seed=seed)


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
