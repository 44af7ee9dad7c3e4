"""Official PyTorch state dicts -> hacm_tf models (no torch needed: state dicts as numpy)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hacm_tf import convert
from hacm_tf.config import ModelConfig
from hacm_tf.skeleton import NTU25
from tests.conftest import REPO, shared_path
from tests.models import np_reference


@pytest.fixture(scope="module")
def encoder_state():
    state = dict(np.load(shared_path("reference_outputs", "hacm_pretrain_state.npz")))
    keep = ("joints_embed", "pos_embed", "temp_embed", "blocks.", "norm.")
    return {k: v for k, v in state.items() if k.startswith(keep)}


def head_state(head, k=60, seed=0):
    r = np.random.RandomState(seed)
    if head == "linear":
        return {"head.fc.0.running_mean": r.normal(size=256) * 0.1, "head.fc.0.running_var": r.uniform(0.5, 2, 256),
                "head.fc.0.num_batches_tracked": np.array(7), "head.fc.1.weight": r.normal(size=(k, 256)) * 0.05,
                "head.fc.1.bias": r.normal(size=k) * 0.01}
    return {"head.fc1.weight": r.normal(size=(2048, 4608)) * 0.01, "head.fc1.bias": r.normal(size=2048) * 0.01,
            "head.bn.weight": r.uniform(0.5, 1.5, 2048), "head.bn.bias": r.normal(size=2048) * 0.1,
            "head.bn.running_mean": r.normal(size=2048) * 0.1, "head.bn.running_var": r.uniform(0.5, 2, 2048),
            "head.bn.num_batches_tracked": np.array(3), "head.fc2.weight": r.normal(size=(k, 2048)) * 0.02,
            "head.fc2.bias": r.normal(size=k) * 0.01}


@pytest.mark.parametrize("head,eps", [("linear", 1e-6), ("finetune", 1e-5)])
def test_converted_classifier_matches_numpy_forward(encoder_state, head, eps):
    state = {**encoder_state, **head_state(head)}
    state = {k: v.astype(np.float32) for k, v in state.items()}
    model, report = convert.from_torch_state(state, head, ModelConfig(hacm_mode="reference"), num_classes=60)
    assert not report.missing and report.unused == ([] if head == "linear" else [])
    x = np.load(shared_path("reference_outputs", "hacm_pretrain.npz"))["input_x"]
    x = np.transpose(x, (0, 2, 4, 3, 1))                             # (N, C, T, V, M) -> (N, T, M, V, C)
    got = model(x, training=False).numpy()
    expected = np_reference.classifier_logits(state, x, head, NTU25.kept_joints, 60, eps)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


def test_shape_mismatch_and_missing_keys_are_reported(encoder_state):
    bad = dict(encoder_state)
    bad["pos_embed"] = np.zeros((1, 1, 25, 256), np.float32)
    with pytest.raises(ValueError, match="pos_embed.*shape"):
        convert.from_torch_state({**bad, **head_state("linear")}, "linear")
    partial = {k: v for k, v in encoder_state.items() if not k.startswith("blocks.7")}
    with pytest.raises(ValueError, match="lacks 12 keys"):
        convert.from_torch_state({**partial, **head_state("linear")}, "linear")
    _, report = convert.from_torch_state({**partial, **head_state("linear")}, "linear", strict=False)
    assert len(report.missing) == 12 and "blocks.7.attn.qkv.weight" in report.missing


def test_convert_script_output_is_a_pretrained_run(tmp_path):
    from hacm_tf.rundir import load_pretrained_encoder

    src = shared_path("reference_outputs", "hacm_pretrain_state.npz")
    out = tmp_path / "converted"
    r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "convert_checkpoint.py"), f"--input={src}",
                        f"--output={out}", "--model=pretrainer", "--method=hacm"], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["loaded"] == 151 and "decoder_fc.weight" in res["unused"] and not res["missing"]
    encoder, cfg = load_pretrained_encoder(str(out))
    assert cfg.hacm_mode == "reference"
    state = np.load(src)
    np.testing.assert_array_equal(encoder.blocks[5].fc1.kernel.numpy(), state["blocks.5.mlp.fc1.weight"].T)
    np.testing.assert_array_equal(encoder.pos_embed.temporal.numpy(), state["temp_embed"])


def test_pth_input_needs_torch_with_a_hint(tmp_path):
    p = tmp_path / "checkpoint-1.pth"
    p.write_bytes(b"not a real checkpoint")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs PyTorch"):
            convert.read_state_dict(str(p))
    else:
        with pytest.raises(Exception):
            convert.read_state_dict(str(p))


def mamp_state(seed=0):
    """A MAMP pretraining state dict with the official keys and shapes (TORCH_STATE_DICTS.md)."""
    r = np.random.RandomState(seed)
    shapes = {"temp_embed": (1, 30, 1, 256), "pos_embed": (1, 1, 25, 256), "mask_token": (1, 1, 256),
              "decoder_temp_embed": (1, 30, 1, 256), "decoder_pos_embed": (1, 1, 25, 256),
              "joints_embed.proj.weight": (256, 3, 4, 1), "joints_embed.proj.bias": (256,),
              "norm.weight": (256,), "norm.bias": (256,), "decoder_embed.weight": (256, 256),
              "decoder_embed.bias": (256,), "decoder_norm.weight": (256,), "decoder_norm.bias": (256,),
              "decoder_pred.weight": (12, 256), "decoder_pred.bias": (12,)}
    block = {"norm1.weight": (256,), "norm1.bias": (256,), "attn.proj.weight": (256, 256), "attn.proj.bias": (256,),
             "attn.qkv.weight": (768, 256), "attn.qkv.bias": (768,), "norm2.weight": (256,), "norm2.bias": (256,),
             "mlp.fc1.weight": (1024, 256), "mlp.fc1.bias": (1024,), "mlp.fc2.weight": (256, 1024),
             "mlp.fc2.bias": (256,)}
    for prefix, n in (("blocks", 8), ("decoder_blocks", 3)):
        for i in range(n):
            shapes.update({f"{prefix}.{i}.{k}": s for k, s in block.items()})
    return {k: (r.normal(size=s) * 0.02).astype(np.float32) for k, s in shapes.items()}


def test_mamp_checkpoint_converts_completely():
    state = mamp_state()
    model, report = convert.from_torch_state(state, "pretrainer", ModelConfig(method="mamp", window=120, t_patch=4))
    assert not report.missing and not report.unused and len(report.loaded) == len(state)
    np.testing.assert_array_equal(model.decoder_pred.kernel.numpy(), state["decoder_pred.weight"].T)
    w = state["joints_embed.proj.weight"]           # [D, C, t_patch, 1] -> rows (frame, coordinate)
    np.testing.assert_array_equal(model.encoder.joints_embed.proj.kernel.numpy()[1 * 3 + 2], w[:, 2, 1, 0])
    out = model.compute_losses(np.zeros((1, 120, 2, 25, 3), np.float32) + 0.01)
    assert np.isfinite(float(out["loss"]))


@pytest.mark.parametrize("method,head", [("mamp", "finetune"), ("mae", "linear"), ("hacm", "finetune")])
def test_export_works_for_every_encoder_and_head(tmp_path, method, head):
    import tensorflow as tf

    from hacm_tf.export import export_saved_model, load_serving
    from hacm_tf.models.classifier import ActionClassifier

    cfg = ModelConfig(method=method, window=24, t_patch=3 if method == "hacm" else 4, dim=32, depth=1, heads=4)
    clf = ActionClassifier(cfg.validate().to_dict(), 4, head=head)
    clf.build()
    path = export_saved_model(clf, list("abcd"), str(tmp_path), 1, 2, 25)
    x = np.random.RandomState(0).normal(size=(2, 30, 2, 25, 3)).astype(np.float32)
    out = load_serving(path)[1](skeleton=tf.constant(x), num_frames=tf.constant([30, 24], tf.int32))
    assert out["logits"].shape == (2, 4) and out["embedding"].shape == (2, 32)
