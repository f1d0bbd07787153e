"""Signal and segment geometry of the fully convolutional network (docs/design.md §1-3).

Five 2x poolings shrink time by 32 and FCv1 (4x4 VALID) removes 3 more, so a recording of
T >= 128 frames has S = T // 32 - 3 segments; segment k covers frames [32k, 32k + 128).
SLAT's windows (`window_mask`) are fixed 128-frame windows on a hop. The stored waveform format
(int16 at 44.1 kHz, `from_int16`) is fixed here too. Every other module (masks, pipeline, models,
prediction) derives its numbers from here; this module needs only numpy.
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
INT16_SCALE = 32767.0  # datasets store waveforms as int16 = round(clip(x, -1, 1) * INT16_SCALE)


def from_int16(waveform):
    """int16 samples -> float32 in [-1, 1] (numpy or jax arrays, so it can run on the device).

    The one int16 -> float conversion of the project (features, chunked scoring, export)."""
    return waveform.astype(np.float32) * np.float32(1.0 / INT16_SCALE)


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


def window_mask(num_frames, padded_length: int, *, window: int = SEGMENT_FRAMES,
                hop: int = SEGMENT_FRAMES, xp=np):
    """Validity of the fixed-length windows (SLAT) cut from a batch padded to `padded_length`.

    Window s covers frames [s * hop, s * hop + window) and is valid iff
    s * hop + window <= max(num_frames, 128): a recording shorter than 128 frames (padded to
    128 by the floor value) has exactly one window. Rows with num_frames == 0 are the
    pipeline's padding rows and have no valid window. With window=128, hop=32 this is
    `segment_mask` on real rows.

    Args:
      num_frames: [B] valid frames per example (numpy or jax int array).
      padded_length: the batch's common time length in frames (static int).
      window: window length in frames.
      hop: frames between window starts.
      xp: `numpy` on the host or `jax.numpy` inside jitted code.
    Returns:
      bool [B, W] with W = (max(padded_length, 128) - window) // hop + 1.
    """
    length = padded_frames(padded_length)
    num_windows = (length - window) // hop + 1
    if window < 1 or hop < 1 or num_windows < 1:
        raise ValueError(f"no {window}-frame window (hop {hop}) fits in {length} frames")
    nf = xp.asarray(num_frames).reshape(-1)
    effective = xp.maximum(nf, SEGMENT_FRAMES)
    ends = xp.arange(num_windows) * hop + window
    return (ends[None, :] <= effective[:, None]) & (nf > 0)[:, None]
