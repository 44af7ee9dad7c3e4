"""Official PyTorch (HA-CM / MAMP) state dicts -> hacm_tf Keras weights.

State dicts are plain ``{key: numpy array}`` maps (keys and shapes in
TORCH_STATE_DICTS.md). PyTorch Linear weights ``[out, in]`` become Keras
kernels ``[in, out]``; the patch-embedding Conv2d weight ``[D, C, t_patch, 1]``
becomes a Dense kernel over patch values ordered (frame, coordinate).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

import numpy as np


@dataclasses.dataclass
class ConversionReport:
    """What a conversion used: loaded keys, state-dict keys left unused, model weights not found."""

    loaded: List[str]
    unused: List[str]
    missing: List[str]

    def summary(self) -> str:
        return (f"loaded {len(self.loaded)} tensors; unused state-dict keys ({len(self.unused)}): "
                f"{', '.join(self.unused) or 'none'}; model weights without a key ({len(self.missing)}): "
                f"{', '.join(self.missing) or 'none'}")


def _linear(prefix: str, layer) -> List[Tuple[str, object, callable]]:
    return [(prefix + ".weight", layer.kernel, lambda w: w.T), (prefix + ".bias", layer.bias, None)]


def _norm(prefix: str, layer) -> List[Tuple[str, object, callable]]:
    return [(prefix + ".weight", layer.gamma, None), (prefix + ".bias", layer.beta, None)]


def _block(prefix: str, block) -> list:
    return (_norm(prefix + ".norm1", block.norm1) + _linear(prefix + ".attn.qkv", block.attn.qkv)
            + _linear(prefix + ".attn.proj", block.attn.proj) + _norm(prefix + ".norm2", block.norm2)
            + _linear(prefix + ".mlp.fc1", block.fc1) + _linear(prefix + ".mlp.fc2", block.fc2))


def _conv_to_dense(w: np.ndarray) -> np.ndarray:
    """[D, C, t_patch, 1] -> [t_patch * C, D] with rows ordered (frame, coordinate)."""
    d, c, p, _ = w.shape
    return w[..., 0].transpose(2, 1, 0).reshape(p * c, d)


def encoder_mapping(encoder) -> list:
    """(key, variable, transform) triples of a SkeletonEncoder."""
    table = [("joints_embed.proj.weight", encoder.joints_embed.proj.kernel, _conv_to_dense),
             ("joints_embed.proj.bias", encoder.joints_embed.proj.bias, None),
             ("pos_embed", encoder.pos_embed.joint, None),
             ("temp_embed", encoder.pos_embed.temporal, None)]
    for i, b in enumerate(encoder.blocks):
        table += _block(f"blocks.{i}", b)
    return table + _norm("norm", encoder.norm)


def pretrainer_mapping(model) -> list:
    """(key, variable, transform) triples of a MaskedPretrainer (HA-CM or MAMP / MAE key names)."""
    table = encoder_mapping(model.encoder)
    table += _linear("decoder_embed", model.decoder_embed)
    for i, b in enumerate(model.decoder_blocks):
        table += _block(f"decoder_blocks.{i}", b)
    table += _norm("decoder_norm", model.decoder_norm) + _linear("decoder_pred", model.decoder_pred)
    table += [("decoder_pos_embed", model.decoder_pos_embed.joint, None),
              ("decoder_temp_embed", model.decoder_pos_embed.temporal, None)]
    if model.cfg.method == "hacm":
        table += [("mask_token_t", model.mask_token, None)] + _linear("l1", model.l1) + _linear("l2", model.l2)
    else:
        table += [("mask_token", model.mask_token, None)]
    return table


def load_state(table: list, state: Dict[str, np.ndarray], strict: bool = True) -> ConversionReport:
    """Assigns state-dict tensors to variables; checks every shape. Returns a report."""
    loaded, missing = [], []
    for key, var, transform in table:
        if key not in state:
            missing.append(key)
            continue
        value = np.asarray(state[key], dtype=np.float32)
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"state-dict key {key!r}: shape {tuple(np.shape(state[key]))} converts to "
                             f"{tuple(value.shape)}, the model expects {tuple(var.shape)}")
        var.assign(value)
        loaded.append(key)
    if strict and missing:
        raise ValueError(f"state dict lacks {len(missing)} keys the model needs: {missing[:8]}")
    used = set(loaded)
    return ConversionReport(loaded, sorted(k for k in state if k not in used), missing)


def load_pretrainer_state(model, state: Dict[str, np.ndarray], strict: bool = True) -> ConversionReport:
    """Loads an official HA-CM (model_hacm) or MAMP / MAE state dict into a built MaskedPretrainer."""
    return load_state(pretrainer_mapping(model), state, strict)


def classifier_mapping(clf, state: Dict[str, np.ndarray]) -> list:
    """(key, variable, transform) triples of an ActionClassifier (HA-CM / MAMP downstream key names).

    Linear probe: the model file's ``head.fc`` or main_linprobe.py's ``head.fc.0`` (BatchNorm without
    affine: running stats) + ``head.fc.1`` (Linear). Fine-tune: ``head.fc1``, ``head.bn``, ``head.fc2``.
    """
    table = encoder_mapping(clf.encoder)
    if clf.head == "linear":
        if "head.fc.1.weight" in state:
            table += [("head.fc.0.running_mean", clf.bn.moving_mean, None),
                      ("head.fc.0.running_var", clf.bn.moving_variance, None)] + _linear("head.fc.1", clf.fc)
        else:
            table += _linear("head.fc", clf.fc)
    else:
        table += _linear("head.fc1", clf.fc1) + _linear("head.fc2", clf.fc)
        table += [("head.bn.weight", clf.bn.gamma, None), ("head.bn.bias", clf.bn.beta, None),
                  ("head.bn.running_mean", clf.bn.moving_mean, None),
                  ("head.bn.running_var", clf.bn.moving_variance, None)]
    return table


IGNORED_KEYS = ("num_batches_tracked",)


def load_classifier_state(clf, state: Dict[str, np.ndarray], strict: bool = True) -> ConversionReport:
    """Loads an official downstream (linear-probe or fine-tune) state dict into a built ActionClassifier."""
    state = {k: v for k, v in state.items() if not k.endswith(IGNORED_KEYS)}
    return load_state(classifier_mapping(clf, state), state, strict)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """A ``.npz`` of state-dict arrays, or a PyTorch ``.pth`` checkpoint (key ``model``; needs torch)."""
    if path.endswith(".npz"):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path} needs PyTorch (pip install torch); or convert it to .npz with "
                          "{k: v.numpy() for k, v in torch.load(path)['model'].items()}") from None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def from_torch_state(state: Dict[str, np.ndarray], model: str = "pretrainer", config=None,
                     num_classes: int = 60, strict: bool = True):
    """Builds a hacm_tf model and loads an official state dict into it.

    Args:
      state: {state-dict key: array}.
      model: "pretrainer", "linear" or "finetune".
      config: ModelConfig (default: HA-CM reference mode at the paper's size).
      num_classes: classifier classes (ignored for the pretrainer).
    Returns:
      (model, ConversionReport).
    """
    from hacm_tf.config import ModelConfig

    config = config or ModelConfig(hacm_mode="reference")
    config.validate()
    if model == "pretrainer":
        from hacm_tf.models.pretrainer import MaskedPretrainer

        m = MaskedPretrainer(config.to_dict())
        m.build()
        return m, load_pretrainer_state(m, state, strict)
    if model in ("linear", "finetune"):
        from hacm_tf.models.classifier import ActionClassifier

        m = ActionClassifier(config.to_dict(), num_classes, head=model)
        m.build()
        return m, load_classifier_state(m, state, strict)
    raise ValueError(f"model must be 'pretrainer', 'linear' or 'finetune', got {model!r}")


def official_model_config(method: str, **changes):
    """The ModelConfig a converted official checkpoint needs: HA-CM in reference mode (the official code's
    behaviour), MAMP / MAE at their 120-frame, patch-4 sizes; ``changes`` (fields given explicitly) win."""
    from hacm_tf.config import ModelConfig

    defaults = {"hacm": dict(hacm_mode="reference"), "mamp": dict(window=120, t_patch=4),
                "mae": dict(window=120, t_patch=4)}[method]
    return ModelConfig(**{"method": method, **defaults, **changes}).validate()


def convert_to_run(input_path: str, output: str, model: str = "pretrainer", config=None, num_classes: int = 60,
                   class_names=None, strict: bool = True) -> dict:
    """An official checkpoint (``.pth`` or ``.npz`` of state-dict arrays) -> a new run directory that
    ``--pretrained``, export and evaluation accept. Returns the checkpoint path and the key report."""
    import os

    from hacm_tf import rundir
    from hacm_tf.config import DataConfig, ProtocolConfig

    state = read_state_dict(input_path)
    built, report = from_torch_state(state, model, config, num_classes, strict)
    config = built.cfg
    run_config = {"stage": model if model != "pretrainer" else "pretrain", "model": config.to_dict(),
                  "data": DataConfig(window=config.window).to_dict(), "converted_from": os.path.abspath(input_path)}
    if model != "pretrainer":
        names = list(class_names) if class_names is not None else [f"A{i + 1:03d}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        run_config.update(num_classes=num_classes, protocol=ProtocolConfig(protocol=model).__dict__, class_names=names)
    path = rundir.write_converted_run(output, run_config, built)
    return {"output": output, "checkpoint": path, "loaded": len(report.loaded), "unused": report.unused,
            "missing": report.missing}
