"""Statistics of the training split for the per-mel-band input normalisation (`model.input_norm`).

The network would otherwise see raw dB (about -100 ... +40): large, shifted inputs that, with
Glorot init, push most conv units to one side of the ReLU at the first steps and leave channels
dead (docs/experiments.md, "What the history found"). The statistics are taken once over every
valid frame of every training recording at all four scales (padding excluded), and stored with
the params (`networks.InputNorm`), so prediction applies exactly what training used.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import features as features_lib
from wler_jax.audio import to_int16
from wler_jax.geometry import N_MELS

# Shift before squaring: dB values are far from 0, so E[x^2] - E[x]^2 would cancel.
_SHIFT_DB = -50.0
MIN_STD_DB = 1.0  # a band that never varies is left unscaled rather than blown up


@jax.jit
def _band_sums(audio: jax.Array, num_samples: jax.Array, weight: jax.Array):
    feats, num_frames = features_lib.multi_scale_log_mel(audio, num_samples)  # [K, B, T, 128]
    valid = (jnp.arange(feats.shape[2])[None, :] < num_frames[:, None]) & (weight[:, None] > 0)
    w = valid[None, :, :, None].astype(jnp.float32)
    x = (feats - _SHIFT_DB) * w
    count = jnp.full((feats.shape[-1],), w.sum() * feats.shape[0])  # frames x scales per band
    return count, x.sum((0, 1, 2)), (x * x).sum((0, 1, 2))


def band_statistics(source, *, chunk_samples: int = 2 ** 17, batch_size: int = 16
                    ) -> dict[str, np.ndarray]:
    """Mean and std per mel band over every frame of every recording of `source`, all scales.

    Recordings are cut into chunks of `chunk_samples` (one compiled shape whatever the
    lengths); frames past a chunk's end are masked out. A chunk's first and last few frames see
    zero padding (as a recording's do), a bias of ~2 % of frames that is irrelevant for a
    standardisation.

    Args:
      source: a split's records ({"audio": int16 [n], ...}), e.g. the training data source.
    Returns:
      {"mean": [128] float32 dB, "std": [128] float32 dB (at least MIN_STD_DB), "frames": int
       (frames x scales counted), "recordings": int}.
    """
    n = s1 = s2 = np.zeros(N_MELS, np.float64)
    audio = np.zeros((batch_size, chunk_samples), np.int16)
    lengths = np.zeros(batch_size, np.int32)
    rows = 0

    def flush(rows):
        nonlocal n, s1, s2
        weight = (np.arange(batch_size) < rows).astype(np.float32)
        c, a, b = jax.device_get(_band_sums(audio, lengths, weight))
        n, s1, s2 = n + c, s1 + a, s2 + b

    for i in range(len(source)):
        wave = np.asarray(source[i]["audio"]).reshape(-1)
        if wave.dtype != np.int16:  # float sources (tests, user sequences): store as the pipeline does
            wave = to_int16(wave)
        for start in range(0, len(wave), chunk_samples):
            piece = wave[start:start + chunk_samples]
            audio[rows] = 0
            audio[rows, :len(piece)] = piece
            lengths[rows] = len(piece)
            rows += 1
            if rows == batch_size:
                flush(rows)
                rows = 0
    if rows:
        flush(rows)
    if n[0] == 0:
        raise ValueError("no frames to take input statistics from (empty training split?)")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean ** 2, 0.0))
    return {"mean": (mean + _SHIFT_DB).astype(np.float32),
            "std": np.maximum(std, MIN_STD_DB).astype(np.float32), "frames": int(n[0]),
            "recordings": len(source)}


PRIOR_CLIP = 1e-3  # a class absent from (or in every recording of) the training split


def prior_logits(labels: np.ndarray) -> np.ndarray:
    """logit(p_c) of each class's frequency p_c in a [N, C] multi-hot label matrix.

    The output bias that makes an untrained network predict the label prior
    (`model.head_bias_init=prior`). p_c is clipped to [PRIOR_CLIP, 1 - PRIOR_CLIP] so a class
    missing from the split gets a finite bias (-6.9).
    """
    p = np.clip(np.asarray(labels, np.float64).mean(axis=0), PRIOR_CLIP, 1.0 - PRIOR_CLIP)
    return np.log(p / (1.0 - p)).astype(np.float32)
