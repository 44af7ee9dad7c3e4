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

from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from hacm_tf.config import ModelConfig
from hacm_tf.layers.embedding import PositionEmbedding
from hacm_tf.layers.random import replica_seed
from hacm_tf.layers.transformer import LN_EPS, LayerNorm, TransformerBlock, dense, track_layers
from hacm_tf.models.encoder import SkeletonEncoder, fold_persons
from hacm_tf.ops import hacm, hyperbolic, losses, masking, patching, reference
from hacm_tf.skeleton import get_layout
from hacm_tf.training.engine import PretrainEngine


def _time_major(grid: tf.Tensor) -> tf.Tensor:
    """[B, T_g, V', ...] -> [B, T_g V', ...] (token t' * V' + v)."""
    s = grid.shape
    return tf.reshape(grid, [-1, s[1] * s[2], *s[3:]])

@keras.saving.register_keras_serializable("hacm_tf")
class MaskedPretrainer(keras.Model):
    """Encoder + masking + decoder for HA-CM (``method="hacm"``), MAMP and MAE.

    Input batches: ``[N, T, M, V, 3]`` skeletons, or ``(skeletons, labels)`` (labels are ignored),
    or ``(skeletons, labels, noise)`` with explicit masking noise shaped ``[N, M, L_g]`` per call.
    ``config``: a ModelConfig dict; ``remat`` / ``precision`` / ``fused``: ComputeConfig's, for the transformer
    blocks and LayerNorms;
    how a training step is computed is the engine's, given at ``compile``.
    """

    def __init__(self, config: dict, seed: Optional[int] = None, remat: str = "none", precision: str = "float32",
                 fused: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        cfg = ModelConfig.from_dict(self.config)
        self.cfg = cfg
        self.seed, self.remat, self.precision, self.fused = seed, remat, precision, bool(fused)
        self.encoder = SkeletonEncoder(self.config, remat, precision, fused, name="encoder")
        self.layout = get_layout(cfg.layout)
        self.num_token_joints = len(self.encoder.joints)
        self.num_tokens = cfg.num_patches * self.num_token_joints
        self.patch_values = cfg.t_patch * 3
        self.decoder_embed = dense(cfg.decoder_dim, "decoder_embed")
        self.decoder_blocks = [TransformerBlock(cfg.decoder_dim, cfg.decoder_heads, cfg.mlp_ratio, True, 0.0,
                                                remat, precision, fused, name=f"decoder_blocks_{i}")
                               for i in range(cfg.decoder_depth)]
        track_layers(self, "decoder_block", self.decoder_blocks)
        self.decoder_norm = LayerNorm(LN_EPS, fused, name="decoder_norm")
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
        self.engine = PretrainEngine()

    # ------------------------------------------------------------------ construction

    def _setup_groups(self):
        cfg = self.cfg
        self.groups = hacm.token_groups(cfg.num_patches, self.num_token_joints, cfg.switch("ref_token_order"))
        self.times_t, self.times_s = list(self.groups.times_t), list(self.groups.times_s)
        self.len_t, self.len_s = self.groups.len_t, self.groups.len_s
        self.slot_cells = tf.constant(self.groups.slot_cells, tf.int32)   # group-token order -> canonical cell
        self.cell_slots = tf.constant(self.groups.cell_slots, tf.int32)   # canonical cell -> slot
        if cfg.switch("ref_keep_fraction"):
            self.keep_t, self.keep_s = reference.keep_count(self.len_t), reference.keep_count(self.len_s)
        else:
            self.keep_t = masking.keep_count(self.len_t, cfg.mask_ratio)
            self.keep_s = masking.keep_count(self.len_s, cfg.mask_ratio)
        self.tau = reference.TAU if cfg.switch("ref_tau") else cfg.tau

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
        h = self.decoder_pos_embed(tokens, training=training)
        s = tf.shape(h)
        h = tf.reshape(h, [s[0], s[1] * s[2], s[3]])
        out["dec_input"] = h
        for i, block in enumerate(self.decoder_blocks):
            h = block(h, training=training)
            out[f"dec_block{i}_out"] = h
        h = self.decoder_norm(h, training=training)
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
        mc = self.encoder.position(self.encoder.embed(x), training=training)   # [B, T', V, D]
        tokens = tf.reshape(mc, [b, self.num_tokens, cfg.dim])            # time-major
        keep = masking.keep_count(self.num_tokens, cfg.mask_ratio)
        if cfg.method == "mamp":
            scores = masking.motion_scores(patching.patchify(x, cfg.t_patch))
            res = masking.gumbel_topk(scores, noise, keep, cfg.tau, keep_high=False)
        else:
            res = masking.random_masking(noise, keep)
        visible = masking.gather_tokens(tokens, res.ids_keep, res.ids_restore)
        latent = self.encoder.encode(visible, training=training)
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
        joint_major = cfg.switch("ref_token_order")
        flatten = reference.joint_major if joint_major else _time_major
        e = self.encoder.embed(x)                                         # [B, T', V', D]
        mc = self.encoder.position(e, training=training)                  # [B, T', V', D]
        h = self.encoder.to_manifold(mc, training)                        # [B, T', V', D]
        h_t, h_s = hacm.even_odd_patches(h)                               # at times_t, times_s
        tokens_t = flatten(h_t)                                           # [B, L_t, D]
        tokens_s = _time_major(h_s)                                       # [B, L_s, D] (also in the reference)
        score_t = flatten(self._temporal_scores(mc, out))                 # [B, L_t]
        score_s = flatten(self._spatial_scores(x, h_s, out, training))    # [B, L_s]
        res_t, res_s = hacm.mask_groups(score_t, score_s, noise[0], noise[1], self.keep_t, self.keep_s, self.tau,
                                        cfg.keep_high_scores)
        vis_t = masking.gather_tokens(tokens_t, res_t.ids_keep, res_t.ids_restore)
        vis_s = masking.gather_tokens(tokens_s, res_s.ids_keep, res_s.ids_restore)
        latent = self.encoder.encode(tf.concat([vis_t, vis_s], axis=1), training=training)
        out.update(embed_raw=e, mc=mc, h=h, tokens_t=tokens_t, tokens_s=tokens_s, score_raw_t=score_t,
                   score_raw_s=score_s)
        return latent, res_t, res_s

    def _temporal_scores(self, mc, out):
        """Temporal criterion on the Euclidean embeddings [B, T', V', D] of the even patches -> [B, T_t, V']."""
        if not self.cfg.temporal_criterion:
            return tf.zeros([tf.shape(mc)[0], len(self.times_t), self.num_token_joints])
        mc_t = tf.stop_gradient(tf.gather(mc, self.times_t, axis=1))    # [B, T_t, V', D]
        q, k = self.l1(mc_t), self.l2(mc_t)
        attend = reference.temporal_attention if self.cfg.switch("ref_attention") else hacm.temporal_attention
        attention = attend(q, k)
        out.update(q_l1=q, k_l2=k, crit_t_matrix=attention)
        return hacm.temporal_scores(attention)

    def _spatial_scores(self, x, h_s, out, training=False):
        """Spatial criterion: joints [B, T_s, V', D] of the odd patches on the manifold -> [B, T_s, V']."""
        if not self.cfg.spatial_criterion:
            return tf.zeros([tf.shape(x)[0], len(self.times_s), self.num_token_joints])
        hubs = self.encoder.to_manifold(self.encoder.embed(x, self.layout.hub_joints), training)
        father = tf.reduce_mean(tf.stop_gradient(tf.gather(hubs, self.times_s, axis=1)), axis=2,
                                keepdims=True)                              # [B, T_s, 1, D]
        out.update(father=father)
        return hacm.spatial_scores(tf.stop_gradient(h_s), father, self.cfg.father_weight, self._distance,
                                   self._pairwise_distance)

    def contrast_features(self, x, noise, training=True):
        """Pooled group features [3, B, D] of the cross-contrast: x [N, T, M, V, 3], noise as compute_losses."""
        return self._pool(self._hacm_encode(fold_persons(x), noise, training, {})[0])

    def _pool(self, latent):
        """HA-CM latent [B, k_t + k_s, D] -> pooled group features [3, B, D] for the cross-contrast."""
        return losses.pool_groups(latent[:, :self.keep_t], latent[:, self.keep_t:],
                                  normalize=not self.cfg.switch("ref_cross_contrast"))

    def contrast(self, pooled):
        """Cross-contrast of pooled features [3, B, D] -> (loss, terms [3])."""
        ref = self.cfg.switch("ref_cross_contrast")
        return losses.pooled_contrast(pooled, reference.CONTRAST_TEMPERATURE if ref else self.cfg.cc_temperature)

    def _hacm(self, x, noise, training):
        cfg = self.cfg
        out = {}
        b = tf.shape(x)[0]
        tp, vp = cfg.num_patches, self.num_token_joints
        latent, res_t, res_s = self._hacm_encode(x, noise, training, out)
        pooled = self._pool(latent)
        loss_cc, cc_terms = self.contrast(pooled)

        # decoder input: visible tokens back in their slots, mask tokens elsewhere
        y = self.decoder_embed(latent)                                    # [B, k_t + k_s, Dd]
        relabelled = cfg.switch("ref_unshuffle")
        if relabelled:
            grid = self._grid(reference.restore_relabelled(y, self.mask_token, res_t, res_s))
        else:
            grid = self._grid(hacm.restore_groups(y, self.mask_token, res_t, res_s, self.keep_t, self.cell_slots))
        pred = self._decode(grid, training, out)                          # [B, L, P] in grid order

        # target: motion of the token joints through the exponential map, patchified
        mot = patching.motion(self.encoder.select_joints(x), cfg.motion_stride)
        mot_h = self.encoder.to_manifold(mot, training)
        tgt = patching.patchify(mot_h, cfg.t_patch)                       # [B, T', V', P]
        mask_slots = tf.concat([res_t.mask, res_s.mask], axis=1)          # group-token order
        canonical_mask = tf.gather(mask_slots, self.cell_slots, axis=1)
        mask = mask_slots if relabelled else canonical_mask               # the order of pred
        if cfg.switch("ref_target_order"):
            target = reference.target_by_group(tgt, self.times_t, self.times_s)
        else:
            target = _time_major(tgt)
            if relabelled:
                target = tf.gather(target, self.slot_cells, axis=1)
        target_raw = target
        if cfg.norm_target or cfg.hacm_mode == "reference":
            target = patching.normalize_patches(target)
        loss_rec, per_token = losses.masked_mse(pred, target, mask)
        out.update(loss=loss_rec + cfg.cc_weight * loss_cc, loss_rec=loss_rec, loss_cc=loss_cc, cc_terms=cc_terms,
                   mask=mask, mask_grid=tf.reshape(canonical_mask, [b, tp, vp]), pred=pred, target=target,
                   target_raw=target_raw, pooled=pooled, visible=tf.cast(self.keep_t + self.keep_s, tf.float32),
                   mask_t=res_t.mask, mask_s=res_s.mask, ids_keep_t=res_t.ids_keep, ids_keep_s=res_s.ids_keep,
                   ids_restore_t=res_t.ids_restore, ids_restore_s=res_s.ids_restore, gumbel_z_t=res_t.z,
                   gumbel_z_s=res_s.z, latent=latent, dec_embed_out=y, motion=mot, motion_h=mot_h,
                   loss_per_token=per_token,
                   ids_restore=tf.concat([res_t.ids_restore, res_s.ids_restore + self.len_t], axis=1))
        return out

    def _distance(self, u, v):
        cfg = self.cfg
        if not cfg.hyperbolic:
            return tf.norm(u - v, axis=-1)
        if cfg.switch("ref_distance"):
            return reference.distance(u, v, cfg.curvature)
        return hyperbolic.distance(u, v, cfg.curvature)

    def _pairwise_distance(self, points):
        """_distance between every two of the V' points of each set: [..., V', D] -> [..., V', V']."""
        cfg = self.cfg
        if not cfg.hyperbolic:
            return hyperbolic.euclidean_pairwise(points)
        return hyperbolic.pairwise_distance(points, cfg.curvature, reference=cfg.switch("ref_distance"))

    def call(self, x, training=False):
        """Encoder features of all tokens: [N, T, M, V, 3] -> [N * M, L, D]."""
        return self.encoder(fold_persons(tf.convert_to_tensor(x, tf.float32)), training=training)

    # ------------------------------------------------------------------ training

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _unpack(self, data):
        """data: x, (x, y) or (x, y, noise) with noise tensors [N, M, L_g] (explicit masking noise)."""
        if not isinstance(data, (tuple, list)):
            return data, None
        x = data[0]
        if len(data) < 3:
            return x, None
        return x, [tf.reshape(n, [-1, n.shape[-1]]) for n in data[2]]

    def compile(self, optimizer="adam", engine: Optional[PretrainEngine] = None, **kwargs):
        """Keras compile plus the ``engine`` that computes the training step (PretrainEngine() by default:
        one part, no XLA, stop on a non-finite loss)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.engine = engine or PretrainEngine()

    def train_step(self, data):
        x, noise = self._unpack(data)
        if noise is None:
            noise = self.sample_noise(tf.shape(x)[0] * tf.shape(x)[2])
        out, grad_norm = self.engine.train_step(self, x, noise)
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

    def get_config(self):
        return {"config": self.config, "seed": self.seed, "remat": self.remat, "precision": self.precision,
                "fused": self.fused}
