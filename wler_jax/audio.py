"""Audio decoding: any libsndfile format -> mono float32 at 44.1 kHz, or a clear AudioError.

This is the only place that reads audio files; datasets and prediction call `load`.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator

import numpy as np
import soundfile as sf
from absl import logging

from wler_jax.geometry import INT16_SCALE, SAMPLE_RATE, from_int16  # noqa: F401 (inverse of to_int16)

# Extensions treated as audio when a folder is listed (the folder dataset, the predict CLI):
# libsndfile's formats plus mp3/opus, and common containers it cannot decode (m4a, mp4, wma,
# webm), so that those are reported as failed files rather than silently ignored.
AUDIO_EXTENSIONS = frozenset(
    "." + e for e in ("wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc",
                      "au", "snd", "caf", "w64", "rf64", "voc", "sph", "nist", "sd2", "htk",
                      "xi", "paf", "pvf", "mat", "sf", "avr", "svx", "m4a", "mp4", "wma", "webm"))


def is_audio_file(name: str) -> bool:
    """Whether a file name found by listing a folder is taken as audio (not hidden, known
    extension, case-insensitive)."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in AUDIO_EXTENSIONS


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


_DECODE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError)
READ_BLOCK_FRAMES = 1 << 18  # frames decoded per read by `stream` (~6 s at 44.1 kHz)


def _check_file(path: str | os.PathLike) -> str:
    """The path as a string, or AudioError if it is missing, a broken symbolic link or a
    loop of them, a directory, 0 bytes or not readable by this process."""
    path = os.fspath(path)
    if not os.path.exists(path):
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise AudioError(path, "is a loop of symbolic links") from None
            raise AudioError(path, f"is a symbolic link to {os.readlink(path)}, which does "
                                   "not exist")
        raise AudioError(path, "file does not exist")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory")
    if os.path.getsize(path) == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(path, f"cannot be read ({e.strerror or e})") from None
    return path


def check_length(path: str | os.PathLike, max_seconds: float) -> None:
    """AudioError when the file's header declares more than `max_seconds` of audio (read from
    the header: nothing is decoded)."""
    path = _check_file(path)
    try:
        info = sf.info(path)
    except _DECODE_ERRORS as e:
        raise AudioError(path, f"cannot be decoded as audio ({e})") from e
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > max_seconds:
        raise AudioError(path, f"is {_hms(seconds)} long, over the {_hms(max_seconds)} a "
                               "training recording may have; cut it into parts (predict and "
                               "embed score any length)")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def load(path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> np.ndarray:
    """Decode an audio file to a mono float32 waveform at 44,100 Hz.

    Args:
      path: any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...), any channel count
        and sample rate.
      warn: called with a message about a file that is used but odd (a header whose sizes
        do not match the file, as in a cut download); default: a logged warning.
    Returns:
      float32 array [num_samples], channels averaged, resampled to 44.1 kHz.
    Raises:
      AudioError (a ValueError) naming the file: missing, a broken link, a directory, empty,
      not readable, corrupt, zero samples, or non-finite samples.
    """
    path = _check_file(path)
    try:
        with sf.SoundFile(path) as f:
            sr, log = f.samplerate, f.extra_info  # libsndfile's log of reading the header
            data = f.read(dtype="float32", always_2d=True)
    except _DECODE_ERRORS as e:
        raise AudioError(path, f"cannot be decoded as audio ({e})") from e
    mismatch = [ln.strip() for ln in log.splitlines() if "should be" in ln]
    if mismatch and len(data):  # e.g. a cut download: libsndfile reads what is there
        (warn or logging.warning)(f"{path}: its header does not match its size "
                                  f"({'; '.join(mismatch)}); the {len(data)} samples present "
                                  "are used")
    return to_mono_44k(data, sr, path)


def stream(path: str | os.PathLike, block_frames: int = READ_BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode a file block by block: mono float32 blocks at 44.1 kHz.

    The concatenated blocks equal `load(path)` (same decoder and down-mix; the
    streaming soxr resampler gives the one-shot result, length fixed to ceil(n * 44100 / sr)),
    with memory for one block only. Raises `AudioError` (naming the file) where `load` would:
    missing, empty, undecodable, zero samples, non-finite samples (then mid-stream).
    """
    path = _check_file(path)
    errors = _DECODE_ERRORS
    try:
        f = sf.SoundFile(path)
    except errors as e:
        raise AudioError(path, f"cannot be decoded as audio ({e})") from e
    with f:
        sr = int(f.samplerate)
        resampler = None
        if sr != SAMPLE_RATE:
            import soxr

            resampler = soxr.ResampleStream(sr, SAMPLE_RATE, 1, dtype="float32",
                                            quality="HQ")
        n_in, n_out, held = 0, 0, None
        while True:
            try:
                data = f.read(block_frames, dtype="float32", always_2d=True)
            except errors as e:
                raise AudioError(path, f"cannot be decoded as audio ({e})") from e
            if not len(data):
                break
            mono = data.mean(axis=1, dtype=np.float32)
            finite = np.isfinite(mono)
            if not finite.all():
                raise AudioError(path, f"contains non-finite (NaN/inf) samples (first at sample "
                                       f"{n_in + int(np.argmin(finite))})")
            n_in += mono.size
            out = mono if resampler is None else resampler.resample_chunk(mono)
            if held is not None and held.size:
                n_out += held.size
                yield held
            held = out
        if n_in == 0:
            raise AudioError(path, "contains zero samples")
        if resampler is not None:  # flush, and fix the length as librosa.resample does
            held = np.concatenate([held, resampler.resample_chunk(np.zeros(0, np.float32),
                                                                   last=True)])
            target = int(np.ceil(n_in * (SAMPLE_RATE / sr)))
            held = held[:max(0, target - n_out)]
            held = np.pad(held, (0, max(0, target - n_out - held.size)))
        yield held.astype(np.float32, copy=False)


def to_int16(waveform: np.ndarray) -> np.ndarray:
    """Quantise a float waveform for storage (half the bytes of float32; clips outside [-1, 1]).

    `geometry.from_int16` (also `audio.from_int16`) is its inverse."""
    return np.round(np.clip(waveform, -1.0, 1.0) * INT16_SCALE).astype(np.int16)

