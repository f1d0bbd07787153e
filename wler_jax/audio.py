"""Audio decoding: any libsndfile format -> mono float32 at 44.1 kHz, or a clear AudioError.

This is the only place that reads audio files; datasets and prediction call `load`.
"""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from wler_jax.geometry import SAMPLE_RATE


class AudioError(ValueError):
    """A file cannot be used as audio; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling with soxr (librosa's default 'soxr_hq')."""
    if orig_sr == target_sr:
        return waveform
    import librosa  # deferred: importing librosa costs ~1 s

    return librosa.resample(waveform, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")


def to_mono_44k(data: np.ndarray, sr: int, path="<array>") -> np.ndarray:
    """Down-mix [n] or [n, channels] samples, resample to 44.1 kHz and validate.

    Raises:
      AudioError: no samples, or non-finite values.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    elif data.ndim != 1:
        raise AudioError(path, f"expected [samples] or [samples, channels], got shape {data.shape}")
    if data.size == 0:
        raise AudioError(path, "contains zero samples")
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise AudioError(path, f"contains {bad} non-finite (NaN/inf) samples")
    return np.ascontiguousarray(resample(data, int(sr)), dtype=np.float32)


def load(path: str | os.PathLike) -> np.ndarray:
    """Decode an audio file to a mono float32 waveform at 44,100 Hz.

    Args:
      path: any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...), any channel count
        and sample rate.
    Returns:
      float32 array [num_samples], channels averaged, resampled to 44.1 kHz.
    Raises:
      AudioError (a ValueError) naming the file: missing, empty, unreadable/corrupt,
      zero samples, or non-finite samples.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(path, f"cannot be decoded as audio ({e})") from e
    return to_mono_44k(data, sr, path)


INT16_SCALE = 32767.0  # datasets store waveforms as int16 = round(clip(x, -1, 1) * INT16_SCALE)


def to_int16(waveform: np.ndarray) -> np.ndarray:
    """Quantise a float waveform for storage (half the bytes of float32; clips outside [-1, 1])."""
    return np.round(np.clip(waveform, -1.0, 1.0) * INT16_SCALE).astype(np.int16)


def from_int16(waveform):
    """Inverse of `to_int16` (works on numpy and jax arrays, so it can run on the device)."""
    return waveform.astype(np.float32) * np.float32(1.0 / INT16_SCALE)
