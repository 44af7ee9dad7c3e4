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
