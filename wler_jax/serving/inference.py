"""Inference core: the pure prediction function from a padded batch to probabilities.

`predict(spec, params, batch)`: one jitted pure function from a padded batch (raw 44.1 kHz
waveforms, or precomputed log-mel features) to clip and segment probabilities, four scales
averaged. `wler_jax.predict.load_model(...).predict_fn` is this with the model bound; training's
evaluation and `wler_jax.export` run it too. `wler_jax.serving.chunked` scores recordings of any length
in bounded memory with the same results (the tests hold them to ~1e-5).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from wler_jax import features as features_lib
from wler_jax.model.spec import ModelSpec


def finalize(spec: ModelSpec, params: Any, segment_logits: jax.Array, mask: jax.Array,
             extras: Optional[dict[str, jax.Array]] = None) -> dict[str, jax.Array]:
    """Per-scale segment logits -> probabilities averaged over the scales (paper §II-C).

    Args:
      segment_logits: [K, B, S, C] logits of K scales.
      mask: [B, S] valid segments.
      extras: the pooling's per-segment inputs of each scale ({name: [K, B, S, C]}, see
        `ModelSpec.segment_logits`), or None / {}.
    Returns:
      {"clip": [B, C], "segments": [B, S, C] (0 where the mask is False), "segment_mask": [B, S]}.
    """
    extras = extras or {}
    clips = [jax.nn.sigmoid(spec.clip_logits(params, segment_logits[k], mask,
                                             {n: e[k] for n, e in extras.items()}))
             for k in range(segment_logits.shape[0])]
    segments = jax.nn.sigmoid(segment_logits).mean(0)
    return {"clip": sum(clips) / len(clips),
            "segments": jnp.where(mask[..., None], segments, 0.0), "segment_mask": mask}


def each_scale(fn: Callable[[jax.Array, jax.Array], Any], features: jax.Array,
               num_frames: jax.Array) -> Any:
    """`fn(features[k], num_frames)` for each of the K scales of `features` [K, B, T, 128], every
    output leaf stacked on a new leading K axis: the one loop over scales of prediction, chunked
    scoring and embeddings (paper §II-C: a recording's score averages its four scales)."""
    outs = [fn(features[k], num_frames) for k in range(features.shape[0])]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


def scale_logits(spec: ModelSpec, params: Any, features: jax.Array, num_frames: jax.Array
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Every scale through the network: ([K, B, S, C] segment logits, mask [B, S], extras
    {name: [K, B, S, C]}) (`ModelSpec.segment_logits` per scale)."""
    logits, mask, extras = each_scale(functools.partial(spec.segment_logits, params), features,
                                      num_frames)
    return logits, mask[0], extras


def batch_features(batch: dict) -> tuple[jax.Array, jax.Array, bool]:
    """The log-mel scales of a `predict` batch (either format; see `predict`).

    Returns (features [K, B, T, 128], num_frames [B], single): `single` when the batch had no
    batch axis (B = 1 here; the caller drops the axis again). Shared by `predict` and
    `wler_jax.serving.embeddings.embed`, so both take exactly the same batches.
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
    return feats, num_frames, single


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
    feats, num_frames, single = batch_features(batch)
    result = finalize(spec, params, *scale_logits(spec, params, feats, num_frames))
    return jax.tree.map(lambda x: x[0], result) if single else result
