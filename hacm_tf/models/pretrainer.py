"""MaskedPretrainer: HA-CM, MAMP and MAE masked-motion pretraining with a custom train_step.

Axis names: N clips, M persons, B = N * M sequences, T frames, V joints, T'
temporal patches, V' token joints, L tokens, D width, P = t_patch * 3 values
per patch. Masks: 1 = masked. HA-CM's two token groups: temporal = even
temporal patches, spatial = odd ones (L_t, L_s tokens).

``compute_losses(x, noise)`` is deterministic given the noise, so any run can
be compared number for number with another implementation (the official
code's draws reproduce its masks and losses in ``hacm_mode="reference"``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from hacm_tf.config import ConfigError, ModelConfig
from hacm_tf.layers.embedding import PositionEmbedding
from hacm_tf.layers.random import replica_seed
from hacm_tf.layers.transformer import LN_EPS, TransformerBlock, dense, track_layers
from hacm_tf.models.encoder import SkeletonEncoder, fold_persons
from hacm_tf.ops import hyperbolic, losses, masking, patching
from hacm_tf.skeleton import get_layout

REFERENCE_KEEP_FRACTION = 0.1
REFERENCE_TAU = 0.9


def contrast_spans_parts(cfg: ModelConfig) -> bool:
    """Whether micro-batching must carry the cross-contrast across parts (HA-CM with cc_weight != 0)."""
    return cfg.method == "hacm" and cfg.cc_weight != 0.0


def check_micro_batching(cfg: ModelConfig, micro_batches: int):
    """Raises ConfigError if ``micro_batches`` parts cannot give the whole batch's update: HA-CM's
    batch-wide contrast recomputes the encoder, so both passes must drop the same paths (drop_path 0)."""
    if micro_batches > 1 and contrast_spans_parts(cfg) and cfg.drop_path > 0:
        raise ConfigError(f"HA-CM micro-batching recomputes the encoder for the batch-wide cross-contrast and "
                          f"needs drop_path = 0 in pretraining, got drop_path={cfg.drop_path}")


def group_cells(num_patches: int, num_joints: int, parity: int, joint_major: bool) -> np.ndarray:
    """Canonical cell index (t * V' + v) of each token of a group, in the group's token order.

    parity 0: even temporal patches (temporal group), 1: odd (spatial group).
    """
    times = np.arange(parity, num_patches, 2)
    t, v = np.meshgrid(times, np.arange(num_joints), indexing="ij")       # [T_g, V']
    cells = t * num_joints + v
    return (cells.T if joint_major else cells).reshape(-1)


@keras.saving.register_keras_serializable("hacm_tf")
class MaskedPretrainer(keras.Model):
    """Encoder + masking + decoder for HA-CM (``method="hacm"``), MAMP and MAE.

    Input batches: ``[N, T, M, V, 3]`` skeletons, or ``(skeletons, labels)`` (labels are ignored),
    or ``(skeletons, labels, noise)`` with explicit masking noise shaped ``[N, M, L_g]`` per call.
    """

    def __init__(self, config: dict, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        cfg = ModelConfig.from_dict(self.config)
        self.cfg = cfg
        self.seed = seed
        self.encoder = SkeletonEncoder(self.config, name="encoder")
        self.layout = get_layout(cfg.layout)
        self.num_token_joints = len(self.encoder.joints)
        self.num_tokens = cfg.num_patches * self.num_token_joints
        self.patch_values = cfg.t_patch * 3
        self.decoder_embed = dense(cfg.decoder_dim, "decoder_embed")
        self.decoder_blocks = [TransformerBlock(cfg.decoder_dim, cfg.decoder_heads, cfg.mlp_ratio, True, 0.0,
                                                cfg.remat, cfg.precision, name=f"decoder_blocks_{i}")
                               for i in range(cfg.decoder_depth)]
        track_layers(self, "decoder_block", self.decoder_blocks)
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=LN_EPS, name="decoder_norm")
        self.decoder_pred = dense(self.patch_values, "decoder_pred")
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.mask_token = self.add_weight(name="mask_token", shape=(1, 1, cfg.decoder_dim), initializer=init)
        self.decoder_pos_embed = PositionEmbedding(cfg.num_patches, self.num_token_joints, cfg.decoder_dim,
                                                   name="decoder_pos_embed")
        if cfg.method == "hacm":
            # temporal-attention projections: they only feed a sort, so they receive no gradient
            self.l1 = dense(cfg.dim, "l1")
            self.l2 = dense(cfg.dim, "l2")
            self._setup_groups()
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in
                         ("loss", "loss_rec", "loss_cc", "mask_ratio", "grad_norm")}
        self.nonfinite_policy = "stop"
        self.micro_batches = 1
        self._xla_step = None

    # ------------------------------------------------------------------ construction

    def _setup_groups(self):
        cfg, tp, vp = self.cfg, self.cfg.num_patches, self.num_token_joints
        self.times_t = list(range(0, tp, 2))
        self.times_s = list(range(1, tp, 2))
        self.len_t, self.len_s = len(self.times_t) * vp, len(self.times_s) * vp
        ref_order = cfg.switch("ref_token_order")
        cells_t = group_cells(tp, vp, 0, joint_major=ref_order)
        cells_s = group_cells(tp, vp, 1, joint_major=False)
        slots = np.concatenate([cells_t, cells_s])                  # group-token order -> canonical cell
        self.slot_cells = tf.constant(slots, tf.int32)
        self.cell_slots = tf.constant(np.argsort(slots), tf.int32)  # canonical cell -> slot
        if cfg.switch("ref_keep_fraction"):
            self.keep_t = int(REFERENCE_KEEP_FRACTION * self.len_t)
            self.keep_s = int(REFERENCE_KEEP_FRACTION * self.len_s)
        else:
            self.keep_t = masking.keep_count(self.len_t, cfg.mask_ratio)
            self.keep_s = masking.keep_count(self.len_s, cfg.mask_ratio)
        self.tau = REFERENCE_TAU if cfg.switch("ref_tau") else cfg.tau

    def build(self, input_shape=None):
        cfg = self.cfg
        self.encoder.build(None)
        self.decoder_embed.build((None, None, cfg.dim))
        for b in self.decoder_blocks:
            b.build((None, None, cfg.decoder_dim))
        self.decoder_norm.build((None, None, cfg.decoder_dim))
        self.decoder_pred.build((None, None, cfg.decoder_dim))
        self.decoder_pos_embed.build(None)
        if cfg.method == "hacm":
            self.l1.build((None, cfg.dim))
            self.l2.build((None, cfg.dim))
        self.built = True

    def noise_shapes(self, batch: int) -> List[List[int]]:
        """Shapes of the uniform noise tensors one forward pass consumes (B = N * M rows)."""
        if self.cfg.method == "hacm":
            return [[batch, self.len_t], [batch, self.len_s]]
        return [[batch, self.num_tokens]]

    def sample_noise(self, batch) -> List[tf.Tensor]:
        """Uniform [0, 1) noise from the model's SeedGenerator, different on every replica."""
        seed = replica_seed(self.seed_generator)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        return [tf.random.stateless_uniform(s, seed=seeds[i]) for i, s in enumerate(self.noise_shapes(batch))]

    # ------------------------------------------------------------------ forward

    def compute_losses(self, x, noise: Optional[Sequence[tf.Tensor]] = None, training: bool = False,
                       intermediates: bool = False) -> Dict[str, tf.Tensor]:
        """Deterministic forward pass given the masking noise.

        Args:
          x: [N, T, M, V, 3] skeletons.
          noise: uniform [0, 1) tensors of ``noise_shapes(N * M)`` (HA-CM: temporal group
            then spatial group; MAMP / MAE: one [B, L]); drawn when None.
          intermediates: also return every intermediate tensor.

        Returns:
          dict with ``loss``, ``loss_rec``, ``loss_cc`` (scalars), ``mask`` [B, L],
          ``pred`` / ``target`` [B, L, P] (mask, pred and target in the same token order),
          ``mask_grid`` [B, T', V'] (the mask on the (t, v) grid) and ``visible`` (visible-token count).
        """
        x = tf.convert_to_tensor(x, tf.float32)
        xb = fold_persons(x)                                             # [B, T, V, 3]
        if noise is None:
            noise = self.sample_noise(tf.shape(xb)[0])
        if self.cfg.method == "hacm":
            out = self._hacm(xb, noise, training)
        else:
            out = self._mamp_mae(xb, noise[0], training)
        if not intermediates:
            keep = ("loss", "loss_rec", "loss_cc", "mask", "pred", "target", "visible", "cc_terms", "mask_grid",
                    "pooled")
            out = {k: v for k, v in out.items() if k in keep}
        return out

    def _decode(self, tokens: tf.Tensor, training: bool, out: dict) -> tf.Tensor:
        """[B, T', V', Dd] decoder grid -> predictions [B, T' * V', P]."""
        h = self.decoder_pos_embed(tokens)
        s = tf.shape(h)
        h = tf.reshape(h, [s[0], s[1] * s[2], s[3]])
        out["dec_input"] = h
        for i, block in enumerate(self.decoder_blocks):
            h = block(h, training=training)
            out[f"dec_block{i}_out"] = h
        h = self.decoder_norm(h)
        out["dec_norm_out"] = h
        return self.decoder_pred(h)

    def _grid(self, seq: tf.Tensor) -> tf.Tensor:
        """[B, T' * V', Dd] -> [B, T', V', Dd]."""
        return tf.reshape(seq, [tf.shape(seq)[0], self.cfg.num_patches, self.num_token_joints, seq.shape[-1]])

    def _mask_tokens(self, batch, count) -> tf.Tensor:
        return tf.tile(self.mask_token, [batch, count, 1])

    def _mamp_mae(self, x, noise, training):
        cfg = self.cfg
        out = {}
        b = tf.shape(x)[0]
        mc = self.encoder.position(self.encoder.embed(x))                 # [B, T', V, D]
        tokens = tf.reshape(mc, [b, self.num_tokens, cfg.dim])            # time-major
        keep = masking.keep_count(self.num_tokens, cfg.mask_ratio)
        if cfg.method == "mamp":
            scores = masking.motion_scores(patching.patchify(x, cfg.t_patch))
            res = masking.gumbel_topk(scores, noise, keep, cfg.tau, keep_high=False)
        else:
            res = masking.random_masking(noise, keep)
        latent = self.encoder.encode(masking.gather_tokens(tokens, res.ids_keep), training=training)
        y = self.decoder_embed(latent)
        seq = tf.concat([y, self._mask_tokens(b, self.num_tokens - keep)], axis=1)
        seq = tf.gather(seq, res.ids_restore, batch_dims=1)              # unshuffle [B, L, Dd]
        pred = self._decode(self._grid(seq), training, out)
        source = patching.motion(x, cfg.motion_stride) if cfg.method == "mamp" else x
        target = tf.reshape(patching.patchify(source, cfg.t_patch), [b, self.num_tokens, self.patch_values])
        if cfg.norm_target:
            target = patching.normalize_patches(target)
        loss_rec, per_token = losses.masked_mse(pred, target, res.mask)
        zero = tf.zeros([], tf.float32)
        out.update(loss=loss_rec, loss_rec=loss_rec, loss_cc=zero, cc_terms=tf.zeros([3]), mask=res.mask, pred=pred,
                   mask_grid=tf.reshape(res.mask, [b, cfg.num_patches, self.num_token_joints]),
                   target=target, visible=tf.cast(keep, tf.float32), latent=latent, ids_restore=res.ids_restore,
                   ids_keep=res.ids_keep, loss_per_token=per_token, mc=mc)
        return out

    def _hacm_encode(self, x, noise, training, out):
        """Embedding, both criteria, masking and the encoder: [B, T, V, 3] -> (latent [B, k_t + k_s, D],
        res_t, res_s); intermediates go into ``out``."""
        cfg = self.cfg
        b = tf.shape(x)[0]
        vp, d = self.num_token_joints, cfg.dim
        ref_order = cfg.switch("ref_token_order")
        e = self.encoder.embed(x)                                         # [B, T', V', D]
        mc = self.encoder.position(e)                                     # [B, T', V', D]
        h = self.encoder.to_manifold(mc)                                  # [B, T', V', D]
        h_t, h_s = tf.gather(h, self.times_t, axis=1), tf.gather(h, self.times_s, axis=1)
        n_t, n_s = len(self.times_t), len(self.times_s)
        if ref_order:   # temporal tokens joint-major (v * T_t + t')
            tokens_t = tf.reshape(tf.transpose(h_t, [0, 2, 1, 3]), [b, self.len_t, d])
        else:
            tokens_t = tf.reshape(h_t, [b, self.len_t, d])
        tokens_s = tf.reshape(h_s, [b, self.len_s, d])                   # time-major (t' * V' + v)

        # temporal criterion on the Euclidean embeddings of the even patches
        if cfg.temporal_criterion:
            mc_t = tf.stop_gradient(tf.gather(mc, self.times_t, axis=1))  # [B, T_t, V', D]
            q, k = self.l1(mc_t), self.l2(mc_t)
            logits = tf.einsum("btvd,buvd->bvtu", q, k)                    # [B, V', T_t, T_t]
            if cfg.switch("ref_attention"):
                attn = tf.nn.softmax(logits * math.sqrt(d), axis=1)       # over joints, times sqrt(d)
            else:
                attn = tf.nn.softmax(logits / math.sqrt(d), axis=-1)      # over key times
            score_t = tf.reduce_sum(attn, axis=2)                         # [B, V', T_t(u)]
            out.update(q_l1=q, k_l2=k, crit_t_matrix=attn)
        else:
            score_t = tf.zeros([b, vp, n_t])
        score_t = tf.reshape(score_t if ref_order else tf.transpose(score_t, [0, 2, 1]), [b, self.len_t])

        # spatial criterion: hyperbolic distances between joints of each odd patch, plus the hub ("father") term
        if cfg.spatial_criterion:
            p = tf.stop_gradient(h_s)                                     # [B, T_s, V', D]
            hubs = self.encoder.to_manifold(self.encoder.embed(x, self.layout.hub_joints))
            father = tf.reduce_mean(tf.stop_gradient(tf.gather(hubs, self.times_s, axis=1)), axis=2,
                                    keepdims=True)                          # [B, T_s, 1, D]
            dist = self._distance(p[:, :, :, None], p[:, :, None, :])     # [B, T_s, V'(v), V'(u)]
            dist_f = self._distance(father, p)                            # [B, T_s, V'(u)]
            score_s = tf.reduce_sum(dist, axis=2) + cfg.father_weight * dist_f   # [B, T_s, V'(u)]
            out.update(father=father, dist_s=dist, dist_f=dist_f)
        else:
            score_s = tf.zeros([b, n_s, vp])
        score_s = tf.reshape(tf.transpose(score_s, [0, 2, 1]) if ref_order else score_s, [b, self.len_s])

        res_t = masking.gumbel_topk(score_t, noise[0], self.keep_t, self.tau, cfg.keep_high_scores)
        res_s = masking.gumbel_topk(score_s, noise[1], self.keep_s, self.tau, cfg.keep_high_scores)
        vis_t = masking.gather_tokens(tokens_t, res_t.ids_keep)
        vis_s = masking.gather_tokens(tokens_s, res_s.ids_keep)
        latent = self.encoder.encode(tf.concat([vis_t, vis_s], axis=1), training=training)
        out.update(embed_raw=e, mc=mc, h=h, tokens_t=tokens_t, tokens_s=tokens_s, score_raw_t=score_t,
                   score_raw_s=score_s)
        return latent, res_t, res_s

    def _pool(self, latent):
        """HA-CM latent [B, k_t + k_s, D] -> pooled group features [3, B, D] for the cross-contrast."""
        return losses.pool_groups(latent[:, :self.keep_t], latent[:, self.keep_t:],
                                  normalize=not self.cfg.switch("ref_cross_contrast"))

    def _contrast(self, pooled):
        """Cross-contrast of pooled features [3, B, D] -> (loss, terms [3]); the reference uses temperature 1."""
        temperature = 1.0 if self.cfg.switch("ref_cross_contrast") else self.cfg.cc_temperature
        return losses.pooled_contrast(pooled, temperature)

    def _hacm(self, x, noise, training):
        cfg = self.cfg
        out = {}
        b = tf.shape(x)[0]
        tp, vp = cfg.num_patches, self.num_token_joints
        latent, res_t, res_s = self._hacm_encode(x, noise, training, out)
        pooled = self._pool(latent)
        loss_cc, cc_terms = self._contrast(pooled)

        # decoder input: visible tokens back in their slots, mask tokens elsewhere
        y = self.decoder_embed(latent)                                    # [B, k_t + k_s, Dd]
        total = self.len_t + self.len_s
        if cfg.switch("ref_unshuffle"):
            seq = tf.concat([y, self._mask_tokens(b, total - self.keep_t - self.keep_s)], axis=1)
            ids = tf.concat([res_t.ids_restore, res_s.ids_restore + self.len_t], axis=1)
            slots = tf.gather(seq, ids, batch_dims=1)                     # [B, L, Dd], relabelled grid
            grid = self._grid(slots)
        else:
            grp_t = tf.concat([y[:, :self.keep_t], self._mask_tokens(b, self.len_t - self.keep_t)], axis=1)
            grp_s = tf.concat([y[:, self.keep_t:], self._mask_tokens(b, self.len_s - self.keep_s)], axis=1)
            slots = tf.concat([tf.gather(grp_t, res_t.ids_restore, batch_dims=1),
                               tf.gather(grp_s, res_s.ids_restore, batch_dims=1)], axis=1)
            grid = self._grid(tf.gather(slots, self.cell_slots, axis=1))  # scatter to true (t, v) cells
        pred = self._decode(grid, training, out)                          # [B, L, P] in grid order

        # target: motion of the token joints through the exponential map, patchified
        kept = self.encoder.select_joints(x)
        mot = patching.motion(kept, cfg.motion_stride)
        mot_h = self.encoder.to_manifold(mot)
        tgt = patching.patchify(mot_h, cfg.t_patch)                       # [B, T', V', P]
        mask_slots = tf.concat([res_t.mask, res_s.mask], axis=1)          # group-token order
        if cfg.switch("ref_unshuffle"):
            mask = mask_slots                                             # pred is in slot order
        else:
            mask = tf.gather(mask_slots, self.cell_slots, axis=1)         # canonical order
        if cfg.switch("ref_target_order"):
            target = tf.concat([tf.reshape(tf.gather(tgt, self.times_t, axis=1), [b, self.len_t, -1]),
                                tf.reshape(tf.gather(tgt, self.times_s, axis=1), [b, self.len_s, -1])], axis=1)
        else:
            canonical = tf.reshape(tgt, [b, total, self.patch_values])
            target = tf.gather(canonical, self.slot_cells, axis=1) if cfg.switch("ref_unshuffle") else canonical
        target_raw = target
        if cfg.norm_target or cfg.hacm_mode == "reference":
            target = patching.normalize_patches(target)
        loss_rec, per_token = losses.masked_mse(pred, target, mask)
        loss = loss_rec + cfg.cc_weight * loss_cc
        mask_grid = tf.reshape(tf.gather(mask_slots, self.cell_slots, axis=1), [b, tp, vp])
        out.update(loss=loss, mask_grid=mask_grid, loss_rec=loss_rec, loss_cc=loss_cc, cc_terms=cc_terms, mask=mask,
                   pred=pred, target=target, target_raw=target_raw, pooled=pooled,
                   visible=tf.cast(self.keep_t + self.keep_s, tf.float32), mask_t=res_t.mask, mask_s=res_s.mask,
                   ids_keep_t=res_t.ids_keep,
                   ids_keep_s=res_s.ids_keep, ids_restore_t=res_t.ids_restore, ids_restore_s=res_s.ids_restore,
                   gumbel_z_t=res_t.z, gumbel_z_s=res_s.z, latent=latent, dec_embed_out=y, motion=mot,
                   motion_h=mot_h, loss_per_token=per_token,
                   ids_restore=tf.concat([res_t.ids_restore, res_s.ids_restore + self.len_t], axis=1))
        return out

    def _distance(self, u, v):
        cfg = self.cfg
        if cfg.hyperbolic:
            return hyperbolic.distance(u, v, cfg.curvature, reference=cfg.switch("ref_distance"))
        return tf.norm(u - v, axis=-1)

    def call(self, x, training=False):
        """Encoder features of all tokens: [N, T, M, V, 3] -> [N * M, L, D]."""
        return self.encoder(fold_persons(tf.convert_to_tensor(x, tf.float32)), training=training)

    # ------------------------------------------------------------------ training

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _loss_and_grads(self, x, noise):
        """Losses and gradients of a batch, in ``micro_batches`` parts run one after the other (a
        while loop) whose gradients and scalar losses are averaged. Every part has the same number
        of clips and of masked tokens per clip, so the reconstruction term splits over parts. HA-CM's
        in-batch cross-contrast compares every clip with every clip of the batch: a first pass (part by
        part, no tape) computes the pooled group features of all clips, the contrast of the whole batch
        and its gradient G with respect to them; each part's backward pass then adds G . pooled, whose
        parameter gradient is that part's share of the contrast's. The result is the full batch's update
        for one more encoder forward pass (the encoder sees only the visible tokens)."""
        k = self.micro_batches
        if k == 1:
            return self._part_loss_and_grads(x, noise)
        n = tf.shape(x)[0]
        tf.debugging.assert_equal(n % k, 0, message=f"batch is not divisible by micro_batches={k}")
        xs = tf.reshape(x, tf.concat([[k, n // k], tf.shape(x)[1:]], axis=0))
        ns = [tf.reshape(z, [k, -1, z.shape[-1]]) for z in noise]     # rows n * M + m: clips stay whole
        check_micro_batching(self.cfg, k)
        cc_grads = None
        if contrast_spans_parts(self.cfg):
            cc, cc_grads = self._batch_contrast(xs, ns)

        def scalars(out):
            return [out["loss"], out["loss_rec"], out["loss_cc"], tf.reduce_mean(out["mask"])]

        variables = self.trainable_variables
        live = []   # which variables get gradients (the l1 / l2 projections get none), found when tracing

        def body(i, grads, stats):
            pooled_grads = None if cc_grads is None else cc_grads[i] * float(k)   # the loop divides by k
            out, g = self._part_loss_and_grads(xs[i], [z[i] for z in ns], pooled_grads)
            live[:] = [j for j, gj in enumerate(g) if gj is not None]
            return i + 1, [a if gj is None else a + gj for a, gj in zip(grads, g)], \
                [a + b for a, b in zip(stats, scalars(out))]

        # every part inside one loop, one iteration at a time (parallel_iterations=1: otherwise the next
        # part's forward pass, which needs only i, overlaps this part's backward pass and its memory)
        _, grads, stats = tf.while_loop(lambda i, *_: i < k, body,
                                        (tf.constant(0), [tf.zeros_like(v) for v in variables],
                                         [tf.zeros([], tf.float32)] * 4), parallel_iterations=1)
        full = [None] * len(variables)
        for j in live:
            full[j] = grads[j] / k
        loss, rec, loss_cc, mask = [v / k for v in stats]
        if cc_grads is not None:   # the whole batch's contrast, not the parts' mean
            loss_cc = cc
            loss = rec + self.cfg.cc_weight * cc
        return {"loss": loss, "loss_rec": rec, "loss_cc": loss_cc, "mask": mask}, full

    def _batch_contrast(self, xs, ns):
        """Cross-contrast of a batch given as parts xs [K, N/K, T, M, V, 3] and noise [K, B/K, L_g]:
        (loss, gradient with respect to each part's pooled features [K, 3, B/K, D])."""
        def features(args):
            return self._pool(self._hacm_encode(fold_persons(args[0]), list(args[1:]), True, {})[0])

        pooled = tf.map_fn(features, (xs, *ns), fn_output_signature=tf.float32, parallel_iterations=1)
        parts = tf.shape(pooled)                                           # [K, 3, B/K, D]
        whole = tf.reshape(tf.transpose(pooled, [1, 0, 2, 3]), [3, -1, pooled.shape[-1]])   # clips in batch order
        with tf.GradientTape() as tape:
            tape.watch(whole)
            cc, _ = self._contrast(whole)
        grads = tape.gradient(cc, whole)
        grads = tf.transpose(tf.reshape(grads, [3, parts[0], parts[2], pooled.shape[-1]]), [1, 0, 2, 3])
        return cc, grads

    def _part_loss_and_grads(self, x, noise, pooled_grads=None):
        """Loss dict and gradients of one part. With ``pooled_grads`` [3, B, D] (HA-CM micro-batching) the
        objective is loss_rec + cc_weight * sum(pooled_grads * pooled) instead of the part's own contrast."""
        n_rep = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = self.compute_losses(x, noise, training=True)
            objective = out["loss"]
            if pooled_grads is not None:
                objective = out["loss_rec"] + self.cfg.cc_weight * tf.reduce_sum(
                    tf.stop_gradient(pooled_grads) * out["pooled"])
            scaled = objective / tf.cast(n_rep, tf.float32)   # gradients are summed over replicas
        grads = tape.gradient(scaled, self.trainable_variables)
        return out, grads

    def _unpack(self, data):
        """data: x, (x, y) or (x, y, noise) with noise tensors [N, M, L_g] (explicit masking noise)."""
        if not isinstance(data, (tuple, list)):
            return data, None
        x = data[0]
        if len(data) < 3:
            return x, None
        return x, [tf.reshape(n, [-1, n.shape[-1]]) for n in data[2]]

    def train_step(self, data):
        x, noise = self._unpack(data)
        if noise is None:
            noise = self.sample_noise(tf.shape(x)[0] * tf.shape(x)[2])
        if self._xla_step is not None:
            out, grads = self._xla_step(x, noise)
        else:
            out, grads = self._loss_and_grads(x, noise)
        pairs = [(g, v) for g, v in zip(grads, self.trainable_variables) if g is not None]
        grad_norm = tf.linalg.global_norm([g for g, _ in pairs])
        finite = tf.math.is_finite(out["loss"]) & tf.math.is_finite(grad_norm)
        grads = [g for g, _ in pairs]
        if self.nonfinite_policy == "skip":   # zero gradients for a non-finite step (moments still decay)
            grads = [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
        else:
            tf.debugging.Assert(finite, ["non-finite loss or gradient", out["loss"], grad_norm])
        self.optimizer.apply(grads, [v for _, v in pairs])
        self._update_trackers(out, grad_norm)
        return {k: tf.reshape(m.result(), [1]) for k, m in self.trackers.items()}   # rank 1 for MWMS

    def test_step(self, data):
        x, noise = self._unpack(data)
        out = self.compute_losses(x, noise, training=False)
        self._update_trackers(out, tf.zeros([]))
        return {k: tf.reshape(m.result(), [1]) for k, m in self.trackers.items()}

    def _update_trackers(self, out, grad_norm):
        self.trackers["loss"].update_state(out["loss"])
        self.trackers["loss_rec"].update_state(out["loss_rec"])
        self.trackers["loss_cc"].update_state(out["loss_cc"])
        self.trackers["mask_ratio"].update_state(tf.reduce_mean(out["mask"]))
        self.trackers["grad_norm"].update_state(grad_norm)

    def enable_xla(self, enabled: bool = True):
        """Compiles loss + gradients with XLA inside train_step (works under MirroredStrategy)."""
        self._xla_step = tf.function(self._loss_and_grads, jit_compile=True) if enabled else None

    def get_config(self):
        return {"config": self.config, "seed": self.seed}
