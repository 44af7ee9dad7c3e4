"""Independent numpy (float64) statements of the models' forward passes, for tests.

Weights are read from the Keras objects; all arithmetic is numpy.
"""

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def w(v):
    return np.asarray(v.numpy(), dtype=np.float64)


def layer_norm(x, ln, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w(ln.gamma) + w(ln.beta)


def linear(x, layer):
    return x @ w(layer.kernel) + w(layer.bias)


def softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def block(x, blk):
    b, n, d = x.shape
    h = blk.attn.heads
    qkv = linear(layer_norm(x, blk.norm1), blk.attn.qkv).reshape(b, n, 3, h, d // h)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    a = softmax(np.einsum("bqhd,bkhd->bhqk", q, k) * (d // h) ** -0.5, -1)
    x = x + linear(np.einsum("bhqk,bkhd->bqhd", a, v).reshape(b, n, d), blk.attn.proj)
    y = linear(layer_norm(x, blk.norm2), blk.fc1)
    y = 0.5 * y * (1 + _erf(y / math.sqrt(2)).astype(np.float64))
    return x + linear(y, blk.fc2)


def patchify(x, p):
    b, t, v, c = x.shape
    return x.reshape(b, t // p, p, v, c).transpose(0, 1, 3, 2, 4).reshape(b, t // p, v, p * c)


def embed(x, enc):
    return linear(patchify(x, enc.cfg.t_patch), enc.joints_embed.proj)


def expmap_project(x, c=1.0):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.tanh(np.sqrt(c) * n) * x / np.maximum(np.sqrt(c) * n, 1e-30)
    yn = np.linalg.norm(y, axis=-1, keepdims=True)
    return np.where(yn >= 1 / np.sqrt(c), y * (1 - 1e-5) / np.sqrt(c) / np.maximum(yn, 1e-30), y)


def poincare(u, v, c=1.0):
    num = 2 * np.sum((u - v) ** 2, -1)
    den = (1 - c * np.sum(u * u, -1)) * (1 - c * np.sum(v * v, -1))
    return np.arccosh(np.maximum(1 + c * num / den, 1.0)) / np.sqrt(c)


def topk_keep_high(scores, noise, keep, tau, high=True):
    s = scores / (tau * scores.max(-1, keepdims=True) + 1e-10)
    z = np.log(softmax(s, -1)) - np.log(-np.log(noise + 1e-10) + 1e-10)
    return np.argsort(-z if high else z, axis=-1, kind="stable")[:, :keep]


def encode(tokens, enc):
    for blk in enc.blocks:
        tokens = block(tokens, blk)
    return layer_norm(tokens, enc.norm)


def decode(grid, model):
    b, tp, vp, d = grid.shape
    h = (grid + w(model.decoder_pos_embed.joint) + w(model.decoder_pos_embed.temporal)).reshape(b, tp * vp, d)
    for blk in model.decoder_blocks:
        h = block(h, blk)
    return linear(layer_norm(h, model.decoder_norm), model.decoder_pred)


def normalize(t):
    return (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, ddof=1, keepdims=True) + 1e-6)


def fold(x):
    n, t, m, v, c = x.shape
    return x.transpose(0, 2, 1, 3, 4).reshape(n * m, t, v, c).astype(np.float64)


def hacm_corrected(model, x, noise_t, noise_s):
    """Corrected-mode HA-CM losses: canonical (t, v) order everywhere. Returns dict of numpy values."""
    cfg, enc = model.cfg, model.encoder
    xb = fold(x)
    b = xb.shape[0]
    kept, hubs = list(model.layout.kept_joints), list(model.layout.hub_joints)
    mc = embed(xb[:, :, kept], enc) + w(enc.pos_embed.joint) + w(enc.pos_embed.temporal)
    h = expmap_project(mc, cfg.curvature)
    tp, vp, d = mc.shape[1], mc.shape[2], mc.shape[3]
    te, ts = np.arange(0, tp, 2), np.arange(1, tp, 2)
    q, k = linear(mc[:, te], model.l1), linear(mc[:, te], model.l2)               # [B, Tt, V, D]
    att = softmax(np.einsum("btvd,buvd->bvtu", q, k) / math.sqrt(d), -1)
    score_t = att.sum(2).transpose(0, 2, 1).reshape(b, -1)                        # (u, v) order
    p = h[:, ts]
    father = expmap_project(embed(xb[:, :, hubs], enc), cfg.curvature)[:, ts].mean(2)   # [B, Ts, D]
    dist = poincare(p[:, :, :, None], p[:, :, None, :], cfg.curvature)
    score_s = (dist.sum(2) + cfg.father_weight * poincare(father[:, :, None], p, cfg.curvature)).reshape(b, -1)
    kt, ks = model.keep_t, model.keep_s
    keep_t = topk_keep_high(score_t, noise_t, kt, cfg.tau)
    keep_s = topk_keep_high(score_s, noise_s, ks, cfg.tau)
    tok_t, tok_s = h[:, te].reshape(b, -1, d), h[:, ts].reshape(b, -1, d)
    vis = np.concatenate([np.take_along_axis(tok_t, keep_t[..., None], 1),
                          np.take_along_axis(tok_s, keep_s[..., None], 1)], 1)
    lat = encode(vis, enc)
    feats = [lat[:, :kt].mean(1), lat[:, kt:].mean(1), lat.mean(1)]
    a, bb, g = [f / np.linalg.norm(f, axis=-1, keepdims=True) for f in feats]
    eye = np.eye(b)
    cc = sum(((softmax(m / cfg.cc_temperature, -1) - eye) ** 2).mean() for m in (bb @ g.T, a @ g.T, a @ bb.T))
    y = linear(lat, model.decoder_embed)
    grid = np.tile(w(model.mask_token)[:, None], (b, tp, vp, 1))                   # [B, T', V', Dd]
    mask = np.ones((b, tp, vp))
    for i in range(b):
        for r, j in enumerate(keep_t[i]):
            grid[i, te[j // vp], j % vp] = y[i, r]
            mask[i, te[j // vp], j % vp] = 0
        for r, j in enumerate(keep_s[i]):
            grid[i, ts[j // vp], j % vp] = y[i, kt + r]
            mask[i, ts[j // vp], j % vp] = 0
    pred = decode(grid, model)
    kx = xb[:, :, kept]
    mot = np.concatenate([kx[:, cfg.motion_stride:] - kx[:, :-cfg.motion_stride],
                          np.zeros_like(kx[:, :cfg.motion_stride])], 1)
    target = normalize(patchify(expmap_project(mot, cfg.curvature), cfg.t_patch).reshape(b, tp * vp, -1))
    mask = mask.reshape(b, -1)
    rec = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    return {"loss_rec": rec, "loss_cc": cc, "loss": rec + cfg.cc_weight * cc, "mask": mask, "pred": pred}


def mamp_mae(model, x, noise):
    """MAMP (motion-aware masking, motion target) or MAE (random masking, position target)."""
    cfg, enc = model.cfg, model.encoder
    xb = fold(x)
    b = xb.shape[0]
    e = embed(xb, enc) + w(enc.pos_embed.joint) + w(enc.pos_embed.temporal)
    tp, vp, d = e.shape[1:]
    tokens = e.reshape(b, -1, d)
    keep = int(tokens.shape[1] * (1 - cfg.mask_ratio))
    patches = patchify(xb, cfg.t_patch)
    if cfg.method == "mamp":
        mo = np.abs(patches[:, 1:] - patches[:, :-1]).mean(-1)
        mo = np.concatenate([mo[:, :1], mo], 1).reshape(b, -1)
        ids = topk_keep_high(mo, noise, keep, cfg.tau, high=False)
    else:
        ids = np.argsort(noise, -1, kind="stable")[:, :keep]
    lat = encode(np.take_along_axis(tokens, ids[..., None], 1), enc)
    y = linear(lat, model.decoder_embed)
    seq = np.tile(w(model.mask_token), (b, tp * vp, 1))
    mask = np.ones((b, tp * vp))
    for i in range(b):
        seq[i, ids[i]] = y[i]
        mask[i, ids[i]] = 0
    pred = decode(seq.reshape(b, tp, vp, -1), model)
    src = xb if cfg.method == "mae" else np.concatenate([xb[:, 1:] - xb[:, :-1], np.zeros_like(xb[:, :1])], 1)
    target = normalize(patchify(src, cfg.t_patch).reshape(b, tp * vp, -1))
    rec = (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    return {"loss_rec": rec, "loss": rec, "mask": mask, "pred": pred}


def classifier_logits(state, x, head, kept_joints, num_classes, bn_eps):
    """Official downstream forward pass written from the PyTorch state dict (numpy, float64).

    x: [N, T, M, V, 3]; head: "linear" (BN without affine from head.fc.0 + head.fc.1) or "finetune".
    """
    g = {k: np.asarray(v, np.float64) for k, v in state.items()}
    n, t, m = x.shape[:3]
    xb = fold(x)[:, :, list(kept_joints)]                                         # [B, T, V', 3]
    wconv = g["joints_embed.proj.weight"][..., 0]                                 # [D, C, p]
    p = wconv.shape[2]
    b, _, v, c = xb.shape
    patches = xb.reshape(b, t // p, p, v, c)                                      # [B, T', p, V', C]
    e = np.einsum("btpvc,dcp->btvd", patches, wconv) + g["joints_embed.proj.bias"]
    h = expmap_project(e + g["pos_embed"] + g["temp_embed"]).reshape(b, -1, e.shape[-1])

    def ln(z, pre):
        mu = z.mean(-1, keepdims=True)
        var = ((z - mu) ** 2).mean(-1, keepdims=True)
        return (z - mu) / np.sqrt(var + 1e-5) * g[pre + ".weight"] + g[pre + ".bias"]

    def lin(z, pre):
        return z @ g[pre + ".weight"].T + g[pre + ".bias"]

    heads = 8
    i = 0
    while f"blocks.{i}.norm1.weight" in g:
        pre = f"blocks.{i}"
        d = h.shape[-1]
        qkv = lin(ln(h, pre + ".norm1"), pre + ".attn.qkv").reshape(b, -1, 3, heads, d // heads)
        a = softmax(np.einsum("bqhd,bkhd->bhqk", qkv[:, :, 0], qkv[:, :, 1]) * (d // heads) ** -0.5, -1)
        h = h + lin(np.einsum("bhqk,bkhd->bqhd", a, qkv[:, :, 2]).reshape(b, -1, d), pre + ".attn.proj")
        y = lin(ln(h, pre + ".norm2"), pre + ".mlp.fc1")
        h = h + lin(0.5 * y * (1 + _erf(y / math.sqrt(2)).astype(np.float64)), pre + ".mlp.fc2")
        i += 1
    h = ln(h, "norm").reshape(n, m, t // p, v, -1)
    if head == "linear":
        f = h.mean(axis=(1, 2, 3))
        f = (f - g["head.fc.0.running_mean"]) / np.sqrt(g["head.fc.0.running_var"] + bn_eps)
        return lin(f, "head.fc.1")
    f = h.mean(axis=2).reshape(n, m, -1).mean(axis=1)
    z = lin(f, "head.fc1")
    z = (z - g["head.bn.running_mean"]) / np.sqrt(g["head.bn.running_var"] + bn_eps)
    z = z * g["head.bn.weight"] + g["head.bn.bias"]
    return lin(np.maximum(z, 0), "head.fc2")
