"""Inference core: the pure prediction function from a padded batch to probabilities.

`predict(spec, params, batch)`: one jitted pure function from a padded batch (raw 44.1 kHz
waveforms, or precomputed log-mel features) to clip and segment probabilities, four scales
averaged. `wler_jax.predict.load_model(...).predict_fn` is this with the model bound; training's
evaluation and `wler_jax.export` run it too. `wler_jax.chunked` scores recordings of any length
in bounded memory with the same results (the tests hold them to ~1e-5).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from wler_jax import features as features_lib
from wler_jax import models, pooling as pooling_lib
from wler_jax.geometry import SEGMENT_FRAMES, SEGMENT_HOP


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What fixes the network's function (hashable: a static argument of the jitted functions).

    Attributes:
      method: "wler" (N_W on whole recordings) or "slat" (N_S on 128-frame windows).
      num_classes: C.
      width: channel width multiplier.
      pooling: N_W's global pooling (`wler_jax.pooling`); SLAT always takes the max.
      dtype: compute dtype name, "float32" or "bfloat16" (params stay float32).
      slat_hop: hop of SLAT's test windows in frames (32 = N_T's segment grid).
    """

    method: str
    num_classes: int
    width: float
    pooling: str = "max"
    dtype: str = "float32"
    dropout_rate: float = 0.5
    slat_hop: int = SEGMENT_HOP
    input_norm: bool = False

    @classmethod
    def from_config(cls, config, num_classes: int) -> "ModelSpec":
        """The spec of a training config (`configs/common.py` fields)."""
        return cls(method=config.method, num_classes=int(num_classes),
                   width=float(config.model.width), pooling=config.model.pooling,
                   dtype=config.model.dtype, dropout_rate=float(config.model.dropout_rate),
                   slat_hop=int(config.input.slat_eval_hop),
                   input_norm=config.model.get("input_norm", "none") == "per_band")

    def module(self) -> nn.Module:
        """N_W (WLER) or N_S (SLAT), as `train.create_model` builds it."""
        dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[self.dtype]
        if self.method == "wler":
            return models.WLER(self.num_classes, width=self.width, pooling=self.pooling,
                               dropout_rate=self.dropout_rate, dtype=dtype,
                               input_norm=self.input_norm)
        if self.method == "slat":
            return models.SegmentNet(self.num_classes, width=self.width,
                                     dropout_rate=self.dropout_rate, dtype=dtype,
                                     input_norm=self.input_norm)
        raise ValueError(f"unknown method {self.method!r}: 'wler' or 'slat'")


def slat_windows(features: jax.Array, num_frames: jax.Array, hop: int):
    """SLAT's test windows, exactly as the training eval step cuts them (`steps.windows`)."""
    from wler_jax import steps  # deferred: steps pulls in the input pipeline (grain)

    return steps.windows(features, num_frames, hop)


def scale_logits(spec: ModelSpec, params: Any, features: jax.Array, num_frames: jax.Array
                 ) -> tuple[jax.Array, jax.Array, Optional[jax.Array]]:
    """One scale through the network, as in training's eval step.

    Args:
      spec: the model.
      params: its parameters.
      features: [B, T, 128] log-mel dB.
      num_frames: [B] valid frames.
    Returns:
      segment_logits [B, S, C] (float32), segment_mask [B, S] (bool) and, for attention
      pooling, the attention logits [B, S, C] (else None). S = max(T, 128) // 32 - 3.
    """
    module = spec.module()
    if spec.method == "wler":
        if spec.pooling == "attention":
            (_, aux), state = module.apply(
                {"params": params}, features, num_frames, mutable=["intermediates"],
                capture_intermediates=lambda mdl, method: mdl.name == "attention")
            att = state["intermediates"]["attention"]["__call__"][0][:, :, 0, :]
            return aux["segment_logits"], aux["segment_mask"], att.astype(jnp.float32)
        _, aux = module.apply({"params": params}, features, num_frames)
        return aux["segment_logits"], aux["segment_mask"], None
    wins, mask = slat_windows(features, num_frames, spec.slat_hop)
    n, w = mask.shape
    logits = module.apply({"params": params}, wins.reshape(n * w, SEGMENT_FRAMES, -1))
    return logits.reshape(n, w, -1).astype(jnp.float32), mask, None


def finalize(spec: ModelSpec, params: Any, segment_logits: jax.Array, mask: jax.Array,
             attention_logits: Optional[jax.Array] = None) -> dict[str, jax.Array]:
    """Per-scale segment logits -> probabilities averaged over the scales (paper §II-C).

    Args:
      segment_logits: [K, B, S, C] logits of K scales.
      mask: [B, S] valid segments.
      attention_logits: [K, B, S, C] for attention pooling, else None.
    Returns:
      {"clip": [B, C], "segments": [B, S, C] (0 where the mask is False), "segment_mask": [B, S]}.
    """
    pool_fn = pooling_lib.get(spec.pooling if spec.method == "wler" else "max")
    alpha = params.get("alpha") if spec.pooling == "auto_pool" else None
    clips = [jax.nn.sigmoid(pool_fn(segment_logits[k], mask, alpha=alpha, attention_logits=(
        None if attention_logits is None else attention_logits[k])))
        for k in range(segment_logits.shape[0])]
    segments = jax.nn.sigmoid(segment_logits).mean(0)
    return {"clip": sum(clips) / len(clips),
            "segments": jnp.where(mask[..., None], segments, 0.0), "segment_mask": mask}


@functools.partial(jax.jit, static_argnums=0)
def predict(spec: ModelSpec, params: Any, batch: dict) -> dict[str, jax.Array]:
    """Clip and segment probabilities of a batch (the body of `predict_fn`).

    Args:
      spec: the model (static).
      params: its parameters.
      batch: either {"audio": [B, L] float32 (in [-1, 1]) or int16 44.1 kHz mono, zero-padded,
        "num_samples": [B] valid samples} (features computed here, all four scales), or
        {"features": [K, B, T, 128] log-mel dB of K scales in `N_FFTS` order, or [B, T, 128]
        for one scale, "num_frames": [B] valid frames}. Without the batch axis ([L] and a
        scalar length, or [K, T, 128] / [T, 128]) one recording is scored and the outputs have
        no batch axis either, which is what `jax.vmap` over recordings gives.
    Returns:
      {"clip": [B, C] probabilities, "segments": [B, S, C] probabilities (0 on invalid
       segments), "segment_mask": [B, S] bool}, S = max(T, 128) // 32 - 3.
    """
    if "audio" in batch:
        lengths = jnp.asarray(batch["num_samples"])
        single = lengths.ndim == 0
        audio = batch["audio"][None] if single else batch["audio"]
        feats, num_frames = features_lib.multi_scale_log_mel(audio, lengths.reshape(-1))
    elif "features" in batch:
        num_frames = jnp.asarray(batch["num_frames"])
        single = num_frames.ndim == 0
        feats = jnp.asarray(batch["features"], jnp.float32)
        if feats.ndim == 3 - single:  # one scale
            feats = feats[None]
        feats = feats[:, None] if single else feats
        num_frames = num_frames.reshape(-1)
    else:
        raise ValueError(f"batch needs 'audio' + 'num_samples' or 'features' + 'num_frames'; "
                         f"got keys {sorted(batch)}")
    outs = [scale_logits(spec, params, feats[k], num_frames) for k in range(feats.shape[0])]
    att = None if outs[0][2] is None else jnp.stack([o[2] for o in outs])
    result = finalize(spec, params, jnp.stack([o[0] for o in outs]), outs[0][1], att)
    return jax.tree.map(lambda x: x[0], result) if single else result
