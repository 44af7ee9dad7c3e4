"""FLOP counts: analytic ones for the models, and TensorFlow's profiler count of a traced graph."""

from __future__ import annotations

def block_flops(tokens: int, dim: int, mlp_ratio: float) -> float:
    """Forward FLOPs of one transformer block (2 per multiply-add): projections + MLP + attention."""
    return 2 * tokens * (4 * dim * dim + 2 * dim * int(dim * mlp_ratio)) + 4 * tokens * tokens * dim


def _visible_tokens(model) -> int:
    """Tokens a MaskedPretrainer's encoder sees per sequence."""
    if model.cfg.method == "hacm":
        return model.keep_t + model.keep_s
    from hacm_tf.ops.masking import keep_count

    return keep_count(model.num_tokens, model.cfg.mask_ratio)


def pretrain_flops_per_sample(model) -> float:
    """Training FLOPs per clip (all persons) of a MaskedPretrainer: 3 x forward of the trained path
    (embedding, encoder on visible tokens, decoder on all tokens) + the masking criteria's forward."""
    cfg = model.cfg
    seqs = cfg.num_persons
    L, P, D, Dd = model.num_tokens, model.patch_values, cfg.dim, cfg.decoder_dim
    visible = _visible_tokens(model)
    if cfg.method == "hacm":
        hubs = cfg.num_patches * len(model.layout.hub_joints)
        embed = 2 * (L + hubs) * P * D
        tt, ts, vp = len(model.times_t), len(model.times_s), model.num_token_joints
        criteria = 2 * 2 * model.len_t * D * D + 2 * vp * tt * tt * D + 3 * ts * vp * vp * D
    else:
        embed, criteria = 2 * L * P * D, 0
    fwd = (embed + cfg.depth * block_flops(visible, D, cfg.mlp_ratio) + 2 * visible * D * Dd
           + cfg.decoder_depth * block_flops(L, Dd, cfg.mlp_ratio) + 2 * L * Dd * P)
    return seqs * (3 * fwd + criteria)


def attention_flops_per_sample(model) -> float:
    """The part of :func:`pretrain_flops_per_sample` in the attention products (q k^T and weights @ v of
    every encoder and decoder block, forward and backward)."""
    cfg = model.cfg
    visible = _visible_tokens(model)
    fwd = 4 * cfg.dim * cfg.depth * visible ** 2 + 4 * cfg.decoder_dim * cfg.decoder_depth * model.num_tokens ** 2
    return cfg.num_persons * 3 * fwd


def classifier_flops_per_sample(config, num_classes: int = 60, head: str = "finetune") -> float:
    """Forward FLOPs per clip of an ActionClassifier over all tokens (+ head)."""
    from hacm_tf.models.encoder import token_joints

    vp = len(token_joints(config))
    tokens = config.num_patches * vp
    fwd = 2 * tokens * config.t_patch * 3 * config.dim + config.depth * block_flops(tokens, config.dim,
                                                                                       config.mlp_ratio)
    fwd *= config.num_persons
    if head == "finetune":
        fwd += 2 * vp * config.dim * 2048 + 2 * 2048 * num_classes
    return fwd


def graph_flops(concrete_function) -> dict:
    """FLOPs of a traced tf.function (static shapes) counted by TensorFlow's profiler, an independent
    check of the analytic counts above.

    TF's ``float_operation`` profiler has no FLOP rule for ``Einsum`` (HA-CM's temporal-attention logits), so
    Einsum ops are counted separately as 2 x the product of all index sizes of their equation.
    Returns {"profiler": ..., "einsum": ..., "total": ...} in FLOPs for the whole traced batch.
    """
    import numpy as np
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = concrete_function.graph
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    profiled = float(model_analyzer.profile(graph, options=opts).total_float_ops)
    einsum = 0.0
    for op in graph.get_operations():
        if op.type != "Einsum":
            continue
        equation = op.get_attr("equation").decode()
        sizes = {}
        for spec, tensor in zip(equation.split("->")[0].split(","), op.inputs):
            shape = tensor.shape.as_list()
            if "." in spec or None in shape:
                raise ValueError(f"cannot count einsum {equation!r} with shape {shape}: needs static shapes")
            sizes.update(zip(spec, shape))
        einsum += 2.0 * float(np.prod(list(sizes.values()), dtype=np.float64))
    return {"profiler": profiled, "einsum": einsum, "total": profiled + einsum}
