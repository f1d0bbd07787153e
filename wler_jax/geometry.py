"""Segment geometry of the fully convolutional network (DESIGN §2-3).

Five 2x poolings shrink time by 32 and FCv1 (4x4 VALID) removes 3 more, so a recording of
T >= 128 frames has S = T // 32 - 3 segments; segment k covers frames [32k, 32k + 128).
Every other module (masks, pipeline, prediction) derives its numbers from here.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 44_100
HOP_LENGTH = 512
N_MELS = 128
N_FFTS = (1024, 512, 2048, 4096)  # the paper's order of the four scales
SEGMENT_FRAMES = 128  # receptive window of one segment (~1.49 s)
SEGMENT_HOP = 32  # frames between consecutive segments (~0.37 s)
TIME_REDUCTION = 32  # five 2x max-pools


def num_frames_for_samples(num_samples):
    """Frames of a centred STFT with hop 512: T = 1 + n // 512 (int, numpy or jax array)."""
    return 1 + num_samples // HOP_LENGTH


def max_samples_for_frames(num_frames: int) -> int:
    """The longest waveform with `num_frames` frames: F * 512 - 1 samples.

    Batches of an F-frame bucket are padded to this many samples, so every recording with up to
    F frames fits whole (its last frames need its last samples) and `log_mel` gives F frames.
    """
    return int(num_frames) * HOP_LENGTH - 1


def static_length(n):
    """A static length as a Python int; `jax.export`'s symbolic dimensions (which refuse int())
    pass through unchanged, so shape arithmetic here also serves exported models."""
    try:
        return int(n)
    except Exception:  # jax's InconclusiveDimensionOperation: a symbolic dimension
        return n


def padded_frames(num_frames: int) -> int:
    """Frames actually fed to the network: recordings under 128 frames are padded to 128."""
    return max(static_length(num_frames), SEGMENT_FRAMES)


def num_segments(num_frames: int) -> int:
    """S = max(T, 128) // 32 - 3: the number of valid segments of a recording."""
    return padded_frames(num_frames) // TIME_REDUCTION - 3


def segment_mask(num_frames, padded_length: int, xp=np):
    """Validity of each segment of a batch padded to `padded_length` frames.

    Segment k is valid iff 32k + 128 <= max(num_frames, 128).

    Args:
      num_frames: [B] valid frames per example (any int array-like).
      padded_length: the common time length of the batch (>= 128).
      xp: array module, `numpy` on the host or `jax.numpy` inside jitted code.
    Returns:
      bool array [B, num_segments(padded_length)].
    """
    nf = xp.maximum(xp.asarray(num_frames).reshape(-1), SEGMENT_FRAMES)
    k = xp.arange(num_segments(padded_length))
    return (k[None, :] * SEGMENT_HOP + SEGMENT_FRAMES) <= nf[:, None]


def segment_times(num_segs: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of each segment on the 32-frame grid."""
    frame_s = HOP_LENGTH / SAMPLE_RATE
    start = np.arange(num_segs) * SEGMENT_HOP * frame_s
    return start, start + SEGMENT_FRAMES * frame_s
