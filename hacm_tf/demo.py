"""The end-to-end demo on synthetic NTU-format data: raw files -> TFRecords -> HA-CM pretraining ->
linear probe (and the same probe on a random encoder) -> SavedModel -> evaluation, with plots.

Every stage writes into its own folder of the output directory and is skipped when complete, so an
interrupted demo continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time


from hacm_tf.config import ComputeConfig, DataConfig, ModelConfig, TrainConfig


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo.

    Attributes:
      subjects, replications: synthetic dataset size (12 classes x 3 cameras each).
      window, dim, depth, decoder_depth: model size.
      pretrain_epochs, probe_epochs: run lengths.
      batch_size: batch size of every stage.
      seed: data and training seed.
    """

    subjects: int = 8
    replications: int = 1
    window: int = 48
    dim: int = 64
    depth: int = 3
    decoder_depth: int = 2
    pretrain_epochs: int = 30
    probe_epochs: int = 30
    batch_size: int = 16
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoConfig":
        """A minute-long version (CI): fewer subjects, smaller model, fewer epochs."""
        return cls(subjects=4, window=24, dim=32, depth=2, decoder_depth=1, pretrain_epochs=3, probe_epochs=3,
                   batch_size=8)


def run_demo(out: str, cfg: DemoConfig = DemoConfig(), overwrite: bool = False, log=print) -> dict:
    """Runs (or completes) the demo in ``out``; returns the summary (also ``out/summary.json``)."""
    import keras

    from hacm_tf import evaluate, rundir, viz
    from hacm_tf.data import build, synthetic, tfrecord
    from hacm_tf.export import export_saved_model
    from hacm_tf.skeleton import NTU25
    from hacm_tf.training import downstream
    from hacm_tf.training.pretrain import pretrain

    if overwrite and os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    t_start = time.time()
    paths = {k: os.path.join(out, k) for k in ("data", "pretrain_hacm", "linprobe_hacm", "linprobe_random",
                                                "export", "report", "plots")}
    os.makedirs(paths["plots"], exist_ok=True)

    # 1. raw .skeleton files -> verified TFRecords
    data = paths["data"]
    if not os.path.exists(os.path.join(data, tfrecord.INFO_FILE)):
        log("[1/7] generating synthetic NTU-format .skeleton files and building TFRecords")
        spec = synthetic.SyntheticSpec(num_subjects=cfg.subjects, replications=cfg.replications)
        build.build_synthetic(data, spec=spec, seed=cfg.seed, progress=True)
    else:
        log("[1/7] TFRecords already built")
    tfrecord.verify(data, progress=False)
    info = tfrecord.load_info(data)
    raw_names = sorted(os.listdir(os.path.join(data, "raw_skeletons")))[:12:3]
    from hacm_tf.data import ntu

    viz.plot_sequences([ntu.read_ntu_sample(os.path.join(data, "raw_skeletons", n)).skeleton for n in raw_names],
                       NTU25, os.path.join(paths["plots"], "skeletons.png"),
                       titles=[info["class_names"][ntu.parse_name(n[:-9]).action - 1] for n in raw_names])

    model = ModelConfig(method="hacm", window=cfg.window, t_patch=3, dim=cfg.dim, depth=cfg.depth, heads=4,
                        decoder_dim=cfg.dim, decoder_depth=cfg.decoder_depth, decoder_heads=4).validate()
    dcfg = DataConfig(window=cfg.window, batch_size=cfg.batch_size, min_crop_frames=min(64, cfg.window))

    # 2. HA-CM pretraining
    log("[2/7] pretraining HA-CM" + (" (resuming)" if os.path.exists(paths["pretrain_hacm"]) else ""))
    pre_train = TrainConfig(epochs=cfg.pretrain_epochs, lr=2e-3, min_lr=2e-4,
                            warmup_epochs=max(1, cfg.pretrain_epochs // 10), log_every=10)
    keras.backend.clear_session()
    pre = pretrain(paths["pretrain_hacm"], data, model, dcfg, pre_train, seed=cfg.seed,
                   compute=ComputeConfig(jit_compile=False))
    hist = json.load(open(os.path.join(paths["pretrain_hacm"], "metrics.json")))["history"]
    viz.plot_curves(hist, ["loss", "loss_rec", "loss_cc"], os.path.join(paths["plots"], "pretrain_loss.png"),
                         "HA-CM pretraining")
    _plot_masks(paths["pretrain_hacm"], data, dcfg, os.path.join(paths["plots"], "hacm_masks.png"))

    # 3. linear probes: HA-CM encoder and a randomly initialised one
    probe = TrainConfig(epochs=cfg.probe_epochs, lr=0.1, min_lr=0.0, warmup_epochs=0, weight_decay=0.0,
                        log_every=10)
    results = {}
    for name, pretrained in (("hacm", paths["pretrain_hacm"]), ("random", None)):
        log(f"[3/7] linear probe of the {'HA-CM' if pretrained else 'randomly initialised'} encoder")
        keras.backend.clear_session()
        results[name] = downstream.train_classifier(paths[f"linprobe_{name}"], data, model, dcfg, probe,
                                                    downstream.ProtocolConfig("linear"), pretrained, seed=cfg.seed)
        h = json.load(open(os.path.join(paths[f"linprobe_{name}"], "metrics.json")))["history"]
        viz.plot_curves(h, ["loss", "eval_loss", "top1", "eval_top1"],
                             os.path.join(paths["plots"], f"linprobe_{name}_curves.png"), f"linear probe ({name})")

    # 4. export the HA-CM classifier
    version_dir = os.path.join(paths["export"], "1")
    if not os.path.exists(version_dir):
        log("[4/7] exporting the HA-CM linear-probe classifier as a SavedModel")
        keras.backend.clear_session()
        clf, run_cfg = rundir.load_classifier(paths["linprobe_hacm"])
        export_saved_model(clf, run_cfg["class_names"], paths["export"], 1, 2, NTU25.num_joints,
                           dataset=run_cfg.get("dataset", ""))
    else:
        log("[4/7] SavedModel already exported")

    # 5. evaluate the SavedModel through its serving signature
    log("[5/7] evaluating the SavedModel on the test split")
    rep = evaluate.evaluate_model_path(version_dir, data, "test", 32)
    figures = evaluate.write_report(rep, os.path.join(paths["report"], "saved_model_test.json"),
                                    "HA-CM linear probe, SavedModel, test")
    for name in ("confusion", "per_class"):
        os.replace(figures[name], os.path.join(paths["plots"], f"{name}.png"))

    # 6. raw recordings -> action labels through the SavedModel (the test subjects' files)
    from hacm_tf.predict import format_predictions, predict_files

    raw_dir = os.path.join(data, "raw_skeletons")
    test_files = [os.path.join(raw_dir, n) for n in sorted(os.listdir(raw_dir))
                  if ntu.parse_name(os.path.splitext(n)[0]).subject not in ntu.NTU60_XSUB_TRAIN][:3]
    log("[6/7] classifying three raw .skeleton files of the test subjects with the SavedModel")
    predictions = predict_files(version_dir, test_files, top_k=3, progress=False)
    log(format_predictions(predictions))

    # 7. summary
    summary = {
        "output": os.path.abspath(out), "seconds": round(time.time() - t_start, 1),
        "dataset": {"train": info["splits"]["train"], "test": info["splits"]["test"],
                    "classes": info["num_classes"]},
        "pretrain_final_loss_rec": pre["last_epoch"].get("loss_rec"),
        "linprobe_hacm": {k: results["hacm"][k] for k in ("last_epoch_top1", "best_epoch_top1", "last_epoch_top5")},
        "linprobe_random": {k: results["random"][k] for k in ("last_epoch_top1", "best_epoch_top1", "last_epoch_top5")},
        "saved_model_test": {"top1": rep["top1"], "top5": rep["top5"], "samples": rep["samples"]},
        "predicted_files": [{"clip": p["clip"], "label": p["label"], "top1": p["top"][0]["class"]}
                            for p in predictions["predictions"]],
        "paths": {"tensorboard": os.path.join(paths["pretrain_hacm"], "tensorboard"),
                  "saved_model": version_dir, "plots": paths["plots"],
                  "report": os.path.join(paths["report"], "saved_model_test.json")},
        "config": dataclasses.asdict(cfg),
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    log("[7/7] done\n" + format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    pct = lambda v: f"{100 * v:5.1f} %"  # noqa: E731
    h, r = s["linprobe_hacm"], s["linprobe_random"]
    lines = [
        f"synthetic data: {s['dataset']['train']} train / {s['dataset']['test']} test clips, "
        f"{s['dataset']['classes']} classes (cross-subject)",
        "",
        "| linear probe (test split)      | top-1 last epoch | top-1 best epoch | top-5 last epoch |",
        "|--------------------------------|------------------|------------------|------------------|",
        f"| HA-CM pretrained encoder       | {pct(h['last_epoch_top1']):>16} | {pct(h['best_epoch_top1']):>16} | "
        f"{pct(h['last_epoch_top5']):>16} |",
        f"| randomly initialised encoder   | {pct(r['last_epoch_top1']):>16} | {pct(r['best_epoch_top1']):>16} | "
        f"{pct(r['last_epoch_top5']):>16} |",
        "",
        f"SavedModel through serving_default: top-1 {pct(s['saved_model_test']['top1'])}, "
        f"top-5 {pct(s['saved_model_test']['top5'])} on {s['saved_model_test']['samples']} clips",
        f"outputs: {s['output']} (plots/, export/1/, report/, tensorboard: {s['paths']['tensorboard']})",
        f"wall clock: {s['seconds']} s",
    ]
    return "\n".join(lines)


def _plot_masks(pretrain_dir: str, data: str, dcfg: DataConfig, path: str):
    from hacm_tf.rundir import load_pretrainer
    from hacm_tf.viz import masks_figure

    model, _ = load_pretrainer(pretrain_dir)
    masks_figure(model, data, dcfg, path, sequences=1)
